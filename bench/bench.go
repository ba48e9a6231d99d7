// Package bench is holdfast's load tool: `holdfast bench SCENARIO [flags]`.
//
// It drives any MQTT 3.1, 3.1.1 or 5.0 broker with its own client, built on the
// codec package and kept allocation-free on the message path (one reader
// goroutine per connection, writes batched in a bufio.Writer that is flushed
// when the in-flight window is full or nothing else is queued), so that the
// broker, not the client, is what gets measured.
//
// Every run is bounded in messages and in time, stops by itself, and prints
// exactly one line of key=value results on stdout; on a terminal a progress
// line on stderr is refreshed every second for runs longer than a few
// seconds. Every payload carries the run, the publisher, a sequence number
// and the send time, so loss, duplicates and latency are measured, not
// assumed. Loss at QoS 1 or 2, and duplicates at QoS 2, make the run fail.
//
// At protocol level 5 (-v 5) persistent sessions (-clean=false) ask for a
// Session Expiry Interval that never ends, as clean-session=0 does in
// 3.1.1, and every acknowledgement whose reason code is not Success is
// counted (ack_errors, ack_codes) and fails the run.
//
// Scenarios: fanin, fanout, latency, shared, idle, offline, restart, connect; see
// `holdfast bench SCENARIO -h`.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
)

// ErrUsage marks errors caused by bad arguments (exit code 2); a -h request
// returns flag.ErrHelp instead.
var ErrUsage = errors.New("bad usage")

// ErrLoss marks a run that lost QoS 1 or 2 messages or delivered a QoS 2
// message twice. The result line has been printed when it is returned.
var ErrLoss = errors.New("delivery guarantee broken")

// options holds every flag; each scenario registers the ones it reads.
type options struct {
	addr     string
	qos      int
	size     int
	inflight int
	duration time.Duration
	count    int64
	level    int
	clean    bool
	timeout  time.Duration

	pubs, subs int
	rate       float64

	subAddr, topicPrefix, filter string

	conns    int
	parallel int
	pid      int
	settle   time.Duration

	churn time.Duration

	fill, wait bool
	sessions   int
	interval   time.Duration
	since      int64
	waitID     string // -wait: connect as this persistent session and require session-present

	user, password, idPrefix string
	floodIdle, floodWrong    int
	floodFrom                string
	idleFrom                 string
	keepAlive                time.Duration
	idleSources              []netip.Addr // parsed -from of idle
}

// env is what a scenario runs with.
type env struct {
	o        options
	stdout   io.Writer
	stderr   io.Writer
	start    time.Time // when Main was entered
	progress bool      // stderr is a terminal
	run      uint32    // random id of this run: topics, client ids, payloads
}

type scenario struct {
	name    string
	summary string
	flags   func(fs *flag.FlagSet, o *options)
	run     func(e *env) error
}

func scenarios() []scenario {
	return []scenario{
		{"fanin", "P publishers to one subscriber on one topic: delivered/s, loss, duplicates", flagsFanin, runFanin},
		{"fanout", "one publisher to N subscribers: deliveries/s over all subscribers", flagsFanout, runFanout},
		{"latency", "one publisher at a fixed rate to one subscriber: p50, p99, p999, max latency", flagsLatency, runLatency},
		{"shared", "P publishers to a shared subscription of N members, optionally killing one per -churn: delivered/s, loss, duplicates", flagsShared, runShared},
		{"idle", "open many idle connections: connect rate, broker memory per connection", flagsIdle, runIdle},
		{"offline", "queue M messages for an offline persistent session, then drain: enqueue/s, drain/s", flagsOffline, runOffline},
		{"restart", "-fill: queue messages over many persistent sessions; -wait: time until a restarted broker accepts", flagsRestart, runRestart},
		{"connect", "legitimate clients connecting one by one, optionally during a flood of idle and wrong-password sockets: dial-to-CONNACK p50, p99, max", flagsConnect, runConnect},
	}
}

