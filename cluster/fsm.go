package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
)

// Raft log entries written by this package start with one kind byte.
//
//	kindStore:    kind, term (uint64 big-endian), payload
//	kindAnnounce: kind, id length (uint16 big-endian), id, mqtt address
//
// A store entry carries the term of the leadership that wrote it; the FSM
// applies it only when that equals the term raft stored it under, so an
// entry a deposed leader submitted just as it regained leadership in a
// later term is skipped on every node alike (its Replicate fails), and
// nothing built on a store from an earlier leadership reaches the state.
const (
	kindStore    byte = 1
	kindAnnounce byte = 2
)

// errStaleTerm is the FSM's answer to a store entry from an earlier
// leadership; Replicate wraps it in ErrNotLeader.
var errStaleTerm = errors.New("cluster: entry from an earlier leadership")

func encodeStore(term uint64, payload []byte) []byte {
	b := make([]byte, 9+len(payload))
	b[0] = kindStore
	binary.BigEndian.PutUint64(b[1:9], term)
	copy(b[9:], payload)
	return b
}

func encodeAnnounce(id, mqtt string) []byte {
	b := make([]byte, 0, 3+len(id)+len(mqtt))
	b = append(b, kindAnnounce)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	return append(b, mqtt...)
}

func decodeAnnounce(b []byte) (id, mqtt string, err error) {
	if len(b) < 3 {
		return "", "", errors.New("cluster: short announcement")
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if len(b) < 3+n {
		return "", "", errors.New("cluster: short announcement id")
	}
	return string(b[3 : 3+n]), string(b[3+n:]), nil
}

// announcedTerm is the FSM's response to an announcement: the term raft
// stored it under.
type announcedTerm uint64

// announcePrefix is the stable-store key prefix under which the FSM keeps
// each node's announced MQTT address, so a restarted node knows the leader's
// address without waiting for the next announcement.
const announcePrefix = "holdfast-announce:"

// fsm is the raft state machine: store entries go to the StateMachine,
// announcements to the in-memory (and stable-store) map of MQTT addresses.
type fsm struct {
	sm     StateMachine
	log    zerolog.Logger
	stable raft.StableStore
	notify func() // an announcement was applied

	// floor: store entries at or below it are already in sm (its
	// AppliedIndex at start or after a Restore). FSM goroutine only.
	floor uint64

	mu     sync.Mutex
	mqtt   map[string]string // node id -> announced MQTT address
	failed error             // the first error sm returned; fatal
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		return fmt.Errorf("cluster: empty entry at index %d", l.Index)
	}
	switch l.Data[0] {
	case kindStore:
		return f.applyStore(l)
	case kindAnnounce:
		return f.applyAnnounce(l)
	}
	err := fmt.Errorf("cluster: entry of unknown kind %d at index %d", l.Data[0], l.Index)
	f.fail(err)
	return err
}

func (f *fsm) applyStore(l *raft.Log) interface{} {
	if err := f.err(); err != nil {
		return err
	}
	if len(l.Data) < 9 {
		err := fmt.Errorf("cluster: short store entry at index %d", l.Index)
		f.fail(err)
		return err
	}
	if binary.BigEndian.Uint64(l.Data[1:9]) != l.Term {
		return errStaleTerm
	}
	if l.Index <= f.floor {
		return nil
	}
	if err := f.sm.ApplyReplicated(l.Index, l.Data[9:]); err != nil {
		err = fmt.Errorf("cluster: apply index %d: %w", l.Index, err)
		f.fail(err)
		return err
	}
	return nil
}

func (f *fsm) applyAnnounce(l *raft.Log) interface{} {
	id, mqtt, err := decodeAnnounce(l.Data)
	if err != nil {
		f.log.Warn().Err(err).Uint64("index", l.Index).Msg("skipped a malformed announcement")
		return err
	}
	f.setMQTT(id, mqtt)
	f.log.Debug().Str("leader", id).Str("mqtt", mqtt).Uint64("term", l.Term).Msg("leader announced")
	return announcedTerm(l.Term)
}

