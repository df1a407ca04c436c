// Package clouddns serves a small Cloud DNS v1 dialect under /dns/v1/:
// private managed zones and their record sets, close enough that the
// official Go client (google.golang.org/api/dns/v1, endpoint
// "http://HOST:PORT/") and `gcloud dns` (api_endpoint_overrides/dns
// "http://HOST:PORT/dns/v1/") work unchanged. It parses, names and renders;
// every decision is the model's; rrdata syntax is checked with
// dnsserver.ValidateRRSet, the rules the DNS server itself applies.
//
// Implemented: managedZones create/get/list/patch/update/delete,
// rrsets create/get/list/patch/delete, changes create/get/list. Changes are
// applied at once (status "done"). Zones have no user-visible SOA/NS rrsets
// (the DNS server synthesises them), so `gcloud dns record-sets
// transaction` — which edits the SOA — is not supported; `gcloud dns
// record-sets create/update/delete` are.
package clouddns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	dnsv1 "google.golang.org/api/dns/v1"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/dnsserver"
	"github.com/aliasnet/aliasnet/internal/model"
)

// API is the HTTP handler; mount it at "/dns/v1/".
type API struct {
	svc *control.Service
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the handler.
func New(svc *control.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{svc: svc, log: log, mux: http.NewServeMux()}
	a.routes()
	return a
}

const prefix = "/dns/v1/projects/{project}"

func (a *API) routes() {
	h := func(pattern string, f func(*req)) {
		method, path, _ := strings.Cut(pattern, " ")
		a.mux.HandleFunc(method+" "+prefix+path, func(w http.ResponseWriter, r *http.Request) {
			f(&req{w: w, r: r, a: a, project: r.PathValue("project")})
		})
	}
	h("POST /managedZones", a.createZone)
	h("GET /managedZones", a.listZones)
	h("GET /managedZones/{zone}", a.getZone)
	h("PATCH /managedZones/{zone}", a.patchZone)
	h("PUT /managedZones/{zone}", a.updateZone)
	h("DELETE /managedZones/{zone}", a.deleteZone)
	h("POST /managedZones/{zone}/rrsets", a.createRRSet)
	h("GET /managedZones/{zone}/rrsets", a.listRRSets)
	h("GET /managedZones/{zone}/rrsets/{name}/{type}", a.getRRSet)
	h("PATCH /managedZones/{zone}/rrsets/{name}/{type}", a.patchRRSet)
	h("DELETE /managedZones/{zone}/rrsets/{name}/{type}", a.deleteRRSet)
	h("POST /managedZones/{zone}/changes", a.createChange)
	h("GET /managedZones/{zone}/changes", a.listChanges)
	h("GET /managedZones/{zone}/changes/{change}", a.getChange)
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("The requested URL %s was not found on this server (aliasnet implements a subset of Cloud DNS v1).", r.URL.Path))
		return
	}
	a.mux.ServeHTTP(w, r)
}

type req struct {
	w       http.ResponseWriter
	r       *http.Request
	a       *API
	project string
}

func (q *req) reply(v any) { writeJSON(q.w, http.StatusOK, v) }

// fail renders an error in the Google API envelope with Cloud DNS reasons.
func (q *req) fail(err error) {
	var me *model.Error
	if !errors.As(err, &me) {
		if errors.Is(err, control.ErrIdempotentMismatch) {
			writeError(q.w, http.StatusBadRequest, "invalid", "The request id was already used for a different request.")
			return
		}
		q.a.log.Error("internal error", "path", q.r.URL.Path, "err", err)
		writeError(q.w, http.StatusInternalServerError, "backendError", "Internal error: "+err.Error())
		return
	}
	status, reason := http.StatusBadRequest, "invalid"
	switch me.Code {
	case model.Required:
		reason = "required"
	case model.NotFound:
		status, reason = http.StatusNotFound, "notFound"
	case model.AlreadyExists:
		status, reason = http.StatusConflict, "alreadyExists"
	case model.ConditionNotMet:
		status, reason = http.StatusPreconditionFailed, "conditionNotMet"
	case model.FailedPrecondition:
		reason = "containerNotEmpty"
	}
	msg := me.Reason
	if me.Field != "" && me.Value != "" && !strings.Contains(msg, "entity.") {
		msg = fmt.Sprintf("Invalid value for '%s': '%s'. %s", "entity."+me.Field, me.Value, me.Reason)
	}
	writeError(q.w, status, reason, msg)
}

