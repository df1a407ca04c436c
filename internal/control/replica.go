package control

// Replicas: several aliasnet servers on one shared store (etcd).
//
// Each replica keeps the whole state in memory, as a single server does,
// and keeps it fresh by watching the store from the revision it loaded.
// A mutation is decided in memory, then committed in one store
// transaction that succeeds only if nothing the decision depended on has
// changed since the replica last saw it:
//
//   - conflict domains: every resource belongs to one or more domains (a
//     network, with its peers for range changes; its project for what is
//     not in a network; the EIP space). Each domain has a version key
//     (versions/...) that every commit touching the domain rewrites, and
//     the commit is guarded by "the version key has not changed after the
//     revision through which this replica has seen every change of the
//     domain". A network-level commit also checks (without rewriting)
//     its project's version key, and a project-level commit checks every
//     network version key of its project, so project-wide decisions and
//     network decisions exclude each other.
//   - every written key is guarded the same way, and request-id keys
//     must not exist yet (so one requestId commits at most once across
//     every replica). The operations of a transaction are stored as one
//     record under a fresh key (opbatches/...). A call commits at most
//     once because a transaction whose outcome is unknown is fenced
//     before the call is decided again: its domains' version keys are
//     rewritten, so if it is still on its way it fails its guards, and
//     if it got there first the catch-up finds its operation.
//
// A lost race (a guard failed) is invisible to clients: the decision is
// rolled back, the replica waits until its watch has applied the change
// that beat it, and decides again. Inside one replica, at most one
// transaction per domain is in flight; mutations that arrive meanwhile
// wait and are then decided together and committed as one transaction
// (group commit), so a hot network costs one store round trip per group,
// not per request.
//
// Refusals (a model error, a failed operation, or a decision that changes
// nothing) are answered only from a state confirmed fresh: the replica
// first catches up with the store's current revision and decides again.
// So a client never gets "not found" or "already in use" for something
// another replica already changed before the request arrived.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// replicaStore is a store several replicas share: Service runs in replica
// mode when its store implements it (the etcd backend does).
type replicaStore interface {
	store.Store
	// CurrentRev is the store's revision now (a linearizable read).
	CurrentRev(ctx context.Context) (int64, error)
	// RequestProgress makes watches report how far they are (an Event
	// with no changes).
	RequestProgress(ctx context.Context) error
}

// Limits of one store transaction (etcd: --max-txn-ops 128 compares and
// 128 operations, --max-request-bytes 1.5 MiB by default).
const (
	maxBatchOps   = 128
	maxBatchBytes = 1 << 20
	// maxInflight transactions per replica at once; requests arriving
	// meanwhile are decided together when one returns (group commit).
	maxInflight = 1
	// giveUp bounds how long a request keeps retrying while the store
	// does not answer.
	giveUp = 60 * time.Second
)

const versionPrefix = "versions/"

func netDomain(project, network string) string {
	return versionPrefix + project + "/networks/" + network
}
func projDomain(project string) string { return versionPrefix + project }

const eipDomain = versionPrefix + "-eips"

// domainProject returns the project of a domain, and whether the domain
// is the project-level one.
func domainProject(d string) (string, bool) {
	rest := strings.TrimPrefix(d, versionPrefix)
	p, _, sub := strings.Cut(rest, "/")
	return p, !sub
}

// ReplicaStats counts what replication cost.
type ReplicaStats struct {
	Commits   int64 `json:"commits"`   // store transactions committed
	Requests  int64 `json:"requests"`  // mutations committed
	Conflicts int64 `json:"conflicts"` // transactions that lost a race
	Unknown   int64 `json:"unknown"`   // transactions with an unknown outcome
	Retries   int64 `json:"retries"`   // decisions taken again after a lost race
	Syncs     int64 `json:"syncs"`     // refusals confirmed against a fresh state
	Remote    int64 `json:"remote"`    // changes applied from other replicas
	Reloads   int64 `json:"reloads"`   // full reloads (compaction, divergence)
	Applied   int64 `json:"applied"`   // revision the replica has applied
	// What the committed transactions cost: time from submit to answer
	// (divided by Commits, the mean store round trip), time spent
	// deciding and grouping under the state lock, writes (puts and
	// deletes) and bytes of keys and values.
	CommitMicros   int64 `json:"commitMicros"`
	ScheduleMicros int64 `json:"scheduleMicros"`
	CommitOps      int64 `json:"commitOps"`
	CommitBytes    int64 `json:"commitBytes"`
}

