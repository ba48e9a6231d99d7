package test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/codec"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

// smallFS mounts a tmpfs of size bytes for the test: a file system that can be filled in
// moments. It needs root; without it the test skips (and fails under CI, which runs as root).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "mounting a tmpfs needs root"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// freeBytes is what the file system holding dir has left for unprivileged use.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestDiskFullIsAState (issue 13, disk full): below store.min_free_bytes a QoS 1 publish that
// needs disk is not acknowledged (its publisher is disconnected), a new persistent session is
// refused with 0x03, /readyz says not ready, while QoS 0, reconnects of existing sessions,
// deliveries and acknowledgements go on; when space returns the broker serves again by itself,
// having lost nothing it acknowledged.
func TestDiskFullIsAState(t *testing.T) {
	const minFree = 32 << 20
	fs := smallFS(t, "128m")
	b := StartBroker(t, BrokerConfig{DataDir: filepath.Join(fs, "data"),
		Extra: "min_free_bytes = 33554432\n" + opsAdminExtra("0s")})
	admin := "http://" + opsAdminAddr(t, b)

	sub := mqtttest.Dial(t, b.Addr)
	sub.MustConnect("disk-sub", false)
	sub.Subscribe(1, 1, "d/#")
	sub.Send(&codec.Disconnect{})
	sub.ExpectClosed()
	pub := mqtttest.Dial(t, b.Addr)
	pub.MustConnect("disk-pub", true)
	pub.Send(&codec.Publish{Topic: "d/1", QoS: 1, PacketID: 1, Payload: []byte("before")})
	mqtttest.Expect[*codec.Puback](pub)

	// A foreign file takes the space: what is left is below min_free_bytes.
	filler := filepath.Join(fs, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, freeBytes(t, fs)-minFree/2)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var code int
	if !mqtttest.Within(5*time.Second, func() bool { code = opsStatus(t, admin+"/readyz", ""); return code == http.StatusServiceUnavailable }) {
		t.Fatalf("/readyz answered %d with %d bytes free, want 503", code, freeBytes(t, fs))
	}
	pub.Send(&codec.Publish{Topic: "d/2", QoS: 1, PacketID: 2, Payload: []byte("refused")})
	for _, p := range pub.ExpectClosed() {
		if _, ok := p.(*codec.Puback); ok {
			t.Fatal("a QoS 1 publish was acknowledged while the disk was low")
		}
	}
	fresh := mqtttest.Dial(t, b.Addr)
	if ack := fresh.Connect(&codec.Connect{ClientID: "disk-new", KeepAlive: 60}); ack.ReturnCode != codec.RefusedServerUnavailable {
		t.Errorf("a new persistent session got CONNACK 0x%02x while the disk was low, want 0x03", ack.ReturnCode)
	}
	// QoS 0 between clean sessions needs no disk.
	q0 := mqtttest.Dial(t, b.Addr)
	q0.MustConnect("disk-q0", true)
	q0.Subscribe(1, 0, "z")
	q0.Send(&codec.Publish{Topic: "z", Payload: []byte("still")})
	if p := mqtttest.Expect[*codec.Publish](q0); string(p.Payload) != "still" {
		t.Errorf("QoS 0 delivered %q", p.Payload)
	}
	// The existing session comes back and gets what was acknowledged; its PUBACK frees space.
	sub = mqtttest.Dial(t, b.Addr)
	if !sub.MustConnect("disk-sub", false) {
		t.Error("session present 0 for an existing session while the disk was low")
	}
	if p := mqtttest.Expect[*codec.Publish](sub); string(p.Payload) != "before" {
		t.Fatalf("delivered %q, want the message acknowledged before the disk filled", p.Payload)
	}

	// Space returns: service resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !mqtttest.Within(5*time.Second, func() bool { return opsStatus(t, admin+"/readyz", "") == http.StatusOK }) {
		t.Fatal("/readyz still not ready after space returned")
	}
	pub = mqtttest.Dial(t, b.Addr)
	pub.MustConnect("disk-pub", true)
	pub.Send(&codec.Publish{Topic: "d/3", QoS: 1, PacketID: 3, Payload: []byte("after")})
	mqtttest.Expect[*codec.Puback](pub)
	for {
		p := sub.Read()
		pub, ok := p.(*codec.Publish)
		if ok && string(pub.Payload) == "refused" {
			t.Error("the publish refused while the disk was low was delivered")
		}
		if ok && string(pub.Payload) == "after" {
			break
		}
	}
	if !strings.Contains(b.Log(), "free disk space below store.min_free_bytes") {
		t.Error("no log line saying why publishes were refused")
	}
}
