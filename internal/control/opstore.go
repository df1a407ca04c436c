package control

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// opStore holds the operations: those decided here as values, those read
// from the store (at a restart, or recorded by another replica) as their
// JSON, decoded only when someone asks for them. Most operations are
// never read again, and decoding every one was a large part of a restart
// with many retained operations and of following other replicas.
//
// get decodes without caching, so readers under the service's read lock
// never write; every other method needs the write lock.
type opStore struct {
	dec map[string]*Operation
	raw map[string][]byte
	// Replicas store the operations of one transaction under one key (see
	// opBatchPrefix): batchOf maps an operation key to its batch key,
	// batches a batch key to its operation keys.
	batchOf map[string]string
	batches map[string][]string
}

func newOpStore() opStore {
	return opStore{dec: map[string]*Operation{}, raw: map[string][]byte{},
		batchOf: map[string]string{}, batches: map[string][]string{}}
}

// opBatchPrefix holds operation batches: a replica writes the operations
// of one store transaction as one key, not one key each. A key costs etcd
// a put (and a must-not-exist compare) on every member whatever its size;
// one per allocation was a fifth of the replicated throughput.
const opBatchPrefix = "opbatches/"

// batchEntry is one operation in a batch's stored value (a JSON array).
type batchEntry struct {
	Key string          `json:"k"`
	Op  json.RawMessage `json:"o"` // encodeOp's form
}

// addBatch records that the operations under keys are stored in batch bk.
func (m *opStore) addBatch(bk string, keys []string) {
	m.batches[bk] = keys
	for _, k := range keys {
		m.batchOf[k] = bk
	}
}

// delBatch forgets batch bk and its operations.
func (m *opStore) delBatch(bk string) {
	for _, k := range m.batches[bk] {
		m.del(k)
		delete(m.batchOf, k)
	}
	delete(m.batches, bk)
}

// merge adds other's operations and batches.
func (m *opStore) merge(other opStore) {
	for k, o := range other.dec {
		m.put(k, o)
	}
	for k, b := range other.raw {
		m.putRaw(k, b)
	}
	for bk, ks := range other.batches {
		m.addBatch(bk, ks)
	}
}

func (m *opStore) get(k string) *Operation {
	if o := m.dec[k]; o != nil {
		return o
	}
	b, ok := m.raw[k]
	if !ok {
		return nil
	}
	o, err := decodeOp(k, b)
	if err != nil {
		return nil
	}
	return o
}

func (m *opStore) has(k string) bool {
	if _, ok := m.dec[k]; ok {
		return true
	}
	_, ok := m.raw[k]
	return ok
}

func (m *opStore) put(k string, o *Operation) { m.dec[k] = o; delete(m.raw, k) }

func (m *opStore) putRaw(k string, b []byte) { m.raw[k] = b; delete(m.dec, k) }

func (m *opStore) del(k string) { delete(m.dec, k); delete(m.raw, k) }

// keys calls f for every operation key.
func (m *opStore) keys(f func(k string)) {
	for k := range m.dec {
		f(k)
	}
	for k := range m.raw {
		f(k)
	}
}

// insertedMs is when the operation under k was inserted, in Unix
// milliseconds: read from its name (operation-<ms>-<id>, see opName)
// without decoding, else from the record.
func (m *opStore) insertedMs(k string) int64 {
	name := k[strings.LastIndexByte(k, '/')+1:]
	if rest, ok := strings.CutPrefix(name, "operation-"); ok {
		if i := strings.IndexByte(rest, '-'); i > 0 {
			if ms, err := strconv.ParseInt(rest[:i], 10, 64); err == nil {
				return ms
			}
		}
	}
	if o := m.get(k); o != nil {
		if t, err := time.Parse(opTimeLayout, o.Inserted); err == nil {
			return t.UnixMilli()
		}
	}
	return 0
}

// Operations are stored without what their key already says. A stored
// operation is written once and read rarely, but every replica of an
// etcd installation receives it and every etcd member writes it twice
// (log and database): in the full form it was over half the bytes of an
// alias update's transaction. encodeOp leaves out project, scope and name
// (the key holds them), id and inserted time when the name is the
// standard operation-<ms>-<id> that holds them, ended when it equals
// inserted, and the request hash when there is no request id (it is only
// compared on a request id's reuse). decodeOp reads both this form and
// the full one.

// storedOp is Operation with every field optional; converting between the
// two keeps the values and changes only the JSON tags.
type storedOp struct {
	Project     string          `json:"project,omitempty"`
	Name        string          `json:"name,omitempty"`
	ID          uint64          `json:"id,string,omitempty"`
	Scope       string          `json:"scope,omitempty"`
	Type        string          `json:"type,omitempty"`
	Target      string          `json:"target,omitempty"`
	TargetID    uint64          `json:"targetId,string,omitempty"`
	RequestID   string          `json:"requestId,omitempty"`
	Inserted    string          `json:"inserted,omitempty"`
	Ended       string          `json:"ended,omitempty"`
	Error       *OpError        `json:"error,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	RequestHash string          `json:"requestHash,omitempty"`
}

// encodeOp is the stored form of o (under o.Key()).
func encodeOp(o *Operation) ([]byte, error) {
	st := storedOp(*o)
	d := opFromKey(o.Key())
	if d.Project == o.Project && d.Scope == o.Scope && d.Name == o.Name {
		st.Project, st.Scope, st.Name = "", "", ""
		if d.ID == o.ID && d.Inserted == o.Inserted {
			st.ID, st.Inserted = 0, ""
		}
	}
	if o.Ended == o.Inserted {
		st.Ended = ""
	}
	if o.RequestID == "" {
		st.RequestHash = ""
	}
	return json.Marshal(&st)
}

// decodeOp reads an operation stored under key, in either form.
func decodeOp(key string, b []byte) (*Operation, error) {
	o := opFromKey(key)
	if err := json.Unmarshal(b, (*storedOp)(o)); err != nil {
		return nil, err
	}
	if o.Ended == "" {
		o.Ended = o.Inserted
	}
	return o, nil
}

// opFromKey is what an operation key says: project, scope and name, and
// from a standard name (see opName) the id and the inserted time.
func opFromKey(key string) *Operation {
	o := new(Operation)
	rest, ok := strings.CutPrefix(key, "projects/")
	if !ok {
		return o
	}
	p, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return o
	}
	i := strings.LastIndex(rest, "/operations/")
	if i < 0 {
		return o
	}
	o.Project, o.Scope, o.Name = p, rest[:i], rest[i+len("/operations/"):]
	ms, hex, ok := strings.Cut(strings.TrimPrefix(o.Name, "operation-"), "-")
	if !ok || len(hex) != 16 || !strings.HasPrefix(o.Name, "operation-") {
		return o
	}
	id, err1 := strconv.ParseUint(hex, 16, 64)
	t, err2 := strconv.ParseInt(ms, 10, 64)
	if err1 != nil || err2 != nil || opName(time.UnixMilli(t), id) != o.Name {
		return o
	}
	o.ID, o.Inserted = id, time.UnixMilli(t).UTC().Format(opTimeLayout)
	return o
}