type replica struct {
	s    *Service
	st   replicaStore
	id   string
	cond *sync.Cond // on s.mu

	// All below guarded by s.mu.
	applied  int64             // every change up to here is in memory (or own)
	advanced chan struct{}     // closed when applied advances
	busy     map[string]*batch // domain -> batch holding it
	waiting  map[string][]*work
	lastOwn  map[string]int64 // key or domain -> revision of our last commit of it
	own      map[int64]bool   // revisions we committed that the watch has not passed
	keyDoms  map[string][]string
	paused   bool
	batchSeq uint64
	parked   []*work
	inflight int     // transactions in flight
	queued   []*work // arrived while maxInflight transactions were in flight
	syncing  []*work
	syncOn   bool

	stats struct {
		commits, requests, conflicts, unknown, retries, syncs, remote, reloads atomic.Int64
		commitMicros, scheduleMicros, commitOps, commitBytes                   atomic.Int64
	}
	cancel context.CancelFunc
	done   chan struct{}
}

// work is one call of Do.
type work struct {
	op    Op
	m     Mutation
	o     *Operation // identity (name, id) fixed across retries
	rk    string
	start time.Time
	fresh bool // decide on a state confirmed fresh: refusals are final

	// The current decision.
	tx      *model.Txn
	txn     store.Txn
	ob      []byte              // the operation, as stored (encodeOp)
	keys    []string            // keys written
	doms    []string            // domains written
	keyDoms map[string][]string // domains of each resource written
	bytes   int
	solo    bool // commit alone (it was too big together with others)
	own     bool // lost a race: commit only with works of its own domains

	done chan struct{}
	res  *Operation
	err  error
}

type batch struct {
	works    []*work
	doms     []string
	keys     map[string]bool
	ops      int
	cmps     int
	bytes    int
	solo     bool
	own      bool
	catching bool // failed; waiting for the watch before deciding again
	sent     time.Time
	opKey    string // the key of its operations' record (opBatchPrefix)
}

