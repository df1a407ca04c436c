// Package gce serves the GCE Compute v1 dialect of the address plane under
// /compute/v1/, close enough to the real API that the official Go client
// (google.golang.org/api/compute/v1) and gcloud work against it unchanged.
// It parses, names and renders; every decision is the model's.
package gce

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// API is the HTTP handler of the Compute v1 dialect.
type API struct {
	svc *control.Service
	log *slog.Logger
	mux *http.ServeMux
	// routing reports live BGP sessions (routers.go); nil when BGP is off.
	routing RouterStatusSource
}

// New returns the handler; mount it at "/compute/v1/".
func New(svc *control.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{svc: svc, log: log, mux: http.NewServeMux()}
	a.routes()
	return a
}

const prefix = "/compute/v1/projects/{project}"

func (a *API) routes() {
	h := func(pattern string, f func(*req)) {
		method, path, _ := strings.Cut(pattern, " ")
		a.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
			f(&req{w: w, r: r, a: a, project: r.PathValue("project")})
		})
	}
	h("GET ", a.getProject)
	h("GET /regions", a.listRegions)
	h("GET /regions/{region}", a.getRegion)
	h("GET /zones", a.listZones)
	h("GET /zones/{zone}", a.getZone)
	h("GET /zones/{zone}/machineTypes/{mt}", a.getMachineType)

	h("POST /global/networks", a.insertNetwork)
	h("GET /global/networks", a.listNetworks)
	h("GET /global/networks/{network}", a.getNetwork)
	h("DELETE /global/networks/{network}", a.deleteNetwork)
	h("POST /global/networks/{network}/addPeering", a.addPeering)
	h("POST /global/networks/{network}/removePeering", a.removePeering)

	h("POST /regions/{region}/subnetworks", a.insertSubnet)
	h("GET /regions/{region}/subnetworks", a.listSubnets)
	h("GET /aggregated/subnetworks", a.aggregatedSubnets)
	h("GET /regions/{region}/subnetworks/{subnet}", a.getSubnet)
	h("PATCH /regions/{region}/subnetworks/{subnet}", a.patchSubnet)
	h("DELETE /regions/{region}/subnetworks/{subnet}", a.deleteSubnet)
	h("POST /regions/{region}/subnetworks/{subnet}/expandIpCidrRange", a.expandSubnet)

	h("POST /zones/{zone}/instances", a.insertInstance)
	h("GET /zones/{zone}/instances", a.listInstances)
	h("GET /aggregated/instances", a.aggregatedInstances)
	h("GET /zones/{zone}/instances/{instance}", a.getInstance)
	h("DELETE /zones/{zone}/instances/{instance}", a.deleteInstance)
	h("PATCH /zones/{zone}/instances/{instance}/updateNetworkInterface", a.updateNIC)
	h("POST /zones/{zone}/instances/{instance}/addAccessConfig", a.addAccessConfig)
	h("POST /zones/{zone}/instances/{instance}/deleteAccessConfig", a.deleteAccessConfig)
	h("POST /zones/{zone}/instances/{instance}/setTags", a.setTags)
	h("POST /zones/{zone}/instances/{instance}/stop", a.stopInstance)
	h("POST /zones/{zone}/instances/{instance}/start", a.startInstance)

	h("POST /global/instanceTemplates", a.insertTemplate)
	h("GET /global/instanceTemplates", a.listTemplates)
	h("GET /global/instanceTemplates/{template}", a.getTemplate)
	h("DELETE /global/instanceTemplates/{template}", a.deleteTemplate)

	// Network policy (network_policy.go).
	h("POST /global/routes", a.insertRoute)
	h("GET /global/routes", a.listRoutes)
	h("GET /global/routes/{route}", a.getRoute)
	h("DELETE /global/routes/{route}", a.deleteRoute)
	h("POST /global/firewalls", a.insertFirewall)
	h("GET /global/firewalls", a.listFirewalls)
	h("GET /global/firewalls/{firewall}", a.getFirewall)
	h("PATCH /global/firewalls/{firewall}", a.patchFirewall)
	h("PUT /global/firewalls/{firewall}", a.updateFirewall)
	h("DELETE /global/firewalls/{firewall}", a.deleteFirewall)

	a.routerRoutes(h)

	for _, scope := range []string{"/global", "/regions/{region}", "/zones/{zone}"} {
		h("GET "+scope+"/operations", a.listOperations)
		h("GET "+scope+"/operations/{operation}", a.getOperation)
		h("POST "+scope+"/operations/{operation}/wait", a.getOperation)
		h("DELETE "+scope+"/operations/{operation}", a.deleteOperation)
	}
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The pattern router answers 405/404 with text; GCE clients want the
	// JSON error envelope.
	if _, pattern := a.mux.Handler(r); pattern == "" {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The requested URL %s was not found on this server (aliasnet implements a subset of Compute v1).", r.URL.Path))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// req bundles one request's state.
type req struct {
	w       http.ResponseWriter
	r       *http.Request
	a       *API
	project string
}

// base is the URL prefix selfLinks use: the address the client used to
// reach us, so clients that follow selfLinks (gcloud does) come back here.
func (q *req) base() string {
	scheme := "http"
	if q.r.TLS != nil {
		scheme = "https"
	}
	if p := q.r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	return scheme + "://" + q.r.Host + "/compute/v1/"
}

func (q *req) link(path string) string { return q.base() + "projects/" + q.project + "/" + path }

func (q *req) reply(v any) {
	writeJSON(q.w, http.StatusOK, v)
}

// fail renders any error in the GCE envelope.
func (q *req) fail(err error) {
	var me *model.Error
	if !errors.As(err, &me) {
		if errors.Is(err, control.ErrIdempotentMismatch) {
			writeError(q.w, http.StatusBadRequest, "invalid", "The requestId was already used for a different request.")
			return
		}
		q.a.log.Error("internal error", "path", q.r.URL.Path, "err", err)
		writeError(q.w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
		return
	}
	status, reason := statusOf(me.Code)
	writeError(q.w, status, reason, me.Error())
}

func statusOf(c model.Code) (int, string) {
	switch c {
	case model.Required:
		return http.StatusBadRequest, "required"
	case model.NotFound:
		return http.StatusNotFound, "notFound"
	case model.AlreadyExists:
		return http.StatusConflict, "alreadyExists"
	case model.ConditionNotMet:
		return http.StatusPreconditionFailed, "conditionNotMet"
	case model.FailedPrecondition:
		return http.StatusBadRequest, "resourceInUseByAnotherResource"
	case model.QuotaExceeded:
		return http.StatusForbidden, "quotaExceeded"
	case model.InUse:
		return http.StatusBadRequest, "invalid"
	}
	return http.StatusBadRequest, "invalid"
}

func (q *req) badRequest(reason, format string, args ...any) {
	writeError(q.w, http.StatusBadRequest, reason, fmt.Sprintf(format, args...))
}

// decode reads the JSON body into v and also returns the raw top-level
// object, so handlers can tell "absent" from "empty" and keep fields they
// do not interpret.
func (q *req) decode(v any) (map[string]json.RawMessage, bool) {
	body, err := io.ReadAll(io.LimitReader(q.r.Body, 8<<20))
	if err != nil {
		q.badRequest("parseError", "Cannot read request body: %v", err)
		return nil, false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		q.badRequest("parseError", "Invalid JSON payload received. %v", err)
		return nil, false
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &raw); err != nil {
		q.badRequest("parseError", "Invalid JSON payload received: the body must be a JSON object.")
		return nil, false
	}
	return raw, true
}

// listPage applies maxResults/pageToken paging to n items.
func (q *req) listPage(n int) (lo, hi int, next string) {
	lo = 0
	if t := q.r.URL.Query().Get("pageToken"); t != "" {
		if v, err := strconv.Atoi(t); err == nil && v >= 0 && v <= n {
			lo = v
		}
	}
	hi = n
	if m := q.r.URL.Query().Get("maxResults"); m != "" {
		if v, err := strconv.Atoi(m); err == nil && v > 0 && lo+v < n {
			hi = lo + v
			next = strconv.Itoa(hi)
		}
	}
	return lo, hi, next
}

// mergeExtra adds the stored extra fields to a rendered object without
// overriding what the model renders.
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

var _ = compute.Operation{}