// decode reads the body into v and returns the raw top-level object.
func (q *req) decode(v any) (map[string]json.RawMessage, bool) {
	body, err := io.ReadAll(io.LimitReader(q.r.Body, 8<<20))
	if err != nil {
		writeError(q.w, http.StatusBadRequest, "parseError", "Cannot read request body: "+err.Error())
		return nil, false
	}
	if strings.TrimSpace(string(body)) == "" {
		body = []byte("{}")
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &raw); err != nil {
		writeError(q.w, http.StatusBadRequest, "parseError", "Invalid JSON payload received: the body must be a JSON object.")
		return nil, false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(q.w, http.StatusBadRequest, "parseError", "Invalid JSON payload received. "+err.Error())
		return nil, false
	}
	return raw, true
}

// do runs a mutation through the control plane (durably committed before
// the answer, as every aliasnet mutation).
func (q *req) do(opType, target string, m control.Mutation) error {
	_, err := q.a.svc.Do(q.r.Context(), control.Op{Project: q.project, Scope: "dns", Type: opType, Target: target}, m)
	return err
}

func (q *req) computeBase() string {
	scheme := "http"
	if q.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + q.r.Host + "/compute/v1/"
}

// ---- zones ----

// networkRef turns a networkUrl ("https://…/compute/v1/projects/P/global/
// networks/N", "projects/P/global/networks/N" or "N") into "P/N".
func (q *req) networkRef(url string) string {
	url = strings.TrimRight(strings.TrimSpace(url), "/")
	parts := strings.Split(url, "/")
	name := parts[len(parts)-1]
	project := q.project
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "projects" {
			project = parts[i+1]
		}
	}
	if name == "" {
		return ""
	}
	return project + "/" + name
}

