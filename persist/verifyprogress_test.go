package persist

import (
	"fmt"
	"io"
	"testing"
)

// TestVerifyProgress: VerifyProgress reports the keys read so far every verifyProgressKeys keys,
// with the key count of the tables as estimate, and at the end of its scan all of them, as the
// exact estimate.
func TestVerifyProgress(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(testOptions(dir, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	cids := make([]string, 10000)
	for i := range cids {
		cids[i] = fmt.Sprintf("c%05d", i)
	}
	putSessions(t, s, cids...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var keys, estimates []int64
	rep, err := VerifyProgress(dir, func(k, e int64) { keys, estimates = append(keys, k), append(estimates, e) })
	if err != nil || !rep.OK() {
		t.Fatalf("VerifyProgress: %v, %+v", err, rep)
	}
	all := int64(rep.Sessions) + 1 // and the format version
	want := []int64{verifyProgressKeys, 2 * verifyProgressKeys, all}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("progress %v, want %v", keys, want)
	}
	for _, e := range estimates[:len(estimates)-1] {
		if e != estimates[0] || e < all {
			t.Errorf("estimates %v for %d keys", estimates, all)
			break
		}
	}
	if last := estimates[len(estimates)-1]; last != all {
		t.Errorf("at the scan's end, estimate %d for %d keys", last, all)
	}
}
