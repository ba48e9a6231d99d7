package bench

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// line is one run's result: key=value pairs in the order added, printed as
// one line so that scripts can split on spaces and '='.
type line struct {
	b strings.Builder
}

func (l *line) add(key, value string) *line {
	if l.b.Len() > 0 {
		l.b.WriteByte(' ')
	}
	l.b.WriteString(key)
	l.b.WriteByte('=')
	l.b.WriteString(value)
	return l
}

func (l *line) str(key, v string) *line     { return l.add(key, v) }
func (l *line) int(key string, v int) *line { return l.add(key, strconv.Itoa(v)) }
func (l *line) uint(key string, v uint64) *line {
	return l.add(key, strconv.FormatUint(v, 10))
}
func (l *line) bool(key string, v bool) *line { return l.add(key, strconv.FormatBool(v)) }

// rate writes a per-second rate rounded to a whole number.
func (l *line) rate(key string, n uint64, d time.Duration) *line {
	return l.add(key, strconv.FormatFloat(perSecond(n, d), 'f', 0, 64))
}

// secs writes a duration in seconds with two decimals and the unit, e.g.
// "10.00s".
func (l *line) secs(key string, d time.Duration) *line {
	return l.add(key, strconv.FormatFloat(d.Seconds(), 'f', 2, 64)+"s")
}

// ms writes nanoseconds as milliseconds with three decimals.
func (l *line) ms(key string, ns int64) *line {
	return l.add(key, strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64))
}

func (l *line) String() string { return l.b.String() }

// print writes the line and its newline.
func (l *line) print(w io.Writer) error {
	_, err := io.WriteString(w, l.b.String()+"\n")
	return err
}

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressAfter is how long a run goes before it shows progress: shorter
// runs only print their result.
const progressAfter = 3 * time.Second

// progress rewrites one status line on a terminal every second. status
// returns the text after the elapsed time.
type progress struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startProgress(w io.Writer, enabled bool, name string, status func() string) *progress {
	p := &progress{stop: make(chan struct{})}
	if !enabled {
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		shown := false
		for {
			select {
			case <-p.stop:
				if shown {
					io.WriteString(w, "\r\033[K")
				}
				return
			case now := <-tick.C:
				s := status() // called every tick so that rates span one second
				if now.Sub(start) < progressAfter {
					continue
				}
				fmt.Fprintf(w, "\r\033[K%s %3.0fs %s", name, now.Sub(start).Seconds(), s)
				shown = true
			}
		}
	}()
	return p
}

// end stops the progress line and erases it.
func (p *progress) end() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// counterRate turns a growing counter into "n (r/s)" text, r measured since
// the previous call.
type counterRate struct {
	last uint64
	at   time.Time
}

func (c *counterRate) text(n uint64) string {
	now := time.Now()
	r := 0.0
	if !c.at.IsZero() {
		r = perSecond(n-c.last, now.Sub(c.at))
	}
	c.last, c.at = n, now
	return strconv.FormatUint(n, 10) + " (" + strconv.FormatFloat(r, 'f', 0, 64) + "/s)"
}
