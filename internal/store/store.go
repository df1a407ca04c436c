// Package store persists aliasnet's resources as keys and values with
// atomic, ordered, durable commits and a resumable change stream.
//
// Two backends sit behind the one Store interface: bbolt (the embedded
// default: one file, one process) and etcd (several replicas). The
// control layer decides; the store only commits what it is given, in the
// order it is given, and tells every watcher what was committed.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// KV is one key and its value.
type KV struct {
	Key   string
	Value []byte
}

// Guard makes a commit conditional: the key's modification revision must
// still be Rev (0: the key must not exist). The bbolt backend has a single
// writer and ignores guards; etcd checks them in the transaction.
type Guard struct {
	Key string
	Rev int64
	// NotAfter, when set, replaces the Rev test: the key's modification
	// revision must be at most NotAfter (an absent key passes). A replica
	// passes the revision through which it has seen every change of the
	// key, so the commit fails exactly when another writer got there first.
	NotAfter int64
}

// Txn is one atomic change.
type Txn struct {
	Guards  []Guard
	Puts    []KV
	Deletes []string
}

// Event is one committed Txn as watchers see it.
type Event struct {
	Rev     int64
	Puts    []KV
	Deletes []string
}

// Snapshot is the whole key space at a revision.
type Snapshot struct {
	KVs []KV
	Rev int64
}

// ErrCompacted is returned by Watch when the requested revision is older
// than the oldest change the store still keeps; the caller re-lists.
var ErrCompacted = errors.New("store: revision compacted")

// ErrConflict is returned when a guard failed.
var ErrConflict = errors.New("store: guard failed")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("store: closed")

// Store is the persistence contract.
type Store interface {
	// Load returns every key with the revision it represents.
	Load(ctx context.Context) (Snapshot, error)
	// Submit queues t; queued transactions commit in submission order, and
	// several may share one durable write (group commit). Wait on the
	// returned Commit for the outcome.
	Submit(t Txn) *Commit
	// Watch streams every commit after rev, in order. The channel closes
	// when ctx ends or the store closes; an Event with Rev < 0 is never
	// sent. When rev is older than the kept history it returns
	// ErrCompacted.
	Watch(ctx context.Context, rev int64) (<-chan Event, error)
	// Rev is the revision of the last durable commit.
	Rev() int64
	Close() error
}

// Commit is the future of a submitted Txn.
type Commit struct {
	done chan struct{}
	rev  int64
	err  error
}

func newCommit() *Commit { return &Commit{done: make(chan struct{})} }

func (c *Commit) finish(rev int64, err error) {
	c.rev, c.err = rev, err
	close(c.done)
}

// Wait blocks until the transaction is durable (or failed).
func (c *Commit) Wait(ctx context.Context) (int64, error) {
	select {
	case <-c.done:
		return c.rev, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Done is closed when the outcome is known.
func (c *Commit) Done() <-chan struct{} { return c.done }

// encodeEvent writes an event as: uvarint(#puts) {uvarint(len k) k
// uvarint(len v) v}* uvarint(#dels) {uvarint(len k) k}*. It is the
// format of the bbolt change log.
func encodeEvent(ev Event) []byte {
	n := 2 * binary.MaxVarintLen64
	for _, kv := range ev.Puts {
		n += len(kv.Key) + len(kv.Value) + 2*binary.MaxVarintLen64
	}
	for _, k := range ev.Deletes {
		n += len(k) + binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(ev.Puts)))
	for _, kv := range ev.Puts {
		b = binary.AppendUvarint(b, uint64(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.AppendUvarint(b, uint64(len(kv.Value)))
		b = append(b, kv.Value...)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Deletes)))
	for _, k := range ev.Deletes {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

func decodeEvent(rev int64, b []byte) (Event, error) {
	ev := Event{Rev: rev}
	bad := fmt.Errorf("store: corrupt change log entry at revision %d", rev)
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	count := func() (int, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return 0, false
		}
		b = b[k:]
		return int(n), true
	}
	np, ok := count()
	if !ok {
		return ev, bad
	}
	for range np {
		k, ok1 := next()
		v, ok2 := next()
		if !ok1 || !ok2 {
			return ev, bad
		}
		ev.Puts = append(ev.Puts, KV{Key: string(k), Value: append([]byte(nil), v...)})
	}
	nd, ok := count()
	if !ok {
		return ev, bad
	}
	for range nd {
		k, ok := next()
		if !ok {
			return ev, bad
		}
		ev.Deletes = append(ev.Deletes, string(k))
	}
	if len(b) != 0 {
		return ev, bad
	}
	return ev, nil
}