func (q *req) renderZone(z *model.DNSZone) json.RawMessage {
	out := &dnsv1.ManagedZone{Kind: "dns#managedZone", Id: z.ID, Name: z.Name, DnsName: z.DNSName, Description: z.Description,
		CreationTime: z.Created, Visibility: z.Visibility, NameServers: []string{"ns.aliasnet.internal."}}
	if z.Visibility == model.VisibilityPrivate {
		out.NameServers = []string{"ns-gcp-private.googledomains.com."}
		pv := &dnsv1.ManagedZonePrivateVisibilityConfig{Kind: "dns#managedZonePrivateVisibilityConfig"}
		for _, n := range z.Networks {
			p, name, _ := strings.Cut(n, "/")
			pv.Networks = append(pv.Networks, &dnsv1.ManagedZonePrivateVisibilityConfigNetwork{
				Kind: "dns#managedZonePrivateVisibilityConfigNetwork", NetworkUrl: q.computeBase() + "projects/" + p + "/global/networks/" + name})
		}
		out.PrivateVisibilityConfig = pv
	}
	b, _ := json.Marshal(out)
	if len(z.Extra) == 0 {
		return b
	}
	var m, ex map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || json.Unmarshal(z.Extra, &ex) != nil {
		return b
	}
	for k, v := range ex {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	b, _ = json.Marshal(m)
	return b
}

var zoneKnown = []string{"name", "dnsName", "description", "visibility", "privateVisibilityConfig", "kind", "id",
	"creationTime", "nameServers"}

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

func (q *req) zoneFromWire(in *dnsv1.ManagedZone, raw map[string]json.RawMessage) model.DNSZone {
	z := model.DNSZone{Project: q.project, Name: in.Name, DNSName: in.DnsName, Description: in.Description,
		Visibility: strings.ToLower(in.Visibility), Extra: extraOf(raw, zoneKnown...)}
	if z.DNSName != "" && !strings.HasSuffix(z.DNSName, ".") {
		z.DNSName += "."
	}
	if in.PrivateVisibilityConfig != nil {
		for _, n := range in.PrivateVisibilityConfig.Networks {
			if n != nil {
				z.Networks = append(z.Networks, q.networkRef(n.NetworkUrl))
			}
		}
	}
	return z
}

// zone finds a zone by name or numeric id.
func (q *req) zone(st *model.State, ref string) *model.DNSZone {
	if z := st.DNSZone(q.project, ref); z != nil {
		return z
	}
	if id, err := strconv.ParseUint(ref, 10, 64); err == nil {
		for _, z := range st.DNSZones(q.project) {
			if z.ID == id {
				return z
			}
		}
	}
	return nil
}

func (q *req) zoneNotFound(ref string) {
	writeError(q.w, http.StatusNotFound, "notFound", fmt.Sprintf("The 'parameters.managedZone' resource named '%s' does not exist.", ref))
}

// readZone returns the zone of the path, or answers 404.
func (q *req) readZone() (*model.DNSZone, bool) {
	ref := q.r.PathValue("zone")
	var z *model.DNSZone
	q.a.svc.Read(func(st *model.State) { z = q.zone(st, ref) })
	if z == nil {
		q.zoneNotFound(ref)
		return nil, false
	}
	return z, true
}

func (a *API) createZone(q *req) {
	var in dnsv1.ManagedZone
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	z := q.zoneFromWire(&in, raw)
	var out *model.DNSZone
	err := q.do("createManagedZone", model.DNSZoneKey(q.project, z.Name), func(tx *model.Txn) (uint64, any, error) {
		nz, err := tx.CreateDNSZone(z)
		if err != nil {
			return 0, nil, err
		}
		out = nz
		return nz.ID, nil, nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(q.renderZone(out))
}

func (a *API) getZone(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	q.reply(q.renderZone(z))
}

// page applies maxResults/pageToken to n items.
func (q *req) page(n int) (lo, hi int, next string) {
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

func (a *API) listZones(q *req) {
	want := model.NormalizeDNSName(q.r.URL.Query().Get("dnsName"))
	if want != "" && !strings.HasSuffix(want, ".") {
		want += "."
	}
	var items []json.RawMessage
	a.svc.Read(func(st *model.State) {
		for _, z := range st.DNSZones(q.project) {
			if want == "" || z.DNSName == want {
				items = append(items, q.renderZone(z))
			}
		}
	})
	lo, hi, next := q.page(len(items))
	q.reply(struct {
		Kind          string            `json:"kind"`
		ManagedZones  []json.RawMessage `json:"managedZones"`
		NextPageToken string            `json:"nextPageToken,omitempty"`
	}{"dns#managedZonesListResponse", append([]json.RawMessage{}, items[lo:hi]...), next})
}

func (a *API) patchZone(q *req)  { a.changeZone(q, true) }
func (a *API) updateZone(q *req) { a.changeZone(q, false) }

// changeZone updates description, visibility and networks (patch: only
// the fields sent) and answers with a dns#operation, as Cloud DNS does.
func (a *API) changeZone(q *req, patch bool) {
	var in dnsv1.ManagedZone
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	old, ok := q.readZone()
	if !ok {
		return
	}
	z := *old
	nz := q.zoneFromWire(&in, raw)
	if _, has := raw["description"]; has || !patch {
		z.Description = nz.Description
	}
	if _, has := raw["visibility"]; has || !patch {
		z.Visibility = nz.Visibility
	}
	if _, has := raw["privateVisibilityConfig"]; has || !patch {
		z.Networks = nz.Networks
	}
	if _, has := raw["dnsName"]; has {
		z.DNSName = nz.DNSName
	}
	if nz.Extra != nil {
		z.Extra = nz.Extra
	}
	var out *model.DNSZone
	err := q.do("updateManagedZone", model.DNSZoneKey(q.project, old.Name), func(tx *model.Txn) (uint64, any, error) {
		u, err := tx.UpdateDNSZone(z)
		if err != nil {
			return 0, nil, err
		}
		out = u
		return u.ID, nil, nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	var before, after dnsv1.ManagedZone
	_ = json.Unmarshal(q.renderZone(old), &before)
	_ = json.Unmarshal(q.renderZone(out), &after)
	q.reply(&dnsv1.Operation{Kind: "dns#operation", Id: strconv.FormatUint(out.ID, 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		StartTime: time.Now().UTC().Format(time.RFC3339Nano), Status: "done", Type: "UPDATE", User: "aliasnet",
		ZoneContext: &dnsv1.OperationManagedZoneContext{OldValue: &before, NewValue: &after}})
}

func (a *API) deleteZone(q *req) {
	old, ok := q.readZone()
	if !ok {
		return
	}
	err := q.do("deleteManagedZone", model.DNSZoneKey(q.project, old.Name), func(tx *model.Txn) (uint64, any, error) {
		return old.ID, nil, tx.DeleteDNSZone(q.project, old.Name)
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// ---- record sets and changes ----

func renderRRSet(r model.DNSRecordSet) *dnsv1.ResourceRecordSet {
	return &dnsv1.ResourceRecordSet{Kind: "dns#resourceRecordSet", Name: r.Name, Type: r.Type, Ttl: int64(r.TTL),
		Rrdatas: r.RRDatas, ForceSendFields: []string{"Ttl"}}
}

// rrsetFromWire converts and validates one record set of a zone; field is
// the prefix of error fields ("additions[0]", "deletions[1]", "").
func rrsetFromWire(in *dnsv1.ResourceRecordSet, raw map[string]json.RawMessage, zoneDNSName, field string, validate bool) (model.DNSRecordSet, error) {
	r := model.DNSRecordSet{Name: model.NormalizeDNSName(in.Name), Type: strings.ToUpper(strings.TrimSpace(in.Type)),
		TTL: int(in.Ttl), RRDatas: in.Rrdatas}
	if _, has := raw["ttl"]; !has && in.Ttl == 0 {
		r.TTL = model.DefaultRRSetTTL
	}
	if in.Ttl < 0 || in.Ttl > 1<<31-1 {
		return r, &model.Error{Code: model.Invalid, Field: join(field, "ttl"), Value: strconv.FormatInt(in.Ttl, 10), Reason: "The TTL must be between 0 and 2147483647 seconds."}
	}
	if in.RoutingPolicy != nil {
		return r, &model.Error{Code: model.Invalid, Field: join(field, "routingPolicy"), Value: "set", Reason: "Routing policies are not supported by aliasnet."}
	}
	if !validate {
		return r, nil
	}
	if err := dnsserver.ValidateRRSet(dnsserver.RRSet{Name: r.Name, Type: r.Type, TTL: uint32(r.TTL), RRDatas: r.RRDatas}, zoneDNSName); err != nil {
		var fe *dnsserver.FieldError
		if errors.As(err, &fe) {
			code := model.Invalid
			if fe.Value == "" {
				code = model.Required
			}
			return r, &model.Error{Code: code, Field: join(field, fe.Field), Value: fe.Value,
				Reason: fmt.Sprintf("Invalid value for 'entity.%s': '%s': %s", join(field, fe.Field), fe.Value, fe.Msg)}
		}
		return r, &model.Error{Code: model.Invalid, Field: field, Reason: err.Error()}
	}
	return r, nil
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// apply commits additions/deletions to the zone and returns the change.
func (q *req) apply(z *model.DNSZone, opType string, adds, dels []model.DNSRecordSet) (*model.DNSChange, error) {
	var ch *model.DNSChange
	err := q.do(opType, model.DNSZoneKey(q.project, z.Name), func(tx *model.Txn) (uint64, any, error) {
		nz, c, err := tx.ChangeRRSets(q.project, z.Name, adds, dels)
		if err != nil {
			return 0, nil, err
		}
		ch = c
		return nz.ID, nil, nil
	})
	return ch, err
}

// single renames a change's field paths for the one-rrset endpoints
// (rrsets create/patch/delete), which have no additions[]/deletions[].
func single(err error) error {
	var me *model.Error
	if !errors.As(err, &me) {
		return err
	}
	e := *me
	for _, p := range []string{"additions[0]", "deletions[0]"} {
		if e.Field == p {
			e.Field = ""
		}
		e.Field = strings.TrimPrefix(e.Field, p+".")
		e.Reason = strings.ReplaceAll(e.Reason, "entity.change."+p, "entity.rrset")
	}
	return &e
}

func (a *API) createRRSet(q *req) {
	var in dnsv1.ResourceRecordSet
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	z, ok := q.readZone()
	if !ok {
		return
	}
	r, err := rrsetFromWire(&in, raw, z.DNSName, "", true)
	if err == nil {
		_, err = q.apply(z, "createRRSet", []model.DNSRecordSet{r}, nil)
		err = single(err)
	}
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(renderRRSet(r))
}

func (a *API) listRRSets(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	name := model.NormalizeDNSName(q.r.URL.Query().Get("name"))
	typ := strings.ToUpper(q.r.URL.Query().Get("type"))
	var items []*dnsv1.ResourceRecordSet
	for _, r := range z.RRSets {
		if (name == "" || r.Name == name) && (typ == "" || r.Type == typ) {
			items = append(items, renderRRSet(r))
		}
	}
	lo, hi, next := q.page(len(items))
	q.reply(&dnsv1.ResourceRecordSetsListResponse{Kind: "dns#resourceRecordSetsListResponse",
		Rrsets: append([]*dnsv1.ResourceRecordSet{}, items[lo:hi]...), NextPageToken: next, ForceSendFields: []string{"Rrsets"}})
}

func (q *req) pathRRSet(z *model.DNSZone) (model.DNSRecordSet, bool) {
	name, typ := q.r.PathValue("name"), q.r.PathValue("type")
	r, ok := z.RRSet(name, typ)
	if !ok {
		writeError(q.w, http.StatusNotFound, "notFound", fmt.Sprintf("The 'parameters.name' resource named '%s (%s)' does not exist.", name, strings.ToUpper(typ)))
	}
	return r, ok
}

func (a *API) getRRSet(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	if r, ok := q.pathRRSet(z); ok {
		q.reply(renderRRSet(r))
	}
}

// patchRRSet replaces the rrset at name/type: fields not sent are kept.
func (a *API) patchRRSet(q *req) {
	var in dnsv1.ResourceRecordSet
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	z, ok := q.readZone()
	if !ok {
		return
	}
	old, ok := q.pathRRSet(z)
	if !ok {
		return
	}
	if in.Name == "" {
		in.Name = old.Name
	}
	if in.Type == "" {
		in.Type = old.Type
	}
	if _, has := raw["ttl"]; !has && in.Ttl == 0 {
		in.Ttl = int64(old.TTL)
		raw["ttl"] = nil
	}
	if len(in.Rrdatas) == 0 {
		in.Rrdatas = old.RRDatas
	}
	r, err := rrsetFromWire(&in, raw, z.DNSName, "", true)
	if err == nil {
		_, err = q.apply(z, "patchRRSet", []model.DNSRecordSet{r}, []model.DNSRecordSet{old})
		err = single(err)
	}
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(renderRRSet(r))
}

func (a *API) deleteRRSet(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	old, ok := q.pathRRSet(z)
	if !ok {
		return
	}
	if _, err := q.apply(z, "deleteRRSet", nil, []model.DNSRecordSet{old}); err != nil {
		q.fail(single(err))
		return
	}
	q.reply(struct{}{})
}

func (q *req) renderChange(c *model.DNSChange) *dnsv1.Change {
	out := &dnsv1.Change{Kind: "dns#change", Id: strconv.Itoa(c.ID), StartTime: c.Started, Status: "done", IsServing: true}
	for _, r := range c.Additions {
		out.Additions = append(out.Additions, renderRRSet(r))
	}
	for _, r := range c.Deletions {
		out.Deletions = append(out.Deletions, renderRRSet(r))
	}
	return out
}

func (a *API) createChange(q *req) {
	var in struct {
		Additions []json.RawMessage `json:"additions"`
		Deletions []json.RawMessage `json:"deletions"`
	}
	if _, ok := q.decode(&in); !ok {
		return
	}
	z, ok := q.readZone()
	if !ok {
		return
	}
	conv := func(list []json.RawMessage, kind string, validate bool) ([]model.DNSRecordSet, error) {
		var out []model.DNSRecordSet
		for i, b := range list {
			var w dnsv1.ResourceRecordSet
			raw := map[string]json.RawMessage{}
			if json.Unmarshal(b, &w) != nil || json.Unmarshal(b, &raw) != nil {
				return nil, &model.Error{Code: model.Invalid, Field: fmt.Sprintf("%s[%d]", kind, i), Reason: "Invalid record set."}
			}
			r, err := rrsetFromWire(&w, raw, z.DNSName, fmt.Sprintf("%s[%d]", kind, i), validate)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	}
	adds, err := conv(in.Additions, "additions", true)
	var dels []model.DNSRecordSet
	if err == nil {
		dels, err = conv(in.Deletions, "deletions", false)
	}
	var ch *model.DNSChange
	if err == nil {
		ch, err = q.apply(z, "createChange", adds, dels)
	}
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(q.renderChange(ch))
}

func (a *API) listChanges(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	out := &dnsv1.ChangesListResponse{Kind: "dns#changesListResponse", ForceSendFields: []string{"Changes"}}
	desc := q.r.URL.Query().Get("sortOrder") == "descending"
	for i := range z.Changes {
		c := &z.Changes[i]
		if desc {
			c = &z.Changes[len(z.Changes)-1-i]
		}
		out.Changes = append(out.Changes, q.renderChange(c))
	}
	q.reply(out)
}

func (a *API) getChange(q *req) {
	z, ok := q.readZone()
	if !ok {
		return
	}
	id := q.r.PathValue("change")
	for i := range z.Changes {
		if strconv.Itoa(z.Changes[i].ID) == id {
			q.reply(q.renderChange(&z.Changes[i]))
			return
		}
	}
	writeError(q.w, http.StatusNotFound, "notFound", fmt.Sprintf("The 'parameters.changeId' resource named '%s' does not exist.", id))
}
