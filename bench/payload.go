package bench

import "encoding/binary"

// headerSize is the part of every payload the tool reads back: the run
// identifier, the publisher, its sequence number and the send time. The rest
// of a payload (up to -size) is filler.
//
//	offset  0  uint32  run id (random per run; anything else is stray)
//	offset  4  uint32  publisher index
//	offset  8  uint64  sequence number within that publisher, from 0
//	offset 16  int64   send time, nanoseconds on the run's monotonic clock
const headerSize = 24

// stamp is what a payload carries.
type stamp struct {
	run  uint32
	pub  uint32
	seq  uint64
	sent int64
}

// putStamp writes s into the first headerSize bytes of b, which must be that
// long.
func putStamp(b []byte, s stamp) {
	_ = b[headerSize-1]
	binary.BigEndian.PutUint32(b[0:], s.run)
	binary.BigEndian.PutUint32(b[4:], s.pub)
	binary.BigEndian.PutUint64(b[8:], s.seq)
	binary.BigEndian.PutUint64(b[16:], uint64(s.sent))
}

// readStamp reads what putStamp wrote; ok is false for a payload too short
// to carry a stamp.
func readStamp(b []byte) (s stamp, ok bool) {
	if len(b) < headerSize {
		return stamp{}, false
	}
	s.run = binary.BigEndian.Uint32(b[0:])
	s.pub = binary.BigEndian.Uint32(b[4:])
	s.seq = binary.BigEndian.Uint64(b[8:])
	s.sent = int64(binary.BigEndian.Uint64(b[16:]))
	return s, true
}

// newPayload returns a payload buffer of size bytes whose filler is a fixed
// printable pattern, so a broker that compresses or inspects gets nothing
// unusual.
func newPayload(size int) []byte {
	b := make([]byte, size)
	for i := headerSize; i < size; i++ {
		b[i] = 'a' + byte(i%26)
	}
	return b
}
