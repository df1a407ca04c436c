package metadata

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParsePath: the path parser never panics, what it accepts is
// canonical (parsing its String() gives the same result), and serving any
// path through the real handler never fails with a 5xx.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/", "/computeMetadata/v1/", "/computeMetadata/v1", "/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/",
		"/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/0", "/computeMetadata/v1//x", "/computeMetadata/v1/./",
		"/latest/meta-data/network/interfaces/macs/42:01:0a:00:00:02/private-ipv4s", "/2016-01-01/meta-data/",
		"/computeMetadata/v1/instance/network-interfaces/00/ip", "/computeMetadata/v1/instance/network-interfaces/999999999999/ip",
		"/latest", "/latest/api/token", "/computeMetadata/v1x", "", "x", "/\x00", "/computeMetadata/v1/" + strings.Repeat("a/", 20),
	} {
		f.Add(s, "recursive=true")
	}
	fx := newFixture(f, Options{})
	f.Fuzz(func(t *testing.T, p, rawQuery string) {
		rp, err := parsePath(p)
		if err == nil {
			if rp.redirect == "" {
				again, err := parsePath(rp.String())
				if err != nil || again.String() != rp.String() || again.dialect != rp.dialect || again.dir != rp.dir {
					t.Fatalf("parsePath(%q) = %q, which parses to %q, %v", p, rp.String(), again.String(), err)
				}
			}
			for _, s := range rp.segs {
				if s == "" || s == "." || s == ".." || strings.Contains(s, "/") {
					t.Fatalf("parsePath(%q): segment %q", p, s)
				}
			}
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = p
		r.URL.RawQuery = rawQuery
		r.RemoteAddr = "10.0.0.4:1234"
		r.Header.Set("Metadata-Flavor", "Google")
		if strings.Contains(rawQuery, "wait_for_change") {
			r.URL.RawQuery = strings.ReplaceAll(rawQuery, "wait_for_change", "x")
		}
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("GET %q?%s = %d", p, rawQuery, w.Code)
		}
		if w.Code == http.StatusOK && w.Header().Get("ETag") == "" && err == nil && rp.dialect != rootDialect {
			t.Fatalf("GET %q: 200 without ETag", p)
		}
	})
}
