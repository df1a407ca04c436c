// Package metadata is aliasnet's instance metadata server: the part of
// GCE's metadata server (/computeMetadata/v1/, header Metadata-Flavor:
// Google) and of Alibaba ECS's (/latest/meta-data/) that describes an
// instance's network interfaces, so that guest agents — aliasnet's own
// (`aliasnet agent`) or Google's — can configure alias IP ranges and
// secondary private IPs inside the VM.
//
// The requester is identified by the source address of the request: it is
// the instance one of whose interfaces has that primary IP, in any project.
// A deployment therefore puts the listener where instances' packets reach
// it with their own source address (a host or fabric router address such
// as 169.254.169.254 routed to the listener without NAT), or behind a proxy
// it trusts (Options.TrustedProxies) that passes the instance address in
// X-Forwarded-For.
//
// Every response carries an ETag: a hash of the body for GCE paths (as
// GCE does), a hash of the instance's whole Alibaba tree for Alibaba paths.
// ?wait_for_change=true&last_etag=E&timeout_sec=N holds the request until
// the ETag differs from E (or the timeout passes, answering with the same
// ETag); it works on both trees (on Alibaba's it is an aliasnet extension).
package metadata

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Source is the control plane as the metadata server reads it;
// *control.Service implements it.
type Source interface {
	// Read runs f with the current state under a read lock.
	Read(f func(*model.State))
	// Changed returns a channel closed at the next commit.
	Changed() (<-chan struct{}, int64)
}

// Options configure a Handler.
type Options struct {
	// TrustedProxies are the peers whose X-Forwarded-For (and
	// X-Aliasnet-Network) headers are believed. Requests from anyone else
	// are identified by their own source address only.
	TrustedProxies []netip.Prefix
	// MaxWait caps timeout_sec of long-polls (default and maximum 3600 s).
	MaxWait time.Duration
	Logger  *slog.Logger
}

// Handler serves both metadata trees.
type Handler struct {
	src Source
	opt Options
	log *slog.Logger

	mu  sync.Mutex
	idx *index
}

// New returns a Handler reading from src.
func New(src Source, o Options) *Handler {
	if o.MaxWait <= 0 || o.MaxWait > time.Hour {
		o.MaxWait = time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{src: src, opt: o, log: o.Logger}
}

// ref names an attached interface's instance.
type ref struct {
	project, network, zone, name string
}

// index maps interface primary IPs to instances across every project. It
// is rebuilt lazily after a commit (the channel it was built under is
// closed).
type index struct {
	changed <-chan struct{}
	byIP    map[netip.Addr][]ref
}

func (h *Handler) index() *index {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.idx != nil {
		select {
		case <-h.idx.changed:
		default:
			return h.idx
		}
	}
	// Take the channel before reading, so a commit racing with the build
	// makes the next request rebuild again.
	ch, _ := h.src.Changed()
	idx := &index{changed: ch, byIP: map[netip.Addr][]ref{}}
	h.src.Read(func(st *model.State) {
		for _, p := range st.Projects() {
			for _, ifc := range st.Interfaces(p) {
				if ifc.Instance == "" || !ifc.IP.IsValid() {
					continue
				}
				zone, name, _ := strings.Cut(ifc.Instance, "/")
				idx.byIP[ifc.IP] = append(idx.byIP[ifc.IP], ref{project: p, network: ifc.Network, zone: zone, name: name})
			}
		}
	})
	h.idx = idx
	return idx
}

// requester is who is asking.
type requester struct {
	addr    netip.Addr
	network string // "PROJECT" or "PROJECT/NETWORK" from a trusted proxy, or ""
	trusted bool   // the peer is a trusted proxy
}

func (h *Handler) trusted(a netip.Addr) bool {
	for _, p := range h.opt.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientOf works out the requester's address: the peer's, or for a trusted
// proxy the last X-Forwarded-For entry that is not itself a trusted proxy.
func (h *Handler) clientOf(r *http.Request) (requester, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return requester{}, fmt.Errorf("peer address %q: %w", r.RemoteAddr, err)
	}
	rq := requester{addr: ap.Addr().Unmap().WithZone("")}
	if !h.trusted(rq.addr) {
		return rq, nil
	}
	rq.trusted = true
	rq.network = strings.TrimSpace(r.Header.Get("X-Aliasnet-Network"))
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		for _, e := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(e))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(hops[i])
		if err != nil {
			return requester{}, fmt.Errorf("X-Forwarded-For entry %q: %w", hops[i], err)
		}
		rq.addr = a
		if !h.trusted(a) {
			break
		}
	}
	return rq, nil
}

// parseHop accepts "1.2.3.4", "1.2.3.4:5", "::1" and "[::1]:5".
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap().WithZone(""), nil
}

