package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// ErrRejected: etcd refused the transaction as invalid (too many
// operations, too large): it was certainly not committed, and sending it
// again will not help.
var ErrRejected = errors.New("store: transaction rejected")

// EtcdOptions configure the etcd backend.
type EtcdOptions struct {
	// Endpoints of the etcd cluster, e.g. https://10.0.0.1:2379.
	Endpoints []string
	// Prefix every key is stored under, so that several installations
	// can share one etcd cluster (default "/aliasnet/").
	Prefix string
	// TLS client certificate, key and CA bundle (all optional).
	CertFile, KeyFile, CAFile string
	// DialTimeout bounds the first connection (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds one transaction (default 10s). A transaction
	// that times out has an unknown outcome: Wait returns an error that
	// is neither nil nor ErrConflict.
	RequestTimeout time.Duration
	// MaxInFlight caps concurrent transactions (default 256).
	MaxInFlight int
	// Client, when set, is used instead of dialing (Close leaves it open).
	Client *clientv3.Client
}

// Etcd stores the key space under a prefix of an etcd cluster. The store
// revision is etcd's revision (shared by every user of the cluster, so
// revisions of one installation need not be consecutive).
//
// Submit sends each Txn as one etcd transaction: guards become compares,
// puts and deletes its operations. Transactions are pipelined: several
// are in flight at once, but one that writes a key an earlier unfinished
// one guards or writes (or guards a key it writes) waits for it, so
// overlapping transactions commit in submission order.
type Etcd struct {
	cli     *clientv3.Client
	ownCli  bool
	prefix  string
	timeout time.Duration
	sem     chan struct{}

	mu     sync.Mutex
	rev    int64
	closed bool
	keys   map[string]*keyState // unfinished transactions by key
	wg     sync.WaitGroup
	stop   context.CancelFunc
	ctx    context.Context
}

type etcdQueued struct {
	txn  Txn
	c    *Commit
	keys []string
	deps int
	next []*etcdQueued
}

// OpenEtcd connects to an etcd cluster.
func OpenEtcd(ctx context.Context, o EtcdOptions) (*Etcd, error) {
	if o.Prefix == "" {
		o.Prefix = "/aliasnet/"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	e := &Etcd{cli: o.Client, prefix: o.Prefix, timeout: o.RequestTimeout,
		sem: make(chan struct{}, o.MaxInFlight), keys: map[string]*keyState{}}
	if e.cli == nil {
		if len(o.Endpoints) == 0 {
			return nil, errors.New("store: etcd: no endpoints")
		}
		cfg := clientv3.Config{Endpoints: o.Endpoints, DialTimeout: o.DialTimeout, Logger: zap.NewNop(),
			DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second}
		if o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" {
			tlsInfo := transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile}
			tc, err := tlsInfo.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("store: etcd TLS: %w", err)
			}
			cfg.TLS = tc
		} else {
			for _, ep := range o.Endpoints {
				if strings.HasPrefix(ep, "https://") {
					tc, err := (transport.TLSInfo{}).ClientConfig()
					if err != nil {
						return nil, fmt.Errorf("store: etcd TLS: %w", err)
					}
					cfg.TLS = tc
					break
				}
			}
		}
		cli, err := clientv3.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("store: etcd connect %v: %w", o.Endpoints, err)
		}
		e.cli, e.ownCli = cli, true
	}
	e.ctx, e.stop = context.WithCancel(context.Background())
	cctx, cancel := context.WithTimeout(ctx, o.DialTimeout+o.RequestTimeout)
	defer cancel()
	if _, err := e.CurrentRev(cctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("store: etcd %v: %w", o.Endpoints, err)
	}
	return e, nil
}

// Client is the underlying etcd client.
func (e *Etcd) Client() *clientv3.Client { return e.cli }

// Prefix is the key prefix of this installation.
func (e *Etcd) Prefix() string { return e.prefix }

func (e *Etcd) seen(rev int64) {
	e.mu.Lock()
	if rev > e.rev {
		e.rev = rev
	}
	e.mu.Unlock()
}

// CurrentRev asks the cluster (a linearizable read) for its revision now.
func (e *Etcd) CurrentRev(ctx context.Context) (int64, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	e.seen(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// Rev implements Store: the newest etcd revision this client has seen.
func (e *Etcd) Rev() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rev
}

const loadPage = 2000

// Load implements Store: every key under the prefix at one revision, read
// in pages.
func (e *Etcd) Load(ctx context.Context) (Snapshot, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return Snapshot{}, ErrClosed
	}
	for {
		snap, err := e.load(ctx)
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue // compacted between two pages: start again
		}
		return snap, err
	}
}

