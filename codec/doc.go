// Package codec reads and writes MQTT control packets for three protocol
// levels:
//
//   - level 3, MQTT 3.1, protocol name "MQIsdp" (Level31)
//   - level 4, MQTT 3.1.1, protocol name "MQTT" (Level311)
//   - level 5, MQTT 5.0, protocol name "MQTT" (Level5)
//
// A broker bridging into this one may send a 3.1 or 3.1.1 CONNECT's level
// with BridgeBit set (0x83, 0x84); the Reader decodes it at the plain level
// and sets Connect.Bridge.
//
// The wire format of the fourteen packet types is the same at levels 3 and
// 4, so one set of types serves both; what differs between them (the
// session-present flag, SUBACK 0x80, client identifier length) is the broker's
// business, not the codec's. Level 5 adds properties, reason codes and the
// AUTH packet; the same types carry them (see "MQTT 5" below).
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
// # MQTT 5
//
// Level 5 packets are the same structs with more fields: Props (a
// *Properties, nil when a packet has none), Reason (a ReasonCode) on CONNACK,
// the publish acknowledgements, DISCONNECT and AUTH, Reasons on UNSUBACK, the
// subscription options on Subscription, and the Auth type. SUBACK keeps its
// ReturnCodes, each a ReasonCode at level 5. Levels 3 and 4 leave all of
// these zero and never read them, so 3.x code does not change and pays
// nothing: one more nil pointer in a packet, no allocation, no branch on the
// QoS 0 path but the level test.
//
// The level is never guessed. A Reader decodes at the level of the CONNECT it
// read (Level, which is known as soon as the CONNECT's protocol level is, so
// a malformed level-5 CONNECT can be answered in level-5 form) or at the one
// a client gives SetLevel; a CONNECT always carries its own. A Reader
// refuses a level-5 CONNECT with ErrUnsupportedProtocol, as before MQTT 5
// existed, until AcceptLevel5 is called: a broker calls it once it serves
// MQTT 5. Encoding is as explicit: Append writes the 3.x form (a Connect
// follows its ProtocolLevel, an Auth has only the level-5 form) and
// AppendLevel(dst, Level5) the level-5 one, in its shortest form (a PUBACK
// with Success and no properties is the two bytes of 3.1.1, a normal
// DISCONNECT is 0xE0 0x00). Encoding leaves out properties the packet type
// may not carry, so a broker can forward a PUBLISH's properties as they are.
//
// A property whose field holds the zero value is absent unless
// Properties.Include marked it; Properties.Has tells. Defaults the
// specification gives to absent properties are the broker's to apply.
//
// Decoding errors at level 5 are of two kinds, as the specification's are
// (§4.13): ErrMalformed for a packet that cannot be parsed (a bad length, an
// unknown property, a property the packet type may not carry, ill-formed
// UTF-8, reserved bits) and ErrProtocol for one that parses but breaks a rule
// (a property given twice, Receive Maximum 0, a reason code the packet type
// does not have, an empty topic without a Topic Alias). Both name the packet
// and the field; ReasonOf maps an error to the reason code to send in
// DISCONNECT, or in CONNACK for a CONNECT. Rules that depend on direction or
// on the session (a Subscription Identifier in a PUBLISH from a client, a
// Topic Alias above the maximum, Session Expiry Interval in a DISCONNECT from
// the server or after a CONNECT that had 0) are the broker's.
//
// MaxConnectSize is the largest CONNECT of levels 3 and 4. A level-5 CONNECT
// may be larger, since its properties (user properties above all) have no
// bound but the remaining length; a broker that serves MQTT 5 chooses its own
// limit for the first packet.
package codec
