// Package ecs serves the Alibaba Cloud ECS (2014-05-26) and VPC
// (2016-04-28) RPC dialects of the address plane: POST (or GET) / with
// Action, Version and signature v1 parameters, answering JSON shaped like
// the official Go SDK's response structs (which it uses as wire types).
// It parses, names and renders; every decision is the model's.
package ecs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// API versions.
const (
	VersionECS = "2014-05-26"
	VersionVPC = "2016-04-28"
)

// Options configure the dialect.
type Options struct {
	Keys   []AccessKey
	Logger *slog.Logger
	Now    func() time.Time
}

// API is the HTTP handler of the dialect; mount it at "/".
type API struct {
	svc     *control.Service
	log     *slog.Logger
	keys    map[string]AccessKey
	now     func() time.Time
	nonces  *nonceCache
	actions map[string]action
}

type action struct {
	versions []string
	do       func(*req)
}

// New returns the handler.
func New(svc *control.Service, o Options) *API {
	a := &API{svc: svc, log: o.Logger, keys: map[string]AccessKey{}, now: o.Now, nonces: newNonceCache()}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	for _, k := range o.Keys {
		a.keys[k.ID] = k
	}
	ecs, vpc, both := []string{VersionECS}, []string{VersionVPC}, []string{VersionECS, VersionVPC}
	a.actions = map[string]action{
		// VPC and vSwitches (the ECS API has the same actions).
		"CreateVpc":               {both, a.createVpc},
		"DescribeVpcs":            {both, a.describeVpcs},
		"DeleteVpc":               {both, a.deleteVpc},
		"AssociateVpcCidrBlock":   {vpc, a.associateVpcCidrBlock},
		"UnassociateVpcCidrBlock": {vpc, a.unassociateVpcCidrBlock},
		"CreateVSwitch":           {both, a.createVSwitch},
		"DescribeVSwitches":       {both, a.describeVSwitches},
		"DeleteVSwitch":           {both, a.deleteVSwitch},
		// Instances.
		"RunInstances":      {ecs, a.runInstances},
		"CreateInstance":    {ecs, a.createInstance},
		"DescribeInstances": {ecs, a.describeInstances},
		"StartInstance":     {ecs, a.startInstance},
		"StopInstance":      {ecs, a.stopInstance},
		"DeleteInstance":    {ecs, a.deleteInstance},
		// ENIs and their addresses.
		"CreateNetworkInterface":     {ecs, a.createNetworkInterface},
		"DescribeNetworkInterfaces":  {ecs, a.describeNetworkInterfaces},
		"AttachNetworkInterface":     {ecs, a.attachNetworkInterface},
		"DetachNetworkInterface":     {ecs, a.detachNetworkInterface},
		"DeleteNetworkInterface":     {ecs, a.deleteNetworkInterface},
		"AssignPrivateIpAddresses":   {ecs, a.assignPrivateIpAddresses},
		"UnassignPrivateIpAddresses": {ecs, a.unassignPrivateIpAddresses},
		"AssignIpv6Addresses":        {ecs, a.assignIpv6Addresses},
		"UnassignIpv6Addresses":      {ecs, a.unassignIpv6Addresses},
		// EIPs (the ECS API has them too).
		"AllocateEipAddress":    {both, a.allocateEipAddress},
		"DescribeEipAddresses":  {both, a.describeEipAddresses},
		"AssociateEipAddress":   {both, a.associateEipAddress},
		"UnassociateEipAddress": {both, a.unassociateEipAddress},
		"ReleaseEipAddress":     {both, a.releaseEipAddress},
	}
	return a
}

// req is one request.
type req struct {
	w       http.ResponseWriter
	r       *http.Request
	a       *API
	p       Params
	id      string // RequestId
	action  string
	project string
	region  string
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &req{w: w, r: r, a: a, id: newRequestID()}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		q.fail(&Error{Status: http.StatusMethodNotAllowed, Code: "UnsupportedHTTPMethod", Message: "Use POST or GET."})
		return
	}
	p, perr := ReadParams(r)
	if perr != nil {
		q.fail(perr)
		return
	}
	q.p = p
	q.action = p["Action"]
	if q.action == "" {
		q.fail(errMissing("Action"))
		return
	}
	if p["Version"] == "" {
		q.fail(errMissing("Version"))
		return
	}
	key, aerr := a.authenticate(r.Method, p)
	if aerr != nil {
		q.fail(aerr)
		return
	}
	q.project = key.Project
	act, ok := a.actions[q.action]
	if !ok {
		q.fail(&Error{Status: http.StatusNotFound, Code: "InvalidAction.NotFound",
			Message: fmt.Sprintf("Specified api is not found, please check your url and method: aliasnet does not implement %q.", q.action)})
		return
	}
	if !slices.Contains(act.versions, p["Version"]) {
		q.fail(&Error{Status: http.StatusBadRequest, Code: "InvalidVersion",
			Message: fmt.Sprintf("Specified parameter Version %q is not valid for %s (use %s).", p["Version"], q.action, strings.Join(act.versions, " or "))})
		return
	}
	q.region = p["RegionId"]
	if q.region == "" {
		q.fail(errMissing("RegionId"))
		return
	}
	act.do(q)
}

