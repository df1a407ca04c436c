// Package control runs every change to the address plane: load the
// current state, decide in the pure model, commit the resulting writes in
// one store transaction, and publish the change. Dialects (GCE, Alibaba),
// the CLI and the data plane are adapters around it.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// Operation records one mutation, successful or not. Dialects render it
// (GCE compute#operation); RequestID makes retries return it again.
type Operation struct {
	Project   string          `json:"project"`
	Name      string          `json:"name"`
	ID        uint64          `json:"id,string"`
	Scope     string          `json:"scope"` // "global", "regions/R", "zones/Z"
	Type      string          `json:"type"`  // insert, delete, patch, ...
	Target    string          `json:"target"`
	TargetID  uint64          `json:"targetId,string,omitempty"`
	RequestID string          `json:"requestId,omitempty"`
	Inserted  string          `json:"inserted"`
	Ended     string          `json:"ended"`
	Error     *OpError        `json:"error,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	// Fingerprint of the request (method, path, body) for ClientToken
	// reuse checks.
	RequestHash string `json:"requestHash,omitempty"`
}

// OpError is a failed operation's error.
type OpError struct {
	Code    model.Code `json:"code"`
	Message string     `json:"message"`
	Field   string     `json:"field,omitempty"`
	Holder  string     `json:"holder,omitempty"`
}

// Key is the store key of the operation.
func (o *Operation) Key() string { return OpKey(o.Project, o.Scope, o.Name) }

// OpKey builds an operation key.
func OpKey(project, scope, name string) string {
	return "projects/" + project + "/" + scope + "/operations/" + name
}

func requestKey(project, id string) string { return "projects/" + project + "/requests/" + id }

// Service is the control plane of one aliasnet server.
type Service struct {
	log   *slog.Logger
	store store.Store
	now   func() time.Time

	mu    sync.RWMutex
	state *model.State
	ops   opStore           // by key (opstore.go)
	reqs  map[string]string // request key -> op key
	rnd   *rand.Rand
	cfg   model.Config
	// repl is set when the store is shared by several replicas (etcd):
	// see replica.go.
	repl *replica

	// changed is closed and replaced after every commit, so long-polls can
	// wait for "anything changed" without a subscription.
	chMu    sync.Mutex
	changed chan struct{}
	rev     int64

	// turn is closed once the latest decided mutation has been submitted
	// to the store (see Do); guarded by mu.
	turn chan struct{}

	retention time.Duration // of operations (retention.go)
	maxOps    int
	stopBg    context.CancelFunc
}

// opTimeLayout is GCE's timestamp form, used for operation times.
const opTimeLayout = "2006-01-02T15:04:05.000-07:00"

// Options configure a Service.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Model is the operator's configuration of the model (instance
	// types, EIP pools), applied after every load.
	Model model.Config
	// OperationRetention is how long operations (and the request ids
	// that dedupe retries) are kept; 0 means DefaultOperationRetention.
	OperationRetention time.Duration
	// MaxOperations caps how many are kept; 0 means DefaultMaxOperations.
	MaxOperations int
}

// New loads the state from st and returns a ready Service.
func New(ctx context.Context, st store.Store, o Options) (*Service, error) {
	s := &Service{log: o.Logger, store: st, now: o.Now, changed: make(chan struct{}), cfg: o.Model,
		turn: closedChan(), retention: o.OperationRetention, maxOps: o.MaxOperations}
	if s.retention <= 0 {
		s.retention = DefaultOperationRetention
	}
	if s.maxOps <= 0 {
		s.maxOps = DefaultMaxOperations
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	seed := uint64(time.Now().UnixNano())
	s.rnd = rand.New(rand.NewPCG(seed, seed>>7^0x9e3779b97f4a7c15))
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	if rs, ok := st.(replicaStore); ok {
		s.repl = newReplica(s, rs)
	}
	var bg context.Context
	bg, s.stopBg = context.WithCancel(context.Background())
	go s.pruneLoop(bg)
	return s, nil
}

func (s *Service) reload(ctx context.Context) error {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("control: load store: %w", err)
	}
	if len(snap.KVs) > 100_000 {
		// Loading makes garbage at a furious rate and keeps almost all
		// of what it makes live: collecting as often as usual would spend
		// a fifth of a restart in the collector for nothing.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	ms, ops, reqs, err := decodeAll(snap.KVs)
	if err != nil {
		return err
	}
	st, err := model.Load(ms)
	if err != nil {
		return fmt.Errorf("control: rebuild state: %w", err)
	}
	if err := st.Configure(s.cfg); err != nil {
		return fmt.Errorf("control: configure: %w", err)
	}
	s.mu.Lock()
	s.state, s.ops, s.reqs = st, ops, reqs
	s.mu.Unlock()
	s.chMu.Lock()
	s.rev = snap.Rev
	s.chMu.Unlock()
	return nil
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Prefixes of store keys by kind.
func kindOf(key string) string {
	switch {
	case strings.HasPrefix(key, opBatchPrefix):
		return "opbatch"
	case k8sKind(key) != "": // clusters (k8s.go); exact, so first
		return k8sKind(key)
	case strings.Contains(key, "/operations/"):
		return "operation"
	case strings.Contains(key, "/requests/"):
		return "request"
	case strings.Contains(key, "/routers/"):
		return "router"
	case strings.Contains(key, "/managedZones/"):
		return "dnsZone"
	case strings.Contains(key, "/eips/"):
		return "eip"
	case strings.Contains(key, "/global/routes/"):
		return "route"
	case strings.Contains(key, "/global/firewalls/"):
		return "firewall"
	case strings.Contains(key, "/global/dynamicRoutes/"):
		return "dynamicRoutes"
	case strings.Contains(key, "/global/networks/"):
		return "network"
	case strings.Contains(key, "/subnetworks/"):
		return "subnet"
	case strings.Contains(key, "/instances/"):
		return "instance"
	case strings.Contains(key, "/interfaces/"):
		return "interface"
	case strings.Contains(key, "/global/instanceTemplates/"):
		return "template"
	}
	return ""
}

// newByKind makes the value a stored record of each kind decodes into.
var newByKind = map[string]func() any{
	"network":       func() any { return new(model.Network) },
	"subnet":        func() any { return new(model.Subnet) },
	"instance":      func() any { return new(model.Instance) },
	"interface":     func() any { return new(model.Interface) },
	"template":      func() any { return new(model.InstanceTemplate) },
	"route":         func() any { return new(model.Route) },
	"firewall":      func() any { return new(model.Firewall) },
	"dynamicRoutes": func() any { return new(model.DynamicRoutes) },
	"eip":           func() any { return new(model.EIP) },
	"router":        func() any { return new(model.Router) },
	"dnsZone":       func() any { return new(model.DNSZone) },
	"cluster":       func() any { return new(model.Cluster) },
	"clusterNode":   func() any { return new(model.ClusterNode) },
	"serviceIP":     func() any { return new(model.ServiceIP) },
}

// decodeAll turns the stored records into a model snapshot, operations
// (left encoded: see opStore) and request ids. Decoding is most of a restart's work (a million
// allocations are a few hundred thousand JSON records), so it runs on
// every core; the records keep their store order.
func decodeAll(kvs []store.KV) (model.Snapshot, opStore, map[string]string, error) {
	vals := make([]any, len(kvs))
	workers := max(1, min(runtime.GOMAXPROCS(0), len(kvs)/1024))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * len(kvs) / workers; i < (w+1)*len(kvs)/workers; i++ {
				kind := kindOf(kvs[i].Key)
				switch kind {
				case "":
					if kvs[i].Key == store.RestoreMarker {
						errs[w] = fmt.Errorf("control: %w: it holds part of a copy (snapshot digest %.12s); run the same aliasnet store restore or migrate command again to finish it, or empty the store", store.ErrRestoreUnfinished, kvs[i].Value)
						return
					}
					continue
				case "request":
					vals[i] = string(kvs[i].Value)
					continue
				case "operation":
					vals[i] = kvs[i].Value
					continue
				case "opbatch":
					var es []batchEntry
					if err := json.Unmarshal(kvs[i].Value, &es); err != nil {
						errs[w] = fmt.Errorf("control: decode %s: %w", kvs[i].Key, err)
						return
					}
					vals[i] = es
					continue
				}
				mk := newByKind[kind]
				if mk == nil {
					continue
				}
				v := mk()
				if err := json.Unmarshal(kvs[i].Value, v); err != nil {
					errs[w] = fmt.Errorf("control: decode %s: %w", kvs[i].Key, err)
					return
				}
				vals[i] = v
			}
		}()
	}
	wg.Wait()
	var ms model.Snapshot
	ops := newOpStore()
	if err := errors.Join(errs...); err != nil {
		return ms, ops, nil, err
	}
	reqs := map[string]string{}
	for i, v := range vals {
		switch v := v.(type) {
		case *model.Network:
			ms.Networks = append(ms.Networks, v)
		case *model.Subnet:
			ms.Subnets = append(ms.Subnets, v)
		case *model.Instance:
			ms.Instances = append(ms.Instances, v)
		case *model.Interface:
			ms.Interfaces = append(ms.Interfaces, v)
		case *model.InstanceTemplate:
			ms.Templates = append(ms.Templates, v)
		case *model.Route:
			ms.Routes = append(ms.Routes, v)
		case *model.Firewall:
			ms.Firewalls = append(ms.Firewalls, v)
		case *model.DynamicRoutes:
			ms.Dynamic = append(ms.Dynamic, v)
		case *model.EIP:
			ms.EIPs = append(ms.EIPs, v)
		case *model.Router:
			ms.Routers = append(ms.Routers, v)
		case *model.DNSZone:
			ms.DNSZones = append(ms.DNSZones, v)
		case []byte:
			ops.putRaw(kvs[i].Key, v)
		case []batchEntry:
			keys := make([]string, len(v))
			for j, e := range v {
				ops.putRaw(e.Key, e.Op)
				keys[j] = e.Key
			}
			ops.addBatch(kvs[i].Key, keys)
		case *model.Cluster:
			ms.Clusters = append(ms.Clusters, v)
		case *model.ClusterNode:
			ms.ClusterNodes = append(ms.ClusterNodes, v)
		case *model.ServiceIP:
			ms.ServiceIPs = append(ms.ServiceIPs, v)
		case string:
			reqs[kvs[i].Key] = v
		}
	}
	return ms, ops, reqs, nil
}

// Read runs f with the state under the read lock. f must not keep the
// State, but may keep resources it returns (they are immutable).
func (s *Service) Read(f func(st *model.State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f(s.state)
}

// Op describes a mutation for Do.
type Op struct {
	Project   string
	Scope     string // "global", "regions/R", "zones/Z"
	Type      string // GCE operationType: insert, delete, patch, ...
	Target    string // key of the resource acted on
	RequestID string // idempotency key (requestId, ClientToken); "" none
	// RequestHash identifies the request's parameters; a reused RequestID
	// with another hash fails with ErrIdempotentMismatch.
	RequestHash string
}

// ErrIdempotentMismatch: a request id was reused with other parameters.
var ErrIdempotentMismatch = errors.New("request id reused with different parameters")

// Mutation decides a change inside a model transaction. With replicas it
// may run more than once (a lost race is decided again), so it must have
// no effect outside tx and its return values. It returns the
// target's id (if any) and a result the dialect wants stored with the
// operation (returned again on an idempotent retry); nil for none.
type Mutation func(tx *model.Txn) (targetID uint64, result any, err error)

// Failed reports whether a model error should be recorded as a failed
// operation (GCE reports address conflicts and exhaustion that way) rather
// than refused as a bad request.
func Failed(err error) bool {
	switch model.CodeOf(err) {
	case model.InUse, model.Exhausted:
		return true
	}
	return false
}

// Do runs a mutation: decide, commit durably, return the operation.
// A model error that Failed() classifies is returned inside a DONE
// operation with Error set (and err nil); other model errors come back as
// err and leave no trace. A repeated RequestID returns the first
// operation without running m.
func (s *Service) Do(ctx context.Context, op Op, m Mutation) (*Operation, error) {
	if s.repl != nil {
		return s.repl.do(ctx, op, m)
	}
	now := s.now().UTC()
	stamp := now.Format(opTimeLayout)
	s.mu.Lock()
	if op.RequestID != "" {
		if k, ok := s.reqs[requestKey(op.Project, op.RequestID)]; ok {
			prev := s.ops.get(k)
			s.mu.Unlock()
			if prev == nil {
				return nil, fmt.Errorf("control: request %s: operation %s lost", op.RequestID, k)
			}
			if op.RequestHash != "" && prev.RequestHash != "" && prev.RequestHash != op.RequestHash {
				return prev, ErrIdempotentMismatch
			}
			return prev, nil
		}
	}
	tx := s.state.Begin(stamp, s.rnd.Uint64)
	tid, result, err := m(tx)
	o := &Operation{
		Project: op.Project, Scope: op.Scope, Type: op.Type, Target: op.Target, TargetID: tid,
		RequestID: op.RequestID, RequestHash: op.RequestHash, Inserted: stamp, Ended: stamp,
		ID: s.rnd.Uint64(),
	}
	o.Name = opName(now, o.ID)
	if err != nil {
		tx.Rollback()
		if !Failed(err) {
			s.mu.Unlock()
			return nil, err
		}
		var me *model.Error
		errors.As(err, &me)
		o.Error = &OpError{Code: me.Code, Message: me.Reason, Field: me.Field, Holder: me.Holder}
	}
	var resultJSON []byte
	if result != nil {
		// The result may share state with the next decision: encode it
		// under the lock.
		if resultJSON, err = json.Marshal(result); err != nil {
			tx.Rollback()
			s.mu.Unlock()
			return nil, fmt.Errorf("control: encode result: %w", err)
		}
	}
	o.Result = resultJSON
	changes := tx.Changes()
	s.ops.put(o.Key(), o)
	rk := ""
	if op.RequestID != "" {
		rk = requestKey(op.Project, op.RequestID)
		s.reqs[rk] = o.Key()
	}
	// Encoding happens outside the lock, in parallel with the next
	// decisions: it is about a third of the work per mutation, and the
	// lock is what serialises concurrent callers. The log must still
	// receive transactions in decision order (a later decision may
	// overwrite the same key), so each caller waits for its predecessor's
	// submission before its own: a chain of turn channels.
	prev, turn := s.turn, make(chan struct{})
	s.turn = turn
	s.mu.Unlock()

	txn, err := encodeChanges(changes)
	if err == nil {
		var ob []byte
		ob, err = encodeOp(o)
		txn.Puts = append(txn.Puts, store.KV{Key: o.Key(), Value: ob})
		if rk != "" {
			txn.Puts = append(txn.Puts, store.KV{Key: rk, Value: []byte(o.Key())})
		}
	}
	<-prev
	if err != nil {
		// Model values always encode; if one ever does not, memory holds
		// a change the store never will: rebuild memory from the store.
		s.log.Error("encoding a decided change failed; reloading state from the store", "err", err)
		if rerr := s.reload(context.WithoutCancel(ctx)); rerr != nil {
			s.log.Error("reload failed", "err", rerr)
		}
		close(turn)
		return nil, err
	}
	c := s.store.Submit(txn)
	close(turn)

	rev, err := c.Wait(context.WithoutCancel(ctx))
	if err != nil {
		// Memory is ahead of the store: rebuild from what is durable.
		s.log.Error("commit failed; reloading state from the store", "err", err)
		if rerr := s.reload(context.WithoutCancel(ctx)); rerr != nil {
			s.log.Error("reload failed", "err", rerr)
		}
		return nil, fmt.Errorf("control: commit: %w", err)
	}
	s.bump(rev)
	return o, nil
}

// opName is GCE's operation name shape: operation-<unix ms>-<16 hex>.
func opName(now time.Time, id uint64) string {
	b := make([]byte, 0, 40)
	b = append(b, "operation-"...)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	b = append(b, '-')
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, "0123456789abcdef"[id>>uint(shift)&0xf])
	}
	return string(b)
}

func encodeChanges(chs []model.Change) (store.Txn, error) {
	var t store.Txn
	for _, c := range chs {
		if c.Value == nil {
			t.Deletes = append(t.Deletes, c.Key)
			continue
		}
		b, err := json.Marshal(c.Value)
		if err != nil {
			return t, fmt.Errorf("control: encode %s: %w", c.Key, err)
		}
		t.Puts = append(t.Puts, store.KV{Key: c.Key, Value: b})
	}
	return t, nil
}

func (s *Service) bump(rev int64) {
	s.chMu.Lock()
	if rev > s.rev {
		s.rev = rev
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.chMu.Unlock()
}

// Changed returns a channel closed at the next commit, and the revision
// now; long-polls select on it.
func (s *Service) Changed() (<-chan struct{}, int64) {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	return s.changed, s.rev
}

// Operation returns a stored operation.
func (s *Service) Operation(project, scope, name string) *Operation {
	s.mu.RLock()
	o := s.ops.get(OpKey(project, scope, name))
	s.mu.RUnlock()
	if o == nil && s.repl != nil {
		// Another replica may have recorded it a moment ago.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.repl.sync(ctx) == nil {
			s.mu.RLock()
			o = s.ops.get(OpKey(project, scope, name))
			s.mu.RUnlock()
		}
	}
	return o
}

// Operations lists a project's operations in a scope ("" for all).
func (s *Service) Operations(project, scope string) []*Operation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	prefix := "projects/" + project + "/"
	var out []*Operation
	s.ops.keys(func(k string) {
		if !strings.HasPrefix(k, prefix) {
			return
		}
		if o := s.ops.get(k); o != nil && (scope == "" || o.Scope == scope) {
			out = append(out, o)
		}
	})
	sortOps(out)
	return out
}

// Watch streams committed changes after rev (see store.Store.Watch).
func (s *Service) Watch(ctx context.Context, rev int64) (<-chan store.Event, error) {
	return s.store.Watch(ctx, rev)
}
