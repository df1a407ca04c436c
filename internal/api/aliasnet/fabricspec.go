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
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// FabricSpecPattern is where the server mounts FabricSpecHandler: the
// whole data plane description of a project (fabric.Spec: netpolicy's
// Desired per network plus MACs, prefixes and gateways), with a long-poll:
//
//	GET /aliasnet/v1/projects/{p}/fabricSpec[?lastEtag=E&timeoutSec=N]
//
// With lastEtag the request is held until the spec's etag differs from E
// or timeoutSec (default 30, at most 300) passes; the answer is then the
// current spec either way. The answer is JSON, or with "Accept:
// application/x-aliasnet-spec+gob" the gob form (fabric.DecodeGob), which
// a 10,000-alias data plane decodes several times faster. `aliasnet lab`
// follows it; any data plane can.
const FabricSpecPattern = "GET /aliasnet/v1/projects/{project}/fabricSpec"

// FabricSpecHandler serves FabricSpecPattern from the control plane.
func FabricSpecHandler(svc *control.Service) http.Handler {
	h := &specHandler{svc: svc, cache: map[string]specCached{}}
	return h
}

type specHandler struct {
	svc   *control.Service
	mu    sync.Mutex
	cache map[string]specCached
}

type specCached struct {
	rev  int64
	spec *fabric.Spec
	gob  []byte
	json *[]byte // made on first use
}

// get returns the project's spec at the current revision, compiled at
// most once per revision.
func (h *specHandler) get(project string) (specCached, error) {
	_, rev := h.svc.Changed()
	h.mu.Lock()
	if c, ok := h.cache[project]; ok && c.rev == rev {
		h.mu.Unlock()
		return c, nil
	}
	h.mu.Unlock()
	var in netpolicy.Input
	h.svc.Read(func(st *model.State) {
		// Re-read the revision under the lock: the state and rev agree.
		_, rev = h.svc.Changed()
		in = netpolicy.FromState(st, project)
	})
	s, err := fabric.BuildSpec(project, in)
	if err != nil {
		return specCached{}, err
	}
	b, err := s.EncodeGob()
	if err != nil {
		return specCached{}, err
	}
	c := specCached{rev: rev, spec: s, gob: b, json: new([]byte)}
	h.mu.Lock()
	if len(h.cache) > 64 {
		clear(h.cache)
	}
	h.cache[project] = c
	h.mu.Unlock()
	return c, nil
}

func (h *specHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	q := r.URL.Query()
	last := q.Get("lastEtag")
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
		c, err := h.get(project)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
			return
		}
		if last == "" || c.spec.ETag != last {
			h.write(w, r, c)
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.write(w, r, c)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (h *specHandler) write(w http.ResponseWriter, r *http.Request, c specCached) {
	w.Header().Set("ETag", c.spec.ETag)
	if strings.Contains(r.Header.Get("Accept"), fabric.GobContentType) {
		w.Header().Set("Content-Type", fabric.GobContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(c.gob)
		return
	}
	h.mu.Lock()
	if *c.json == nil {
		b, err := json.Marshal(c.spec)
		if err != nil {
			h.mu.Unlock()
			writeError(w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
			return
		}
		*c.json = b
	}
	b := *c.json
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