func (e *Etcd) load(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	end := clientv3.GetPrefixRangeEnd(e.prefix)
	from := e.prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if snap.Rev != 0 {
			opts = append(opts, clientv3.WithRev(snap.Rev))
		}
		resp, err := e.cli.Get(ctx, from, opts...)
		if err != nil {
			return Snapshot{}, fmt.Errorf("store: etcd load: %w", err)
		}
		if snap.Rev == 0 {
			snap.Rev = resp.Header.Revision
			e.seen(snap.Rev)
		}
		for _, kv := range resp.Kvs {
			snap.KVs = append(snap.KVs, KV{Key: string(kv.Key[len(e.prefix):]), Value: kv.Value})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return snap, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Submit implements Store. A transaction waits for every unfinished
// earlier one that writes a key it guards or writes, and for every
// unfinished earlier one that guards a key it writes; transactions that
// only compare the same key run side by side.
func (e *Etcd) Submit(t Txn) *Commit {
	c := newCommit()
	q := &etcdQueued{txn: t, c: c}
	writes := map[string]bool{}
	for _, kv := range t.Puts {
		writes[kv.Key] = true
	}
	for _, k := range t.Deletes {
		writes[k] = true
	}
	reads := map[string]bool{}
	for _, g := range t.Guards {
		if !writes[g.Key] {
			reads[g.Key] = true
		}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		c.finish(0, ErrClosed)
		return c
	}
	var preds []*etcdQueued
	dep := func(p *etcdQueued) {
		if p != nil && !containsQ(preds, p) {
			preds = append(preds, p)
		}
	}
	for k := range writes {
		ks := e.keys[k]
		if ks == nil {
			ks = &keyState{}
			e.keys[k] = ks
		}
		dep(ks.writer)
		for _, r := range ks.readers {
			dep(r)
		}
		ks.writer, ks.readers = q, nil
		q.keys = append(q.keys, k)
	}
	for k := range reads {
		ks := e.keys[k]
		if ks == nil {
			ks = &keyState{}
			e.keys[k] = ks
		}
		dep(ks.writer)
		ks.readers = append(ks.readers, q)
		q.keys = append(q.keys, k)
	}
	for _, p := range preds {
		p.next = append(p.next, q)
	}
	q.deps = len(preds)
	// Decided under the lock: once it is released a predecessor may
	// finish, count deps down to zero and start q itself.
	start := q.deps == 0
	e.wg.Add(1)
	e.mu.Unlock()
	if start {
		go e.run(q)
	}
	return c
}

// keyState is the unfinished transactions that touch a key: the newest
// writer and the readers (guards) submitted after it.
type keyState struct {
	writer  *etcdQueued
	readers []*etcdQueued
}

func containsQ(qs []*etcdQueued, q *etcdQueued) bool {
	for _, x := range qs {
		if x == q {
			return true
		}
	}
	return false
}

func (e *Etcd) run(q *etcdQueued) {
	defer e.wg.Done()
	e.sem <- struct{}{}
	rev, err := e.commit(q.txn)
	<-e.sem
	e.mu.Lock()
	for _, k := range q.keys {
		ks := e.keys[k]
		if ks == nil {
			continue
		}
		if ks.writer == q {
			ks.writer = nil
		}
		if i := slices.Index(ks.readers, q); i >= 0 {
			ks.readers = slices.Delete(ks.readers, i, i+1)
		}
		if ks.writer == nil && len(ks.readers) == 0 {
			delete(e.keys, k)
		}
	}
	var ready []*etcdQueued
	for _, n := range q.next {
		if n.deps--; n.deps == 0 {
			ready = append(ready, n)
		}
	}
	if err == nil || errors.Is(err, ErrConflict) {
		if rev > e.rev {
			e.rev = rev
		}
	}
	e.mu.Unlock()
	for _, n := range ready {
		go e.run(n)
	}
	q.c.finish(rev, err)
}

// commit runs one transaction. On a failed guard it returns the cluster
// revision at which the guard was checked with ErrConflict.
func (e *Etcd) commit(t Txn) (int64, error) {
	cmps := make([]clientv3.Cmp, 0, len(t.Guards))
	for _, g := range t.Guards {
		k := e.prefix + g.Key
		switch {
		case g.NotAfter > 0:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "<", g.NotAfter+1))
		case g.Rev == 0:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		default:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", g.Rev))
		}
	}
	ops := make([]clientv3.Op, 0, len(t.Puts)+len(t.Deletes))
	for _, kv := range t.Puts {
		ops = append(ops, clientv3.OpPut(e.prefix+kv.Key, string(kv.Value)))
	}
	for _, k := range t.Deletes {
		ops = append(ops, clientv3.OpDelete(e.prefix+k))
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		var ee rpctypes.EtcdError
		if errors.As(err, &ee) && ee.Code() == codes.InvalidArgument {
			return 0, fmt.Errorf("%w: %v (this change needs %d compares and %d operations in one transaction; "+
				"etcd allows --max-txn-ops, 128 by default, of each and --max-request-bytes, 1.5 MiB by default: raise them on every member for changes this large)",
				ErrRejected, err, len(cmps), len(ops))
		}
		return 0, fmt.Errorf("store: etcd commit (outcome unknown): %w", err)
	}
	if !resp.Succeeded {
		return resp.Header.Revision, ErrConflict
	}
	return resp.Header.Revision, nil
}

