package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/persist"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// testProgress returns a started progress of "backup" on w whose clock is the returned one and
// whose redrawing the test drives by calling tick.
func testProgress(w io.Writer, tty bool, total int64, approx bool) (*progress, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	p := &progress{w: w, what: "backup", tty: tty, now: clk.now, done: make(chan struct{})}
	p.setTotal(total, approx)
	p.begin()
	return p, clk
}

// at moves the clock to d after the start, sets the count to n and ticks.
func (p *progress) at(clk *fakeClock, d time.Duration, n int64) {
	clk.t = p.t0.Add(d)
	p.n.Store(n)
	p.tick()
}

const mib = 1 << 20

// TestProgressPlainCadence: off a terminal, one line every plainEvery whatever the tick rate,
// with done, the estimated total, percent, rate and ETA; then a last line with the total and
// the time taken.
func TestProgressPlainCadence(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, false, 300*mib, true)
	step := 250 * time.Millisecond
	for i := int64(1); i <= 48; i++ { // 12 s at 25 MiB/s
		p.at(clk, time.Duration(i)*step, i*25*mib/4)
	}
	p.finish()
	want := "backup: 125.0 MiB of ~300.0 MiB (41%), 25.0 MiB/s, ETA 7s\n" +
		"backup: 250.0 MiB of ~300.0 MiB (83%), 25.0 MiB/s, ETA 2s\n" +
		"backup: 300.0 MiB in 12s (25.0 MiB/s)\n"
	if b.String() != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", b.String(), want)
	}
	p.stop()
	if b.String() != want {
		t.Errorf("stop after finish wrote %q", strings.TrimPrefix(b.String(), want))
	}
}

// TestProgressRateFollowsPace: the rate, and so the ETA, is measured over the last rateWindow,
// not since the start.
func TestProgressRateFollowsPace(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, false, 1020*mib, false)
	for s := int64(1); s <= 10; s++ {
		p.at(clk, time.Duration(s)*time.Second, s*10*mib)
	}
	for s := int64(11); s <= 16; s++ {
		p.at(clk, time.Duration(s)*time.Second, 100*mib+(s-10)*40*mib)
	}
	// 340 MiB in 16 s is 21.25 MiB/s on average; the last 5 s ran at 40 MiB/s.
	if got, want := p.line(clk.t, p.n.Load()), "backup: 340.0 MiB of 1020.0 MiB (33%), 40.0 MiB/s, ETA 17s"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if len(p.samples) > 7 {
		t.Errorf("%d samples kept for a %v window sampled every second", len(p.samples), rateWindow)
	}
}

// TestProgressBar: on a terminal nothing before ttyDelay, then the bar redrawn in place at every
// tick, and a last line that blanks the rest of the longer bar before it and ends the line.
func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, true, 100*mib, false)
	for i := int64(1); i < 4; i++ {
		p.at(clk, time.Duration(i)*250*time.Millisecond, i*10*mib/4)
	}
	if b.Len() != 0 {
		t.Fatalf("a bar before %v: %q", ttyDelay, b.String())
	}
	p.at(clk, time.Second, 10*mib)
	bar1 := "\rbackup [##------------------]  10% 10.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 9s"
	if b.String() != bar1 {
		t.Fatalf("bar %q\nwant %q", b.String(), bar1)
	}
	p.at(clk, 5*time.Second, 50*mib)
	bar2 := "\rbackup [##########----------]  50% 50.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 5s"
	if got := strings.TrimPrefix(b.String(), bar1); got != bar2 {
		t.Fatalf("second bar %q\nwant %q", got, bar2)
	}
	clk.t = p.t0.Add(10 * time.Second)
	p.n.Store(100 * mib)
	p.finish()
	last := "\rbackup: 100.0 MiB in 10s (10.0 MiB/s)"
	last += strings.Repeat(" ", len(bar2)-len(last)) + "\n"
	if got := strings.TrimPrefix(b.String(), bar1+bar2); got != last {
		t.Errorf("last line %q\nwant %q", got, last)
	}
}

// TestProgressNarrowTerminal: the bar is cut to the terminal's width, since a line that wraps
// is not redrawn in place.
func TestProgressNarrowTerminal(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, true, 100*mib, false)
	p.width = 40
	p.at(clk, 2*time.Second, 10*mib)
	if got, want := b.String(), "\rbackup [##------------------]  10% 10.0"; got != want {
		t.Errorf("bar %q, want %q", got, want)
	}
}

// TestProgressStop: a command that fails ends the bar's line, so that its error starts on a
// line of its own, and writes no last line; before any bar it writes nothing.
func TestProgressStop(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, true, 0, false)
	p.at(clk, 2*time.Second, 3*mib)
	p.stop()
	if got, want := b.String(), "\rbackup: 3.0 MiB, 1.5 MiB/s\n"; got != want {
		t.Errorf("stopped bar %q, want %q", got, want)
	}
	b.Reset()
	p, _ = testProgress(&b, true, 0, false)
	p.stop()
	p.finish()
	if b.Len() != 0 {
		t.Errorf("stop before any bar wrote %q", b.String())
	}
}

