package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NIC is what the metadata says one interface should carry.
type NIC struct {
	MAC     string     // lower-case, colon-separated
	Primary netip.Addr // informational
	// Routes are installed as local routes (table local, proto 66).
	Routes []netip.Prefix
	// Addrs are installed as addresses (/32 or /128).
	Addrs []netip.Prefix
}

// Desired is the whole wanted configuration.
type Desired struct {
	NICs []NIC
	// PodRanges are alias ranges of a Kubernetes node that its CNI plugin
	// routes to pods: the node must forward them, so no local route or
	// address is installed for them (as on GKE nodes). The GCE metadata
	// names them in the instance attribute aliasnet-pod-range.
	PodRanges []netip.Prefix
}

// PodRangeAttribute is the GCE instance attribute naming a Kubernetes
// node's pod range (aliasnet's metadata server sets it on cluster nodes).
const PodRangeAttribute = "aliasnet-pod-range"

// source fetches the desired state from a metadata server.
type source interface {
	// fetch returns the current desired state. With wait it first waits
	// (long-poll or poll interval) for a change since the last fetch.
	fetch(ctx context.Context, wait bool) (*Desired, error)
}

// statusError is a non-200 answer.
type statusError struct {
	url    string
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d: %s", e.url, e.status, strings.TrimSpace(e.body))
}

func httpGet(ctx context.Context, hc *http.Client, u string, hdr map[string]string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", "", err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		if len(b) > 200 {
			b = b[:200]
		}
		return "", "", &statusError{url: u, status: resp.StatusCode, body: string(b)}
	}
	return string(b), resp.Header.Get("ETag"), nil
}

func isNotFound(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == http.StatusNotFound
}

// parsePrefix accepts "10.0.0.5", "10.0.0.5/32", "10.1.0.0/24" and IPv6.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%s: IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// normMAC lower-cases and validates a MAC address.
func normMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return "", err
	}
	return hw.String(), nil
}

// --- GCE ---

// gceSource long-polls /computeMetadata/v1/instance/ (recursive): the
// network interfaces and the attributes come from one consistent answer,
// so a node that joins a cluster never shows its pod range as an alias
// without also naming it as the pod range.
type gceSource struct {
	base    string // e.g. http://169.254.169.254
	hc      *http.Client
	etag    string
	timeout time.Duration // long-poll timeout_sec
	warn    func(msg string, args ...any)
}

// gceNIC is the part of a recursive network-interfaces entry the agent
// uses (the same fields Google's guest agent reads).
type gceNIC struct {
	IP                string   `json:"ip"`
	Mac               string   `json:"mac"`
	IPAliases         []string `json:"ipAliases"`
	ForwardedIps      []string `json:"forwardedIps"`
	TargetInstanceIps []string `json:"targetInstanceIps"`
}

func (s *gceSource) fetch(ctx context.Context, wait bool) (*Desired, error) {
	q := url.Values{"recursive": {"true"}, "alt": {"json"}}
	if wait && s.etag != "" {
		q.Set("wait_for_change", "true")
		q.Set("last_etag", s.etag)
		q.Set("timeout_sec", strconv.Itoa(int(s.timeout/time.Second)))
	}
	u := s.base + "/computeMetadata/v1/instance/?" + q.Encode()
	body, etag, err := httpGet(ctx, s.hc, u, map[string]string{"Metadata-Flavor": "Google"})
	if err != nil {
		return nil, err
	}
	var inst struct {
		NetworkInterfaces []gceNIC `json:"networkInterfaces"`
		// Attribute values are strings on GCE; anything else is ignored.
		Attributes map[string]json.RawMessage `json:"attributes"`
	}
	if err := json.Unmarshal([]byte(body), &inst); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	s.etag = etag
	d := &Desired{}
	var pods string
	if raw, ok := inst.Attributes[PodRangeAttribute]; ok && json.Unmarshal(raw, &pods) != nil {
		s.warn("metadata: instance attribute is not a string", "attribute", PodRangeAttribute, "value", string(raw))
	}
	for _, r := range parseList(pods) {
		p, err := parsePrefix(r)
		if err != nil {
			s.warn("metadata: bad pod range", "attribute", PodRangeAttribute, "range", r)
			continue
		}
		d.PodRanges = append(d.PodRanges, p)
	}
	for i, n := range inst.NetworkInterfaces {
		mac, err := normMAC(n.Mac)
		if err != nil {
			s.warn("metadata: bad MAC", "nic", i, "mac", n.Mac)
			continue
		}
		nic := NIC{MAC: mac}
		nic.Primary, _ = netip.ParseAddr(n.IP)
		// Like Google's guest agent: alias ranges, forwarded IPs and
		// target-instance IPs all become local routes.
		for _, list := range [][]string{n.IPAliases, n.ForwardedIps, n.TargetInstanceIps} {
			for _, r := range list {
				p, err := parsePrefix(r)
				if err != nil {
					s.warn("metadata: bad range", "nic", i, "range", r)
					continue
				}
				nic.Routes = append(nic.Routes, p)
			}
		}
		d.NICs = append(d.NICs, nic)
	}
	return d, nil
}

