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
	ops   map[string]*Operation // by key
	reqs  map[string]string     // request key -> op key
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
}

// Options configure a Service.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Model is the operator's configuration of the model (instance
	// types, EIP pools), applied after every load.
	Model model.Config
}

// New loads the state from st and returns a ready Service.
func New(ctx context.Context, st store.Store, o Options) (*Service, error) {
	s := &Service{log: o.Logger, store: st, now: o.Now, changed: make(chan struct{}), cfg: o.Model}
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
	return s, nil
}

func (s *Service) reload(ctx context.Context) error {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("control: load store: %w", err)
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

// Prefixes of store keys by kind.
func kindOf(key string) string {
	switch {
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

func decodeAll(kvs []store.KV) (model.Snapshot, map[string]*Operation, map[string]string, error) {
	var ms model.Snapshot
	ops := map[string]*Operation{}
	reqs := map[string]string{}
	for _, kv := range kvs {
		var err error
		switch kindOf(kv.Key) {
		case "network":
			v := new(model.Network)
			err = json.Unmarshal(kv.Value, v)
			ms.Networks = append(ms.Networks, v)
		case "subnet":
			v := new(model.Subnet)
			err = json.Unmarshal(kv.Value, v)
			ms.Subnets = append(ms.Subnets, v)
		case "instance":
			v := new(model.Instance)
			err = json.Unmarshal(kv.Value, v)
			ms.Instances = append(ms.Instances, v)
		case "interface":
			v := new(model.Interface)
			err = json.Unmarshal(kv.Value, v)
			ms.Interfaces = append(ms.Interfaces, v)
		case "template":
			v := new(model.InstanceTemplate)
			err = json.Unmarshal(kv.Value, v)
			ms.Templates = append(ms.Templates, v)
		case "route":
			v := new(model.Route)
			err = json.Unmarshal(kv.Value, v)
			ms.Routes = append(ms.Routes, v)
		case "firewall":
			v := new(model.Firewall)
			err = json.Unmarshal(kv.Value, v)
			ms.Firewalls = append(ms.Firewalls, v)
		case "dynamicRoutes":
			v := new(model.DynamicRoutes)
			err = json.Unmarshal(kv.Value, v)
			ms.Dynamic = append(ms.Dynamic, v)
		case "eip":
			v := new(model.EIP)
			err = json.Unmarshal(kv.Value, v)
			ms.EIPs = append(ms.EIPs, v)
		case "router":
			v := new(model.Router)
			err = json.Unmarshal(kv.Value, v)
			ms.Routers = append(ms.Routers, v)
		case "dnsZone":
			v := new(model.DNSZone)
			err = json.Unmarshal(kv.Value, v)
			ms.DNSZones = append(ms.DNSZones, v)
		case "operation":
			v := new(Operation)
			err = json.Unmarshal(kv.Value, v)
			ops[kv.Key] = v
		case "cluster":
			v := new(model.Cluster)
			err = json.Unmarshal(kv.Value, v)
			ms.Clusters = append(ms.Clusters, v)
		case "clusterNode":
			v := new(model.ClusterNode)
			err = json.Unmarshal(kv.Value, v)
			ms.ClusterNodes = append(ms.ClusterNodes, v)
		case "serviceIP":
			v := new(model.ServiceIP)
			err = json.Unmarshal(kv.Value, v)
			ms.ServiceIPs = append(ms.ServiceIPs, v)
		case "request":
			reqs[kv.Key] = string(kv.Value)
		}
		if err != nil {
			return ms, nil, nil, fmt.Errorf("control: decode %s: %w", kv.Key, err)
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
	stamp := now.Format("2006-01-02T15:04:05.000-07:00")
	s.mu.Lock()
	if op.RequestID != "" {
		if k, ok := s.reqs[requestKey(op.Project, op.RequestID)]; ok {
			prev := s.ops[k]
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
	o.Name = fmt.Sprintf("operation-%d-%016x", now.UnixMilli(), o.ID)
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
	if result != nil {
		if o.Result, err = json.Marshal(result); err != nil {
			tx.Rollback()
			s.mu.Unlock()
			return nil, fmt.Errorf("control: encode result: %w", err)
		}
	}
	txn, err := encodeChanges(tx.Changes())
	if err != nil {
		tx.Rollback()
		s.mu.Unlock()
		return nil, err
	}
	ob, _ := json.Marshal(o)
	txn.Puts = append(txn.Puts, store.KV{Key: o.Key(), Value: ob})
	s.ops[o.Key()] = o
	if op.RequestID != "" {
		rk := requestKey(op.Project, op.RequestID)
		txn.Puts = append(txn.Puts, store.KV{Key: rk, Value: []byte(o.Key())})
		s.reqs[rk] = o.Key()
	}
	c := s.store.Submit(txn)
	s.mu.Unlock()

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
	o := s.ops[OpKey(project, scope, name)]
	s.mu.RUnlock()
	if o == nil && s.repl != nil {
		// Another replica may have recorded it a moment ago.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.repl.sync(ctx) == nil {
			s.mu.RLock()
			o = s.ops[OpKey(project, scope, name)]
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
	for k, o := range s.ops {
		if strings.HasPrefix(k, prefix) && (scope == "" || o.Scope == scope) {
			out = append(out, o)
		}
	}
	sortOps(out)
	return out
}

// Watch streams committed changes after rev (see store.Store.Watch).
func (s *Service) Watch(ctx context.Context, rev int64) (<-chan store.Event, error) {
	return s.store.Watch(ctx, rev)
}