// TestProgressUnknownOrExceededTotal: without a total, or once the count passes an estimate,
// the line shows what is done and the rate, with neither percent nor ETA.
func TestProgressUnknownOrExceededTotal(t *testing.T) {
	for _, tc := range []struct {
		total int64
		want  string
	}{
		{0, "backup: 150.0 MiB, 50.0 MiB/s"},
		{100 * mib, "backup: 150.0 MiB, 50.0 MiB/s"},
	} {
		p, clk := testProgress(io.Discard, false, tc.total, true)
		p.at(clk, 3*time.Second, 150*mib)
		if got := p.line(clk.t, p.n.Load()); got != tc.want {
			t.Errorf("total %d: line %q, want %q", tc.total, got, tc.want)
		}
		p.stop()
	}
}

// TestProgressKeys: verify counts keys, not bytes, and says what it does once they are all read.
func TestProgressKeys(t *testing.T) {
	var b bytes.Buffer
	p, clk := testProgress(&b, false, 100000, true)
	p.what, p.unit = "verify", "keys"
	p.at(clk, plainEvery, 40000)
	p.setTotal(64000, false) // the scan's end
	p.setNote("checking")
	p.at(clk, 2*plainEvery, 64000)
	clk.t = p.t0.Add(16 * time.Second)
	p.finish()
	want := "verify: 40000 keys of ~100000 keys (40%), 8000 keys/s, ETA 8s\n" +
		"verify: 64000 keys, 4800 keys/s; checking\n" +
		"verify: 64000 keys in 16s (4000 keys/s)\n"
	if b.String() != want {
		t.Errorf("keys:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestProgressCounts: the writer and the reader count what passes through them, into one count.
func TestProgressCounts(t *testing.T) {
	p, _ := testProgress(io.Discard, false, 0, false)
	defer p.stop()
	var sink bytes.Buffer
	if _, err := p.writer(&sink).Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.reader(strings.NewReader("abc")))
	if err != nil || string(got) != "abc" || sink.String() != "hello" {
		t.Fatalf("passed through %q, %q, %v", sink.String(), got, err)
	}
	if n := p.n.Load(); n != 8 {
		t.Errorf("counted %d bytes, want 8", n)
	}
}

// TestProgressQuiet: --quiet writes nothing, a last line included.
func TestProgressQuiet(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&Env{Stderr: &b}, "restore", true).start()
	p.reader(strings.NewReader("x")).Read(make([]byte, 1))
	p.finish()
	if b.Len() != 0 {
		t.Errorf("quiet progress wrote %q", b.String())
	}
}

func TestETAString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0s",
		6500 * time.Millisecond: "7s",
		59 * time.Second:        "59s",
		185 * time.Second:       "3m05s",
		2*time.Hour + 10*time.Minute + 59*time.Second: "2h10m",
	} {
		if got := etaString(d); got != want {
			t.Errorf("etaString(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestProgressLinesPerCommand: backup (offline and online), restore and verify, their stderr no
// terminal, end with a plain line on stderr giving what they did in all and the time taken
// (the bytes of the backup stream; the keys read), and write no progress to stdout; with
// --quiet they write none.
func TestProgressLinesPerCommand(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	s := opsOpen(t, dir)
	b := &persist.Batch{}
	for i := range 50 {
		b.PutSession(fmt.Sprintf("c%d", i), persist.SessionRecord{ProtocolLevel: 4})
	}
	opsCommit(t, s, b)
	opsEnqueue(t, s, "t", 0, 20, "c1", "c2")
	cfg, _ := startAdmin(t, s, "")
	online := filepath.Join(tmp, "online.hfb")
	runLast(t, "backup", online, "backup", "-c", cfg, "--out", online)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(tmp, "full.hfb")
	runLast(t, "backup", full, "backup", "--data", dir, "--out", full)
	restored := filepath.Join(tmp, "restored")
	runLast(t, "restore", full, "restore", "--data", restored, "--in", full)
	runLast(t, "verify", "", "verify", "--data", restored)

	for _, args := range [][]string{
		{"backup", "--data", dir, "--out", filepath.Join(tmp, "quiet.hfb")},
		{"restore", "--data", filepath.Join(tmp, "quiet"), "--in", full},
		{"verify", "--data", restored},
	} {
		_, errs := opsMustErr(t, append(args, "--quiet")...)
		if regexp.MustCompile(`(?m)^` + args[0] + `:`).MatchString(errs) {
			t.Errorf("%s --quiet: %q", args[0], errs)
		}
	}
}

// runLast runs the command, which must succeed, and checks its last progress line: the bytes of
// file's backup stream, or keys when file is "".
func runLast(t *testing.T, what, file string, args ...string) {
	t.Helper()
	out, errs := opsMustErr(t, args...)
	amount := `\d+ keys`
	if file != "" {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		amount = regexp.QuoteMeta(humanBytes(float64(fi.Size() - backupHeaderSize)))
	}
	last := regexp.MustCompile(`(?m)^` + what + `: ` + amount + ` in [0-9.]+[mµn]?s( \([0-9.]+ (keys|[KM]?i?B)/s\))?$`)
	if !last.MatchString(errs) || strings.Contains(errs, "\r") {
		t.Errorf("%s: stderr %q, want plain lines, the last matching %s", what, errs, last)
	}
	if strings.Contains(out, what+":") {
		t.Errorf("%s: progress on stdout: %q", what, out)
	}
}
