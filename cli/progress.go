package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/iocount"
	"golang.org/x/term"
)

// progress shows how far a long command (backup, restore, verify) has got, on stderr: on a
// terminal a bar redrawn in place, once the command has run for ttyDelay; otherwise a plain line
// every plainEvery. Either way a last line gives the total and the time taken.
type progress struct {
	w     io.Writer // nil: --quiet
	what  string    // the command, which starts every line
	unit  string    // "" counts bytes; otherwise the name of what is counted ("keys")
	tty   bool
	width int // the terminal's columns; 0 when unknown
	now   func() time.Time

	n      atomic.Int64
	total  atomic.Int64 // 0: unknown
	approx atomic.Bool  // total is an estimate

	mu      sync.Mutex
	t0      time.Time
	last    time.Time // of the last plain line
	shown   int       // length of the bar on the terminal, to blank what a shorter one leaves
	samples []sample  // for the rate: the last rateWindow of counts
	note    string    // what the command does now, when the count says nothing
	ended   bool

	done chan struct{}
	wg   sync.WaitGroup
}

type sample struct {
	t time.Time
	n int64
}

const (
	ttyDelay   = time.Second // a quick command draws no bar
	tickEvery  = 250 * time.Millisecond
	plainEvery = 5 * time.Second
	// rateWindow is what the rate (and so the ETA) looks back over: long enough to smooth the
	// bursts of a stream, short enough to follow a change of pace.
	rateWindow = 5 * time.Second
	barCells   = 20
)

// newProgress returns the progress of command what on env.Stderr, silent when quiet, not yet
// started.
func newProgress(env *Env, what string, quiet bool) *progress {
	p := &progress{what: what, now: time.Now, done: make(chan struct{})}
	if quiet {
		return p
	}
	p.w = env.Stderr
	if isTerminal(env.Stderr) {
		p.tty = true
		if w, _, err := term.GetSize(int(env.Stderr.(*os.File).Fd())); err == nil {
			p.width = w
		}
	}
	return p
}

// setTotal sets what the count goes up to, approx when it is an estimate (shown with a ~).
func (p *progress) setTotal(total int64, approx bool) {
	p.approx.Store(approx)
	p.total.Store(total)
}

// start starts the clock and the redrawing.
func (p *progress) start() *progress {
	p.begin()
	if p.w == nil {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
	return p
}

// setNote says what the command does once its count stops moving for good.
func (p *progress) setNote(note string) {
	p.mu.Lock()
	p.note = note
	p.mu.Unlock()
}

// begin starts the clock.
func (p *progress) begin() {
	p.t0 = p.now()
	p.last = p.t0
	p.samples = []sample{{p.t0, p.n.Load()}}
}

// writer counts what goes through w.
func (p *progress) writer(w io.Writer) io.Writer { return iocount.Writer{W: w, N: &p.n} }

// reader counts what is read from r.
func (p *progress) reader(r io.Reader) io.Reader { return iocount.Reader{R: r, N: &p.n} }

// tick samples the count and draws the bar, or a plain line when plainEvery has passed.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	now := p.now()
	n := p.n.Load()
	p.samples = append(p.samples, sample{now, n})
	// Keep one sample at or before the window's start, the rate's base.
	i := 0
	for i+1 < len(p.samples) && !p.samples[i+1].t.After(now.Add(-rateWindow)) {
		i++
	}
	p.samples = p.samples[i:]
	switch {
	case p.tty && now.Sub(p.t0) >= ttyDelay:
		p.draw("\r" + p.bar(now, n))
	case !p.tty && now.Sub(p.last) >= plainEvery:
		p.last = now
		fmt.Fprintln(p.w, p.line(now, n))
	}
}

// draw writes the bar s over the one before it.
func (p *progress) draw(s string) {
	if p.width > 0 && len(s) > p.width { // a wrapped line is not redrawn in place
		s = s[:p.width]
	}
	pad := max(0, p.shown-len(s))
	fmt.Fprint(p.w, s+strings.Repeat(" ", pad))
	p.shown = len(s)
}

// rate is the count per second over the samples' window.
func (p *progress) rate(now time.Time, n int64) float64 {
	base := p.samples[0]
	d := now.Sub(base.t).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(n-base.n) / d
}

// status is "120.0 MiB of ~300.0 MiB (40%), 25.0 MiB/s, ETA 7s"; without a total, or past
// an estimated one, it says only what is done and the rate.
func (p *progress) status(now time.Time, n int64, percent bool) string {
	r := p.rate(now, n)
	total := p.total.Load()
	var b strings.Builder
	b.WriteString(p.amount(float64(n)))
	if total > 0 && n < total {
		tilde := ""
		if p.approx.Load() {
			tilde = "~"
		}
		fmt.Fprintf(&b, " of %s%s", tilde, p.amount(float64(total)))
		if percent {
			fmt.Fprintf(&b, " (%d%%)", n*100/total)
		}
	}
	fmt.Fprintf(&b, ", %s/s", p.amount(r))
	if total > 0 && n < total && r > 0 {
		fmt.Fprintf(&b, ", ETA %s", etaString(time.Duration(float64(total-n)/r*float64(time.Second))))
	}
	if p.note != "" {
		b.WriteString("; " + p.note)
	}
	return b.String()
}

// line is a plain progress line.
func (p *progress) line(now time.Time, n int64) string {
	return p.what + ": " + p.status(now, n, true)
}

// bar is the terminal's line: "backup [########------------]  40% 120.0 MiB of ~300.0 MiB, ...".
func (p *progress) bar(now time.Time, n int64) string {
	total := p.total.Load()
	if total <= 0 || n >= total {
		return p.line(now, n)
	}
	full := int(n * barCells / total)
	return fmt.Sprintf("%s [%s%s] %3d%% %s", p.what, strings.Repeat("#", full), strings.Repeat("-", barCells-full),
		n*100/total, p.status(now, n, false))
}

// finish ends the display with the total and the time taken.
func (p *progress) finish() {
	if !p.end() || p.w == nil {
		return
	}
	now := p.now()
	n := p.n.Load()
	took := now.Sub(p.t0)
	round := 10 * time.Millisecond
	if took < time.Second {
		round = time.Millisecond
	}
	s := fmt.Sprintf("%s: %s in %s", p.what, p.amount(float64(n)), took.Round(round))
	if took > 0 {
		s += fmt.Sprintf(" (%s/s)", p.amount(float64(n)/took.Seconds()))
	}
	if p.tty {
		p.draw("\r" + s)
		fmt.Fprintln(p.w)
	} else {
		fmt.Fprintln(p.w, s)
	}
}

// stop ends the display without a last line (the command failed and says why), ending the
// bar's line so that the error starts on its own. After finish it does nothing.
func (p *progress) stop() {
	if p.end() && p.shown > 0 {
		fmt.Fprintln(p.w)
	}
}

// end stops the redrawing; it reports false when the display had already ended.
func (p *progress) end() bool {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return false
	}
	p.ended = true
	close(p.done)
	p.mu.Unlock()
	p.wg.Wait()
	return true
}

// amount formats a count of the progress's unit.
func (p *progress) amount(v float64) string {
	if p.unit == "" {
		return humanBytes(v)
	}
	return fmt.Sprintf("%.0f %s", v, p.unit)
}

// etaString rounds d for people: 7s, 3m05s, 2h10m.
func etaString(d time.Duration) string {
	switch s := int64(d.Round(time.Second) / time.Second); {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
	}
}
