// Package codec reads and writes MQTT control packets for two protocol
// levels served side by side:
//
//   - level 3, MQTT 3.1, protocol name "MQIsdp" (Level31)
//   - level 4, MQTT 3.1.1, protocol name "MQTT" (Level311)
//
// The wire format of the fourteen packet types is the same at both levels, so
// one set of types serves both; what differs between the levels (the
// session-present flag, SUBACK 0x80, client identifier length) is the broker's
// business, not the codec's.
//
// # Decoding
//
// A Reader decodes one packet at a time from a stream and checks every field
// against the encoding rules of the specification. Anything that breaks them
// is reported as ErrMalformed, wrapped with the packet and field at fault; the
// caller is expected to close the connection [MQTT-4.8.0-1]. Sizes are checked
// before memory is committed: the declared length is compared with the
// configured maximum before the body is read, and the body buffer grows only
// as bytes arrive, so a client cannot make the broker allocate what it never
// sends.
//
// Each decoded packet owns its memory: Payload, Password and the like are
// carved out of one allocation made for that packet alone (strings such as
// Topic are copied out of it), so a packet can be queued, retained or routed
// without copying and stays valid after the next ReadPacket.
//
// # Encoding
//
// Every packet type implements Packet; Append writes the whole packet onto a
// caller's buffer so that a connection can reuse one buffer for all its
// writes. Client-side packets (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ) encode
// too, for test clients and load tools.
//
// # Room for MQTT 5
//
// The packet types are structs behind pointers, so MQTT 5 can add fields
// (properties, reason codes, a reason string) without changing how 3.x
// packets are built or read. Version-specific encoding would hang off the
// protocol level, which a Reader would learn from the CONNECT it decodes.
// Nothing of 5.0 is implemented here.
package codec
