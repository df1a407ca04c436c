package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/api/gce"
	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/control/controltest"
	"github.com/aliasnet/aliasnet/internal/model"
)

// fixture is a control plane with:
//
//	project p:  network vpc, subnet s 10.0.0.0/24 (secondary pods 10.1.0.0/20)
//	            network vpc2, subnet s2 10.9.0.0/24
//	            vm1 (10.0.0.2, alias 10.1.0.0/24 from pods, 10.0.0.9/32)
//	            vm2 (10.0.0.3), vm3 (nic0 10.0.0.4 in s, nic1 10.9.0.2 in s2)
//	project q:  network vpc, subnet s 10.0.0.0/24: qvm (10.0.0.2, the
//	            same address as p's vm1: ambiguous)
//	project r:  subnet 192.168.5.0/24: rvm (192.168.5.2)
type fixture struct {
	t   testing.TB
	svc *control.Service
	h   *Handler
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newFixture(t testing.TB, o Options) *fixture {
	t.Helper()
	svc := controltest.New(t)
	f := &fixture{t: t, svc: svc}
	pfx := netip.MustParsePrefix
	f.do("p", func(tx *model.Txn) error {
		must(tx.CreateNetwork(model.Network{Project: "p", Name: "vpc", MTU: 1500}))
		must(tx.CreateNetwork(model.Network{Project: "p", Name: "vpc2"}))
		must(tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "s", Network: "vpc",
			Range: pfx("10.0.0.0/24"), Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("10.1.0.0/20")}}}))
		must(tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "s2", Network: "vpc2", Range: pfx("10.9.0.0/24")}))
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{
			Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: "vm1", MachineType: "e2-medium", Tags: []string{"web"}},
			NICs: []model.NICSpec{{Subnet: "s", Aliases: []model.AliasSpec{
				{Prefix: pfx("10.1.0.0/24"), RangeName: "pods"}, {Prefix: pfx("10.0.0.9/32")}}}},
		})
		if err != nil {
			return err
		}
		must2(tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: "vm2"},
			NICs: []model.NICSpec{{Subnet: "s"}}}))
		must2(tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: "us-central1-b", Name: "vm3"},
			NICs: []model.NICSpec{{Subnet: "s"}, {Subnet: "s2"}}}))
		return nil
	})
	f.do("q", func(tx *model.Txn) error {
		must(tx.CreateNetwork(model.Network{Project: "q", Name: "vpc"}))
		must(tx.CreateSubnet(model.Subnet{Project: "q", Region: "us-central1", Name: "s", Network: "vpc", Range: pfx("10.0.0.0/24")}))
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "q", Zone: "us-central1-a", Name: "qvm"},
			NICs: []model.NICSpec{{Subnet: "s"}}})
		return err
	})
	f.do("r", func(tx *model.Txn) error {
		must(tx.CreateNetwork(model.Network{Project: "r", Name: "vpc"}))
		must(tx.CreateSubnet(model.Subnet{Project: "r", Region: "europe-west1", Name: "s", Network: "vpc", Range: pfx("192.168.5.0/24")}))
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "r", Zone: "europe-west1-b", Name: "rvm"},
			NICs: []model.NICSpec{{Subnet: "s"}}})
		return err
	})
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	f.h = New(svc, o)
	return f
}

func must2[A, B any](a A, b B, err error) {
	if err != nil {
		panic(err)
	}
}

func (f *fixture) do(project string, m func(tx *model.Txn) error) {
	f.t.Helper()
	op, err := f.svc.Do(context.Background(), control.Op{Project: project, Scope: "global", Type: "test"},
		func(tx *model.Txn) (uint64, any, error) { return 0, nil, m(tx) })
	if err != nil {
		f.t.Fatal(err)
	}
	if op.Error != nil {
		f.t.Fatal(op.Error.Message)
	}
}

// setAliases replaces the aliases of an instance's nic0.
func (f *fixture) setAliases(project, zone, name string, aliases ...string) {
	f.t.Helper()
	var fp string
	f.svc.Read(func(st *model.State) {
		fp = st.NICs(st.Instance(project, zone, name))[0].Fingerprint
	})
	var specs []model.AliasSpec
	for _, a := range aliases {
		s, err := model.ParseAliasSpec(a)
		if err != nil {
			f.t.Fatal(err)
		}
		if strings.HasPrefix(a, "10.1.") {
			s.RangeName = "pods"
		}
		specs = append(specs, s)
	}
	f.do(project, func(tx *model.Txn) error {
		_, err := tx.UpdateAliases(project, zone, name, "nic0", fp, specs)
		return err
	})
}