func (f *fsm) setMQTT(id, mqtt string) {
	f.mu.Lock()
	old, had := f.mqtt[id]
	f.mqtt[id] = mqtt
	f.mu.Unlock()
	if !had || old != mqtt {
		if err := f.stable.Set([]byte(announcePrefix+id), []byte(mqtt)); err != nil {
			f.log.Warn().Err(err).Msg("could not keep an announced address")
		}
	}
	if f.notify != nil {
		f.notify()
	}
}

// loadAnnounced reads the addresses kept by earlier runs for the given ids.
func (f *fsm) loadAnnounced(ids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		v, err := f.stable.Get([]byte(announcePrefix + id))
		if err == nil && len(v) > 0 {
			f.mqtt[id] = string(v)
		}
	}
}

func (f *fsm) mqttOf(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mqtt[id]
}

func (f *fsm) fail(err error) {
	f.mu.Lock()
	first := f.failed == nil
	if first {
		f.failed = err
	}
	f.mu.Unlock()
	if first {
		f.log.Error().Err(err).Msg("the state machine failed; this node stops")
		if f.notify != nil {
			f.notify()
		}
	}
}

func (f *fsm) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Snapshot syncs the state machine, so the state up to this index survives
// a power cut once raft truncates its log, and hands Persist the backup.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	if err := f.sm.Checkpoint(); err != nil {
		return nil, fmt.Errorf("cluster: checkpoint: %w", err)
	}
	f.mu.Lock()
	mqtt := maps.Clone(f.mqtt)
	f.mu.Unlock()
	return &snapshot{sm: f.sm, mqtt: mqtt}, nil
}

// Restore replaces the state machine's state with a snapshot from the
// leader.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	mqtt, err := readSnapshotHeader(rc)
	if err != nil {
		return err
	}
	if err := f.sm.Replace(rc); err != nil {
		err = fmt.Errorf("cluster: replace from snapshot: %w", err)
		f.fail(err)
		return err
	}
	f.floor = f.sm.AppliedIndex()
	for id, a := range mqtt {
		f.setMQTT(id, a)
	}
	f.log.Info().Uint64("applied", f.floor).Msg("state replaced from the leader's snapshot")
	return nil
}

// A snapshot is a header, then the state machine's backup.
//
//	magic "HFRS", version 1 (byte), count (uint32 big-endian),
//	count times: id length (uint16), id, address length (uint16), address
var snapshotMagic = []byte("HFRS\x01")

type snapshot struct {
	sm   StateMachine
	mqtt map[string]string
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := writeSnapshotHeader(sink, s.mqtt)
	if err == nil {
		err = s.sm.Backup(sink)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

func writeSnapshotHeader(w io.Writer, mqtt map[string]string) error {
	b := append([]byte(nil), snapshotMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(mqtt)))
	for id, a := range mqtt {
		b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
		b = append(b, id...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
		b = append(b, a...)
	}
	_, err := w.Write(b)
	return err
}

// readSnapshotHeader reads exactly the header, leaving r at the backup.
func readSnapshotHeader(r io.Reader) (map[string]string, error) {
	head := make([]byte, len(snapshotMagic)+4)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("cluster: snapshot header: %w", err)
	}
	if string(head[:len(snapshotMagic)]) != string(snapshotMagic) {
		return nil, errors.New("cluster: not a holdfast snapshot (bad magic or version)")
	}
	n := binary.BigEndian.Uint32(head[len(snapshotMagic):])
	if n > 1<<16 {
		return nil, fmt.Errorf("cluster: snapshot header claims %d members", n)
	}
	mqtt := make(map[string]string, n)
	str := func() (string, error) {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return "", err
		}
		s := make([]byte, binary.BigEndian.Uint16(l[:]))
		_, err := io.ReadFull(r, s)
		return string(s), err
	}
	for range n {
		id, err := str()
		if err != nil {
			return nil, fmt.Errorf("cluster: snapshot header: %w", err)
		}
		a, err := str()
		if err != nil {
			return nil, fmt.Errorf("cluster: snapshot header: %w", err)
		}
		mqtt[id] = a
	}
	return mqtt, nil
}