// --- Alibaba ---

// alibabaSource reads /latest/meta-data/network/interfaces/macs/. Alibaba's
// server has no long-poll; aliasnet's answers wait_for_change on it (an
// extension, detected by the ETag header), otherwise the source polls.
type alibabaSource struct {
	base     string // e.g. http://100.100.100.200
	hc       *http.Client
	etag     string
	timeout  time.Duration
	interval time.Duration // poll interval without long-poll
	warn     func(msg string, args ...any)
}

// parseList reads Alibaba list items: a JSON array (private-ipv4s), a
// bracketed unquoted list (ipv6s: "[a,b]"), or comma/newline separated.
func parseList(s string) []string {
	s = strings.TrimSpace(s)
	var out []string
	if strings.HasPrefix(s, "[") && json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' || r == '\t' || r == '\r' }) {
		if f = strings.Trim(f, `"'`); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (s *alibabaSource) fetch(ctx context.Context, wait bool) (*Desired, error) {
	macsURL := s.base + "/latest/meta-data/network/interfaces/macs/"
	u := macsURL
	if wait {
		if s.etag != "" {
			u += "?" + url.Values{"wait_for_change": {"true"}, "last_etag": {s.etag},
				"timeout_sec": {strconv.Itoa(int(s.timeout / time.Second))}}.Encode()
		} else {
			t := time.NewTimer(s.interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
	}
	body, etag, err := httpGet(ctx, s.hc, u, nil)
	if err != nil {
		return nil, err
	}
	get := func(mac, item string, optional bool) (string, error) {
		v, _, err := httpGet(ctx, s.hc, macsURL+mac+"/"+item, nil)
		if err != nil && optional && isNotFound(err) {
			return "", nil
		}
		return v, err
	}
	d := &Desired{}
	for _, line := range strings.Split(body, "\n") {
		m := strings.TrimSuffix(strings.TrimSpace(line), "/")
		if m == "" {
			continue
		}
		mac, err := normMAC(m)
		if err != nil {
			s.warn("metadata: bad MAC", "mac", m)
			continue
		}
		nic := NIC{MAC: mac}
		prim, err := get(m, "primary-ip-address", false)
		if err != nil {
			return nil, err
		}
		nic.Primary, _ = netip.ParseAddr(strings.TrimSpace(prim))
		for _, it := range []struct {
			item  string
			route bool
		}{{"private-ipv4s", false}, {"ipv6s", false}, {"ipv4-prefixes", true}, {"ipv6-prefixes", true}} {
			v, err := get(m, it.item, it.item != "private-ipv4s")
			if err != nil {
				return nil, err
			}
			for _, e := range parseList(v) {
				p, err := parsePrefix(e)
				if err != nil {
					s.warn("metadata: bad address", "item", it.item, "value", e)
					continue
				}
				switch {
				case it.route:
					nic.Routes = append(nic.Routes, p)
				case p.Addr() == nic.Primary:
				case p.IsSingleIP():
					nic.Addrs = append(nic.Addrs, p)
				default:
					nic.Routes = append(nic.Routes, p)
				}
			}
		}
		d.NICs = append(d.NICs, nic)
	}
	s.etag = etag
	return d, nil
}