// fail answers with Alibaba's error envelope.
func (q *req) fail(err error) {
	e := toError(err)
	if e.Status >= 500 {
		q.a.log.Error("internal error", "action", q.action, "err", err)
	}
	writeJSON(q.w, e.Status, map[string]string{
		"RequestId": q.id,
		"HostId":    q.r.Host,
		"Code":      e.Code,
		"Message":   e.Message,
		"Recommend": "aliasnet: see docs/alibaba.md (error codes); action " + q.action,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"Code":"InternalError","Message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// reply answers 200 with v (a response struct) and the RequestId.
func (q *req) reply(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		q.fail(err)
		return
	}
	q.replyRaw(b)
}

// replyRaw answers with a JSON object, setting its RequestId.
func (q *req) replyRaw(raw json.RawMessage) {
	m := map[string]json.RawMessage{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			q.fail(fmt.Errorf("stored result: %w", err))
			return
		}
	}
	m["RequestId"], _ = json.Marshal(q.id)
	writeJSON(q.w, http.StatusOK, m)
}

// --- parameters ---

func (q *req) str(name string) string { return q.p[name] }

func (q *req) required(name string) (string, bool) {
	v := q.p[name]
	if v == "" {
		q.fail(errMissing(name))
		return "", false
	}
	return v, true
}

// list returns Name.1, Name.2, … in index order.
func (q *req) list(name string) ([]string, bool) {
	type iv struct {
		i int
		v string
	}
	var got []iv
	prefix := name + "."
	for k, v := range q.p {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		i, err := strconv.Atoi(rest)
		if err != nil || i < 1 || strconv.Itoa(i) != rest {
			continue
		}
		got = append(got, iv{i, v})
	}
	slices.SortFunc(got, func(a, b iv) int { return a.i - b.i })
	out := make([]string, len(got))
	for i, g := range got {
		if g.v == "" {
			q.fail(errInvalidParameter(fmt.Sprintf("%s.%d", name, g.i), "empty value"))
			return nil, false
		}
		out[i] = g.v
	}
	return out, true
}

// integer parses an optional integer parameter within [lo, hi].
func (q *req) integer(name string, def, lo, hi int) (int, bool) {
	v := q.p[name]
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		q.fail(errInvalidParameter(name, fmt.Sprintf("%q is not an integer between %d and %d.", v, lo, hi)))
		return 0, false
	}
	return n, true
}

func (q *req) boolean(name string) (bool, bool) {
	switch strings.ToLower(q.p[name]) {
	case "", "false":
		return false, true
	case "true":
		return true, true
	}
	q.fail(errInvalidParameter(name, fmt.Sprintf("%q is not true or false.", q.p[name])))
	return false, false
}

func parseAddr(name, v string) (netip.Addr, *Error) {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, &Error{Status: http.StatusBadRequest, Code: "InvalidIpAddress.Malformed",
			Message: fmt.Sprintf("The parameter %s is not a valid IP address: %q.", name, v)}
	}
	return a, nil
}

func (q *req) addr(name string) (netip.Addr, bool) {
	v := q.p[name]
	if v == "" {
		return netip.Addr{}, true
	}
	a, err := parseAddr(name, v)
	if err != nil {
		q.fail(err)
		return a, false
	}
	return a, true
}

func (q *req) addrs(name string) ([]netip.Addr, bool) {
	vs, ok := q.list(name)
	if !ok {
		return nil, false
	}
	var out []netip.Addr
	for i, v := range vs {
		a, err := parseAddr(fmt.Sprintf("%s.%d", name, i+1), v)
		if err != nil {
			q.fail(err)
			return nil, false
		}
		out = append(out, a)
	}
	return out, true
}

func parseCIDR(name, v string) (netip.Prefix, *Error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(v))
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, &Error{Status: http.StatusBadRequest, Code: "InvalidCidrBlock.Malformed",
			Message: fmt.Sprintf("The parameter %s is not a valid CIDR block: %q.", name, v)}
	}
	if p.Masked() != p {
		return netip.Prefix{}, &Error{Status: http.StatusBadRequest, Code: "InvalidCidrBlock.Malformed",
			Message: fmt.Sprintf("The parameter %s, %s, is not a network address; did you mean %s?", name, v, p.Masked())}
	}
	return p, nil
}

func (q *req) cidr(name string) (netip.Prefix, bool) {
	v := q.p[name]
	if v == "" {
		return netip.Prefix{}, true
	}
	p, err := parseCIDR(name, v)
	if err != nil {
		q.fail(err)
		return p, false
	}
	return p, true
}