func newReplica(s *Service, st replicaStore) *replica {
	r := &replica{s: s, st: st, id: fmt.Sprintf("%016x", s.rnd.Uint64()),
		advanced: make(chan struct{}), busy: map[string]*batch{}, waiting: map[string][]*work{},
		lastOwn: map[string]int64{}, own: map[int64]bool{}, done: make(chan struct{})}
	r.cond = sync.NewCond(&s.mu)
	_, r.applied = s.Changed()
	s.mu.Lock()
	r.rebuildKeyDoms()
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.follow(ctx)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// --- deciding and committing ---

func (r *replica) do(ctx context.Context, op Op, m Mutation) (*Operation, error) {
	s := r.s
	now := s.now().UTC()
	stamp := now.Format(opTimeLayout)
	s.mu.Lock()
	o := &Operation{Project: op.Project, Scope: op.Scope, Type: op.Type, Target: op.Target,
		RequestID: op.RequestID, RequestHash: op.RequestHash, Inserted: stamp, Ended: stamp, ID: s.rnd.Uint64()}
	o.Name = opName(now, o.ID)
	w := &work{op: op, m: m, o: o, start: time.Now(), done: make(chan struct{})}
	if op.RequestID != "" {
		w.rk = requestKey(op.Project, op.RequestID)
	}
	if r.inflight >= maxInflight {
		// Group commit: decided together when a transaction returns.
		r.queued = append(r.queued, w)
	} else {
		r.schedule([]*work{w})
	}
	s.mu.Unlock()
	<-w.done
	return w.res, w.err
}

func (r *replica) finish(w *work, o *Operation, err error) {
	w.res, w.err = o, err
	close(w.done)
}

// finishRequest answers w with the operation an earlier request with the
// same id recorded.
func (r *replica) finishRequest(w *work, opKey string) {
	prev := r.s.ops.get(opKey)
	switch {
	case prev == nil:
		r.finish(w, nil, fmt.Errorf("control: request %s: operation %s lost", w.op.RequestID, opKey))
	case w.op.RequestHash != "" && prev.RequestHash != "" && prev.RequestHash != w.op.RequestHash:
		r.finish(w, prev, ErrIdempotentMismatch)
	default:
		r.finish(w, prev, nil)
	}
}

// undo rolls back w's decision; w must be the newest decision in memory
// of its domains.
func (r *replica) undo(w *work) {
	if w.tx != nil {
		w.tx.Rollback()
		w.tx = nil
	}
}

// decide runs w's mutation on the state. It returns true when w holds a
// decision to commit; otherwise w was answered or set aside to be decided
// again on a fresh state.
func (r *replica) decide(w *work) bool {
	s := r.s
	if w.rk != "" {
		if k, ok := s.reqs[w.rk]; ok {
			r.finishRequest(w, k)
			return false
		}
	}
	if prev := s.ops.get(w.o.Key()); prev != nil {
		// An earlier attempt of this very call committed (its outcome
		// was unknown to us until the watch brought it).
		r.finish(w, prev, nil)
		return false
	}
	if time.Since(w.start) > giveUp {
		r.finish(w, nil, fmt.Errorf("control: the store did not accept the change within %s", giveUp))
		return false
	}
	stamp := s.now().UTC().Format(opTimeLayout)
	tx := s.state.Begin(stamp, s.rnd.Uint64)
	tid, result, err := w.m(tx)
	o := *w.o
	o.TargetID, o.Ended, o.Error, o.Result = tid, stamp, nil, nil
	if err != nil {
		tx.Rollback()
		tx = nil
		if !w.fresh {
			r.needFresh(w)
			return false
		}
		if !Failed(err) {
			r.finish(w, nil, err)
			return false
		}
		var me *model.Error
		errors.As(err, &me)
		o.Error = &OpError{Code: me.Code, Message: me.Reason, Field: me.Field, Holder: me.Holder}
	}
	if result != nil {
		if o.Result, err = json.Marshal(result); err != nil {
			if tx != nil {
				tx.Rollback()
			}
			r.finish(w, nil, fmt.Errorf("control: encode result: %w", err))
			return false
		}
	}
	var chs []model.Change
	if tx != nil {
		chs = tx.Changes()
	}
	if len(chs) == 0 && !w.fresh {
		// A decision that changes nothing is an answer about the state:
		// give it from a fresh one.
		if tx != nil {
			tx.Rollback()
		}
		r.needFresh(w)
		return false
	}
	txn, err := encodeChanges(chs)
	if err != nil {
		if tx != nil {
			tx.Rollback()
		}
		r.finish(w, nil, err)
		return false
	}
	w.keyDoms = map[string][]string{}
	set := map[string]bool{}
	for _, c := range chs {
		old, known := r.keyDoms[c.Key]
		for _, d := range old {
			set[d] = true
		}
		if c.Value != nil {
			ds := r.domainsOf(c.Key, c.Value)
			w.keyDoms[c.Key] = ds
			for _, d := range ds {
				set[d] = true
			}
		} else if !known {
			set[fallbackDomain(c.Key)] = true
		}
	}
	w.doms = slices.Sorted(mapsKeys(set))
	w.keys = w.keys[:0]
	for _, kv := range txn.Puts {
		if !r.domainGuarded(kv.Key) {
			txn.Guards = append(txn.Guards, store.Guard{Key: kv.Key, NotAfter: r.seenThrough(kv.Key)})
		}
		w.keys = append(w.keys, kv.Key)
	}
	for _, k := range txn.Deletes {
		txn.Guards = append(txn.Guards, store.Guard{Key: k, NotAfter: r.seenThrough(k)})
		w.keys = append(w.keys, k)
	}
	ob, err := encodeOp(&o)
	if err != nil {
		if tx != nil {
			tx.Rollback()
		}
		r.finish(w, nil, fmt.Errorf("control: encode operation: %w", err))
		return false
	}
	if w.rk != "" {
		txn.Puts = append(txn.Puts, store.KV{Key: w.rk, Value: []byte(o.Key())})
		txn.Guards = append(txn.Guards, store.Guard{Key: w.rk})
		w.keys = append(w.keys, w.rk)
	}
	w.bytes = len(o.Key()) + len(ob) + 16 // its part of the batch's operation record
	for _, kv := range txn.Puts {
		w.bytes += len(kv.Key) + len(kv.Value) + 16
	}
	w.tx, w.txn, w.ob = tx, txn, ob
	w.o = &o
	return true
}

// domainGuarded reports a key whose own guard would add nothing to its
// domain's: an interface this replica knows. Its domain is a function of
// its value alone (its network), so every replica records the same one,
// and every commit that writes it rewrites that domain's version key — a
// commit by a replica that did not know it yet counts it as created and
// guards the key itself, failing because it exists. So "my domains are
// unchanged since I saw them" implies "the key is". Skipping the guard
// matters because etcd reads a guarded key's whole value to compare it:
// the interface is the largest key of an alias update. Other kinds keep
// their guards (an instance's or a subnet's domains depend on other
// resources).
func (r *replica) domainGuarded(key string) bool {
	if kindOf(key) != "interface" {
		return false
	}
	_, known := r.keyDoms[key]
	return known
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// seenThrough is the revision through which this replica has seen every
// change of a key or domain.
func (r *replica) seenThrough(k string) int64 {
	return max(r.applied, r.lastOwn[k])
}

// fallbackDomain: a key whose kind is unknown belongs to its project.
func fallbackDomain(key string) string {
	if rest, ok := strings.CutPrefix(key, "projects/"); ok {
		if p, _, ok := strings.Cut(rest, "/"); ok {
			return projDomain(p)
		}
	}
	return versionPrefix + "-"
}

// domainsOf lists the conflict domains of a resource as stored under key.
func (r *replica) domainsOf(key string, v any) []string {
	st := r.s.state
	peers := func(project string, ps []model.Peering) []string {
		var out []string
		for _, pe := range ps {
			pp, pn := model.ParseNetworkRef(pe.Peer, project)
			out = append(out, netDomain(pp, pn))
		}
		return out
	}
	switch v := v.(type) {
	case *model.Network:
		return append([]string{netDomain(v.Project, v.Name)}, peers(v.Project, v.Peerings)...)
	case *model.Subnet:
		out := []string{netDomain(v.Project, v.Network)}
		if n := st.Network(v.Project, v.Network); n != nil {
			out = append(out, peers(v.Project, n.Peerings)...)
		}
		return out
	case *model.Interface:
		return []string{netDomain(v.Project, v.Network)}
	case *model.Instance:
		var out []string
		for _, id := range v.NICs {
			if ifc := st.Interface(v.Project, id); ifc != nil {
				out = append(out, netDomain(v.Project, ifc.Network))
			} else {
				out = append(out, r.keyDoms[model.InterfaceKey(v.Project, id)]...)
			}
		}
		if len(out) == 0 {
			out = []string{projDomain(v.Project)}
		}
		return out
	case *model.Route:
		return []string{netDomain(v.Project, v.Network)}
	case *model.Firewall:
		return []string{netDomain(v.Project, v.Network)}
	case *model.DynamicRoutes:
		return []string{netDomain(v.Project, v.Network)}
	case *model.Router:
		return []string{netDomain(v.Project, v.Network)}
	case *model.EIP:
		out := []string{eipDomain}
		if v.Interface != "" {
			if ifc := st.Interface(v.Project, v.Interface); ifc != nil {
				out = append(out, netDomain(v.Project, ifc.Network))
			}
		}
		return out
	}
	return []string{fallbackDomain(key)}
}

// blocked reports a batch that holds one of doms (or, hierarchically, the
// project of a network domain, or a network of a project domain).
func (r *replica) blocked(doms []string, inFlightOnly bool) (string, bool) {
	hit := func(d string) bool {
		b := r.busy[d]
		return b != nil && (!inFlightOnly || !b.catching)
	}
	for _, d := range doms {
		if hit(d) {
			return d, true
		}
		if p, isProj := domainProject(d); d != eipDomain && !strings.HasPrefix(d, versionPrefix+"-") {
			if isProj {
				for bd := range r.busy {
					if bp, _ := domainProject(bd); bp == p && hit(bd) {
						return bd, true
					}
				}
			} else if hit(projDomain(p)) {
				return projDomain(p), true
			}
		}
	}
	return "", false
}

// shares reports whether w touches a domain of b, or the project of one
// of b's network domains, or a network of one of b's project domains.
func (b *batch) shares(w *work) bool {
	for _, d := range w.doms {
		for _, e := range b.doms {
			if related(d, e) {
				return true
			}
		}
	}
	return false
}

func related(d, e string) bool {
	if d == e {
		return true
	}
	if strings.HasPrefix(d, versionPrefix+"-") || strings.HasPrefix(e, versionPrefix+"-") {
		return false
	}
	pd, dProj := domainProject(d)
	pe, eProj := domainProject(e)
	return pd == pe && (dProj || eProj)
}

func (b *batch) fits(w *work) bool {
	for _, k := range w.keys {
		if b.keys[k] {
			return false
		}
	}
	newDoms := 0
	for _, d := range w.doms {
		if !slices.Contains(b.doms, d) {
			newDoms++
		}
	}
	ops := b.ops + len(w.txn.Puts) + len(w.txn.Deletes) + newDoms
	cmps := b.cmps + len(w.txn.Guards) + 2*newDoms
	return ops <= maxBatchOps-8 && cmps <= maxBatchOps-8 && b.bytes+w.bytes <= maxBatchBytes
}

func (b *batch) add(w *work) {
	if b.keys == nil {
		b.keys = map[string]bool{}
	}
	for _, d := range w.doms {
		if !slices.Contains(b.doms, d) {
			b.doms = append(b.doms, d)
			b.ops++
			b.cmps += 2
		}
	}
	for _, k := range w.keys {
		b.keys[k] = true
	}
	b.ops += len(w.txn.Puts) + len(w.txn.Deletes)
	b.cmps += len(w.txn.Guards)
	b.bytes += w.bytes
	b.works = append(b.works, w)
}

// schedule decides cands and commits them in as few transactions as the
// limits allow (group commit). Works of one domain always share a
// transaction; works of different domains share one too unless one of
// them lost a race before (then it commits only with its own domains, so
// a contended domain does not drag others into its retries). Called with
// s.mu held.
func (r *replica) schedule(cands []*work) {
	if r.paused {
		r.parked = append(r.parked, cands...)
		return
	}
	t0 := time.Now()
	defer func() { r.stats.scheduleMicros.Add(time.Since(t0).Microseconds()) }()
	var open []*batch
	for _, w := range cands {
		if !r.decide(w) {
			continue
		}
		if d, busy := r.blocked(w.doms, false); busy {
			r.undo(w)
			r.waiting[d] = append(r.waiting[d], w)
			continue
		}
		var sharing []*batch
		for _, b := range open {
			if b.shares(w) {
				sharing = append(sharing, b)
			}
		}
		var join *batch
		switch {
		case len(sharing) == 1 && !w.solo && !sharing[0].solo && sharing[0].fits(w):
			join = sharing[0]
		case len(sharing) > 0:
			// Decided on top of a group it cannot join: undo (it is the
			// newest decision), and decide again when that group is done.
			r.undo(w)
		wait:
			for _, d := range w.doms {
				for _, e := range sharing[0].doms {
					if related(d, e) {
						r.waiting[e] = append(r.waiting[e], w)
						break wait
					}
				}
			}
			continue
		case !w.solo && !w.own:
			for _, b := range open {
				if !b.solo && !b.own && b.fits(w) {
					join = b
					break
				}
			}
		}
		if join == nil {
			join = &batch{solo: w.solo, own: w.own}
			open = append(open, join)
		}
		join.add(w)
	}
	for _, b := range open {
		r.submit(b)
	}
}

// submit commits a batch: the version key of every domain it writes is
// rewritten and guarded; network domains also check their project's, and
// project domains every network of the project. Called with s.mu held.
func (r *replica) submit(b *batch) {
	var txn store.Txn
	checked := map[string]bool{}
	for _, d := range b.doms {
		txn.Guards = append(txn.Guards, store.Guard{Key: d, NotAfter: r.seenThrough(d)})
		txn.Puts = append(txn.Puts, store.KV{Key: d, Value: []byte(r.id)})
		checked[d] = true
	}
	check := func(d string) {
		if !checked[d] {
			checked[d] = true
			txn.Guards = append(txn.Guards, store.Guard{Key: d, NotAfter: r.seenThrough(d)})
		}
	}
	for _, d := range b.doms {
		p, isProj := domainProject(d)
		if d == eipDomain || strings.HasPrefix(d, versionPrefix+"-") {
			continue
		}
		if !isProj {
			check(projDomain(p))
			continue
		}
		for _, n := range r.s.state.Networks(p) {
			check(netDomain(p, n.Name))
		}
	}
	for _, w := range b.works {
		txn.Guards = append(txn.Guards, w.txn.Guards...)
		txn.Puts = append(txn.Puts, w.txn.Puts...)
		txn.Deletes = append(txn.Deletes, w.txn.Deletes...)
	}
	// The operations of the whole transaction go in one record, under a
	// key no other transaction uses: it needs no guard. (What stops a
	// call from committing twice is the fence after an unknown outcome;
	// see fence.)
	r.batchSeq++
	b.opKey = fmt.Sprintf("%s%013d-%s-%d", opBatchPrefix, time.Now().UnixMilli(), r.id, r.batchSeq)
	txn.Puts = append(txn.Puts, store.KV{Key: b.opKey, Value: batchRecord(b.works)})
	for _, d := range b.doms {
		r.busy[d] = b
	}
	r.inflight++
	b.sent = time.Now()
	c := r.st.Submit(txn)
	go r.complete(b, c)
}

// complete handles a batch's outcome.
func (r *replica) complete(b *batch, c *store.Commit) {
	rev, err := c.Wait(context.Background())
	s := r.s
	s.mu.Lock()
	r.inflight--
	if err == nil {
		r.stats.commits.Add(1)
		r.stats.commitMicros.Add(time.Since(b.sent).Microseconds())
		r.stats.commitOps.Add(int64(b.ops))
		r.stats.commitBytes.Add(int64(b.bytes))
		r.stats.requests.Add(int64(len(b.works)))
		if rev > r.applied {
			r.own[rev] = true
			for _, d := range b.doms {
				r.lastOwn[d] = rev
			}
			for _, w := range b.works {
				for _, k := range w.keys {
					r.lastOwn[k] = rev
				}
			}
		}
		opKeys := make([]string, len(b.works))
		for i, w := range b.works {
			opKeys[i] = w.o.Key()
		}
		s.ops.addBatch(b.opKey, opKeys)
		for _, w := range b.works {
			s.ops.put(w.o.Key(), w.o)
			if w.rk != "" {
				s.reqs[w.rk] = w.o.Key()
			}
			for _, ch := range w.changes() {
				if ch.Value == nil {
					delete(r.keyDoms, ch.Key)
				} else {
					r.keyDoms[ch.Key] = w.keyDoms[ch.Key]
				}
			}
			w.tx = nil
			r.finish(w, w.o, nil)
		}
		cands := append(r.release(b), r.takeQueued()...)
		r.schedule(cands)
		s.mu.Unlock()
		s.bump(rev)
		return
	}
	// Lost race or unknown outcome: nothing of the batch stays in memory.
	for i := len(b.works) - 1; i >= 0; i-- {
		r.undo(b.works[i])
	}
	if errors.Is(err, store.ErrRejected) {
		cands := append(r.release(b), r.takeQueued()...)
		if len(b.works) == 1 {
			r.finish(b.works[0], nil, fmt.Errorf("control: commit: %w", err))
		} else {
			// Too big together: each alone.
			for _, w := range b.works {
				w.solo = true
			}
			cands = append(b.works, cands...)
		}
		r.schedule(cands)
		s.mu.Unlock()
		return
	}
	if errors.Is(err, store.ErrConflict) {
		r.stats.conflicts.Add(1)
	} else {
		r.stats.unknown.Add(1)
		s.log.Warn("store commit outcome unknown; catching up", "err", err)
	}
	b.catching = true
	for _, w := range b.works {
		w.own = true
	}
	queued := r.takeQueued()
	r.schedule(queued)
	r.cond.Broadcast()
	s.mu.Unlock()
	target := rev
	if !errors.Is(err, store.ErrConflict) {
		target = r.fence(b.doms)
	}
	r.waitApplied(target)
	if errors.Is(err, store.ErrConflict) {
		// Replicas that collided on a domain would collide again if they
		// all retried at once: back off a random part of one round trip
		// (meanwhile more requests join the retry: bigger groups).
		time.Sleep(time.Duration(rand.Int64N(int64(max(time.Since(b.sent), time.Millisecond)))))
	}
	s.mu.Lock()
	cands := r.release(b)
	r.stats.retries.Add(int64(len(b.works)))
	r.schedule(append(b.works, cands...))
	s.mu.Unlock()
}

func (w *work) changes() []model.Change {
	if w.tx == nil {
		return nil
	}
	return w.tx.Changes()
}

// fence makes a transaction whose outcome is unknown unable to commit
// from now on, and returns a revision at or after which it committed if it
// did. It rewrites the version keys of the domains the transaction wrote,
// each of which it guards with "unchanged since my decision": if it is
// still on its way through etcd, it now fails. Without the fence a call
// decided again after catching up could commit twice — the first attempt
// landing after the catch-up — since no per-call key would collide.
func (r *replica) fence(doms []string) int64 {
	var txn store.Txn
	for _, d := range doms {
		txn.Puts = append(txn.Puts, store.KV{Key: d, Value: []byte(r.id)})
	}
	// Rewriting the keys again is harmless: retry until it is known to
	// have committed.
	return r.untilStore("fencing an unknown commit", func(ctx context.Context) (int64, error) {
		return r.st.Submit(txn).Wait(ctx)
	})
}

// batchRecord is the stored value of a batch's operations: a JSON array
// of batchEntry.
func batchRecord(ws []*work) []byte {
	n := 2
	for _, w := range ws {
		n += len(w.o.Key()) + len(w.ob) + 16
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, w := range ws {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(w.o.Key())
		b = append(b, `{"k":`...)
		b = append(b, k...)
		b = append(b, `,"o":`...)
		b = append(b, w.ob...)
		b = append(b, '}')
	}
	return append(b, ']')
}

// takeQueued returns the works that arrived while the in-flight limit was
// reached.
func (r *replica) takeQueued() []*work {
	q := r.queued
	r.queued = nil
	return q
}

// release frees a batch's domains and returns the work waiting for them.
func (r *replica) release(b *batch) []*work {
	var cands []*work
	for _, d := range b.doms {
		if r.busy[d] == b {
			delete(r.busy, d)
		}
	}
	// Hierarchical waits may sit on any domain of the batch's projects.
	for _, d := range b.doms {
		cands = append(cands, r.waiting[d]...)
		delete(r.waiting, d)
	}
	for d, ws := range r.waiting {
		if _, busy := r.busy[d]; !busy {
			cands = append(cands, ws...)
			delete(r.waiting, d)
		}
	}
	r.cond.Broadcast()
	return cands
}

// needFresh sets w aside until the replica has caught up with the
// store's current revision. Called with s.mu held.
func (r *replica) needFresh(w *work) {
	w.fresh = true
	r.syncing = append(r.syncing, w)
	if !r.syncOn {
		r.syncOn = true
		go r.syncLoop()
	}
}

func (r *replica) syncLoop() {
	s := r.s
	for {
		s.mu.Lock()
		ws := r.syncing
		r.syncing = nil
		if len(ws) == 0 {
			r.syncOn = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		r.stats.syncs.Add(int64(len(ws)))
		r.waitApplied(r.currentRev())
		s.mu.Lock()
		r.schedule(ws)
		s.mu.Unlock()
	}
}

// currentRev asks the store for its revision, retrying until it answers.
func (r *replica) currentRev() int64 {
	return r.untilStore("reading the current revision", r.st.CurrentRev)
}

// untilStore calls f (with a 5 s timeout each time) until it succeeds,
// backing off while the store does not answer.
func (r *replica) untilStore(what string, f func(context.Context) (int64, error)) int64 {
	backoff := 20 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rev, err := f(ctx)
		cancel()
		if err == nil {
			return rev
		}
		r.s.log.Warn("store unreachable", "while", what, "err", err)
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// waitApplied returns once the replica has applied every change up to
// rev. Changes of other users of the store (other prefixes) make no
// events, so it asks the watch to report its progress while it waits.
func (r *replica) waitApplied(rev int64) {
	s := r.s
	for i := 0; ; i++ {
		s.mu.Lock()
		if r.applied >= rev {
			s.mu.Unlock()
			return
		}
		ch := r.advanced
		s.mu.Unlock()
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r.st.RequestProgress(ctx)
			cancel()
		}
		select {
		case <-ch:
		case <-time.After(time.Duration(min(i+1, 20)) * 5 * time.Millisecond):
		}
	}
}

// sync waits (bounded by ctx) until the replica has seen every change
// committed before it was called.
func (r *replica) sync(ctx context.Context) error {
	rev, err := r.st.CurrentRev(ctx)
	if err != nil {
		return err
	}
	return r.waitAppliedCtx(ctx, rev)
}

// waitAppliedCtx is waitApplied bounded by ctx.
func (r *replica) waitAppliedCtx(ctx context.Context, rev int64) error {
	done := make(chan struct{})
	go func() { r.waitApplied(rev); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- following the store ---

func (r *replica) follow(ctx context.Context) {
	defer close(r.done)
	s := r.s
	s.mu.Lock()
	from := r.applied
	s.mu.Unlock()
	err := store.Follow(ctx, r.st, from, r.apply, func(store.Snapshot) error {
		// The history after our revision is gone: re-list.
		r.reload(ctx, "watch history compacted")
		return nil
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrClosed) {
		s.log.Error("replica watch ended", "err", err)
	}
}

// apply brings one committed change into memory.
func (r *replica) apply(ev store.Event) error {
	s := r.s
	s.mu.Lock()
	if ev.Rev <= r.applied {
		s.mu.Unlock()
		return nil
	}
	var doms []string
	for _, kv := range ev.Puts {
		if strings.HasPrefix(kv.Key, versionPrefix) {
			doms = append(doms, kv.Key)
		}
	}
	// A change to a domain we have a commit in flight for is either that
	// commit (known when it returns) or a change that makes it fail:
	// wait for its outcome first.
	for {
		if _, busy := r.blocked(doms, true); !busy {
			break
		}
		r.cond.Wait()
	}
	var reload error
	changed := false
	if r.own[ev.Rev] {
		delete(r.own, ev.Rev)
		for _, kv := range ev.Puts {
			if r.lastOwn[kv.Key] == ev.Rev {
				delete(r.lastOwn, kv.Key)
			}
		}
		for _, k := range ev.Deletes {
			if r.lastOwn[k] == ev.Rev {
				delete(r.lastOwn, k)
			}
		}
	} else if len(ev.Puts)+len(ev.Deletes) > 0 {
		r.stats.remote.Add(1)
		changed = true
		if reload = r.applyRemote(ev); reload != nil {
			// The state may be half-changed: decide nothing on it until
			// the reload below has replaced it.
			r.paused = true
		}
	}
	r.setApplied(ev.Rev)
	s.mu.Unlock()
	if reload != nil {
		r.reload(context.Background(), reload.Error())
	}
	if changed {
		s.bump(ev.Rev)
	}
	return nil
}

func (r *replica) setApplied(rev int64) {
	if rev > r.applied {
		r.applied = rev
		close(r.advanced)
		r.advanced = make(chan struct{})
		r.cond.Broadcast()
	}
}

// applyRemote applies another writer's change. Called with s.mu held.
func (r *replica) applyRemote(ev store.Event) error {
	s := r.s
	var res []store.KV
	for _, kv := range ev.Puts {
		switch kindOf(kv.Key) {
		case "operation", "request", "opbatch":
			res = append(res, kv)
		case "":
			// version keys and anything else that is not a resource
		default:
			res = append(res, kv)
		}
	}
	ms, ops, reqs, err := decodeAll(res)
	if err != nil {
		return err
	}
	s.ops.merge(ops)
	for k, v := range reqs {
		s.reqs[k] = v
	}
	var deleted []string
	for _, k := range ev.Deletes {
		switch kindOf(k) {
		case "operation":
			s.ops.del(k)
		case "opbatch":
			s.ops.delBatch(k)
		case "request":
			delete(s.reqs, k)
		case "":
		default:
			deleted = append(deleted, k)
			delete(r.keyDoms, k)
		}
	}
	if err := s.state.ApplyRemote(ms, deleted); err != nil {
		return err
	}
	r.noteResources(ms)
	return nil
}

// noteResources records the domains of loaded or applied resources.
func (r *replica) noteResources(ms model.Snapshot) {
	v := reflect.ValueOf(ms)
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Slice {
			continue
		}
		for j := range f.Len() {
			res := f.Index(j).Interface()
			if k := resourceKey(res); k != "" {
				r.keyDoms[k] = r.domainsOf(k, res)
			}
		}
	}
}

// resourceKey is the store key of a resource ("" for kinds it does not
// know: they fall back to their project's domain).
func resourceKey(v any) string {
	switch v := v.(type) {
	case *model.Network:
		return model.NetworkKey(v.Project, v.Name)
	case *model.Subnet:
		return model.SubnetKey(v.Project, v.Region, v.Name)
	case *model.Instance:
		return model.InstanceKey(v.Project, v.Zone, v.Name)
	case *model.Interface:
		return model.InterfaceKey(v.Project, v.ID)
	case *model.InstanceTemplate:
		return model.TemplateKey(v.Project, v.Name)
	case *model.EIP:
		return model.EIPKey(v.Project, v.ID)
	case *model.Route:
		return model.RouteKey(v.Project, v.Name)
	case *model.Firewall:
		return model.FirewallKey(v.Project, v.Name)
	case *model.DynamicRoutes:
		return model.DynamicRoutesKey(v.Project, v.Network)
	case *model.Router:
		return model.RouterKey(v.Project, v.Region, v.Name)
	case *model.DNSZone:
		return model.DNSZoneKey(v.Project, v.Name)
	}
	return ""
}

// rebuildKeyDoms recomputes every resource's domains from the state.
// Called with s.mu held.
func (r *replica) rebuildKeyDoms() {
	r.keyDoms = map[string][]string{}
	st := r.s.state
	var ms model.Snapshot
	for _, p := range st.Projects() {
		ms.Networks = append(ms.Networks, st.Networks(p)...)
		ms.Subnets = append(ms.Subnets, st.Subnets(p, "")...)
		ms.Instances = append(ms.Instances, st.Instances(p, "")...)
		ms.Interfaces = append(ms.Interfaces, st.Interfaces(p)...)
		ms.Templates = append(ms.Templates, st.Templates(p)...)
		ms.EIPs = append(ms.EIPs, st.EIPs(p)...)
		ms.Routes = append(ms.Routes, st.Routes(p)...)
		ms.Firewalls = append(ms.Firewalls, st.Firewalls(p)...)
		ms.Routers = append(ms.Routers, st.Routers(p, "")...)
		ms.DNSZones = append(ms.DNSZones, st.DNSZones(p)...)
		for _, n := range st.Networks(p) {
			if d := st.DynamicRoutesOf(p, n.Name); d != nil {
				ms.Dynamic = append(ms.Dynamic, d)
			}
		}
	}
	r.noteResources(ms)
}

// reload rebuilds the whole state from the store once nothing is in
// flight (after a compaction, or if applying a change failed).
func (r *replica) reload(ctx context.Context, why string) {
	s := r.s
	r.stats.reloads.Add(1)
	s.log.Warn("replica reloading the whole state", "why", why)
	s.mu.Lock()
	r.paused = true
	for {
		inflight := false
		for _, b := range r.busy {
			if !b.catching {
				inflight = true
			}
		}
		if !inflight {
			break
		}
		r.cond.Wait()
	}
	s.mu.Unlock()
	var err error
	for {
		if err = s.reload(ctx); err == nil || ctx.Err() != nil {
			break
		}
		s.log.Error("reload failed; retrying", "err", err)
		time.Sleep(time.Second)
	}
	_, rev := s.Changed()
	s.mu.Lock()
	clear(r.own)
	clear(r.lastOwn)
	r.rebuildKeyDoms()
	r.setApplied(rev)
	r.paused = false
	parked := r.parked
	r.parked = nil
	r.schedule(parked)
	s.mu.Unlock()
}

func (r *replica) statsNow() ReplicaStats {
	r.s.mu.RLock()
	applied := r.applied
	r.s.mu.RUnlock()
	return ReplicaStats{Commits: r.stats.commits.Load(), Requests: r.stats.requests.Load(),
		Conflicts: r.stats.conflicts.Load(), Unknown: r.stats.unknown.Load(), Retries: r.stats.retries.Load(),
		Syncs: r.stats.syncs.Load(), Remote: r.stats.remote.Load(), Reloads: r.stats.reloads.Load(), Applied: applied,
		CommitMicros: r.stats.commitMicros.Load(), ScheduleMicros: r.stats.scheduleMicros.Load(),
		CommitOps: r.stats.commitOps.Load(), CommitBytes: r.stats.commitBytes.Load()}
}

// Replicated reports whether the service runs as one of several replicas
// on a shared store.
func (s *Service) Replicated() bool { return s.repl != nil }

// ReplicaStats reports replication counters (zero without replicas).
func (s *Service) ReplicaStats() ReplicaStats {
	if s.repl == nil {
		return ReplicaStats{}
	}
	return s.repl.statsNow()
}

// Sync waits until this replica has applied every change committed
// anywhere before the call (a no-op on a single server).
func (s *Service) Sync(ctx context.Context) error {
	if s.repl == nil {
		return nil
	}
	return s.repl.sync(ctx)
}

// WaitApplied waits (bounded by ctx) until this replica has applied every
// change up to the store revision rev (a no-op on a single server): a
// replica that relayed a mutation another replica committed answers only
// once its own reads show it.
func (s *Service) WaitApplied(ctx context.Context, rev int64) error {
	if s.repl == nil {
		return nil
	}
	return s.repl.waitAppliedCtx(ctx, rev)
}

// Close stops background work (operation pruning, and following the
// store in replica mode); the store itself is closed by its owner.
func (s *Service) Close() {
	s.stopBg()
	if s.repl != nil {
		s.repl.stop()
	}
}
