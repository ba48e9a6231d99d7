package auth

// Interop with the real Mosquitto 2.0 programs (Debian packages mosquitto and
// mosquitto-clients): its password files load here, ours load there, and its
// broker makes the same ACL decisions as ACL for a file where holdfast does
// not deliberately differ (see doc.go).

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/mqtttest"
	"github.com/holdfast/holdfast/internal/syncbuf"
)

func TestMosquittoPasswdHashes(t *testing.T) {
	mp := needTool(t, "mosquitto_passwd", "mosquitto")
	dir := t.TempDir()
	users := map[string]string{"alice": "correct horse", "bob": "p:w d$x", "jörg": "ünïcödé"}
	for _, tc := range []struct {
		name  string
		flags []string
		kind  hashKind
	}{
		{"default $7$", nil, kindPBKDF2},
		{"-H sha512-pbkdf2", []string{"-H", "sha512-pbkdf2"}, kindPBKDF2},
		{"-H sha512", []string{"-H", "sha512"}, kindSHA512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.NewReplacer(" ", "", "$", "").Replace(tc.name))
			first := true
			for _, u := range []string{"alice", "bob", "jörg"} {
				args := append(append([]string(nil), tc.flags...), "-b")
				if first {
					args = append(args, "-c")
					first = false
				}
				run(t, mp, append(args, path, u, users[u])...)
			}
			p, err := LoadPasswords(path)
			if err != nil {
				t.Fatal(err)
			}
			if p.Len() != len(users) {
				t.Fatalf("Len %d, want %d", p.Len(), len(users))
			}
			for u, pw := range users {
				if p.users[u].kind != tc.kind {
					t.Errorf("%s: kind %v, want %v", u, p.users[u].kind, tc.kind)
				}
				if !p.Check(u, []byte(pw)) {
					t.Errorf("%s: right password refused", u)
				}
				if p.Check(u, []byte(pw+" ")) || p.Check(u, nil) {
					t.Errorf("%s: wrong password accepted", u)
				}
			}
		})
	}
}

// TestSetPasswordMosquittoPasswdInterop: SetPassword keeps a mosquitto_passwd
// file readable, and mosquitto_passwd can go on editing a file SetPassword
// wrote.
func TestSetPasswordMosquittoPasswdInterop(t *testing.T) {
	mp := needTool(t, "mosquitto_passwd", "mosquitto")
	path := filepath.Join(t.TempDir(), "passwd")
	run(t, mp, "-b", "-c", path, "alice", "alice pw")
	run(t, mp, "-b", path, "bob", "bob pw")
	if err := SetPassword(path, "carol", []byte("carol pw")); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(path, "bob", []byte("bob new")); err != nil {
		t.Fatal(err)
	}
	run(t, mp, "-b", path, "dave", "dave pw") // mosquitto_passwd edits our file
	run(t, mp, "-b", path, "carol", "carol again")
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	for u, pw := range map[string]string{"alice": "alice pw", "bob": "bob new", "carol": "carol again", "dave": "dave pw"} {
		if !p.Check(u, []byte(pw)) {
			t.Errorf("%s: password refused", u)
		}
	}
	if p.Len() != 4 {
		t.Errorf("Len %d, want 4", p.Len())
	}
}

// mosqBroker runs /usr/sbin/mosquitto on a free loopback port with the given
// password and ACL files until the test ends, and returns the port.
func mosqBroker(t *testing.T, passwordFile, aclFile string) string {
	t.Helper()
	bin := needTool(t, "mosquitto", "mosquitto")
	needTool(t, "mosquitto_pub", "mosquitto-clients")
	needTool(t, "mosquitto_sub", "mosquitto-clients")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npassword_file %s\nacl_file %s\npersistence false\nlog_dest stderr\n", port, passwordFile, aclFile)
	if os.Getuid() == 0 {
		conf += "user root\n" // else it drops to user mosquitto, who cannot read t.TempDir()
	}
	confPath := writeFile(t, "mosquitto.conf", conf)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", confPath)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	if !mqtttest.Within(5*time.Second, func() bool {
		var c net.Conn
		if c, err = net.Dial("tcp", "127.0.0.1:"+port); err != nil {
			return false
		}
		c.Close()
		return true
	}) {
		t.Fatalf("mosquitto did not listen on %s: %v\n%s", port, err, stderr.String())
	}
	return port
}