func (q *req) cidrs(name string) ([]netip.Prefix, bool) {
	vs, ok := q.list(name)
	if !ok {
		return nil, false
	}
	var out []netip.Prefix
	for i, v := range vs {
		p, err := parseCIDR(fmt.Sprintf("%s.%d", name, i+1), v)
		if err != nil {
			q.fail(err)
			return nil, false
		}
		out = append(out, p)
	}
	return out, true
}

// zone checks that a zone belongs to the request's region.
func (q *req) zone(name string, required bool) (string, bool) {
	z := q.p[name]
	if z == "" {
		if required {
			q.fail(errMissing(name))
			return "", false
		}
		return "", true
	}
	if r, ok := model.ZoneRegion(z); !ok || r != q.region {
		q.fail(&Error{Status: http.StatusNotFound, Code: "InvalidZoneId.NotFound",
			Message: fmt.Sprintf("The specified zone %q is not a zone of region %s.", z, q.region)})
		return "", false
	}
	return z, true
}

// --- running mutations and reads ---

// requestHash fingerprints the parameters that define a request, for
// ClientToken reuse checks.
func (q *req) requestHash() string {
	keys := make([]string, 0, len(q.p))
	for k := range q.p {
		switch k {
		case "Signature", "SignatureNonce", "Timestamp", "SignatureMethod", "SignatureVersion", "SignatureType",
			"AccessKeyId", "Format", "ClientToken", "SecurityToken":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, q.p[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// mutate runs m in a control transaction and answers with its result
// (stored with the operation, so a ClientToken retry gets it again).
// Model errors are turned into Alibaba errors inside the transaction, so
// that a refused request leaves no operation behind.
func (q *req) mutate(target string, m func(tx *model.Txn) (any, error)) {
	if tok := q.p["ClientToken"]; len(tok) > 64 || strings.IndexFunc(tok, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		q.fail(errInvalidParameter("ClientToken", "at most 64 printable ASCII characters."))
		return
	}
	op := control.Op{Project: q.project, Scope: "regions/" + q.region, Type: q.action, Target: target,
		RequestID: q.p["ClientToken"]}
	if op.RequestID != "" { // only a reused ClientToken is checked against it
		op.RequestHash = q.requestHash()
	}
	o, err := q.a.svc.Do(q.r.Context(), op, func(tx *model.Txn) (uint64, any, error) {
		res, err := m(tx)
		if err != nil {
			return 0, nil, toError(err)
		}
		if res == nil {
			res = struct{}{}
		}
		return 0, res, nil
	})
	if err != nil {
		q.fail(err)
		return
	}
	if o.Error != nil {
		q.fail(&Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: o.Error.Message})
		return
	}
	q.replyRaw(o.Result)
}

// errHandled: the response was already written.
var errHandled = errors.New("response already written")

// read runs f under the read lock and answers with its result.
func (q *req) read(f func(st *model.State) (any, error)) {
	var out any
	var err error
	q.a.svc.Read(func(st *model.State) { out, err = f(st) })
	if errors.Is(err, errHandled) {
		return
	}
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(out)
}

// --- naming and rendering helpers ---

// newID makes an Alibaba-style ID ("eni-…") from the transaction's random
// source; it is a valid model name.
func newID(tx *model.Txn, prefix string) string {
	return prefix + "-" + strconv.FormatUint(tx.NewID(), 36)
}

// aliTime renders a model timestamp in the format Alibaba APIs use.
func aliTime(s string, layout string) string {
	for _, in := range []string{"2006-01-02T15:04:05.000-07:00", time.RFC3339Nano, time.RFC3339} {
		if t, err := time.Parse(in, s); err == nil {
			return t.UTC().Format(layout)
		}
	}
	return s
}

const (
	vpcTime = "2006-01-02T15:04:05Z"
	ecsTime = "2006-01-02T15:04Z"
)

// page applies PageNumber/PageSize to n items.
func (q *req) page(n, defSize, maxSize int) (lo, hi, number, size int, ok bool) {
	number, ok = q.integer("PageNumber", 1, 1, 1<<30)
	if !ok {
		return
	}
	size, ok = q.integer("PageSize", defSize, 1, maxSize)
	if !ok {
		return
	}
	lo = min((number-1)*size, n)
	hi = min(lo+size, n)
	return lo, hi, number, size, true
}

// tokenPage applies NextToken/MaxResults to items sorted by id: the token
// is the last id returned.
func tokenPage(ids []string, token string, max int) (lo, hi int, next string) {
	lo = 0
	if token != "" {
		lo, _ = slices.BinarySearch(ids, token)
		if lo < len(ids) && ids[lo] == token {
			lo++
		}
	}
	hi = min(lo+max, len(ids))
	if hi < len(ids) {
		next = ids[hi-1]
	}
	return lo, hi, next
}

func nz[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// splitIDs splits a comma-separated or JSON-array list of IDs.
func splitIDs(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if strings.HasPrefix(v, "[") {
		var out []string
		if json.Unmarshal([]byte(v), &out) == nil {
			return out
		}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), `"`)); s != "" {
			out = append(out, s)
		}
	}
	return out
}
