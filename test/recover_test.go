package test

import (
	be "encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// TestRecoverAfterMidLogDamage (issue 13, holdfast recover), against the binary: a persistent
// subscriber's queue of acknowledged QoS 1 messages, a SIGKILL, and one damaged byte in a record
// in the middle of the write-ahead log. The broker refuses to start with exit code 4, naming the
// file and the offset; verify names them and what recover would drop; recover cuts the log after copying it;
// the broker then starts, the session is there, and every message whose record came before the
// damage is delivered.
func TestRecoverAfterMidLogDamage(t *testing.T) {
	const topic, base, n = "recover/t", 7000000, 30
	b := StartBroker(t, BrokerConfig{})
	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("recover-sub", false)
	sub.Subscribe(1, 1, topic)
	sub.Send(&codec.Disconnect{})
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("recover-pub", true)
	for i := 1; i <= n; i++ {
		pub.Send(&codec.Publish{QoS: 1, Topic: topic, PacketID: uint16(i), Payload: []byte(strconv.Itoa(base + i))})
		mqtttest.Expect[*codec.Puback](pub)
	}
	b.Kill()

	// Which messages each record of the log holds; the record of message 15 is damaged.
	walPath := filepath.Join(b.Dir, "holdfast.wal")
	wal, err := os.ReadFile(walPath)
	if err != nil {
		t.Fatal(err)
	}
	number := regexp.MustCompile(`70000[0-9][0-9]`)
	var before []int
	damaged := -1
	for off := 16; off+8 <= len(wal) && damaged < 0; {
		size := int(be.BigEndian.Uint32(wal[off:]))
		if size == 0 {
			break
		}
		payload := wal[off+8 : off+8+size]
		var msgs []int
		for _, m := range number.FindAll(payload, -1) {
			v, _ := strconv.Atoi(string(m))
			msgs = append(msgs, v)
		}
		if strings.Contains(string(payload), strconv.Itoa(base+15)) {
			damaged = off
			payload[size/2] ^= 0x20
			break
		}
		before = append(before, msgs...)
		off += 8 + size
	}
	if damaged < 0 || len(before) == 0 {
		t.Fatalf("no record holds message %d after others (damaged %d, before it %v)", base+15, damaged, before)
	}
	if err := os.WriteFile(walPath, wal, 0o600); err != nil {
		t.Fatal(err)
	}
	at := "byte " + strconv.Itoa(damaged)

	_, errs, code := opsCmd(t, "-c", b.Config)
	if code != 4 || !strings.Contains(errs, walPath) || !strings.Contains(errs, at) {
		t.Fatalf("start on the damaged log: exit %d, want 4 (damaged data directory: the unit does not restart it) naming %s and %s:\n%s", code, walPath, at, errs)
	}
	t.Logf("start refused, exit %d; %d messages in the records before the damaged one at %s", code, len(before), at)
	_, errs, code = opsCmd(t, "verify", "--data", b.Dir)
	if code != 1 || !strings.Contains(errs, at) || !strings.Contains(errs, "holdfast recover --data "+b.Dir) {
		t.Errorf("verify: exit %d, want 1 naming %s and holdfast recover:\n%s", code, at, errs)
	}
	out := opsMustCmd(t, "recover", "--data", b.Dir)
	if !strings.Contains(out, "cut the write-ahead log at "+at) || !strings.Contains(out, "backup:  "+walPath+".") {
		t.Errorf("recover printed:\n%s", out)
	}

	b.Start()
	if _, got, err := faultfsReceive(t, b.Addr, "recover-sub", before); err != nil {
		t.Errorf("after recover: %v; delivered %d of the %d messages whose records came before the damage", err, len(got), len(before))
	}
	b.Stop()
}
