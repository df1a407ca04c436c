// Package gke serves the Kubernetes Engine (GKE) v1 dialect of the address
// plane: clusters and node pools with VPC-native (alias IP) addressing,
// and their operations, close enough to container.googleapis.com that
// gcloud and google.golang.org/api/container/v1 work against it with the
// endpoint overridden. It also answers the Service Usage check gcloud makes
// before creating a cluster, and aliasnet's own cluster calls (range
// utilisation, node join/leave, service IPs) under /aliasnet/v1/.
//
// Like the Compute dialect it only parses, names and renders; every
// decision is in model/cluster.go. aliasnet runs no Kubernetes control
// plane: a cluster here is the address plan (pods and services ranges,
// per-node pod ranges, service IPs) and the node instances.
package gke

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// API is the handler of the dialect.
type API struct {
	svc *control.Service
	log *slog.Logger
	mux *http.ServeMux
}

// Patterns the server mounts the handler at. They are narrow on purpose:
// /v1/ is shared with other Google APIs (Service Usage), and /aliasnet/v1/
// with aliasnet's own API.
var Patterns = []string{
	"/v1/projects/{project}/locations/",
	"/v1/projects/{project}/zones/",
	"GET /v1/projects/{project}/services/{service}",
	"POST /v1/projects/{project}/services/{service}",
	"GET " + AliasnetPath,
	"POST " + AliasnetPath,
}

// AliasnetPath is the path of aliasnet's own cluster calls (aliasnet.go):
// {what} is "usage", "nodes", "services", or a verb "nodes:join",
// "nodes:leave", "services:allocate", "services:release".
const AliasnetPath = "/aliasnet/v1/projects/{project}/locations/{location}/clusters/{cluster}/{what}"

// New returns the handler; mount it at every pattern of Patterns.
func New(svc *control.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{svc: svc, log: log, mux: http.NewServeMux()}
	a.routes()
	return a
}

func (a *API) routes() {
	h := func(pattern string, f func(*req)) {
		a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			q := &req{w: w, r: r, a: a, project: r.PathValue("project")}
			q.location = r.PathValue("location")
			if q.location == "" {
				q.location = r.PathValue("zone")
			}
			f(q)
		})
	}
	for _, scope := range []string{"/v1/projects/{project}/locations/{location}", "/v1/projects/{project}/zones/{zone}"} {
		h("POST "+scope+"/clusters", a.createCluster)
		h("GET "+scope+"/clusters", a.listClusters)
		h("GET "+scope+"/clusters/{cluster}", a.getCluster)
		h("DELETE "+scope+"/clusters/{cluster}", a.deleteCluster)
		h("POST "+scope+"/clusters/{cluster}/nodePools", a.createNodePool)
		h("GET "+scope+"/clusters/{cluster}/nodePools", a.listNodePools)
		h("GET "+scope+"/clusters/{cluster}/nodePools/{pool}", a.getNodePool)
		h("DELETE "+scope+"/clusters/{cluster}/nodePools/{pool}", a.deleteNodePool)
		h("GET "+scope+"/operations", a.listOperations)
		h("GET "+scope+"/operations/{operation}", a.getOperation)
		h("GET "+scope+"/serverConfig", a.serverConfig)
	}
	// Custom verbs ("pool:setSize", "op:wait") are part of the last segment.
	h("POST /v1/projects/{project}/locations/{location}/clusters/{cluster}/nodePools/{poolverb}", a.poolVerb)
	h("POST /v1/projects/{project}/zones/{zone}/clusters/{cluster}/nodePools/{pool}/setSize", a.setSize)
	h("POST /v1/projects/{project}/locations/{location}/operations/{opverb}", a.opVerb)
	h("POST /v1/projects/{project}/zones/{zone}/operations/{opverb}", a.opVerb)

	h("GET /v1/projects/{project}/services/{service}", a.getService)
	h("POST /v1/projects/{project}/services/{service}", a.enableService)

	h("GET "+AliasnetPath, a.aliasnetGet)
	h("POST "+AliasnetPath, a.aliasnetPost)
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		a.log.Info("gke: no route", "method", r.Method, "path", r.URL.Path)
		writeError(w, http.StatusNotFound, fmt.Sprintf("The requested URL %s %s was not found on this server (aliasnet implements a subset of Kubernetes Engine v1).", r.Method, r.URL.Path))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// req bundles one request's state.
