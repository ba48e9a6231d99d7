package persist

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Key families: the first byte of every key.
const (
	famMeta     byte = 0x00
	famSession  byte = 0x01
	famSub      byte = 0x02
	famRetained byte = 0x03
	famQueue    byte = 0x04
	famInflight byte = 0x05
	famBody     byte = 0x06
	famInbound  byte = 0x07
	famWill     byte = 0x08
)

// MaxKeySize is Badger's key size limit. A key is the family byte, then for
// per-client families a 2-byte length and the client id, then the filter,
// topic, sequence or packet id; a batch whose key would be longer fails with
// ErrTooLarge.
const MaxKeySize = 65000

var schemaKey = []byte{famMeta, 's', 'c', 'h', 'e', 'm', 'a'}

var familyNames = [...]string{
	famMeta:     "meta",
	famSession:  "session",
	famSub:      "subscription",
	famRetained: "retained",
	famQueue:    "queue entry",
	famInflight: "in-flight state",
	famBody:     "shared body",
	famInbound:  "inbound QoS 2",
	famWill:     "will",
}

// cidPrefix returns fam | len(cid) uint16 | cid, with room for extra bytes.
func cidPrefix(fam byte, cid string, extra int) []byte {
	return appendCIDPrefix(make([]byte, 0, 3+len(cid)+extra), fam, cid)
}

// appendCIDPrefix appends fam | len(cid) uint16 | cid to k.
func appendCIDPrefix(k []byte, fam byte, cid string) []byte {
	k = append(k, fam)
	k = binary.BigEndian.AppendUint16(k, uint16(len(cid)))
	return append(k, cid...)
}

// seqKeyLen is the length of a key of seqKey.
func seqKeyLen(cid string) int { return 3 + len(cid) + 8 }

func sessionKey(cid string) []byte { return cidPrefix(famSession, cid, 0) }
func willKey(cid string) []byte    { return cidPrefix(famWill, cid, 0) }

func subKey(cid, filter string) []byte {
	return append(cidPrefix(famSub, cid, len(filter)), filter...)
}

func retainedKey(topic string) []byte {
	k := make([]byte, 0, 1+len(topic))
	return append(append(k, famRetained), topic...)
}

func seqKey(fam byte, cid string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(cidPrefix(fam, cid, 8), seq)
}

func queueKey(cid string, seq uint64) []byte    { return seqKey(famQueue, cid, seq) }
func inflightKey(cid string, seq uint64) []byte { return seqKey(famInflight, cid, seq) }

func bodyKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{famBody}, seq)
}

func inboundKey(cid string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(cidPrefix(famInbound, cid, 2), pid)
}

// splitCID parses fam | len | cid | rest. ok is false when the key is too short
// for its own length prefix.
func splitCID(key []byte) (cid string, rest []byte, ok bool) {
	if len(key) < 3 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(key[1:3]))
	if len(key) < 3+n {
		return "", nil, false
	}
	return string(key[3 : 3+n]), key[3+n:], true
}

// parseSeqKey parses a 0x04 or 0x05 key.
func parseSeqKey(key []byte) (cid string, seq uint64, err error) {
	cid, rest, ok := splitCID(key)
	if !ok || len(rest) != 8 {
		return "", 0, corruptf(key, "malformed key")
	}
	return cid, binary.BigEndian.Uint64(rest), nil
}

// seqOfKey returns the trailing uint64 of a well-formed 0x04/0x05/0x06 key.
func seqOfKey(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}

// describeKey renders a key for error messages: family name and its parts.
func describeKey(key []byte) string {
	if len(key) == 0 {
		return "empty key"
	}
	fam := key[0]
	name := "unknown family 0x" + strconv.FormatUint(uint64(fam), 16)
	if int(fam) < len(familyNames) {
		name = familyNames[fam]
	}
	switch fam {
	case famMeta:
		return fmt.Sprintf("%s key %q", name, shorten(key[1:]))
	case famRetained:
		return fmt.Sprintf("%s key (topic %q)", name, shorten(key[1:]))
	case famBody:
		if len(key) == 9 {
			return fmt.Sprintf("%s key (seq %d)", name, seqOfKey(key))
		}
	case famSession, famSub, famQueue, famInflight, famInbound, famWill:
		cid, rest, ok := splitCID(key)
		if !ok {
			break
		}
		switch {
		case (fam == famSession || fam == famWill) && len(rest) == 0:
			return fmt.Sprintf("%s key (client %q)", name, shorten([]byte(cid)))
		case fam == famSub:
			return fmt.Sprintf("%s key (client %q, filter %q)", name, shorten([]byte(cid)), shorten(rest))
		case (fam == famQueue || fam == famInflight) && len(rest) == 8:
			return fmt.Sprintf("%s key (client %q, seq %d)", name, shorten([]byte(cid)), binary.BigEndian.Uint64(rest))
		case fam == famInbound && len(rest) == 2:
			return fmt.Sprintf("%s key (client %q, packet id %d)", name, shorten([]byte(cid)), binary.BigEndian.Uint16(rest))
		}
	}
	return fmt.Sprintf("%s key %x (malformed)", name, shorten(key))
}

// shorten keeps error messages bounded for 64 KB client ids and topics.
func shorten(b []byte) []byte {
	const max = 128
	if len(b) > max {
		return b[:max]
	}
	return b
}
