package server

// Write routing for replicas on etcd.
//
// Every replica accepts every request, but a mutation is relayed to one
// replica, the committer, elected with an etcd lease; reads stay local.
// Why: a replica groups the mutations that arrive while its previous
// transaction is in flight into one etcd transaction, and on a cluster
// whose members share a disk etcd's commit time grows with the number of
// transactions in flight at once far more than with their size. Measured
// with 64 clients and 64 networks: three replicas each committing their
// own clients' mutations, 1,800–2,200 allocations/s (transactions of 10
// taking 14 ms); one replica committing for all 64 clients, 2,800–3,000/s
// (transactions of 28 taking 8 ms). Replicas that share a network also
// stop losing races to each other.
//
// Correctness never depends on it. The committer's transactions carry the
// same guards as any replica's, so two replicas that both believe they
// are the committer (a lease about to expire) are as safe as replicas
// that never relay, and a replica that cannot reach the committer commits
// the mutation itself. A relayed reply carries the revision the committer
// had reached; the relaying replica answers once it has applied that
// revision, so a client reads its own writes on the replica it talks to.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/aliasnet/aliasnet/internal/api/apiwire"
	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/store"
)

const (
	// forwardedHeader marks a relayed request (its value: the relaying
	// replica's URL). A replica serves such a request itself, always.
	forwardedHeader = "Aliasnet-Forwarded-By"
	// installHeader on a relayed request: the relaying replica's etcd
	// prefix. A replica of another installation (a mistyped
	// --advertise-url) refuses the request instead of running it there.
	installHeader = "Aliasnet-Installation"
	// revHeader on a relayed reply: the store revision the committer had
	// reached when it answered (at or after the mutation's commit).
	revHeader = "Aliasnet-Rev"
	// committerTTL is the lease of the committer's election key, in
	// seconds: how long a committer that died without resigning stays
	// elected. Meanwhile relays to it fail to connect and the replicas
	// commit themselves, so it bounds a slower phase, not an outage.
	committerTTL = 3
	// downFor: after failing to reach the committer, a replica commits
	// itself for this long before trying it again.
	downFor = time.Second
	// maxRelayBody bounds a relayed request body (it is held in memory
	// so that it can be served here if the committer is unreachable).
	maxRelayBody = 32 << 20
	// relayApplyWait bounds how long a relaying replica waits for its
	// own state to show a relayed mutation before answering anyway.
	relayApplyWait = 10 * time.Second
	// relayTimeout bounds a relayed request: past it (a committer that
	// hangs without dying) the outcome is unknown, as for a dropped one.
	relayTimeout = 90 * time.Second
)

// router relays mutations to the committer and serves the rest.
type router struct {
	self    string // this replica's URL, as the others reach it
	install string // the installation's etcd prefix
	local   http.Handler
	svc     *control.Service
	st      store.Store
	log     *slog.Logger
	hc      *http.Client

	committer atomic.Pointer[string] // elected committer's URL; nil: none known
	downUntil atomic.Int64           // unix ns: the committer was unreachable
	relayed   atomic.Int64
	fallbacks atomic.Int64
	// waitMicros: time relayed replies waited for this replica to apply
	// their revision (divided by relayed, the mean).
	waitMicros atomic.Int64
}

func newRouter(self, install string, local http.Handler, svc *control.Service, st store.Store, log *slog.Logger) *router {
	tr := &http.Transport{
		// Never through an HTTP proxy from the environment: replicas
		// talk to each other directly.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &router{self: self, install: install, local: local, svc: svc, st: st, log: log, hc: &http.Client{Transport: tr}}
}

// advertiseURL is the URL other replicas reach this one at: explicit, or
// derived from the bound API address when it names a host.
func advertiseURL(explicit, bound string) (string, error) {
	if explicit != "" {
		u, err := url.Parse(explicit)
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return "", fmt.Errorf("advertise URL %q: want http://HOST:PORT (the API address other replicas reach this one at)", explicit)
		}
		return "http://" + u.Host, nil
	}
	ap, err := netip.ParseAddrPort(bound)
	if err != nil || ap.Addr().IsUnspecified() {
		return "", nil
	}
	return "http://" + ap.String(), nil
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if from := r.Header.Get(forwardedHeader); from != "" {
		if in := r.Header.Get(installHeader); in != rt.install {
			writeUnavailable(w, fmt.Sprintf("%s relayed a request for installation %q to %s, which serves %q: check that replica's --advertise-url and --etcd-prefix", from, in, rt.self, rt.install))
			return
		}
		rt.local.ServeHTTP(&revWriter{ResponseWriter: w, st: rt.st}, r)
		return
	}
	if to := rt.target(r); to != "" {
		rt.relay(w, r, to)
		return
	}
	rt.local.ServeHTTP(w, r)
}

// target is the committer to relay r to, or "" to serve it here.
func (rt *router) target(r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return ""
	}
	c := rt.committer.Load()
	if c == nil || *c == rt.self || time.Now().UnixNano() < rt.downUntil.Load() {
		return ""
	}
	return *c
}

