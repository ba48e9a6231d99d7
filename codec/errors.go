package codec

import (
	"errors"
	"fmt"
)

// ErrMalformed reports a packet that breaks the encoding rules of the
// specification: bad flags, a length that runs past the end of the packet,
// ill-formed UTF-8, a wildcard in a topic name and so on. The error returned
// wraps it with the packet type and field, e.g.
// "malformed packet: PUBLISH topic name: contains wildcard '+'". The stream
// cannot be trusted after it; close the connection [MQTT-4.8.0-1].
var ErrMalformed = errors.New("malformed packet")

// ErrPacketTooLarge reports a packet whose fixed header plus remaining length
// exceeds the Reader's maximum packet size (NewReader, SetMaxPacketSize;
// a broker keeps it at MaxConnectSize until CONNACK). It is detected from
// the fixed header alone, before any of the body is read or allocated, so
// the body is left unread and the connection must be closed.
var ErrPacketTooLarge = errors.New("packet too large")

// ErrUnsupportedProtocol reports a CONNECT with a known protocol name but a
// (name, level) pair other than ("MQIsdp", 3) or ("MQTT", 4). It comes with a
// *Connect holding ProtocolName and ProtocolLevel so that the broker can
// answer CONNACK RefusedProtocolVersion before it disconnects [MQTT-3.1.2-2].
var ErrUnsupportedProtocol = errors.New("unsupported protocol")

// malformed builds the error for a rule broken by field of a t packet.
func malformed(t Type, field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", ErrMalformed, t, field, fmt.Sprintf(format, args...))
}

// malformedBy wraps an error from a validation helper, keeping it reachable
// through errors.Is/As as well as ErrMalformed.
func malformedBy(t Type, field string, err error) error {
	return fmt.Errorf("%w: %s %s: %w", ErrMalformed, t, field, err)
}

// ErrProtocol reports a level-5 packet that parses but carries what the
// specification calls a Protocol Error (§4.13): a property given twice, a
// Receive Maximum of 0, a Retain Handling of 3 and so on. The error wraps it
// with the packet type and field, like ErrMalformed; ReasonOf gives the
// reason code to answer with. Packets of levels 3 and 4 never return it: what
// 5.0 splits in two, 3.1.1 calls malformed.
var ErrProtocol = errors.New("protocol error")

// ErrTopicAliasInvalid is the ErrProtocol of a PUBLISH whose Topic Alias is 0,
// which the specification answers with its own reason code, 0x94
// [MQTT-3.3.2-8]. Whether an alias exceeds the Topic Alias Maximum is the
// broker's to judge, with the same error.
var ErrTopicAliasInvalid = fmt.Errorf("%w: topic alias invalid", ErrProtocol)

// protocolErr builds the error for a Protocol Error in field of a t packet.
func protocolErr(t Type, field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", ErrProtocol, t, field, fmt.Sprintf(format, args...))
}
