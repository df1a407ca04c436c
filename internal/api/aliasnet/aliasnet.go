// Package aliasnet serves aliasnet's own API under /aliasnet/v1/: questions
// no cloud dialect has a simple call for, answered by package netpolicy
// from the control plane's current state.
//
//	GET /aliasnet/v1/projects/{p}/zones/{z}/instances/{i}/effectiveRoutes[?networkInterface=nic0]
//	GET /aliasnet/v1/projects/{p}/trace?from=INSTANCE[:nic]&zone=Z[&src=IP]&to=IP|INSTANCE[:nic][&toZone=Z]&protocol=tcp|udp|icmp|N[&port=N]
//	GET /aliasnet/v1/projects/{p}/global/networks/{n}/fabric
//
// Errors use the GCE envelope ({"error":{"code","message","errors":[…]}}).
package aliasnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// API is the handler; mount it at "/aliasnet/v1/".
type API struct {
	svc *control.Service
	log *slog.Logger
	mux *http.ServeMux

	mu        sync.Mutex
	cache     map[string]cached // by project
	compiling sync.Mutex        // one compilation at a time: concurrent askers wait and share it
}

type cached struct {
	rev int64
	e   *netpolicy.Engine
}

// New returns the handler.
func New(svc *control.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{svc: svc, log: log, mux: http.NewServeMux(), cache: map[string]cached{}}
	const p = "/aliasnet/v1/projects/{project}"
	a.mux.HandleFunc("GET "+p+"/zones/{zone}/instances/{instance}/effectiveRoutes", a.effectiveRoutes)
	a.mux.HandleFunc("GET "+p+"/trace", a.trace)
	a.mux.HandleFunc("GET "+p+"/global/networks/{network}/fabric", a.fabric)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The requested URL %s was not found on this server.", r.URL.Path))
		return
	}
	a.mux.ServeHTTP(w, r)
}

// Engine returns the compiled policy of a project at the current state,
// compiling at most once per committed revision.
func (a *API) Engine(project string) *netpolicy.Engine {
	_, rev := a.svc.Changed()
	a.mu.Lock()
	if c, ok := a.cache[project]; ok && c.rev == rev {
		a.mu.Unlock()
		return c.e
	}
	a.mu.Unlock()
	a.compiling.Lock()
	defer a.compiling.Unlock()
	a.mu.Lock()
	if c, ok := a.cache[project]; ok && c.rev == rev {
		a.mu.Unlock()
		return c.e
	}
	a.mu.Unlock()
	var in netpolicy.Input
	a.svc.Read(func(st *model.State) { in = netpolicy.FromState(st, project) })
	e := netpolicy.Compile(in)
	a.mu.Lock()
	a.cache[project] = cached{rev: rev, e: e}
	a.mu.Unlock()
	return e
}

// EffectiveRoutes is the effectiveRoutes response.
type EffectiveRoutes struct {
	Kind      string                     `json:"kind"`
	Instance  string                     `json:"instance"`
	Interface string                     `json:"networkInterface"`
	Routes    []netpolicy.EffectiveRoute `json:"routes"`
}

func (a *API) effectiveRoutes(w http.ResponseWriter, r *http.Request) {
	p, z, i := r.PathValue("project"), r.PathValue("zone"), r.PathValue("instance")
	nic := r.URL.Query().Get("networkInterface")
	if nic == "" {
		nic = "nic0"
	}
	rs, err := a.Engine(p).EffectiveRoutes(p, z, i, nic)
	if err != nil {
		fail(w, err)
		return
	}
	if rs == nil {
		rs = []netpolicy.EffectiveRoute{}
	}
	writeJSON(w, http.StatusOK, EffectiveRoutes{Kind: "aliasnet#effectiveRoutes", Instance: model.InstanceKey(p, z, i), Interface: nic, Routes: rs})
}

// TraceResponse is the trace response: netpolicy.Result with a kind.
type TraceResponse struct {
	Kind string `json:"kind"`
	netpolicy.Result
}