// Watch implements Store with an etcd watch from rev+1. Besides one Event
// per committed revision it may send progress events (no puts, no
// deletes; see RequestProgress). The channel
// closes when ctx ends, the store closes, the watch is cancelled (the
// member lost its leader, or the history was compacted under it); the
// caller resumes with Watch from the last revision it saw and gets
// ErrCompacted if that history is gone.
func (e *Etcd) Watch(ctx context.Context, rev int64) (<-chan Event, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// A read at rev+1 fails exactly when a watch from rev+1 would start
	// in compacted history.
	if _, err := e.cli.Get(ctx, e.prefix, clientv3.WithRev(rev+1), clientv3.WithCountOnly()); err != nil {
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			return nil, ErrCompacted
		case errors.Is(err, rpctypes.ErrFutureRev):
		default:
			return nil, fmt.Errorf("store: etcd watch: %w", err)
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := e.cli.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	out := make(chan Event, 256)
	go func() {
		defer close(out)
		defer cancel()
		stopped := e.ctx.Done()
		for {
			var wresp clientv3.WatchResponse
			var ok bool
			select {
			case wresp, ok = <-wch:
			case <-stopped:
				return
			}
			if !ok || wresp.Canceled || wresp.CompactRevision != 0 || wresp.Err() != nil {
				return
			}
			if wresp.IsProgressNotify() {
				// Nothing under the prefix changed up to this revision.
				select {
				case out <- Event{Rev: wresp.Header.Revision}:
				case <-ctx.Done():
					return
				case <-stopped:
					return
				}
				continue
			}
			var cur *Event
			flush := func() bool {
				if cur == nil {
					return true
				}
				ev := *cur
				cur = nil
				e.seen(ev.Rev)
				select {
				case out <- ev:
					return true
				case <-ctx.Done():
					return false
				case <-stopped:
					return false
				}
			}
			for _, ev := range wresp.Events {
				r := ev.Kv.ModRevision
				if cur != nil && cur.Rev != r {
					if !flush() {
						return
					}
				}
				if cur == nil {
					cur = &Event{Rev: r}
				}
				k := string(ev.Kv.Key[len(e.prefix):])
				if ev.Type == mvccpb.DELETE {
					cur.Deletes = append(cur.Deletes, k)
				} else {
					cur.Puts = append(cur.Puts, KV{Key: k, Value: ev.Kv.Value})
				}
			}
			if !flush() {
				return
			}
		}
	}()
	return out, nil
}

// RequestProgress asks the cluster to tell this client's watches how far
// they are: each receives an Event with no puts or deletes whose Rev is
// the revision every change up to which has been delivered.
func (e *Etcd) RequestProgress(ctx context.Context) error {
	return e.cli.RequestProgress(clientv3.WithRequireLeader(ctx))
}

// Compact discards the cluster's history before rev (for tests and
// tools; production clusters compact with etcd's own
// --auto-compaction-* flags, since history is shared by every prefix).
func (e *Etcd) Compact(ctx context.Context, rev int64) error {
	_, err := e.cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return err
}

// Close waits for submitted transactions and disconnects.
func (e *Etcd) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.wg.Wait()
	if e.stop != nil {
		e.stop()
	}
	if e.ownCli {
		return e.cli.Close()
	}
	return nil
}