type resp struct {
	code int
	body string
	hdr  http.Header
}

// get sends one request from src (an IP) with the Google header unless
// noFlavor.
func (f *fixture) get(src, target string, hdr ...string) resp {
	f.t.Helper()
	return f.send(context.Background(), src, target, hdr...)
}

func (f *fixture) send(ctx context.Context, src, target string, hdr ...string) resp {
	r := httptest.NewRequest("GET", target, nil).WithContext(ctx)
	r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(src), 40000).String()
	if strings.HasPrefix(target, "/computeMetadata") {
		r.Header.Set("Metadata-Flavor", "Google")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Add(hdr[i], hdr[i+1])
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return resp{code: w.Code, body: w.Body.String(), hdr: w.Header()}
}

const gv1 = "/computeMetadata/v1/"

func TestGCEPaths(t *testing.T) {
	f := newFixture(t, Options{})
	var vm1 *model.Instance
	f.svc.Read(func(st *model.State) { vm1 = st.Instance("p", "us-central1-a", "vm1") })
	pnum := fmt.Sprint(ProjectNumber("p"))
	nic := gv1 + "instance/network-interfaces/"
	tests := []struct {
		src, path string
		code      int
		body      string
	}{
		{"10.0.0.2", gv1 + "instance/id", 200, fmt.Sprint(vm1.ID)},
		{"10.0.0.2", gv1 + "instance/hostname", 200, "vm1.us-central1-a.c.p.internal"},
		{"10.0.0.2", gv1 + "instance/name", 200, "vm1"},
		{"10.0.0.2", gv1 + "instance/zone", 200, "projects/" + pnum + "/zones/us-central1-a"},
		{"10.0.0.2", gv1 + "instance/machine-type", 200, "projects/" + pnum + "/machineTypes/e2-medium"},
		{"10.0.0.2", gv1 + "instance/tags", 200, `["web"]`},
		{"10.0.0.2", nic, 200, "0/\n"},
		{"10.0.0.2", nic + "0/ip", 200, "10.0.0.2"},
		{"10.0.0.2", nic + "0/mac", 200, "42:01:0a:00:00:02"},
		{"10.0.0.2", nic + "0/network", 200, "projects/" + pnum + "/networks/vpc"},
		{"10.0.0.2", nic + "0/subnetmask", 200, "255.255.255.0"},
		{"10.0.0.2", nic + "0/gateway", 200, "10.0.0.1"},
		{"10.0.0.2", nic + "0/mtu", 200, "1500"},
		{"10.0.0.2", nic + "0/ip-aliases/", 200, "10.0.0.9/32\n10.1.0.0/24\n"},
		{"10.0.0.2", nic + "0/ip-aliases/0", 200, "10.0.0.9/32"},
		{"10.0.0.2", nic + "0/ip-aliases/1", 200, "10.1.0.0/24"},
		{"10.0.0.2", nic + "0/ip-aliases/2", 404, ""},
		{"10.0.0.2", nic + "0/ip-aliases/01", 404, ""},
		{"10.0.0.2", nic + "0/forwarded-ips/", 200, ""},
		{"10.0.0.2", nic + "0/", 200, "access-configs/\ndns-servers/\nforwarded-ips/\ngateway\nip\nip-aliases/\nmac\nmtu\nnetwork\nsubnetmask\ntarget-instance-ips/\n"},
		{"10.0.0.2", nic + "1/ip", 404, ""},
		{"10.0.0.2", nic + "0/ip/", 404, ""},
		{"10.0.0.2", nic + "0/nope", 404, ""},
		{"10.0.0.2", gv1 + "project/project-id", 200, "p"},
		{"10.0.0.2", gv1 + "project/numeric-project-id", 200, pnum},
		{"10.0.0.2", gv1, 200, "instance/\nproject/\n"},
		{"10.0.0.2", gv1 + "instance/", 200, "attributes/\nhostname\nid\nmachine-type\nname\nnetwork-interfaces/\ntags\nzone\n"},
		// vm3 asks from its second NIC's address: same instance.
		{"10.9.0.2", nic, 200, "0/\n1/\n"},
		{"10.9.0.2", nic + "1/ip", 200, "10.9.0.2"},
		{"10.9.0.2", nic + "1/gateway", 200, "10.9.0.1"},
		{"10.9.0.2", nic + "1/mtu", 200, "1460"},
		{"10.0.0.4", gv1 + "instance/name", 200, "vm3"},
		// another project, found without naming it
		{"192.168.5.2", gv1 + "instance/zone", 200, "projects/" + fmt.Sprint(ProjectNumber("r")) + "/zones/europe-west1-b"},
		{"::ffff:192.168.5.2", gv1 + "instance/name", 200, "rvm"},
		// unknown requester, ambiguous requester
		{"10.0.0.77", gv1 + "instance/id", 404, ""},
		{"127.0.0.1", gv1 + "instance/id", 404, ""},
	}
	// 10.0.0.2 is also q's qvm (see TestAmbiguous); make it unambiguous.
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	for _, tc := range tests {
		r := f.get(tc.src, tc.path)
		if r.code != tc.code || (tc.code == 200 && r.body != tc.body) {
			t.Errorf("GET %s from %s = %d %q, want %d %q", tc.path, tc.src, r.code, r.body, tc.code, tc.body)
		}
		if r.hdr.Get("Metadata-Flavor") != "Google" {
			t.Errorf("GET %s: no Metadata-Flavor header in response", tc.path)
		}
		if tc.code == 200 && (r.hdr.Get("ETag") == "" || r.hdr.Get("Content-Type") != "application/text") {
			t.Errorf("GET %s: headers %v", tc.path, r.hdr)
		}
	}
}

