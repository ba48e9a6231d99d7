package broker

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/config"
	"github.com/holdfast/holdfast/internal/mqtttest"
)

func loadTestPasswords(t *testing.T, users ...string) *auth.Passwords {
	t.Helper()
	path := filepath.Join(t.TempDir(), "passwd")
	for _, u := range users {
		h, err := auth.HashPasswordIterations([]byte(u+" pw"), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.SetPasswordHash(path, u, h); err != nil {
			t.Fatal(err)
		}
	}
	p, err := auth.LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkerWithoutWorkers returns a checker whose queue the test drains by hand with next; the
// checks still waiting give up when the test ends.
func checkerWithoutWorkers(t *testing.T, queue, perAddress int) *passwordChecker {
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit) })
	return &passwordChecker{
		maxQueued: queue, maxPerAddress: perAddress,
		quit:   quit,
		work:   make(chan struct{}, queue),
		queues: make(map[string][]*passwordCheck),
		failed: make(map[string]time.Time),
	}
}

func TestPasswordCheckerServesAddressesInTurn(t *testing.T) {
	p := checkerWithoutWorkers(t, 16, 4)
	var wg sync.WaitGroup
	enqueue := func(addr, user string) {
		wg.Add(1)
		go func() { defer wg.Done(); p.check(nil, addr, user, nil) }()
		waitQueued(t, p, addr, user)
	}
	for _, user := range []string{"a1", "a2", "a3"} {
		enqueue("10.0.0.1", user)
	}
	enqueue("10.0.0.2", "b1")
	enqueue("10.0.0.3", "c1")
	p.noteFailure("10.0.0.3") // c's address sent a wrong password: it waits behind the others
	var order []string
	for range 5 {
		c := p.next()
		order = append(order, c.user)
		c.ok <- false
	}
	wg.Wait()
	want := []string{"a1", "b1", "a2", "a3", "c1"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("served %v, want %v", order, want)
		}
	}
}

// waitQueued waits until user's check from addr is in p's queue.
func waitQueued(t *testing.T, p *passwordChecker, addr, user string) {
	t.Helper()
	mqtttest.Eventually(t, 5*time.Second, user+" from "+addr+" to be queued", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.ContainsFunc(p.queues[addr], func(c *passwordCheck) bool { return c.user == user })
	})
}

func TestPasswordCheckerQueueBounds(t *testing.T) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the checker's cleanup lets the waiting checks go
	p := checkerWithoutWorkers(t, 3, 2)
	for _, user := range []string{"x1", "x2"} {
		wg.Add(1)
		go func() { defer wg.Done(); p.check(nil, "10.0.0.1", user, nil) }()
		waitQueued(t, p, "10.0.0.1", user)
	}
	if ok, served := p.check(nil, "10.0.0.1", "x3", nil); ok || served {
		t.Errorf("a third check from one address (limit 2) was queued")
	}
	wg.Add(1)
	go func() { defer wg.Done(); p.check(nil, "10.0.0.2", "y1", nil) }()
	waitQueued(t, p, "10.0.0.2", "y1")
	if ok, served := p.check(nil, "10.0.0.3", "z1", nil); ok || served {
		t.Errorf("a fourth check in all (limit 3) was queued")
	}
}

func TestPasswordCheckerRemembersLogins(t *testing.T) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(quit); wg.Wait() }()
	p := newPasswordChecker(config.Auth{PasswordWorkers: 1, PasswordQueue: 4, PasswordQueuePerAddress: 4, PasswordCache: 2}, &wg, quit)
	pw := loadTestPasswords(t, "alice", "bob", "carol")
	if ok, _ := p.check(pw, "10.0.0.1", "alice", []byte("wrong")); ok {
		t.Fatal("wrong password accepted")
	}
	if p.cache.has(pw, "alice", []byte("wrong")) {
		t.Fatal("a failed login was remembered")
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if ok, _ := p.check(pw, "10.0.0.1", u, []byte(u+" pw")); !ok {
			t.Fatalf("%s refused", u)
		}
	}
	if n := len(p.cache.digests); n != 2 {
		t.Errorf("%d logins remembered, want the cache size 2", n)
	}
	if !p.cache.has(pw, "carol", []byte("carol pw")) {
		t.Errorf("the latest login was not remembered")
	}
	if p.cache.has(pw, "carol", []byte("other")) {
		t.Errorf("the cache accepted another password")
	}
	reloaded := loadTestPasswords(t, "carol")
	if p.cache.has(reloaded, "carol", []byte("carol pw")) {
		t.Errorf("a login was remembered across a password file reload")
	}
}
