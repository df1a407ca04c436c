package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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

	mu      sync.Mutex // guards the fields below
	rev     int64      // last durable revision
	closed  bool
	pending []Event // durable in the log, not yet in bbolt
	// pendingBytes is the log space pending takes: past a quarter of a
	// log half the checkpoint runs at once rather than on its timer.
	pendingBytes int64
	applied      int64 // last revision in bbolt
	// hist is the recent change history Watch resumes from (both
	// checkpointed and pending events), oldest first, at most about
	// 2×keepLog long. It lives in memory only: after a restart, resuming
	// from an older revision answers ErrCompacted and the follower
	// re-lists, as it must after an etcd compaction anyway.
	hist        []Event
	kick        chan struct{} // a commit happened: checkpoint soon
	urgent      chan struct{} // someone waits for the checkpoint: now
	caught      *sync.Cond    // signalled when applied advances
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
	// 10000, kept in memory); older revisions answer ErrCompacted.
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
		stopped: make(chan struct{}), kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1),
		applierDone: make(chan struct{})}
	b.caught = sync.NewCond(&b.mu)
	if b.keepLog <= 0 {
		b.keepLog = 10000
	}
	if o.WALSize <= 0 {
		o.WALSize = 64 << 20
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		// Earlier versions kept the change history in bbolt, which cost
		// as much as the data itself on every checkpoint.
		if tx.Bucket(bucketLog) != nil {
			if err := tx.DeleteBucket(bucketLog); err != nil {
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
	rev := b.rev
	b.mu.Unlock()
	return b.checkpointed(rev)
}

// checkpointed waits until bbolt holds rev, hurrying the applier.
func (b *Bolt) checkpointed(rev int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.applied < rev && b.applyErr == nil {
		select {
		case b.urgent <- struct{}{}:
		default:
		}
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

// applyEvery spaces checkpoints into bbolt. Each one rewrites every
// B+tree page its keys touch, so rare large checkpoints write a hot key
// once where frequent ones rewrite it many times; durability does not
// depend on them (the log has every commit), and the two-half log
// never waits for them.
const applyEvery = 200 * time.Millisecond

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
	buf, err := b.logWrite(buf, evs, rev)
	if err != nil {
		for _, q := range batch {
			q.c.finish(0, fmt.Errorf("store: commit: %w", err))
		}
		return buf
	}
	b.mu.Lock()
	b.rev = rev + int64(len(batch))
	b.pending = append(b.pending, evs...)
	b.pendingBytes += int64(len(buf))
	big := b.pendingBytes > b.wal.halfSize()/4
	b.hist = append(b.hist, evs...)
	if int64(len(b.hist)) > 2*b.keepLog {
		b.hist = append(b.hist[:0:0], b.hist[int64(len(b.hist))-b.keepLog:]...)
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	if big {
		select {
		case b.urgent <- struct{}{}:
		default:
		}
	}
	b.hub.publish(evs)
	for i, q := range batch {
		q.c.finish(evs[i].Rev, nil)
	}
	return buf
}

// logWrite makes evs (whose first revision follows rev) durable in the
// log: one write and one sync, or two when the batch crosses into the
// other half of the log. It returns the encoded records.
func (b *Bolt) logWrite(buf []byte, evs []Event, rev int64) ([]byte, error) {
	ends := make([]int, len(evs))
	for i := range evs {
		buf = appendRecords(buf, evs[i:i+1])
		ends[i] = len(buf)
	}
	sync := !b.noSync
	from, done := 0, 0 // byte and record offsets written so far
	for done < len(evs) {
		// The records that fit in the current half.
		n := done
		for n < len(evs) && b.wal.fits(ends[n]-from) {
			n++
		}
		if n == done {
			if b.wal.off == 0 {
				return buf, fmt.Errorf("transaction of %d bytes exceeds half the %d-byte log", ends[n]-from, b.wal.size)
			}
			// Moving into the other half overwrites it: the checkpoint
			// must hold what it has (normally long done).
			if err := b.checkpointed(b.wal.left); err != nil {
				return buf, err
			}
			b.wal.switchHalf(rev + int64(done))
			continue
		}
		if err := b.wal.write(buf[from:ends[n-1]], sync); err != nil {
			return buf, err
		}
		from, done = ends[n-1], n
	}
	return buf, nil
}

func (b *Bolt) applyLoop() {
	defer close(b.applierDone)
	for range b.kick {
		// Checkpoint at most every applyEvery unless someone is waiting
		// for it (reads, a log half switch, a large backlog).
		t := time.NewTimer(applyEvery)
		select {
		case <-t.C:
		case <-b.urgent:
			t.Stop()
		}
		b.mu.Lock()
		evs, bytes := b.pending, b.pendingBytes
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
			b.pendingBytes -= bytes
		}
		b.caught.Broadcast()
		b.mu.Unlock()
	}
}

// apply writes events into bbolt in one transaction.
func (b *Bolt) apply(evs []Event) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		kv := tx.Bucket(bucketKV)
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
		}
		return tx.Bucket(bucketMeta).Put(keyRev, revKey(evs[len(evs)-1].Rev))
	})
}

// Watch implements Store: history from memory, then live events.
func (b *Bolt) Watch(ctx context.Context, rev int64) (<-chan Event, error) {
	// Subscribe first so nothing committed after the history read is lost;
	// duplicates between history and live are skipped by revision.
	s := b.hub.add(ctx)
	b.mu.Lock()
	var hist []Event
	if rev < b.rev {
		if len(b.hist) == 0 || b.hist[0].Rev > rev+1 {
			b.mu.Unlock()
			b.hub.remove(s)
			return nil, ErrCompacted
		}
		i, _ := slices.BinarySearchFunc(b.hist, rev+1, func(ev Event, r int64) int { return cmp.Compare(ev.Rev, r) })
		hist = slices.Clone(b.hist[i:])
	}
	b.mu.Unlock()
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
	select { // do not let a last empty round wait for its timer
	case b.urgent <- struct{}{}:
	default:
	}
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