func TestGCEHeadersAndErrors(t *testing.T) {
	f := newFixture(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}})
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	path := gv1 + "instance/name"
	tests := []struct {
		name string
		src  string
		path string
		hdr  []string
		code int
		body string
		loc  string
	}{
		{"no flavor header", "10.0.0.2", path, []string{"Metadata-Flavor", ""}, 403, "", ""},
		{"wrong flavor", "10.0.0.2", path, []string{"Metadata-Flavor", "", "Metadata-Flavor", "google"}, 403, "", ""},
		{"untrusted XFF", "10.0.0.2", path, []string{"X-Forwarded-For", "10.0.0.3"}, 403, "", ""},
		{"trusted proxy", "10.200.0.1", path, []string{"X-Forwarded-For", "10.0.0.3"}, 200, "vm2", ""},
		{"trusted proxy chain", "10.200.0.1", path, []string{"X-Forwarded-For", "1.2.3.4, 10.0.0.4, 10.200.9.9"}, 200, "vm3", ""},
		{"trusted proxy, no XFF", "10.200.0.1", path, nil, 404, "", ""},
		{"trusted proxy, bad XFF", "10.200.0.1", path, []string{"X-Forwarded-For", "nonsense"}, 400, "", ""},
		{"trusted proxy, port in XFF", "10.200.0.1", path, []string{"X-Forwarded-For", "10.0.0.3:5555"}, 200, "vm2", ""},
		{"directory without slash", "10.0.0.2", gv1 + "instance/network-interfaces?recursive=true", nil, 301, "", gv1 + "instance/network-interfaces/?recursive=true"},
		{"root without slash", "10.0.0.2", "/computeMetadata/v1", nil, 301, "", "/computeMetadata/v1/"},
		{"bad alt", "10.0.0.2", path + "?alt=xml", nil, 400, "", ""},
		{"bad timeout", "10.0.0.2", path + "?wait_for_change=true&timeout_sec=-1", nil, 400, "", ""},
		{"bad recursive", "10.0.0.2", path + "?recursive=maybe", nil, 400, "", ""},
		{"dot segment", "10.0.0.2", gv1 + "instance/../instance/name", nil, 404, "", ""},
		{"empty segment", "10.0.0.2", gv1 + "instance//name", nil, 404, "", ""},
		{"unknown root", "10.0.0.2", "/computeMetadata/v2/instance/", nil, 404, "", ""},
		{"json leaf", "10.0.0.2", path + "?alt=json", nil, 200, `"vm1"`, ""},
		{"json number", "10.0.0.2", gv1 + "instance/network-interfaces/0/mtu?alt=json", nil, 200, `1500`, ""},
		{"json listing", "10.0.0.2", gv1 + "instance/network-interfaces/0/ip-aliases/?alt=json", nil, 200, `["10.0.0.9/32","10.1.0.0/24"]`, ""},
		{"text recursive", "10.0.0.2", gv1 + "instance/network-interfaces/0/ip-aliases/?recursive=true&alt=text", nil, 200, "0 10.0.0.9/32\n1 10.1.0.0/24\n", ""},
		{"server root", "10.0.0.2", "/", nil, 200, "computeMetadata/\nlatest/\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.get(tc.src, tc.path, tc.hdr...)
			if r.code != tc.code || (tc.body != "" && r.body != tc.body) {
				t.Fatalf("GET %s = %d %q, want %d %q", tc.path, r.code, r.body, tc.code, tc.body)
			}
			if tc.loc != "" && r.hdr.Get("Location") != tc.loc {
				t.Fatalf("Location = %q, want %q", r.hdr.Get("Location"), tc.loc)
			}
		})
	}
	// POST is refused.
	req := httptest.NewRequest("POST", path, nil)
	req.RemoteAddr = "10.0.0.2:1"
	req.Header.Set("Metadata-Flavor", "Google")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	if w.Code != 405 {
		t.Fatalf("POST = %d", w.Code)
	}
}

