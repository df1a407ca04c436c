package aliasnet

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/model"
)

// FabricSpecPattern is where the server mounts FabricSpecHandler: the
// whole data plane description of a project (fabric.Spec: netpolicy's
// Desired per network plus MACs, prefixes, gateways and pod ranges),
// with a long-poll:
//
//	GET /aliasnet/v1/projects/{p}/fabricSpec[?lastEtag=E&timeoutSec=N][&delta=1]
//
// With lastEtag the request is held until the spec's etag differs from E
// or timeoutSec (default 30, at most 300) passes. Without delta the
// answer is the current spec either way: JSON, or with "Accept:
// application/x-aliasnet-spec+gob" the gob form (fabric.DecodeGob). With
// delta=1 it is a fabric.Update: the delta from E to the current spec
// when the server still knows E (fabric.ApplyDelta), the whole spec
// otherwise (no E, E too old, a restarted server); JSON, or gob with
// "Accept: application/x-aliasnet-spec-update+gob" (fabric.DecodeUpdate).
// `aliasnet lab` follows it with deltas; any data plane can.
const FabricSpecPattern = "GET /aliasnet/v1/projects/{project}/fabricSpec"

// FabricSpecHandler serves FabricSpecPattern from the control plane.
func FabricSpecHandler(svc *control.Service) http.Handler {
	return &specHandler{svc: svc, projects: map[string]*specProject{}}
}

type specHandler struct {
	svc      *control.Service
	mu       sync.Mutex
	projects map[string]*specProject
}

// specProject follows one project: its Builder (which patches the spec
// on instance-local changes and answers deltas) and the encodings of the
// current spec, made on first use.
type specProject struct {
	mu  sync.Mutex
	b   *fabric.Builder
	rev int64
	cur *specVersion
}

type specVersion struct {
	spec *fabric.Spec // wire form
	mu   sync.Mutex
	gob  []byte // EncodeGob
	upd  []byte // EncodeUpdate of the whole spec
	json []byte // the expanded spec
	ujs  []byte // an Update with the expanded spec
}

// get returns the project's spec at the current revision, built at most
// once per revision.
func (h *specHandler) get(project string) (*specProject, *specVersion, error) {
	_, rev := h.svc.Changed()
	h.mu.Lock()
	p := h.projects[project]
	if p == nil {
		if len(h.projects) >= 64 {
			clear(h.projects)
		}
		p = &specProject{b: &fabric.Builder{Project: project}, rev: -1}
		h.projects[project] = p
	}
	h.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && p.rev == rev {
		return p, p.cur, nil
	}
	var in fabric.Input
	h.svc.Read(func(st *model.State) {
		// Re-read the revision under the lock: the state is at least as
		// new as rev.
		_, rev = h.svc.Changed()
		in = fabric.FromState(st, project)
	})
	s, err := p.b.Update(in)
	if err != nil {
		return nil, nil, err
	}
	p.rev = rev
	if p.cur == nil || p.cur.spec != s {
		p.cur = &specVersion{spec: s}
	}
	return p, p.cur, nil
}

func (h *specHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	q := r.URL.Query()
	last := q.Get("lastEtag")
	delta := q.Get("delta") == "1" || q.Get("delta") == "true"
	timeout := 30 * time.Second
	if v := q.Get("timeoutSec"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid", "timeoutSec must be a non-negative number of seconds")
			return
		}
		timeout = min(time.Duration(n)*time.Second, 300*time.Second)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch, _ := h.svc.Changed()
		p, v, err := h.get(project)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
			return
		}
		if last == "" || v.spec.ETag != last {
			h.write(w, r, p, v, last, delta)
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.write(w, r, p, v, last, delta)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (h *specHandler) write(w http.ResponseWriter, r *http.Request, p *specProject, v *specVersion, last string, delta bool) {
	gob := strings.Contains(r.Header.Get("Accept"), fabric.GobContentType)
	ct, enc := "application/json; charset=UTF-8", v.jsonSpec
	etag := v.spec.ETag
	switch {
	case delta:
		var d *fabric.Delta
		if last != "" {
			// To the Builder's current spec, which another request may
			// have made newer than v meanwhile.
			d = p.b.Delta(last)
		}
		if d != nil {
			etag = d.To
		}
		gob = strings.Contains(r.Header.Get("Accept"), fabric.UpdateGobContentType)
		switch {
		case d != nil && gob:
			ct, enc = fabric.UpdateGobContentType, func() ([]byte, error) { return fabric.EncodeUpdate(&fabric.Update{ETag: d.To, Delta: d}) }
		case d != nil:
			ct, enc = "application/json; charset=UTF-8", func() ([]byte, error) { return json.Marshal(&fabric.Update{ETag: d.To, Delta: d}) }
		case gob:
			ct, enc = fabric.UpdateGobContentType, v.gobUpdate
		default:
			enc = v.jsonUpdate
		}
	case gob:
		ct, enc = fabric.GobContentType, v.gobSpec
	}
	b, err := enc()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// cached returns *slot, making it with f on first use.
func (v *specVersion) cached(slot *[]byte, f func() ([]byte, error)) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if *slot == nil {
		b, err := f()
		if err != nil {
			return nil, err
		}
		*slot = b
	}
	return *slot, nil
}

func (v *specVersion) gobSpec() ([]byte, error) { return v.cached(&v.gob, v.spec.EncodeGob) }

func (v *specVersion) gobUpdate() ([]byte, error) {
	return v.cached(&v.upd, func() ([]byte, error) { return fabric.EncodeUpdate(&fabric.Update{ETag: v.spec.ETag, Spec: v.spec}) })
}

func (v *specVersion) jsonSpec() ([]byte, error) {
	return v.cached(&v.json, func() ([]byte, error) { return json.Marshal(v.spec.Expanded()) })
}

func (v *specVersion) jsonUpdate() ([]byte, error) {
	return v.cached(&v.ujs, func() ([]byte, error) {
		return json.Marshal(&fabric.Update{ETag: v.spec.ETag, Spec: v.spec.Expanded()})
	})
}