// clientArgs are mosquitto_pub/sub arguments connecting as c with password pw.
func clientArgs(port string, c Client, pw string) []string {
	args := []string{"-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-i", c.ID}
	if !c.Anonymous {
		args = append(args, "-u", c.Username, "-P", pw)
	}
	return args
}

// mosqPub publishes one message at QoS 1 and reports whether mosquitto_pub
// succeeded (it waits for the PUBACK, so the broker has routed the message).
func mosqPub(port string, c Client, pw, topic, payload string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append(clientArgs(port, c, pw), "-q", "1", "-t", topic, "-m", payload)
	return exec.CommandContext(ctx, "mosquitto_pub", args...).CombinedOutput()
}

// subscriber is a running mosquitto_sub -v.
type subscriber struct {
	lines chan string
}

func startSub(t *testing.T, port string, c Client, pw string, filters ...string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append(clientArgs(port, c, pw), "-v", "-q", "1")
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	cmd := exec.CommandContext(ctx, "mosquitto_sub", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &subscriber{lines: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

// until reads lines up to the line want and returns those before it.
func (s *subscriber) until(t *testing.T, want string) []string {
	t.Helper()
	var seen []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-s.lines:
			if l == want {
				return seen
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no %q from mosquitto_sub within 10s; got %q", want, seen)
		}
	}
}

// ready publishes "ready" to topic until s prints it, which shows s's
// subscription is in place. Lines left over are for sync to skip.
func (s *subscriber) ready(t *testing.T, port string, feeder Client, topic string) {
	t.Helper()
	for range 50 {
		if out, err := mosqPub(port, feeder, "pw", topic, "ready"); err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		select {
		case l := <-s.lines:
			if l == topic+" ready" {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("mosquitto_sub never saw its first message")
}

// syncSubs publishes "sync" to topic and skips every subscriber's lines up to it.
func syncSubs(t *testing.T, port string, feeder Client, topic string, subs ...*subscriber) {
	t.Helper()
	if out, err := mosqPub(port, feeder, "pw", topic, "sync"); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	for _, s := range subs {
		s.until(t, topic+" sync")
	}
}

// TestMosquittoBrokerAcceptsHashPassword: the real Mosquitto accepts the
// hashes SetPassword writes (DefaultIterations, not Mosquitto's own count)
// alongside its own.
func TestMosquittoBrokerAcceptsHashPassword(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	mp := needTool(t, "mosquitto_passwd", "mosquitto")
	run(t, mp, "-b", "-c", pwFile, "mosq", "mosq pw")
	if err := SetPassword(pwFile, "ours", []byte("our pw")); err != nil {
		t.Fatal(err)
	}
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte("pattern write t/%u\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := mosqBroker(t, pwFile, aclFile)
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"ours", "our pw", true}, {"ours", "our pw!", false}, {"mosq", "mosq pw", true}, {"mosq", "our pw", false}, {"nobody", "x", false},
	} {
		out, err := mosqPub(port, Client{ID: "c-" + tc.user, Username: tc.user}, tc.pw, "t/"+tc.user, "x")
		if (err == nil) != tc.ok {
			t.Errorf("user %q password %q: mosquitto_pub error %v, want success %v\n%s", tc.user, tc.pw, err, tc.ok, out)
		}
	}
}

// TestACLAgreesWithMosquitto runs every (client, topic) pair of a file through
// ACL and through a real Mosquitto 2.0 broker, for receiving (Mosquitto checks
// read access at delivery) and for publishing. SUBSCRIBE is not compared:
// Mosquitto's acl_file grants every subscription.
func TestACLAgreesWithMosquitto(t *testing.T) {
	const aclText = `topic read public/#
topic write anon/in
topic deny public/secret

user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#
topic write spaced topic name

user bob
topic readwrite +/status
topic deny door/status
topic read $foo/#

user observer
topic read #
topic read $foo/#

user feeder
topic write #
topic write $foo/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write out/%u/%c
pattern deny devices/%c/locked
pattern deny public/%u
pattern read marker
`
	dir := t.TempDir()
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte(aclText), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "passwd")
	for _, u := range []string{"alice", "bob", "carol", "observer", "feeder"} {
		h, err := HashPasswordIterations([]byte("pw"), 1000)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(pwFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "%s:%s\n", u, h)
		f.Close()
	}
	acl, err := LoadACL(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	port := mosqBroker(t, pwFile, aclFile)

	clients := []Client{
		{ID: "anon1", Anonymous: true},
		{ID: "a1", Username: "alice"},
		{ID: "b1", Username: "bob"},
		{ID: "c1", Username: "carol"}, // no section
	}
	topics := []string{
		"public/news", "public", "public/", "public/alice", "public/secret", "public/secret/x", "anon/in",
		"alice/x", "alice", "sensors/k/temp", "sensors/private/x", "spaced topic name",
		"door/status", "window/status", "$foo/status", "$foo/x", "x/status/y",
		"devices/anon1/x", "devices/a1/x", "devices/a1/locked", "devices/c1/locked", "devices/c1/x/y",
		"users/alice/inbox", "users/carol/inbox", "users//inbox",
		"out/alice/a1", "out/alice/c1", "out/carol/c1", "nothing/here",
	}
	feeder := Client{ID: "feeder", Username: "feeder"}
	var disagree []string

	t.Run("receive", func(t *testing.T) {
		subs := make([]*subscriber, len(clients))
		for i, c := range clients {
			subs[i] = startSub(t, port, c, "pw", "#", "$foo/#")
			subs[i].ready(t, port, feeder, "marker")
		}
		syncSubs(t, port, feeder, "marker", subs...)
		for n, topic := range topics {
			payload := fmt.Sprintf("case-%d", n)
			for _, msg := range [][2]string{{topic, payload}, {"marker", payload}} {
				if out, err := mosqPub(port, feeder, "pw", msg[0], msg[1]); err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
			}
			for i, c := range clients {
				before := subs[i].until(t, "marker "+payload)
				got := len(before) == 1 && before[0] == topic+" "+payload
				if len(before) > 1 || len(before) == 1 && !got {
					t.Fatalf("%+v: unexpected lines %q", c, before)
				}
				if want := acl.CanReceive(c, topic); got != want {
					disagree = append(disagree, fmt.Sprintf("receive %+v %q: mosquitto %v, ACL %v", c, topic, got, want))
				}
			}
		}
	})

	t.Run("publish", func(t *testing.T) {
		obs := startSub(t, port, Client{ID: "observer", Username: "observer"}, "pw", "#", "$foo/#")
		obs.ready(t, port, feeder, "marker")
		syncSubs(t, port, feeder, "marker", obs)
		n := 0
		for _, c := range clients {
			for _, topic := range topics {
				n++
				payload := fmt.Sprintf("pub-%d", n)
				if out, err := mosqPub(port, c, "pw", topic, payload); err != nil {
					t.Fatalf("mosquitto_pub as %+v: %v\n%s", c, err, out)
				}
				if out, err := mosqPub(port, feeder, "pw", "marker", payload); err != nil {
					t.Fatalf("mosquitto_pub: %v\n%s", err, out)
				}
				before := obs.until(t, "marker "+payload)
				got := len(before) == 1 && before[0] == topic+" "+payload
				if len(before) > 1 || len(before) == 1 && !got {
					t.Fatalf("unexpected lines %q", before)
				}
				if want := acl.CanPublish(c, topic); got != want {
					disagree = append(disagree, fmt.Sprintf("publish %+v %q: mosquitto %v, ACL %v", c, topic, got, want))
				}
			}
		}
	})
	for _, d := range disagree {
		t.Error(d)
	}
}