func TestAmbiguous(t *testing.T) {
	f := newFixture(t, Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.200.0.1/32")}})
	// 10.0.0.2 is vm1 in p and qvm in q.
	if r := f.get("10.0.0.2", gv1+"instance/name"); r.code != 404 || !strings.Contains(r.body, "several networks") {
		t.Fatalf("ambiguous = %d %q", r.code, r.body)
	}
	for hint, want := range map[string]string{"p": "vm1", "q/vpc": "qvm", "p/vpc": "vm1"} {
		r := f.get("10.200.0.1", gv1+"instance/name", "X-Forwarded-For", "10.0.0.2", "X-Aliasnet-Network", hint)
		if r.code != 200 || r.body != want {
			t.Errorf("hint %s = %d %q, want %s", hint, r.code, r.body, want)
		}
	}
	// The hint is ignored from untrusted peers.
	if r := f.get("10.0.0.2", gv1+"instance/name", "X-Aliasnet-Network", "p"); r.code != 404 {
		t.Fatalf("untrusted hint = %d %q", r.code, r.body)
	}
}

// The structures Google's guest agent decodes the recursive tree into
// (github.com/GoogleCloudPlatform/guest-agent metadata.Descriptor; Go's
// decoder matches keys case-insensitively).
type gaDescriptor struct {
	Instance struct {
		ID                json.Number
		MachineType       string
		Hostname          string
		NetworkInterfaces []gaNIC
	}
	Project struct {
		ProjectID        string
		NumericProjectID json.Number
	}
}

type gaNIC struct {
	ForwardedIps      []string
	TargetInstanceIps []string
	IPAliases         []string
	Mac               string
}

func TestRecursiveJSON(t *testing.T) {
	f := newFixture(t, Options{})
	r := f.get("10.0.0.4", gv1+"?recursive=true&alt=json")
	if r.code != 200 || r.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("root recursive = %d %v %q", r.code, r.hdr, r.body)
	}
	var d gaDescriptor
	if err := json.Unmarshal([]byte(r.body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Project.ProjectID != "p" || d.Project.NumericProjectID.String() != fmt.Sprint(ProjectNumber("p")) ||
		d.Instance.Hostname != "vm3.us-central1-b.c.p.internal" || len(d.Instance.NetworkInterfaces) != 2 ||
		d.Instance.NetworkInterfaces[1].Mac != "42:01:0a:09:00:02" || d.Instance.ID.String() == "" {
		t.Fatalf("descriptor = %+v\n%s", d, r.body)
	}
	// Exact camelCase keys, as GCE's metadata server sends them.
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	r = f.get("10.0.0.2", gv1+"instance/network-interfaces/?recursive=true")
	want := `[{"accessConfigs":[],"dnsServers":["169.254.169.254"],"forwardedIps":[],"gateway":"10.0.0.1","ip":"10.0.0.2",` +
		`"ipAliases":["10.0.0.9/32","10.1.0.0/24"],"mac":"42:01:0a:00:00:02","mtu":1500,"network":"projects/` +
		fmt.Sprint(ProjectNumber("p")) + `/networks/vpc","subnetmask":"255.255.255.0","targetInstanceIps":[]}]`
	if r.code != 200 || r.body != want {
		t.Fatalf("recursive nics =\n%s\nwant\n%s", r.body, want)
	}
	var nics []gaNIC
	if err := json.Unmarshal([]byte(r.body), &nics); err != nil || len(nics[0].IPAliases) != 2 || nics[0].ForwardedIps == nil {
		t.Fatalf("decode: %v %+v", err, nics)
	}
	// instance/ recursive: id is a JSON number.
	r = f.get("10.0.0.2", gv1+"instance/?recursive=true")
	var inst map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.body), &inst); err != nil {
		t.Fatal(err)
	}
	if id := string(inst["id"]); id == "" || id[0] == '"' {
		t.Fatalf("id = %s", id)
	}
	if string(inst["attributes"]) != "{}" || string(inst["tags"]) != `["web"]` {
		t.Fatalf("instance = %s", r.body)
	}
}

