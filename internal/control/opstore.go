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
}

func newOpStore() opStore {
	return opStore{dec: map[string]*Operation{}, raw: map[string][]byte{}}
}

func (m *opStore) get(k string) *Operation {
	if o := m.dec[k]; o != nil {
		return o
	}
	b, ok := m.raw[k]
	if !ok {
		return nil
	}
	o := new(Operation)
	if err := json.Unmarshal(b, o); err != nil {
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
