// Package test holds black-box tests: they build the holdfast binary, run it as a child process
// on loopback, and talk to it with our raw client and with third-party clients.
package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/mqtttest"
)

// binary is the holdfast executable built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "holdfast")
	if b := os.Getenv("HOLDFAST_TEST_BINARY"); b != "" {
		// A binary built elsewhere, e.g. from an older commit to see a regression test fail there.
		binary = b
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	build := exec.Command("go", "build", "-race", "-o", binary, "..")
	if os.Getenv("HOLDFAST_TEST_NORACE") != "" {
		build = exec.Command("go", "build", "-o", binary, "..")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building holdfast:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool returns the path of an external program, skipping the test when it is missing and
// failing it under CI (where .ci/run must have installed it).
func needTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: install the Debian package %s", name, debianPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Broker is a holdfast child process.
type Broker struct {
	t       testing.TB
	Dir     string // data directory
	Config  string // config file path
	Addr    string // TCP listener address
	cmd     *exec.Cmd
	logMu   sync.Mutex
	log     strings.Builder
	exited  chan struct{}
	exitErr error
}

// BrokerConfig is the TOML written for a child broker; Extra is appended verbatim.
type BrokerConfig struct {
	Durability string // default "sync"
	DataDir    string // default: "data" in a new temporary directory
	MQTT5      bool   // serve MQTT 5 (mqtt5 = true)
	NoMQTT5    bool   // do not (mqtt5 = false)
	Listen     string // the TCP listener's address; default "127.0.0.1:0"
	Extra      string // appended after the [store] table
}

// StartBroker writes a config for a fresh data directory and starts holdfast on 127.0.0.1:0; a
// fuzz target passes its *testing.F, so that one broker serves all its inputs.
func StartBroker(t testing.TB, bc BrokerConfig) *Broker {
	t.Helper()
	dir := t.TempDir()
	if bc.Durability == "" {
		bc.Durability = "sync"
	}
	if bc.DataDir == "" {
		bc.DataDir = filepath.Join(dir, "data")
	}
	if bc.Listen == "" {
		bc.Listen = "127.0.0.1:0"
	}
	top := ""
	if bc.MQTT5 {
		top = "mqtt5 = true\n" // only when asked, so that older binaries (HOLDFAST_TEST_BINARY) still start
	}
	if bc.NoMQTT5 {
		top = "mqtt5 = false\n"
	}
	cfg := fmt.Sprintf(`data_dir = %q
durability = %q
%s[log]
level = "info"
format = "json"
[[listener]]
type = "tcp"
address = %q
[store]
memtable_size = 16777216
block_cache_size = 4194304
index_cache_size = 4194304
%s
`, bc.DataDir, bc.Durability, top, bc.Listen, bc.Extra)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Dir: bc.DataDir, Config: path}
	b.Start()
	t.Cleanup(func() {
		b.Kill()
		checkLogLines(t, b.Log())
		if t.Failed() {
			t.Logf("broker log:\n%s", b.Log())
		}
	})
	return b
}

// checkLogLines fails the test for a JSON log line that does not parse or repeats a key: log
// shippers drop such lines or keep one of the values (the protocol level once went out as a
// second "level" beside the log level). Lines that are not JSON objects (a start-up error
// before the logger exists) are not the logger's.
func checkLogLines(t testing.TB, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if err := uniqueKeys(line); err != nil {
			t.Errorf("broker log line %s: %v", line, err)
		}
	}
}

// uniqueKeys reports whether line is one JSON object whose keys are unique at every level.
func uniqueKeys(line string) error {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object (%v)", err)
	}
	if err := jsonObjectRest(dec); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more after the object")
	}
	return nil
}

// jsonObjectRest reads an object's members and its closing brace, checking the keys.
func jsonObjectRest(dec *json.Decoder) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		if err := jsonValue(dec); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// jsonValue reads one value, checking the keys of the objects in it.
func jsonValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return jsonObjectRest(dec)
	case json.Delim('['):
		for dec.More() {
			if err := jsonValue(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// Start runs the binary on the broker's config and waits until it listens.
func (b *Broker) Start() {
	b.t.Helper()
	b.cmd = exec.Command(binary, "-c", b.Config)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.exited = make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			b.logMu.Lock()
			b.log.WriteString(line + "\n")
			b.logMu.Unlock()
			var rec struct {
				Message string `json:"message"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "listening" {
				select {
				case addr <- rec.Address:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		b.exitErr = b.cmd.Wait()
		close(b.exited)
	}()
	select {
	case b.Addr = <-addr:
	case <-b.exited:
		b.t.Fatalf("holdfast exited before listening: %v\n%s", b.exitErr, b.Log())
	case <-time.After(60 * time.Second):
		b.t.Fatalf("holdfast did not listen within 60 s\n%s", b.Log())
	}
}

// Log returns everything the broker wrote to stderr.
func (b *Broker) Log() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.String()
}

// logLine waits up to d for a line of the broker's log, from byte offset from on, that match
// accepts, and returns it; ok is false when none came.
func (b *Broker) logLine(from int, d time.Duration, match func(line string) bool) (line string, ok bool) {
	ok = mqtttest.Within(d, func() bool {
		log := b.Log()
		for l := range strings.Lines(log[min(from, len(log)):]) {
			if l = strings.TrimSuffix(l, "\n"); match(l) {
				line = l
				return true
			}
		}
		return false
	})
	return line, ok
}

// Kill sends SIGKILL and waits for the process to go.
func (b *Broker) Kill() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	select {
	case <-b.exited:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
}

// Stop sends SIGTERM and waits for a clean exit.
func (b *Broker) Stop() {
	b.t.Helper()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(30 * time.Second):
		b.Kill()
		b.t.Fatalf("holdfast did not stop within 30 s of SIGTERM")
	}
	if b.exitErr != nil {
		b.t.Fatalf("holdfast exited with %v\n%s", b.exitErr, b.Log())
	}
}

// The log check itself: a repeated key, at the top or inside, and a line that is not JSON fail;
// a plain zerolog line passes.
func TestLogLineCheck(t *testing.T) {
	for line, ok := range map[string]bool{
		`{"level":"info","client_id":"a","protocol_level":4,"message":"connected"}`: true,
		`{"level":"info","level":4}`:             false,
		`{"level":"info","x":{"a":1,"a":2}}`:     false,
		`{"level":"info","x":[{"a":1},{"a":2}]}`: true,
		`{"level":"info"`:                        false,
		`{"level":"info"} {}`:                    false,
	} {
		if err := uniqueKeys(line); (err == nil) != ok {
			t.Errorf("%s: %v, want ok %v", line, err, ok)
		}
	}
}