func TestProjectNumberMatchesComputeAPI(t *testing.T) {
	f := newFixture(t, Options{})
	api := gce.New(f.svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, p := range []string{"p", "seed-project", "x"} {
		w := httptest.NewRecorder()
		api.ServeHTTP(w, httptest.NewRequest("GET", "/compute/v1/projects/"+p, nil))
		var body struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if body.ID != fmt.Sprint(ProjectNumber(p)) {
			t.Fatalf("project %s: API id %s, metadata %d", p, body.ID, ProjectNumber(p))
		}
	}
}

func TestAlibabaPaths(t *testing.T) {
	f := newFixture(t, Options{})
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	var ifcID string
	f.svc.Read(func(st *model.State) { ifcID = st.NICs(st.Instance("p", "us-central1-a", "vm1"))[0].ID })
	m := "/latest/meta-data/network/interfaces/macs/42:01:0a:00:00:02/"
	tests := []struct {
		src, path string
		code      int
		body      string
	}{
		{"10.0.0.2", "/latest/meta-data/network/interfaces/macs/", 200, "42:01:0a:00:00:02/"},
		{"10.0.0.4", "/latest/meta-data/network/interfaces/macs/", 200, "42:01:0a:00:00:04/\n42:01:0a:09:00:02/"},
		{"10.0.0.2", m + "primary-ip-address", 200, "10.0.0.2"},
		{"10.0.0.2", m + "private-ipv4s", 200, `["10.0.0.2","10.0.0.9"]`},
		{"10.0.0.2", m + "ipv6s", 200, "[]"},
		{"10.0.0.2", m + "ipv4-prefixes", 200, "[10.1.0.0/24]"},
		{"10.0.0.2", m + "vswitch-cidr-block", 200, "10.0.0.0/24"},
		{"10.0.0.2", m + "vswitch-id", 200, "s"},
		{"10.0.0.2", m + "gateway", 200, "10.0.0.1"},
		{"10.0.0.2", m + "netmask", 200, "255.255.255.0"},
		{"10.0.0.2", m + "network-interface-id", 200, ifcID},
		{"10.0.0.2", "/latest/meta-data/network/interfaces/macs/42:01:0A:00:00:02/primary-ip-address", 200, "10.0.0.2"},
		{"10.0.0.2", "/latest/meta-data/private-ipv4", 200, "10.0.0.2"},
		{"10.0.0.2", "/latest/meta-data/mac", 200, "42:01:0a:00:00:02"},
		{"10.0.0.2", "/latest/meta-data/instance-id", 200, "vm1"},
		{"10.0.0.2", "/latest/meta-data/region-id", 200, "us-central1"},
		{"10.0.0.2", "/2016-01-01/meta-data/private-ipv4", 200, "10.0.0.2"},
		{"10.0.0.2", "/latest/meta-data/network/interfaces/macs", 301, ""},
		{"10.0.0.2", m + "nope", 404, ""},
		{"10.0.0.99", "/latest/meta-data/private-ipv4", 404, ""},
		{"10.9.0.2", "/latest/meta-data/mac", 200, "42:01:0a:00:00:04"},
	}
	for _, tc := range tests {
		r := f.get(tc.src, tc.path)
		if r.code != tc.code || (tc.code == 200 && r.body != tc.body) {
			t.Errorf("GET %s from %s = %d %q, want %d %q", tc.path, tc.src, r.code, r.body, tc.code, tc.body)
		}
		if tc.code == 200 && r.hdr.Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", tc.path)
		}
		if r.hdr.Get("Metadata-Flavor") != "" {
			t.Errorf("GET %s: Alibaba path answered with Metadata-Flavor", tc.path)
		}
	}
	// IMDSv2 token
	req := httptest.NewRequest("PUT", "/latest/api/token", nil)
	req.Header.Set("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
	req.RemoteAddr = "10.0.0.2:1"
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	if w.Code != 200 || w.Body.Len() != 32 {
		t.Fatalf("token = %d %q", w.Code, w.Body)
	}
}

// poll is a long-poll running in the background.
type poll struct {
	done  chan resp
	start time.Time
}

func (f *fixture) poll(src, target string) *poll {
	p := &poll{done: make(chan resp, 1), start: time.Now()}
	go func() { p.done <- f.send(context.Background(), src, target) }()
	return p
}

func (p *poll) wait(t *testing.T, within time.Duration) (resp, time.Duration) {
	t.Helper()
	select {
	case r := <-p.done:
		return r, time.Since(p.start)
	case <-time.After(within):
		t.Fatalf("long-poll did not return within %v", within)
	}
	return resp{}, 0
}

func (p *poll) pending(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-p.done:
		t.Fatalf("long-poll returned early: %d %q", r.code, r.body)
	case <-time.After(d):
	}
}

