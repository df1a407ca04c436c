package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The GKE dialect is mounted with narrow patterns: it must get the
// Kubernetes Engine and Service Usage paths and aliasnet's cluster calls,
// and nothing that belongs to the other dialects.
func TestGKEMountsDoNotShadow(t *testing.T) {
	s, err := New(t.Context(), Config{DataDir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mux, ok := s.Handler().(*http.ServeMux)
	if !ok {
		t.Skip("Handler is not a ServeMux")
	}
	gke := func(p string) bool {
		return strings.HasPrefix(p, "/v1/") || strings.Contains(p, "/clusters/{cluster}/{what}") || strings.Contains(p, "/services/{service}")
	}
	for _, c := range []struct {
		method, path string
		wantGKE      bool
	}{
		{"POST", "/v1/projects/p/locations/us-central1-a/clusters", true},
		{"GET", "/v1/projects/p/zones/us-central1-a/operations/op", true},
		{"GET", "/v1/projects/p/services/container.googleapis.com", true},
		{"POST", "/aliasnet/v1/projects/p/locations/l/clusters/c/services:allocate", true},
		{"GET", "/aliasnet/v1/projects/p/locations/l/clusters/c/usage", true},
		{"GET", "/compute/v1/projects/p/global/networks", false},
		{"GET", "/dns/v1/projects/p/managedZones", false},
		{"GET", "/aliasnet/v1/projects/p/trace", false},
		{"GET", "/aliasnet/v1/projects/p/zones/z/instances/i/nics", false},
		{"POST", "/", false},
		{"GET", "/healthz", false},
	} {
		_, pattern := mux.Handler(httptest.NewRequest(c.method, c.path, nil))
		if gke(pattern) != c.wantGKE {
			t.Errorf("%s %s is served by pattern %q", c.method, c.path, pattern)
		}
	}
}