func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("project")
	q := r.URL.Query()
	bad := func(field, value, format string, args ...any) {
		fail(w, &model.Error{Code: model.Invalid, Field: field, Value: value, Reason: fmt.Sprintf(format, args...)})
	}
	from, zone := q.Get("from"), q.Get("zone")
	if from == "" {
		fail(w, &model.Error{Code: model.Required, Field: "from", Reason: "Required parameter 'from' (INSTANCE[:nic]) not specified"})
		return
	}
	e := a.Engine(p)
	inst, nic, _ := strings.Cut(from, ":")
	if zone == "" {
		zones := e.FindInstance(p, inst)
		switch len(zones) {
		case 0:
			fail(w, &model.Error{Code: model.NotFound, Field: "from", Value: from, Reason: fmt.Sprintf("No instance named '%s' in project '%s'.", inst, p)})
			return
		case 1:
			zone = zones[0]
		default:
			bad("zone", "", "Instance '%s' exists in several zones (%s); give zone.", inst, strings.Join(zones, ", "))
			return
		}
	}
	tq := netpolicy.Query{Project: p, Zone: zone, Instance: inst, NIC: nic}
	if s := q.Get("src"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			bad("src", s, "Invalid IP address.")
			return
		}
		tq.Src = a
	}
	to := q.Get("to")
	if to == "" {
		fail(w, &model.Error{Code: model.Required, Field: "to", Reason: "Required parameter 'to' (IP or INSTANCE[:nic]) not specified"})
		return
	}
	if a, err := netip.ParseAddr(to); err == nil {
		tq.Dst = a
	} else {
		ti, tn, _ := strings.Cut(to, ":")
		tz := q.Get("toZone")
		if tz == "" {
			tz = zone
			if _, err := e.ResolveTarget(p, tz, ti, tn); err != nil {
				if zs := e.FindInstance(p, ti); len(zs) == 1 {
					tz = zs[0]
				}
			}
		}
		dst, err := e.ResolveTarget(p, tz, ti, tn)
		if err != nil {
			var me *model.Error
			if errors.As(err, &me) {
				me.Field, me.Value = "to", to
			}
			fail(w, err)
			return
		}
		tq.Dst = dst
	}
	proto := q.Get("protocol")
	if proto == "" {
		fail(w, &model.Error{Code: model.Required, Field: "protocol", Reason: "Required parameter 'protocol' (tcp, udp, icmp, sctp, esp, ah, ipip or a number) not specified"})
		return
	}
	num, all, err := model.ParseIPProtocol(proto)
	if err != nil || all {
		bad("protocol", proto, "A trace needs one protocol: tcp, udp, icmp, sctp, esp, ah, ipip or a number 0-255.")
		return
	}
	tq.Protocol = num
	port := q.Get("port")
	switch {
	case port != "":
		v, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			bad("port", port, "A port is a number 0-65535.")
			return
		}
		if !model.HasPorts(num) {
			bad("port", port, "Protocol %s has no ports.", proto)
			return
		}
		tq.Port = uint16(v)
	case model.HasPorts(num):
		fail(w, &model.Error{Code: model.Required, Field: "port", Reason: fmt.Sprintf("Required parameter 'port' not specified: protocol %s needs a destination port.", proto)})
		return
	}
	res, err := e.Trace(tq)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TraceResponse{Kind: "aliasnet#trace", Result: res})
}

func (a *API) fabric(w http.ResponseWriter, r *http.Request) {
	p, n := r.PathValue("project"), r.PathValue("network")
	e := a.Engine(p)
	d, err := e.Fabric(p, n)
	if err != nil {
		fail(w, &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("The resource '%s' was not found", model.NetworkKey(p, n))})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func fail(w http.ResponseWriter, err error) {
	var me *model.Error
	if !errors.As(err, &me) {
		writeError(w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
		return
	}
	switch me.Code {
	case model.NotFound:
		writeError(w, http.StatusNotFound, "notFound", me.Error())
	case model.Required:
		writeError(w, http.StatusBadRequest, "required", me.Error())
	default:
		writeError(w, http.StatusBadRequest, "invalid", me.Error())
	}
}