func TestLongPoll(t *testing.T) {
	f := newFixture(t, Options{})
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	path := gv1 + "instance/network-interfaces/?recursive=true"
	r0 := f.get("10.0.0.2", path)
	e0 := r0.hdr.Get("ETag")

	t.Run("returns on change", func(t *testing.T) {
		p := f.poll("10.0.0.2", path+"&wait_for_change=true&timeout_sec=30&last_etag="+e0)
		p.pending(t, 100*time.Millisecond)
		// A change to another instance does not wake this one's poll.
		f.setAliases("p", "us-central1-a", "vm2", "10.1.4.0/24")
		p.pending(t, 150*time.Millisecond)
		start := time.Now()
		f.setAliases("p", "us-central1-a", "vm1", "10.1.0.0/24", "10.1.1.0/24")
		r, _ := p.wait(t, 5*time.Second)
		if lat := time.Since(start); lat > time.Second {
			t.Errorf("long-poll answered %v after the change", lat)
		}
		if r.code != 200 || r.hdr.Get("ETag") == e0 || !strings.Contains(r.body, `"ipAliases":["10.1.0.0/24","10.1.1.0/24"]`) {
			t.Fatalf("after change: %d %s %q", r.code, r.hdr.Get("ETag"), r.body)
		}
	})
	r1 := f.get("10.0.0.2", path)
	e1 := r1.hdr.Get("ETag")

	t.Run("etag follows only this instance", func(t *testing.T) {
		f.setAliases("p", "us-central1-a", "vm2")
		f.do("r", func(tx *model.Txn) error { return tx.DeleteInstance("r", "europe-west1-b", "rvm") })
		if e := f.get("10.0.0.2", path).hdr.Get("ETag"); e != e1 {
			t.Fatalf("etag changed from %s to %s on another instance's change", e1, e)
		}
		// ...and a path's etag only follows that path: hostname is unchanged by alias updates.
		h0 := f.get("10.0.0.2", gv1+"instance/hostname").hdr.Get("ETag")
		f.setAliases("p", "us-central1-a", "vm1", "10.1.1.0/24")
		if h := f.get("10.0.0.2", gv1+"instance/hostname").hdr.Get("ETag"); h != h0 {
			t.Fatalf("hostname etag changed on an alias update")
		}
		f.setAliases("p", "us-central1-a", "vm1", "10.1.0.0/24", "10.1.1.0/24")
		if e := f.get("10.0.0.2", path).hdr.Get("ETag"); e != e1 {
			t.Fatalf("etag %s after restoring the same data, want %s", e, e1)
		}
	})

	t.Run("timeout returns same etag", func(t *testing.T) {
		p := f.poll("10.0.0.2", path+"&wait_for_change=true&timeout_sec=1&last_etag="+e1)
		r, took := p.wait(t, 10*time.Second)
		if r.code != 200 || r.hdr.Get("ETag") != e1 || took < 900*time.Millisecond {
			t.Fatalf("timeout: %d etag %s (want %s) after %v", r.code, r.hdr.Get("ETag"), e1, took)
		}
	})

	t.Run("stale etag returns at once", func(t *testing.T) {
		p := f.poll("10.0.0.2", path+"&wait_for_change=true&timeout_sec=30&last_etag=0123456789abcdef")
		r, took := p.wait(t, 5*time.Second)
		if r.code != 200 || r.hdr.Get("ETag") != e1 || took > time.Second {
			t.Fatalf("stale: %d %s after %v", r.code, r.hdr.Get("ETag"), took)
		}
	})

	t.Run("no etag waits for the next change", func(t *testing.T) {
		p := f.poll("10.0.0.2", gv1+"instance/network-interfaces/0/ip-aliases/?wait_for_change=true&timeout_sec=30")
		p.pending(t, 100*time.Millisecond)
		f.setAliases("p", "us-central1-a", "vm1")
		r, _ := p.wait(t, 5*time.Second)
		if r.code != 200 || r.body != "" {
			t.Fatalf("= %d %q", r.code, r.body)
		}
	})

	t.Run("cancelled request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			f.send(ctx, "10.0.0.2", path+"&wait_for_change=true&timeout_sec=30")
			close(done)
		}()
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("handler did not return after the client went away")
		}
	})

	t.Run("alibaba extension", func(t *testing.T) {
		macs := "/latest/meta-data/network/interfaces/macs/"
		e := f.get("10.0.0.2", macs).hdr.Get("ETag")
		p := f.poll("10.0.0.2", macs+"?wait_for_change=true&timeout_sec=30&last_etag="+e)
		p.pending(t, 100*time.Millisecond)
		f.setAliases("p", "us-central1-a", "vm1", "10.0.0.20/32")
		r, _ := p.wait(t, 5*time.Second)
		if r.code != 200 || r.hdr.Get("ETag") == e {
			t.Fatalf("alibaba poll = %d %v", r.code, r.hdr)
		}
		if got := f.get("10.0.0.2", macs+"42:01:0a:00:00:02/private-ipv4s").body; got != `["10.0.0.2","10.0.0.20"]` {
			t.Fatalf("private-ipv4s = %s", got)
		}
	})
}

