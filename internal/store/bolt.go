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

// Bolt is the embedded store. A commit is durable once its records are
// in the write-ahead log (one pwrite, one fdatasync, shared by every
// transaction queued at that moment: group commit); a background applier
// then folds the log into the bbolt file in large batches, which is the
// checkpoint the next start replays the log on top of.
type Bolt struct {
	db      *bolt.DB
	wal     *wal
	noSync  bool
	queue   chan *queued
	hub     hub
	keepLog int64
	stopped chan struct{}

	mu          sync.Mutex // guards rev, closed, pending, applied
	rev         int64      // last durable revision
	closed      bool
	pending     []Event // durable in the log, not yet in bbolt
	applied     int64   // last revision in bbolt
	kick        chan struct{}
	caught      *sync.Cond // signalled when applied advances
	applyErr    error
	applierDone chan struct{}
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
	// WALSize is the size of the write-ahead log file (default 64 MiB).
	WALSize int64
}

// OpenBolt opens (creating) the store at path (bbolt) and path+".wal".
func OpenBolt(path string, o BoltOptions) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: o.NoSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w (is another aliasnet using it?)", path, err)
	}
	b := &Bolt{db: db, noSync: o.NoSync, queue: make(chan *queued, 65536), keepLog: o.KeepLog,
		stopped: make(chan struct{}), kick: make(chan struct{}, 1), applierDone: make(chan struct{})}
	b.caught = sync.NewCond(&b.mu)
	if b.keepLog <= 0 {
		b.keepLog = 100000
	}
	if o.WALSize <= 0 {
		o.WALSize = 64 << 20
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketLog, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyRev); len(v) == 8 {
			b.applied = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	if b.wal, err = openWAL(path+".wal", o.WALSize); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open log %s.wal: %w", path, err)
	}
	// Recovery: everything the log holds beyond the checkpoint goes into
	// bbolt before anyone reads.
	evs, err := b.wal.replay(b.applied)
	if err == nil && len(evs) > 0 {
		if err = b.apply(evs); err == nil {
			b.applied = evs[len(evs)-1].Rev
		}
	}
	if err != nil {
		b.wal.close()
		db.Close()
		return nil, fmt.Errorf("store: recover %s: %w", path, err)
	}
	b.rev = b.applied
	go b.commitLoop()
	go b.applyLoop()
	return b, nil
}

func revKey(rev int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(rev))
	return k[:]
}

// flush waits until bbolt holds every durable commit.
func (b *Bolt) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.applied < b.rev && b.applyErr == nil {
		b.caught.Wait()
	}
	return b.applyErr
}

// Load implements Store.
func (b *Bolt) Load(ctx context.Context) (Snapshot, error) {
	if err := b.flush(); err != nil {
		return Snapshot{}, err
	}
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

const maxBatch = 4096

// applyEvery spaces checkpoints into bbolt.
const applyEvery = 50 * time.Millisecond

func (b *Bolt) commitLoop() {
	defer close(b.stopped)
	batch := make([]*queued, 0, maxBatch)
	var buf []byte
	for q := range b.queue {
		batch = append(batch[:0], q)
	drain:
		for len(batch) < maxBatch {
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
		buf = b.commitBatch(batch, buf[:0])
	}
}

func (b *Bolt) commitBatch(batch []*queued, buf []byte) []byte {
	b.mu.Lock()
	rev := b.rev
	b.mu.Unlock()
	evs := make([]Event, len(batch))
	for i, q := range batch {
		evs[i] = Event{Rev: rev + int64(i) + 1, Puts: q.txn.Puts, Deletes: q.txn.Deletes}
	}
	buf = appendRecords(buf, evs)
	err := b.logWrite(buf)
	if err != nil {
		for _, q := range batch {
			q.c.finish(0, fmt.Errorf("store: commit: %w", err))
		}
		return buf
	}
	b.mu.Lock()
	b.rev = rev + int64(len(batch))
	b.pending = append(b.pending, evs...)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	b.hub.publish(evs)
	for i, q := range batch {
		q.c.finish(evs[i].Rev, nil)
	}
	return buf
}

// logWrite makes buf durable in the log, wrapping it when full.
func (b *Bolt) logWrite(buf []byte) error {
	if !b.wal.fits(len(buf)) {
		// Wrap: bbolt must hold everything logged so far first.
		if err := b.flush(); err != nil {
			return err
		}
		b.wal.rewind()
		if !b.wal.fits(len(buf)) {
			return fmt.Errorf("transaction batch of %d bytes exceeds the %d-byte log", len(buf), b.wal.size)
		}
	}
	return b.wal.write(buf, !b.noSync)
}

func (b *Bolt) applyLoop() {
	defer close(b.applierDone)
	for range b.kick {
		// Checkpoint at most every applyEvery: a bbolt commit costs two
		// syncs, and running them as often as log commits would halve the
		// disk bandwidth the log gets. Only wrap-around and reads (flush)
		// wait for the checkpoint.
		time.Sleep(applyEvery)
		b.mu.Lock()
		evs := b.pending
		b.mu.Unlock()
		if len(evs) == 0 {
			continue
		}
		err := b.apply(evs)
		b.mu.Lock()
		if err != nil {
			b.applyErr = fmt.Errorf("store: checkpoint: %w", err)
		} else {
			b.applied = evs[len(evs)-1].Rev
			b.pending = b.pending[len(evs):]
		}
		b.caught.Broadcast()
		b.mu.Unlock()
	}
}

// apply writes events into bbolt in one transaction.
func (b *Bolt) apply(evs []Event) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		kv, lg := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
		for _, ev := range evs {
			for _, p := range ev.Puts {
				if err := kv.Put([]byte(p.Key), p.Value); err != nil {
					return fmt.Errorf("put %s: %w", p.Key, err)
				}
			}
			for _, k := range ev.Deletes {
				if err := kv.Delete([]byte(k)); err != nil {
					return fmt.Errorf("delete %s: %w", k, err)
				}
			}
			if err := lg.Put(revKey(ev.Rev), encodeEvent(ev)); err != nil {
				return err
			}
		}
		last := evs[len(evs)-1].Rev
		c := lg.Cursor()
		// (Cursor.Delete moves the cursor: re-read First rather than Next,
		// which would skip every other entry and leave holes in history.)
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= last-b.keepLog; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyRev, revKey(last))
	})
}

// Watch implements Store: history from the change log, then live events.
func (b *Bolt) Watch(ctx context.Context, rev int64) (<-chan Event, error) {
	// Subscribe first so nothing committed after the history read is lost;
	// duplicates between history and live are skipped by revision.
	s := b.hub.add(ctx)
	b.mu.Lock()
	pend := append([]Event(nil), b.pending...)
	cur := b.rev
	b.mu.Unlock()
	var hist []Event
	err := b.db.View(func(tx *bolt.Tx) error {
		lg := tx.Bucket(bucketLog)
		c := lg.Cursor()
		first, _ := c.First()
		oldest := cur + 1
		if first != nil {
			oldest = int64(binary.BigEndian.Uint64(first))
		} else if len(pend) > 0 {
			oldest = pend[0].Rev
		}
		if rev < cur && oldest > rev+1 {
			return ErrCompacted
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
		for _, ev := range pend {
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
	if err := b.flush(); err != nil {
		return 0, err
	}
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
	ferr := b.flush()
	close(b.kick)
	<-b.applierDone
	b.hub.closeAll()
	werr := b.wal.close()
	if err := b.db.Close(); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	return werr
}
