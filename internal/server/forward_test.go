package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aliasnet/aliasnet/internal/control/controltest"
	"github.com/aliasnet/aliasnet/internal/store"
)

func TestAdvertiseURL(t *testing.T) {
	for _, tc := range []struct {
		explicit, bound, want, err string
	}{
		{"", "127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"", "[::1]:8080", "http://[::1]:8080", ""},
		{"", "0.0.0.0:8080", "", ""}, // every address: nothing to derive
		{"", "[::]:8080", "", ""},
		{"http://api-2.internal:8080", "0.0.0.0:8080", "http://api-2.internal:8080", ""},
		{"http://10.0.0.2:8080/", "0.0.0.0:8080", "http://10.0.0.2:8080", ""},
		{"https://10.0.0.2:8443", "", "", "want http://HOST:PORT"},
		{"10.0.0.2:8080", "", "", "want http://HOST:PORT"},
		{"http://10.0.0.2:8080/api", "", "", "want http://HOST:PORT"},
	} {
		got, err := advertiseURL(tc.explicit, tc.bound)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("advertiseURL(%q, %q): error %v, want %q", tc.explicit, tc.bound, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("advertiseURL(%q, %q) = %q, %v; want %q", tc.explicit, tc.bound, got, err, tc.want)
		}
	}
}

// relayWorld is a router in front of a local handler that counts what it
// serves, relaying to committer.
type relayWorld struct {
	rt    *router
	local atomic.Int64
}

func newRelayWorld(t *testing.T, committer string) *relayWorld {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "a.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &relayWorld{}
	local := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.local.Add(1)
		b, _ := io.ReadAll(r.Body)
		io.WriteString(rw, "local:"+string(b))
	})
	w.rt = newRouter("http://127.0.0.1:1", "/test/", local, controltest.New(t), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.rt.committer.Store(&committer)
	return w
}

func (w *relayWorld) do(method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	w.rt.ServeHTTP(rec, r)
	return rec
}

// A committer that takes the whole request and drops the connection
// without answering: whether it acted is unknown.
func dropper(t *testing.T) (url string, got *atomic.Int64) {
	got = &atomic.Int64{}
	s := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got.Add(1)
		c, _, err := rw.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(s.Close)
	return s.URL, got
}

func TestRelayOutcomeUnknown(t *testing.T) {
	url, got := dropper(t)
	w := newRelayWorld(t, url)

	// No request id: serving it here could act twice. Refused, saying why.
	rec := w.do(http.MethodPost, "/compute/v1/projects/p/global/networks", `{"name":"n"}`)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "unknown") || !strings.Contains(rec.Body.String(), "requestId") {
		t.Errorf("dropped relay without a request id: %d %s", rec.Code, rec.Body)
	}
	if w.local.Load() != 0 || got.Load() != 1 {
		t.Errorf("committer saw %d, local served %d; want 1 and 0", got.Load(), w.local.Load())
	}

	// With one (GCE requestId; Alibaba ClientToken, in the query or a
	// form body) the dialect deduplicates: served here.
	for _, tc := range []struct{ target, body, ct string }{
		{"/compute/v1/projects/p/global/networks?requestId=7c0e5a9e-1d7e-4c1e-9b7a-2f0c1d2e3f40", `{"name":"n"}`, "application/json"},
		{"/?Action=AssignPrivateIpAddresses&ClientToken=t1", "", ""},
		{"/", "Action=AssignPrivateIpAddresses&ClientToken=t2", "application/x-www-form-urlencoded"},
	} {
		before := w.local.Load()
		rec := w.do(http.MethodPost, tc.target, tc.body, "Content-Type", tc.ct)
		if rec.Code != http.StatusOK || rec.Body.String() != "local:"+tc.body || w.local.Load() != before+1 {
			t.Errorf("%s %q: %d %q; want served here with its body", tc.target, tc.body, rec.Code, rec.Body)
		}
	}
	if w.rt.fallbacks.Load() != 3 {
		t.Errorf("fallbacks %d, want 3", w.rt.fallbacks.Load())
	}
}

func TestRelayCommitterUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now: connecting is refused
	w := newRelayWorld(t, dead)
	rec := w.do(http.MethodPost, "/compute/v1/projects/p/global/networks", `{"name":"n"}`)
	if rec.Code != http.StatusOK || rec.Body.String() != `local:{"name":"n"}` {
		t.Fatalf("committer unreachable: %d %q; want served here", rec.Code, rec.Body)
	}
	// For a while it is not tried again.
	if to := w.rt.target(httptest.NewRequest(http.MethodPost, "/", nil)); to != "" {
		t.Errorf("relays to %s right after it was unreachable", to)
	}
	// Reads and relayed requests are never relayed.
	w.rt.downUntil.Store(0)
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/compute/v1/projects/p/global/networks", nil),
		func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Header.Set(forwardedHeader, "http://127.0.0.1:2")
			r.Header.Set(installHeader, "/test/")
			return r
		}(),
	} {
		rec := httptest.NewRecorder()
		w.rt.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "local:") {
			t.Errorf("%s %s (forwarded-by %q): %d %q; want served here", r.Method, r.URL, r.Header.Get(forwardedHeader), rec.Code, rec.Body)
		}
		if r.Header.Get(forwardedHeader) != "" && rec.Header().Get(revHeader) == "" {
			t.Errorf("a relayed request's reply carries no %s", revHeader)
		}
	}
}

// A request relayed from another installation (a replica whose
// --advertise-url names a server of another etcd prefix) is refused.
func TestRelayOtherInstallation(t *testing.T) {
	w := newRelayWorld(t, "http://127.0.0.1:1")
	rec := w.do(http.MethodPost, "/compute/v1/projects/p/global/networks", `{"name":"n"}`,
		forwardedHeader, "http://10.0.0.9:8080", installHeader, "/other/")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "--advertise-url") || w.local.Load() != 0 {
		t.Errorf("relayed from another installation: %d %s, served here %d times", rec.Code, rec.Body, w.local.Load())
	}
}