func TestInstanceGoneDuringPoll(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.poll("10.0.0.3", gv1+"instance/network-interfaces/?recursive=true&wait_for_change=true&timeout_sec=30")
	p.pending(t, 100*time.Millisecond)
	f.do("p", func(tx *model.Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm2") })
	if r, _ := p.wait(t, 5*time.Second); r.code != 404 {
		t.Fatalf("= %d %q", r.code, r.body)
	}
}

func TestParseTrusted(t *testing.T) {
	got, err := ParseTrusted([]string{"10.0.0.0/8", "192.168.1.1, ::1", "10.1.2.3/16"})
	if err != nil {
		t.Fatal(err)
	}
	want := "[10.0.0.0/8 192.168.1.1/32 ::1/128 10.1.0.0/16]"
	if fmt.Sprint(got) != want {
		t.Fatalf("= %v", got)
	}
	if _, err := ParseTrusted([]string{"bogus"}); err == nil {
		t.Fatal("bogus accepted")
	}
}

func TestNICsHandlerAndAlibabaInstance(t *testing.T) {
	f := newFixture(t, Options{})
	// An instance made by the Alibaba dialect: vSwitch, RunInstance, a
	// secondary private IP assigned to its ENI.
	f.do("r", func(tx *model.Txn) error {
		must(tx.CreateSubnet(model.Subnet{Project: "r", Region: "europe-west1", Zone: "europe-west1-b", Name: "vsw",
			Network: "vpc", Range: netip.MustParsePrefix("192.168.9.0/24"), Reserve: model.ReserveAlibaba}))
		_, _, err := tx.RunInstance(model.RunInstanceReq{Instance: model.Instance{Project: "r", Zone: "europe-west1-b",
			Name: "i-ali", MachineType: "ecs.g7.large"}, Subnet: "europe-west1/vsw", ENI: "eni-1", IP: netip.MustParseAddr("192.168.9.10")})
		return err
	})
	var mac, gw string
	f.svc.Read(func(st *model.State) {
		mac = st.Interface("r", "eni-1").MAC
		gw = st.Subnet("r", "europe-west1", "vsw").Gateway().String()
	})
	m := "/latest/meta-data/network/interfaces/macs/" + mac + "/"
	for path, want := range map[string]string{
		"/latest/meta-data/instance-id": "i-ali",
		"/latest/meta-data/mac":         mac,
		m + "network-interface-id":      "eni-1",
		m + "gateway":                   gw, // the model's Alibaba gateway
		m + "vswitch-id":                "vsw",
	} {
		if r := f.get("192.168.9.10", path); r.code != 200 || r.body != want {
			t.Errorf("GET %s = %d %q, want %q", path, r.code, r.body, want)
		}
	}

	h := NICsHandler(f.svc)
	mux := http.NewServeMux()
	mux.Handle(NICsPattern, h)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/aliasnet/v1/projects/r/zones/europe-west1-b/instances/i-ali/nics", 200, `"mac":"` + mac + `"`},
		{"/aliasnet/v1/projects/p/zones/us-central1-b/instances/vm3/nics", 200, `"index":1,"name":"nic1"`},
		{"/aliasnet/v1/projects/p/zones/us-central1-b/instances/nope/nics", 404, "was not found"},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("GET %s = %d %s", tc.path, w.Code, w.Body)
		}
	}
}