// lookupError explains a 404 to the requester (unknown or ambiguous
// source address).
type lookupError struct{ msg string }

func (e *lookupError) Error() string { return e.msg }

func (h *Handler) find(rq requester) (ref, error) {
	refs := h.index().byIP[rq.addr]
	if rq.network != "" {
		var keep []ref
		for _, r := range refs {
			if rq.network == r.project || rq.network == r.project+"/"+r.network {
				keep = append(keep, r)
			}
		}
		refs = keep
	}
	switch len(refs) {
	case 0:
		return ref{}, &lookupError{fmt.Sprintf("no instance has primary address %s", rq.addr)}
	case 1:
		return refs[0], nil
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.project+"/"+r.network)
	}
	return ref{}, &lookupError{fmt.Sprintf("address %s is a primary address in several networks (%s); the proxy must name one in X-Aliasnet-Network", rq.addr, strings.Join(names, ", "))}
}

// query holds the parsed query parameters.
type query struct {
	recursive bool
	alt       string // "json" or "text"
	wait      bool
	lastETag  string
	timeout   time.Duration
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

func (h *Handler) parseQuery(r *http.Request) (query, error) {
	v := r.URL.Query()
	var q query
	var err error
	if q.recursive, err = parseBool(v.Get("recursive")); err != nil {
		return q, fmt.Errorf("recursive: %w", err)
	}
	if q.wait, err = parseBool(v.Get("wait_for_change")); err != nil {
		return q, fmt.Errorf("wait_for_change: %w", err)
	}
	switch a := v.Get("alt"); a {
	case "", "text", "json":
		q.alt = a
	default:
		return q, fmt.Errorf("alt: must be json or text, not %q", a)
	}
	q.lastETag = v.Get("last_etag")
	if q.lastETag == "NONE" {
		q.lastETag = ""
	}
	q.timeout = h.opt.MaxWait
	if t := v.Get("timeout_sec"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n <= 0 {
			return q, fmt.Errorf("timeout_sec: must be a positive integer, not %q", t)
		}
		if d := time.Duration(n) * time.Second; d < q.timeout {
			q.timeout = d
		}
	}
	return q, nil
}

// reply is a rendered response.
type reply struct {
	status   int
	body     []byte
	ctype    string
	etag     string
	location string // redirects
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func textReply(status int, msg string) reply {
	return reply{status: status, body: []byte(msg + "\n"), ctype: "text/plain; charset=utf-8"}
}

// ServeHTTP answers metadata requests.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rp, err := parsePath(r.URL.Path)
	if err == nil && rp.dialect == gceDialect {
		w.Header().Set("Metadata-Flavor", "Google")
	}
	w.Header().Set("Server", "aliasnet metadata server")
	if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
		h.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.write(w, r, textReply(http.StatusMethodNotAllowed, "method not allowed"))
		return
	}
	if err != nil {
		h.write(w, r, textReply(http.StatusNotFound, "not found"))
		return
	}
	if rp.redirect != "" {
		h.redirect(w, r, rp.redirect)
		return
	}
	if rp.dialect == rootDialect {
		h.write(w, r, rootListing(rp.prefix))
		return
	}
	if rp.dialect == gceDialect {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			h.write(w, r, textReply(http.StatusForbidden, "Missing Metadata-Flavor:Google header."))
			return
		}
	}
	rq, err := h.clientOf(r)
	if err != nil {
		h.write(w, r, textReply(http.StatusBadRequest, err.Error()))
		return
	}
	// GCE refuses requests that went through a proxy it does not know
	// (a guard against SSRF through open proxies); so do we.
	if rp.dialect == gceDialect && !rq.trusted && r.Header.Get("X-Forwarded-For") != "" {
		h.write(w, r, textReply(http.StatusForbidden, "Requests with X-Forwarded-For are refused unless they come from a trusted proxy."))
		return
	}
	q, err := h.parseQuery(r)
	if err != nil {
		h.write(w, r, textReply(http.StatusBadRequest, err.Error()))
		return
	}
	h.serve(w, r, rp, rq, q)
}

