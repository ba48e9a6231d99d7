package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync"
	"time"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/config"
)

// passwordChecker runs password checks, which cost CPU by design, on a few workers. Waiting
// CONNECTs are served in turn by source address, so an address that floods wrong passwords
// delays the others by one check per turn, however many it sends; addresses that sent a wrong
// password in the last minute wait behind those that did not. The queue is bounded in all and
// per address, and a CONNECT that finds it full is refused rather than queued. Successful logins
// are remembered so that a client reconnecting with the same password is not hashed again.
type passwordChecker struct {
	maxQueued, maxPerAddress int
	work                     chan struct{} // one token per queued check
	quit                     <-chan struct{}

	mu     sync.Mutex
	queues map[string][]*passwordCheck // per source address, oldest first
	turns  []string                    // addresses with checks waiting, in serving order
	queued int
	failed map[string]time.Time // recent wrong passwords by address, at most maxFailedAddresses

	cache loginCache
}

// failurePenalty is how long an address that sent a wrong password waits behind the others, and
// maxFailedAddresses bounds how many such addresses are remembered.
const (
	failurePenalty     = time.Minute
	maxFailedAddresses = 4096
)

type passwordCheck struct {
	address   string
	passwords *auth.Passwords
	user      string
	password  []byte
	ok        chan bool
}

// newPasswordChecker starts the workers; they stop when quit is closed.
func newPasswordChecker(c config.Auth, wg *sync.WaitGroup, quit <-chan struct{}) *passwordChecker {
	p := &passwordChecker{
		maxQueued:     c.PasswordQueue,
		maxPerAddress: c.PasswordQueuePerAddress,
		work:          make(chan struct{}, c.PasswordQueue),
		quit:          quit,
		queues:        make(map[string][]*passwordCheck),
		failed:        make(map[string]time.Time),
	}
	p.cache.init(c.PasswordCache)
	workers := c.PasswordWorkers
	if workers == 0 {
		workers = max(1, runtime.NumCPU()/2)
	}
	wg.Add(workers)
	for range workers {
		go p.worker(wg)
	}
	return p
}

// check reports whether password is user's in passwords. served is false when the queue had no
// room for the check from address (or the broker is stopping): the CONNECT is then refused.
func (p *passwordChecker) check(passwords *auth.Passwords, address, user string, password []byte) (ok, served bool) {
	if p.cache.has(passwords, user, password) {
		return true, true
	}
	c := &passwordCheck{address: address, passwords: passwords, user: user, password: password, ok: make(chan bool, 1)}
	p.mu.Lock()
	if p.queued >= p.maxQueued || len(p.queues[address]) >= p.maxPerAddress {
		p.mu.Unlock()
		return false, false
	}
	if len(p.queues[address]) == 0 {
		p.turns = append(p.turns, address)
	}
	p.queues[address] = append(p.queues[address], c)
	p.queued++
	p.mu.Unlock()
	p.work <- struct{}{} // never blocks: its capacity is maxQueued
	select {
	case ok = <-c.ok:
	case <-p.quit:
		return false, false
	}
	if ok {
		p.cache.add(passwords, user, password)
	}
	return ok, true
}

func (p *passwordChecker) worker(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-p.work:
		case <-p.quit:
			return
		}
		c := p.next()
		ok := c.passwords.Check(c.user, c.password)
		if !ok {
			p.noteFailure(c.address)
		}
		c.ok <- ok
	}
}

func (p *passwordChecker) noteFailure(address string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.failed[address]; !ok && len(p.failed) >= maxFailedAddresses {
		for a := range p.failed { // any one: an attacker with more addresses gains nothing by this
			delete(p.failed, a)
			break
		}
	}
	p.failed[address] = time.Now()
}

// next takes the oldest check of the first address in line without a recent wrong password, or
// else of the first in line; that address goes to the back of the line if it has more waiting.
func (p *passwordChecker) next() *passwordCheck {
	p.mu.Lock()
	defer p.mu.Unlock()
	turn := 0
	for i, a := range p.turns {
		if at, ok := p.failed[a]; !ok || time.Since(at) > failurePenalty {
			turn = i
			break
		}
	}
	addr := p.turns[turn]
	q := p.queues[addr]
	c := q[0]
	q[0] = nil
	p.turns = append(p.turns[:turn], p.turns[turn+1:]...)
	if len(q) == 1 {
		delete(p.queues, addr)
	} else {
		p.queues[addr] = q[1:]
		p.turns = append(p.turns, addr)
	}
	p.queued--
	return c
}

// loginCache remembers recent successful logins as a keyed SHA-256 digest of user and password,
// tied to the password file they were checked against (a reload forgets them all).
type loginCache struct {
	size int
	key  [32]byte

	mu        sync.Mutex
	passwords *auth.Passwords
	digests   map[string][sha256.Size]byte // by user
}

func (lc *loginCache) init(size int) {
	lc.size = size
	rand.Read(lc.key[:])
	lc.digests = make(map[string][sha256.Size]byte)
}

func (lc *loginCache) digest(user string, password []byte) (d [sha256.Size]byte) {
	m := hmac.New(sha256.New, lc.key[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(password)
	m.Sum(d[:0])
	return d
}

func (lc *loginCache) has(passwords *auth.Passwords, user string, password []byte) bool {
	if lc.size == 0 {
		return false
	}
	d := lc.digest(user, password)
	lc.mu.Lock()
	want, ok := lc.digests[user]
	ok = ok && lc.passwords == passwords
	lc.mu.Unlock()
	return ok && hmac.Equal(d[:], want[:])
}

func (lc *loginCache) add(passwords *auth.Passwords, user string, password []byte) {
	if lc.size == 0 {
		return
	}
	d := lc.digest(user, password)
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.passwords != passwords {
		lc.passwords = passwords
		clear(lc.digests)
	}
	if _, ok := lc.digests[user]; !ok && len(lc.digests) >= lc.size {
		for u := range lc.digests { // any one: map order is random enough to spread evictions
			delete(lc.digests, u)
			break
		}
	}
	lc.digests[user] = d
}