// TestClusterNodeAttributes: a Kubernetes node's instance attributes name
// its cluster and its pod range (so that guest agents leave that alias
// range to the CNI plugin); other instances have none, and a node that
// leaves loses them.
func TestClusterNodeAttributes(t *testing.T) {
	f := newFixture(t, Options{})
	f.do("q", func(tx *model.Txn) error { return tx.DeleteInstance("q", "us-central1-a", "qvm") })
	f.do("p", func(tx *model.Txn) error {
		_, _, err := tx.CreateCluster(model.CreateClusterReq{
			Cluster:      model.Cluster{Project: "p", Location: "us-central1-a", Name: "k", Network: "vpc", Subnet: "s", PodsRange: "pods", NodePools: []model.NodePool{{Name: "pool"}}},
			ServicesCIDR: "/28"})
		if err != nil {
			return err
		}
		_, err = tx.JoinNode("p", "us-central1-a", "k", "", "us-central1-a", "vm2")
		return err
	})
	var podRange string
	f.svc.Read(func(st *model.State) { podRange = st.NodeOf("p", "us-central1-a", "vm2").PodRange.String() })
	for _, c := range []struct {
		src, path string
		code      int
		body      string
	}{
		{"10.0.0.3", gv1 + "instance/attributes/", 200, "aliasnet-pod-range\ncluster-location\ncluster-name\n"},
		{"10.0.0.3", gv1 + "instance/attributes/aliasnet-pod-range", 200, podRange},
		{"10.0.0.3", gv1 + "instance/attributes/cluster-name", 200, "k"},
		{"10.0.0.3", gv1 + "instance/attributes/cluster-location", 200, "us-central1-a"},
		{"10.0.0.3", gv1 + "instance/network-interfaces/0/ip-aliases/", 200, podRange + "\n"},
		// vm1 has an alias from the same pods range but is no node.
		{"10.0.0.2", gv1 + "instance/attributes/", 200, ""},
		{"10.0.0.2", gv1 + "instance/attributes/aliasnet-pod-range", 404, ""},
	} {
		r := f.get(c.src, c.path)
		if r.code != c.code || (c.code == 200 && r.body != c.body) {
			t.Errorf("GET %s from %s = %d %q, want %d %q", c.path, c.src, r.code, r.body, c.code, c.body)
		}
	}
	// Recursive JSON keeps attribute keys as they are (GCE camelCases
	// field names, never attribute keys).
	r := f.get("10.0.0.3", gv1+"instance/?recursive=true")
	var inst struct {
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.Unmarshal([]byte(r.body), &inst); err != nil {
		t.Fatal(err)
	}
	if inst.Attributes["aliasnet-pod-range"] != podRange || inst.Attributes["cluster-name"] != "k" || len(inst.Attributes) != 3 {
		t.Fatalf("recursive attributes = %v\n%s", inst.Attributes, r.body)
	}
	if r := f.get("10.0.0.3", gv1+"instance/attributes/?recursive=true"); r.body != `{"aliasnet-pod-range":"`+podRange+`","cluster-location":"us-central1-a","cluster-name":"k"}` {
		t.Fatalf("attributes recursive = %s", r.body)
	}
	f.do("p", func(tx *model.Txn) error { return tx.RemoveNode("p", "us-central1-a", "k", "us-central1-a", "vm2") })
	if r := f.get("10.0.0.3", gv1+"instance/attributes/aliasnet-pod-range"); r.code != 404 {
		t.Fatalf("after leaving: %d %q", r.code, r.body)
	}
}
