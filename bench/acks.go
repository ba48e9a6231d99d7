package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/codec"
)

// ackCodes counts the reason codes other than Success that level-5
// acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) carried. A connection's
// read loop is its only writer; it is read once that loop has ended.
type ackCodes struct {
	n       map[codec.ReasonCode]uint64
	refused uint64 // PUBACK or PUBREC of 0x80 or more: the broker did not take the message
}

// add counts rc, received in an acknowledgement of type t.
func (a *ackCodes) add(t codec.Type, rc codec.ReasonCode) {
	if a.n == nil {
		a.n = map[codec.ReasonCode]uint64{}
	}
	a.n[rc]++
	if rc >= 0x80 && (t == codec.TypePuback || t == codec.TypePubrec) {
		a.refused++
	}
}

func (a *ackCodes) merge(b *ackCodes) {
	for rc, n := range b.n {
		if a.n == nil {
			a.n = map[codec.ReasonCode]uint64{}
		}
		a.n[rc] += n
	}
	a.refused += b.refused
}

// total is the number of acknowledgements counted.
func (a *ackCodes) total() uint64 {
	var t uint64
	for _, n := range a.n {
		t += n
	}
	return t
}

// String lists code:count pairs in code order, e.g. "0x10:3,0x97:2", or
// "-" when there were none.
func (a *ackCodes) String() string {
	if len(a.n) == 0 {
		return "-"
	}
	var s []string
	for _, rc := range slices.Sorted(maps.Keys(a.n)) {
		s = append(s, fmt.Sprintf("0x%02x:%d", byte(rc), a.n[rc]))
	}
	return strings.Join(s, ",")
}

// err reports the acknowledgements that were not a plain Success: a run
// that got any has not measured what it meant to.
func (a *ackCodes) err() error {
	if len(a.n) == 0 {
		return nil
	}
	return fmt.Errorf("%d acknowledgements with a reason code other than Success (code:count %s)", a.total(), a)
}