type req struct {
	w        http.ResponseWriter
	r        *http.Request
	a        *API
	project  string
	location string
}

// base is the URL the client used to reach us, ending in "/".
func (q *req) base() string {
	scheme := "http"
	if q.r.TLS != nil {
		scheme = "https"
	}
	if p := q.r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	return scheme + "://" + q.r.Host + "/"
}

func (q *req) reply(v any) { writeJSON(q.w, http.StatusOK, v) }

// writeError renders Google's v1 error envelope
// ({"error":{"code","message","status"}}).
func writeError(w http.ResponseWriter, code int, msg string) {
	var b struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	b.Error.Code, b.Error.Message, b.Error.Status = code, msg, statusName(code)
	writeJSON(w, code, b)
}

func statusName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ALREADY_EXISTS"
	case http.StatusPreconditionFailed:
		return "FAILED_PRECONDITION"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	}
	return "INTERNAL"
}

func httpStatus(c model.Code) int {
	switch c {
	case model.NotFound:
		return http.StatusNotFound
	case model.AlreadyExists:
		return http.StatusConflict
	case model.ConditionNotMet:
		return http.StatusPreconditionFailed
	case model.QuotaExceeded:
		return http.StatusForbidden
	case model.Exhausted:
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// fail renders any error.
func (q *req) fail(err error) {
	var me *model.Error
	if !errors.As(err, &me) {
		if errors.Is(err, control.ErrIdempotentMismatch) {
			writeError(q.w, http.StatusBadRequest, "The request id was already used for a different request.")
			return
		}
		q.a.log.Error("gke: internal error", "path", q.r.URL.Path, "err", err)
		writeError(q.w, http.StatusInternalServerError, "Internal error: "+err.Error())
		return
	}
	writeError(q.w, httpStatus(me.Code), me.Error())
}

func (q *req) badRequest(format string, args ...any) {
	writeError(q.w, http.StatusBadRequest, fmt.Sprintf(format, args...))
}

// decode reads the JSON body into v and returns the raw object too.
func (q *req) decode(v any) (map[string]json.RawMessage, bool) {
	body, err := io.ReadAll(io.LimitReader(q.r.Body, 8<<20))
	if err != nil {
		q.badRequest("Cannot read request body: %v", err)
		return nil, false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		q.badRequest("Invalid JSON payload received. %v", err)
		return nil, false
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &raw); err != nil {
		q.badRequest("Invalid JSON payload received: the body must be a JSON object.")
		return nil, false
	}
	return raw, true
}

// mergeExtra adds stored fields to a rendered object without overriding
// what is rendered.
func mergeExtra(v any, extra json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(v)
	if len(extra) == 0 {
		return b
	}
	var out, ex map[string]json.RawMessage
	if json.Unmarshal(b, &out) != nil || json.Unmarshal(extra, &ex) != nil {
		return b
	}
	for k, v := range ex {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	b, _ = json.Marshal(out)
	return b
}

// extraOf keeps the fields of raw not in known.
func extraOf(raw map[string]json.RawMessage, known ...string) json.RawMessage {
	m := map[string]json.RawMessage{}
	for k, v := range raw {
		m[k] = v
	}
	for _, k := range known {
		delete(m, k)
	}
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

// getService answers Service Usage: every API aliasnet serves is enabled.
func (a *API) getService(q *req) {
	s := q.r.PathValue("service")
	q.reply(map[string]any{
		"name":   "projects/" + q.project + "/services/" + s,
		"parent": "projects/" + q.project,
		"state":  "ENABLED",
		"config": map[string]any{"name": s, "title": s},
	})
}

// enableService answers "services/S:enable" with a finished operation.
func (a *API) enableService(q *req) {
	s, verb, _ := strings.Cut(q.r.PathValue("service"), ":")
	if verb != "enable" {
		writeError(q.w, http.StatusNotFound, "Unknown method "+verb+".")
		return
	}
	q.reply(map[string]any{"name": "operations/noop.DONE_OPERATION", "done": true,
		"response": map[string]any{"@type": "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse",
			"service": map[string]any{"name": "projects/" + q.project + "/services/" + s, "state": "ENABLED"}}})
}