// serve renders the path for the requester, long-polling if asked.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, rp reqPath, rq requester, q query) {
	var timer <-chan time.Time
	last := q.lastETag
	first := true
	for {
		ch, _ := h.src.Changed()
		rep := h.render(rp, rq, q)
		if !q.wait || rep.status != http.StatusOK {
			h.write(w, r, rep)
			return
		}
		if first && last == "" {
			// No etag to compare with: wait for the next change.
			last = rep.etag
		}
		first = false
		if rep.etag != last {
			h.write(w, r, rep)
			return
		}
		if timer == nil {
			t := time.NewTimer(q.timeout)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			h.write(w, r, rep)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// render answers one path for one requester from the current state.
func (h *Handler) render(rp reqPath, rq requester, q query) reply {
	rf, err := h.find(rq)
	if err != nil {
		h.log.Debug("metadata request from an unknown source", "addr", rq.addr, "err", err)
		return textReply(http.StatusNotFound, err.Error())
	}
	var v *view
	h.src.Read(func(st *model.State) { v = readView(st, rf) })
	if v == nil {
		return textReply(http.StatusNotFound, "instance not found")
	}
	if rp.dialect == gceDialect {
		return renderGCE(gceTree(v), rp, q)
	}
	return renderAlibaba(alibabaTree(v), rp)
}

func notFound() reply { return textReply(http.StatusNotFound, "not found") }

func renderGCE(root *node, rp reqPath, q query) reply {
	n := root.lookup(rp.segs)
	if n == nil {
		return notFound()
	}
	if n.isDir() && !rp.dir {
		return reply{status: http.StatusMovedPermanently, location: rp.String() + "/"}
	}
	if !n.isDir() && rp.dir {
		return notFound()
	}
	alt := q.alt
	if alt == "" {
		alt = "text"
		if q.recursive && n.isDir() {
			alt = "json"
		}
	}
	var b bytes.Buffer
	switch {
	case alt == "json" && (q.recursive || !n.isDir()):
		n.writeJSON(&b)
	case alt == "json":
		writeJSONStrings(&b, n.listing())
	case q.recursive && n.isDir():
		n.writeFlat(&b, "")
	case n.isDir():
		for _, l := range n.listing() {
			b.WriteString(l + "\n")
		}
	default:
		b.WriteString(n.text)
	}
	rep := reply{status: http.StatusOK, body: b.Bytes(), ctype: "application/text"}
	if alt == "json" {
		rep.ctype = "application/json"
	}
	rep.etag = etagOf(rep.body)
	return rep
}

func writeJSONStrings(b *bytes.Buffer, items []string) {
	b.WriteByte('[')
	for i, s := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, s)
	}
	b.WriteByte(']')
}

func renderAlibaba(root *node, rp reqPath) reply {
	var all bytes.Buffer
	root.writeFlat(&all, "")
	etag := etagOf(all.Bytes())
	n := root.lookup(rp.segs)
	if n == nil || (!n.isDir() && rp.dir) {
		rep := notFound()
		return rep
	}
	if n.isDir() && !rp.dir {
		return reply{status: http.StatusMovedPermanently, location: rp.String() + "/"}
	}
	var b bytes.Buffer
	if n.isDir() {
		b.WriteString(strings.Join(n.listing(), "\n"))
	} else {
		b.WriteString(n.text)
	}
	return reply{status: http.StatusOK, body: b.Bytes(), ctype: "text/plain", etag: etag}
}

func rootListing(prefix string) reply {
	var body string
	switch prefix {
	case "/":
		body = "computeMetadata/\nlatest/\n"
	case "/computeMetadata/":
		body = "v1/\n"
	default:
		body = "meta-data/\n"
	}
	return reply{status: http.StatusOK, body: []byte(body), ctype: "application/text"}
}

func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, to string) {
	h.write(w, r, reply{status: http.StatusMovedPermanently, location: to})
}

func (h *Handler) write(w http.ResponseWriter, r *http.Request, rep reply) {
	hd := w.Header()
	if rep.location != "" {
		loc := rep.location
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		hd.Set("Location", loc)
		w.WriteHeader(rep.status)
		return
	}
	if rep.etag != "" {
		hd.Set("ETag", rep.etag)
	}
	hd.Set("Content-Type", rep.ctype)
	hd.Set("Content-Length", strconv.Itoa(len(rep.body)))
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rep.status)
	if r.Method != http.MethodHead {
		w.Write(rep.body)
	}
}

// serveToken answers Alibaba's IMDSv2 token request (PUT /latest/api/token)
// so that hardened-mode clients work. aliasnet does not require the token:
// identity comes from the source address.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) {
	ttl := r.Header.Get("X-aliyun-ecs-metadata-token-ttl-seconds")
	if n, err := strconv.Atoi(ttl); err != nil || n < 1 || n > 21600 {
		h.write(w, r, textReply(http.StatusBadRequest, "X-aliyun-ecs-metadata-token-ttl-seconds must be 1..21600"))
		return
	}
	var b [16]byte
	sum := sha256.Sum256([]byte(r.RemoteAddr + time.Now().String()))
	copy(b[:], sum[:])
	h.write(w, r, reply{status: http.StatusOK, body: []byte(hex.EncodeToString(b[:])), ctype: "text/plain"})
}

// ParseTrusted parses --metadata-trusted-proxy values: CIDRs or single
// addresses.
func ParseTrusted(vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR", s)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// NewHTTPServer returns an http.Server for a metadata handler with the
// timeouts the server uses.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}