// Main runs `holdfast bench` with args (the scenario and its flags). It
// returns flag.ErrHelp after -h, an error wrapping ErrUsage for bad
// arguments, one wrapping ErrLoss when guarantees were broken, and any
// other error when the run could not complete.
func Main(args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	all := scenarios()
	if len(args) == 0 {
		printUsage(stderr, all)
		return fmt.Errorf("%w: missing scenario", ErrUsage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(stderr, all)
		return flag.ErrHelp
	}
	var sc *scenario
	for i := range all {
		if all[i].name == args[0] {
			sc = &all[i]
		}
	}
	if sc == nil {
		printUsage(stderr, all)
		return fmt.Errorf("%w: unknown scenario %q", ErrUsage, args[0])
	}

	fs := flag.NewFlagSet("holdfast bench "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	sc.flags(fs, &o)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: holdfast bench %s [flags]\n\n%s.\n\nflags:\n", sc.name, sc.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: bench %s: %w", ErrUsage, sc.name, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: bench %s: unexpected argument %q", ErrUsage, sc.name, fs.Arg(0))
	}
	if err := o.validate(fs); err != nil {
		return fmt.Errorf("%w: bench %s: %w", ErrUsage, sc.name, err)
	}
	e := &env{o: o, stdout: stdout, stderr: stderr, start: start, progress: isTerminal(stderr), run: rand.Uint32()}
	return sc.run(e)
}

func printUsage(w io.Writer, all []scenario) {
	fmt.Fprintf(w, "usage: holdfast bench SCENARIO [flags]\n\nscenarios:\n")
	for _, s := range all {
		fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\n`holdfast bench SCENARIO -h` lists the flags of one.\n")
}

// Flag groups. Defaults follow issue 7: 64-byte payloads, 16 messages in
// flight per publisher.

func flagsConn(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.addr, "addr", "127.0.0.1:1883", "broker `host:port`")
	fs.IntVar(&o.level, "v", 4, "MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "longest wait for a CONNACK or SUBACK, for an acknowledgement, and without new deliveries at the end of a run")
}

func flagsMessages(fs *flag.FlagSet, o *options, qos int, count int64, duration time.Duration) {
	fs.IntVar(&o.qos, "qos", qos, "QoS of publications and subscriptions: 0, 1 or 2")
	fs.IntVar(&o.size, "size", 64, fmt.Sprintf("payload `bytes` (at least %d: run, publisher, sequence number, send time)", headerSize))
	fs.IntVar(&o.inflight, "inflight", 16, "messages each publisher keeps in flight at QoS 1 and 2 (QoS 0 publishers write as fast as TCP takes)")
	fs.Int64Var(&o.count, "count", count, "messages to publish in all (0: until -duration)")
	fs.DurationVar(&o.duration, "duration", duration, "publishing stops after this long even if -count is not reached")
}

func flagsFlow(fs *flag.FlagSet, o *options) {
	flagsConn(fs, o)
	flagsMessages(fs, o, 0, 0, 10*time.Second)
	fs.BoolVar(&o.clean, "clean", true, "subscribers connect with clean-session=1 (-clean=false: persistent sessions, removed at the end)")
}

func flagsFanin(fs *flag.FlagSet, o *options) {
	flagsFlow(fs, o)
	fs.IntVar(&o.pubs, "pubs", 4, "publishers")
	fs.StringVar(&o.subAddr, "sub-addr", "", "the subscriber connects to this `host:port` instead of -addr, to which a bridge forwards the messages; lost then counts the messages acknowledged to a publisher (at QoS 1 and 2) that never reached it (empty: -addr)")
	fs.StringVar(&o.topicPrefix, "topic", "", "publisher n publishes to `prefix`n, e.g. sensors/ (empty: all to one topic of this run)")
	fs.StringVar(&o.filter, "filter", "", "the subscriber's topic `filter` (empty: -topic followed by #, or the one topic); with a bridge's remote_prefix, e.g. fleet/sensors/#")
}

func flagsFanout(fs *flag.FlagSet, o *options) {
	flagsFlow(fs, o)
	fs.IntVar(&o.subs, "subs", 10, "subscribers")
	fs.IntVar(&o.parallel, "parallel", 32, "subscribers connecting (and, with -clean=false, removing their sessions at the end) at once")
	fs.IntVar(&o.pid, "pid", 0, "broker process id: VmRSS is read from /proc/PID/status once the subscribers are connected, every 100 ms while messages flow (peak) and after the last delivery (0: not measured)")
}

func flagsLatency(fs *flag.FlagSet, o *options) {
	flagsFlow(fs, o)
	fs.Float64Var(&o.rate, "rate", 1000, "messages per second (with -count 0: rate × -duration messages)")
}

func flagsShared(fs *flag.FlagSet, o *options) {
	flagsConn(fs, o)
	flagsMessages(fs, o, 1, 0, 10*time.Second)
	fs.BoolVar(&o.clean, "clean", false, "members connect with clean-session=1 (default: persistent sessions, removed at the end)")
	fs.IntVar(&o.pubs, "pubs", 4, "publishers")
	fs.IntVar(&o.subs, "subs", 4, "members of the group")
	fs.DurationVar(&o.churn, "churn", 0, "every `interval`, close one member's socket without DISCONNECT and start a member with a new client id in its place (0: never)")
}

func flagsIdle(fs *flag.FlagSet, o *options) {
	flagsConn(fs, o)
	fs.IntVar(&o.conns, "conns", 10000, "connections to open")
	fs.IntVar(&o.parallel, "parallel", 32, "connections being opened at once")
	fs.IntVar(&o.pid, "pid", 0, "broker process id: VmRSS is read from /proc/PID/status before and after (0: not measured)")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait after the last CONNACK before reading the broker's memory")
	fs.DurationVar(&o.duration, "duration", 5*time.Minute, "give up opening connections after this long")
	fs.DurationVar(&o.keepAlive, "keepalive", 0, "keep-alive the connections ask for, in whole seconds; they send no PINGREQ, so -settle must be shorter than 1.5 times it (0: none)")
	fs.StringVar(&o.idleFrom, "from", "", "comma-separated loopback `addresses` the connections are spread over, e.g. 127.0.0.1,127.0.0.2: each source address has its own ephemeral ports (about 28,000 by default), so more than that many connections to one broker port need several (empty: the system's choice)")
}

func flagsOffline(fs *flag.FlagSet, o *options) {
	flagsConn(fs, o)
	flagsMessages(fs, o, 1, 50000, 5*time.Minute)
}

func flagsRestart(fs *flag.FlagSet, o *options) {
	flagsConn(fs, o)
	flagsMessages(fs, o, 1, 1000000, 30*time.Minute)
	fs.BoolVar(&o.fill, "fill", false, "create -sessions persistent sessions and queue -count messages over them")
	fs.BoolVar(&o.wait, "wait", false, "connect repeatedly until the broker answers CONNACK; report the time since -since")
	fs.IntVar(&o.sessions, "sessions", 10000, "-fill: persistent sessions, each subscribed to its own topic")
	fs.IntVar(&o.pubs, "pubs", 4, "-fill: publishers, each going round the sessions' topics")
	fs.IntVar(&o.parallel, "parallel", 32, "-fill: sessions being created at once")
	fs.DurationVar(&o.interval, "interval", 10*time.Millisecond, "-wait: pause between connection attempts")
	fs.Int64Var(&o.since, "since", 0, "-wait: start of the measurement in Unix `nanoseconds`, e.g. $(date +%s%N) just before the broker was started (0: when this command started)")
	fs.StringVar(&o.waitID, "client", "", "-wait: connect as this `client id` with clean-session=0 and count only a CONNACK with session-present, e.g. the first session of a fill (hb<run>q0); its session is left in place (empty: a clean session of its own)")
	fs.IntVar(&o.pid, "pid", 0, "-wait: broker process id: VmRSS is read from /proc/PID/status at the first CONNACK and -settle after it (0: not measured)")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "-wait: how long after the first CONNACK to read the broker's memory again")
}

// validate checks the flags the scenario registered.
func (o *options) validate(fs *flag.FlagSet) error {
	has := func(name string) bool { return fs.Lookup(name) != nil }
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if o.level < 3 || o.level > 5 {
		bad("-v %d: want 3, 4 or 5", o.level)
	}
	if o.timeout <= 0 {
		bad("-timeout must be positive")
	}
	if has("qos") {
		if o.qos < 0 || o.qos > 2 {
			bad("-qos %d: want 0, 1 or 2", o.qos)
		}
		if o.size < headerSize || o.size > 1<<20 {
			bad("-size %d: want %d to %d", o.size, headerSize, 1<<20)
		}
		if o.inflight < 1 || o.inflight > 65535 {
			bad("-inflight %d: want 1 to 65535", o.inflight)
		}
		if o.count < 0 {
			bad("-count must not be negative")
		}
	}
	if o.duration <= 0 {
		bad("-duration must be positive")
	}
	if has("pubs") && o.pubs < 1 {
		bad("-pubs must be at least 1")
	}
	if has("subs") && o.subs < 1 {
		bad("-subs must be at least 1")
	}
	if has("rate") && !(o.rate > 0 && o.rate <= 1e7) {
		bad("-rate must be above 0 and at most 10000000")
	}
	if has("filter") && o.filter != "" && o.topicPrefix == "" {
		bad("-filter needs -topic: without it the topic is one of this run, unknown in advance")
	}
	if has("churn") && o.churn < 0 {
		bad("-churn must not be negative")
	}
	if has("conns") && o.conns < 1 {
		bad("-conns must be at least 1")
	}
	if has("keepalive") && (o.keepAlive < 0 || o.keepAlive%time.Second != 0 || o.keepAlive > 65535*time.Second) {
		bad("-keepalive %s: want whole seconds from 0 to 65535", o.keepAlive)
	}
	if has("from") && o.idleFrom != "" {
		o.idleSources = loopbackList("-from", o.idleFrom, bad)
	}
	if has("parallel") && o.parallel < 1 {
		bad("-parallel must be at least 1")
	}
	if has("sessions") {
		switch {
		case o.fill == o.wait:
			bad("restart needs exactly one of -fill and -wait")
		case o.fill && o.qos == 0:
			bad("-fill needs -qos 1 or 2: QoS 0 messages are not queued for offline sessions")
		case o.fill && o.sessions < 1:
			bad("-sessions must be at least 1")
		case o.wait && o.interval <= 0:
			bad("-interval must be positive")
		}
	}
	if fs.Name() == "holdfast bench offline" && o.qos == 0 {
		bad("offline needs -qos 1 or 2: QoS 0 messages are not queued for offline sessions")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// clientID names connection i of role r in this run. It stays within the
// 23 bytes MQTT 3.1 allows.
func (e *env) clientID(role string, i int) string {
	return fmt.Sprintf("hb%08x%s%d", e.run, role, i)
}

// topic is a topic of this run alone, so that no earlier run's sessions or
// retained messages can interfere.
func (e *env) topic(name string) string {
	return fmt.Sprintf("bench/%08x/%s", e.run, name)
}

func (e *env) dialOpts(clientID string, clean bool) dialOpts {
	return dialOpts{addr: e.o.addr, level: byte(e.o.level), clientID: clientID, clean: clean, timeout: e.o.timeout, window: e.o.inflight}
}

// subDialOpts is dialOpts for a subscriber, which -sub-addr may put on another broker.
func (e *env) subDialOpts(clientID string, clean bool) dialOpts {
	d := e.dialOpts(clientID, clean)
	if e.o.subAddr != "" {
		d.addr = e.o.subAddr
	}
	return d
}
