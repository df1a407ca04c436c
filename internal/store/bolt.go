package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
)

// Bolt is the embedded store: one bbolt file, fsync on every commit, many
// submitted transactions folded into one write (group commit) so that
// concurrent callers share the cost of an fsync.
type Bolt struct {
	db       *bolt.DB
	queue    chan *queued
	hub      hub
	keepLog  int64
	mu       sync.Mutex // guards rev and closed
	rev      int64
	closed   bool
	stopped  chan struct{}
	maxBatch int
}

type queued struct {
	txn Txn
	c   *Commit
}

// BoltOptions tune the embedded store.
type BoltOptions struct {
	// KeepLog is how many past commits Watch can resume from (default
	// 100000); older revisions answer ErrCompacted.
	KeepLog int64
	// NoSync skips fsync. Only for tests that measure something else.
	NoSync bool
}

// OpenBolt opens (creating) the store file at path.
func OpenBolt(path string, o BoltOptions) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: o.NoSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w (is another aliasnet using it?)", path, err)
	}
	b := &Bolt{db: db, queue: make(chan *queued, 65536), keepLog: o.KeepLog, stopped: make(chan struct{}), maxBatch: 4096}
	if b.keepLog <= 0 {
		b.keepLog = 100000
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketLog, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
			b.rev = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	go b.commitLoop()
	return b, nil
}

func revKey(rev int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(rev))
	return k[:]
}

// Load implements Store.
func (b *Bolt) Load(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
			snap.Rev = int64(binary.BigEndian.Uint64(v))
		}
		bk := tx.Bucket(bucketKV)
		snap.KVs = make([]KV, 0, bk.Stats().KeyN)
		return bk.ForEach(func(k, v []byte) error {
			snap.KVs = append(snap.KVs, KV{Key: string(k), Value: bytes.Clone(v)})
			return nil
		})
	})
	return snap, err
}

// Rev implements Store.
func (b *Bolt) Rev() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rev
}

// Submit implements Store.
func (b *Bolt) Submit(t Txn) *Commit {
	c := newCommit()
	b.mu.Lock()
	closed := b.closed
	if !closed {
		// The send happens under mu so Close cannot close the queue
		// between the check and the send.
		b.queue <- &queued{txn: t, c: c}
	}
	b.mu.Unlock()
	if closed {
		c.finish(0, ErrClosed)
	}
	return c
}

func (b *Bolt) commitLoop() {
	defer close(b.stopped)
	batch := make([]*queued, 0, b.maxBatch)
	for q := range b.queue {
		batch = append(batch[:0], q)
	drain:
		for len(batch) < b.maxBatch {
			select {
			case q, ok := <-b.queue:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		b.commitBatch(batch)
	}
}

func (b *Bolt) commitBatch(batch []*queued) {
	b.mu.Lock()
	rev := b.rev
	b.mu.Unlock()
	evs := make([]Event, 0, len(batch))
	err := b.db.Update(func(tx *bolt.Tx) error {
		kv, lg := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
		r := rev
		for _, q := range batch {
			r++
			for _, p := range q.txn.Puts {
				if err := kv.Put([]byte(p.Key), p.Value); err != nil {
					return fmt.Errorf("put %s: %w", p.Key, err)
				}
			}
			for _, k := range q.txn.Deletes {
				if err := kv.Delete([]byte(k)); err != nil {
					return fmt.Errorf("delete %s: %w", k, err)
				}
			}
			ev := Event{Rev: r, Puts: q.txn.Puts, Deletes: q.txn.Deletes}
			if err := lg.Put(revKey(r), encodeEvent(ev)); err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		// Trim the change log to keepLog entries.
		c := lg.Cursor()
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= r-b.keepLog; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyRev, revKey(r))
	})
	if err != nil {
		for _, q := range batch {
			q.c.finish(0, fmt.Errorf("store: commit: %w", err))
		}
		return
	}
	b.mu.Lock()
	b.rev = rev + int64(len(batch))
	b.mu.Unlock()
	b.hub.publish(evs)
	for i, q := range batch {
		q.c.finish(evs[i].Rev, nil)
	}
}

// Watch implements Store: history from the change log, then live events.
func (b *Bolt) Watch(ctx context.Context, rev int64) (<-chan Event, error) {
	// Subscribe first so nothing committed after the history read is lost;
	// duplicates between history and live are skipped by revision.
	s := b.hub.add(ctx)
	var hist []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		lg := tx.Bucket(bucketLog)
		c := lg.Cursor()
		first, _ := c.First()
		cur := int64(0)
		if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
			cur = int64(binary.BigEndian.Uint64(v))
		}
		if rev < cur {
			if first == nil || int64(binary.BigEndian.Uint64(first)) > rev+1 {
				return ErrCompacted
			}
		}
		for k, v := c.Seek(revKey(rev + 1)); k != nil; k, v = c.Next() {
			ev, err := decodeEvent(int64(binary.BigEndian.Uint64(k)), v)
			if err != nil {
				return err
			}
			hist = append(hist, ev)
		}
		return nil
	})
	if err != nil {
		b.hub.remove(s)
		return nil, err
	}
	out := make(chan Event, 256)
	go func() {
		defer close(out)
		last := rev
		send := func(ev Event) bool {
			if ev.Rev <= last {
				return true
			}
			select {
			case out <- ev:
				last = ev.Rev
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, ev := range hist {
			if !send(ev) {
				return
			}
		}
		for ev := range s.ch {
			if !send(ev) {
				return
			}
		}
	}()
	return out, nil
}

// Snapshot writes a consistent copy of the database to w (for backups).
func (b *Bolt) Snapshot(w io.Writer) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Close flushes queued commits and closes the file.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.queue)
	b.mu.Unlock()
	<-b.stopped
	b.hub.closeAll()
	return b.db.Close()
}