// Committer reports the elected committer's URL ("" when none is known)
// and whether it is this replica.
func (rt *router) Committer() (string, bool) {
	c := rt.committer.Load()
	if c == nil {
		return "", false
	}
	return *c, *c == rt.self
}

func (rt *router) relay(w http.ResponseWriter, r *http.Request, to string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRelayBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("request body: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	serveHere := func() {
		rt.fallbacks.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rt.local.ServeHTTP(w, r)
	}
	var wrote atomic.Bool
	ctx, cancel := context.WithTimeout(r.Context(), relayTimeout)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	out, err := http.NewRequestWithContext(ctx, r.Method, to+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		serveHere()
		return
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Host = r.Host // self links name the host the client called
	out.Header.Set(forwardedHeader, rt.self)
	out.Header.Set(installHeader, rt.install)
	resp, err := rt.hc.Do(out)
	var reply []byte
	if err == nil {
		reply, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			return // the client is gone
		case !wrote.Load():
			// The committer never got the request: commit it here.
			rt.downUntil.Store(time.Now().Add(downFor).UnixNano())
			rt.log.Warn("committer unreachable; committing here", "committer", to, "err", err)
			serveHere()
		case idempotent(r, body):
			// Its requestId/ClientToken makes serving it again safe:
			// if the committer did commit it, this returns that result.
			serveHere()
		default:
			writeUnavailable(w, fmt.Sprintf("relaying the request to the committer %s failed after it was sent, so whether it took effect is unknown (%v); retry it, with a requestId (GCE) or ClientToken (Alibaba) to make retries safe", to, err))
		}
		return
	}
	if rev, _ := strconv.ParseInt(resp.Header.Get(revHeader), 10, 64); rev > 0 {
		t0 := time.Now()
		wctx, cancel := context.WithTimeout(r.Context(), relayApplyWait)
		if err := rt.svc.WaitApplied(wctx, rev); err != nil && r.Context().Err() == nil {
			rt.log.Warn("answering a relayed request before this replica applied it", "rev", rev, "err", err)
		}
		cancel()
		rt.waitMicros.Add(time.Since(t0).Microseconds())
	}
	for k, vs := range resp.Header {
		if k == revHeader || k == "Content-Length" {
			continue
		}
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(resp.StatusCode)
	w.Write(reply)
	rt.relayed.Add(1)
}

// hopHeaders are per-connection headers, not relayed (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// idempotent reports a request the dialects deduplicate: GCE requestId,
// Alibaba ClientToken (query or form body).
func idempotent(r *http.Request, body []byte) bool {
	q := r.URL.Query()
	if q.Get("requestId") != "" || q.Get("ClientToken") != "" {
		return true
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		f, err := url.ParseQuery(string(body))
		return err == nil && f.Get("ClientToken") != ""
	}
	return false
}

// writeUnavailable answers 503 in the error envelope of Google's APIs
// (which the Alibaba SDK reports as a server error too).
func writeUnavailable(w http.ResponseWriter, msg string) {
	apiwire.WriteError(w, http.StatusServiceUnavailable, "backendError", msg)
}

// revWriter stamps a reply with the store revision reached when its
// header is written: the handler has finished its mutation by then.
type revWriter struct {
	http.ResponseWriter
	st      store.Store
	stamped bool
}

func (w *revWriter) WriteHeader(code int) {
	if !w.stamped {
		w.stamped = true
		w.Header().Set(revHeader, strconv.FormatInt(w.st.Rev(), 10))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *revWriter) Write(b []byte) (int, error) {
	if !w.stamped {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// elect runs for the committer role until ctx ends, and keeps the router's
// view of who holds it current.
func (rt *router) elect(ctx context.Context, cli *clientv3.Client, key string) {
	for ctx.Err() == nil {
		err := rt.campaign(ctx, cli, key)
		if ctx.Err() != nil {
			return
		}
		rt.log.Warn("committer election; campaigning again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (rt *router) campaign(ctx context.Context, cli *clientv3.Client, key string) error {
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(committerTTL), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	// Revoking the lease when leaving hands the role on at once instead
	// of after the lease (not sess.Close: its revoke would run under the
	// already ended ctx).
	defer func() {
		sess.Orphan()
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cli.Revoke(rctx, sess.Lease())
		cancel()
	}()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, key)
	go func() {
		for resp := range el.Observe(cctx) {
			if len(resp.Kvs) > 0 {
				v := string(resp.Kvs[0].Value)
				if old := rt.committer.Swap(&v); old == nil || *old != v {
					rt.log.Info("committer", "url", v, "self", v == rt.self)
				}
			}
		}
	}()
	if err := el.Campaign(cctx, rt.self); err != nil {
		return err
	}
	<-cctx.Done()
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("committer lease lost")
}

// electionKey is the committer election's etcd prefix: beside the
// installation's keys, not under them, so snapshots and the replicas'
// watch never see it.
func electionKey(prefix string) string {
	return strings.TrimSuffix(prefix, "/") + ".committer/"
}
