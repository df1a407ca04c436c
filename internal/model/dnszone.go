package model

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Managed DNS zones (Cloud DNS v1 managedZones with their rrsets) let users
// name addresses by hand — seed 000: internal DNS associates only the
// primary IP of nic0 with the host name; "You can manually configure DNS to
// associate other IP addresses", e.g. alias IPs. The records are served by
// aliasnet's internal DNS (package dnsserver, run by package dnsrt).
//
// The model checks structure and conflicts; the dialect checks each
// rrdata's syntax (dnsserver.ValidateRRSet) before calling it.

// Zone visibilities (Cloud DNS spells them lower-case).
const (
	VisibilityPrivate = "private"
	VisibilityPublic  = "public"

	// DefaultRRSetTTL is the TTL of an rrset created without one.
	DefaultRRSetTTL = 300
	// MaxZoneChanges is how many change records a zone keeps.
	MaxZoneChanges = 50
)

// DNSZone is a managed zone. A private zone is visible to the networks it
// lists (none: to no one); a public zone, to every client of aliasnet's
// DNS server (it is an internal server: nothing is published on the
// internet).
type DNSZone struct {
	Project     string `json:"project"`
	Name        string `json:"name"`
	ID          uint64 `json:"id,string"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	// DNSName is the zone's apex, lower-case, with the trailing dot.
	DNSName    string `json:"dnsName"`
	Visibility string `json:"visibility"`
	// Networks are "PROJECT/NETWORK" (private zones).
	Networks []string       `json:"networks,omitempty"`
	RRSets   []DNSRecordSet `json:"rrsets,omitempty"`
	// LastChange is the id of the latest change; Changes keeps the latest
	// MaxZoneChanges of them.
	LastChange int             `json:"lastChange"`
	Changes    []DNSChange     `json:"changes,omitempty"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

// DNSRecordSet is one rrset: the records of a name and type.
type DNSRecordSet struct {
	Name    string   `json:"name"` // lower-case fqdn with the trailing dot
	Type    string   `json:"type"` // upper-case
	TTL     int      `json:"ttl"`
	RRDatas []string `json:"rrdatas"`
}

// DNSChange is one applied change request.
type DNSChange struct {
	ID        int            `json:"id"`
	Started   string         `json:"started"`
	Additions []DNSRecordSet `json:"additions,omitempty"`
	Deletions []DNSRecordSet `json:"deletions,omitempty"`
}

// DNSZoneKey is the store key of a managed zone.
func DNSZoneKey(p, name string) string { return "projects/" + p + "/managedZones/" + name }

// NormalizeDNSName lower-cases a DNS name (ASCII only, as DNS compares).
func NormalizeDNSName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkDNSName: a fully qualified name ("example.internal."), labels of
// 1-63 letters, digits, '-' or '_', at most 253 characters.
func checkDNSName(field, s string) error {
	if s == "" {
		return &Error{Code: Required, Field: field, Reason: "Required field '" + field + "' not specified"}
	}
	if !strings.HasSuffix(s, ".") || s == "." {
		return errf(Invalid, field, s, "A DNS name must be fully qualified and end with a dot, e.g. 'example.internal.'.")
	}
	if len(s) > 254 {
		return errf(Invalid, field, s, "A DNS name is at most 253 characters long.")
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		ok := len(l) >= 1 && len(l) <= 63 && l[0] != '-' && l[len(l)-1] != '-'
		for i := 0; ok && i < len(l); i++ {
			c := l[i]
			ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '*' && i == 0 && len(l) == 1
		}
		if !ok {
			return errf(Invalid, field, s, "Invalid DNS name: label '%s' must be 1-63 letters, digits, '-' or '_'.", l)
		}
	}
	return nil
}

// zonesOverlap reports whether two zones with the same dnsName would both
// answer some client: both public, or both private listing a common network.
func zonesOverlap(a, b *DNSZone) (string, bool) {
	if a.DNSName != b.DNSName {
		return "", false
	}
	if a.Visibility == VisibilityPublic && b.Visibility == VisibilityPublic {
		return "every network", true
	}
	if a.Visibility != b.Visibility {
		return "", false
	}
	for _, n := range a.Networks {
		if slices.Contains(b.Networks, n) {
			return "network '" + n + "'", true
		}
	}
	return "", false
}

// checkDNSZone validates z as it would be stored (normalising it): name,
// dnsName, visibility, networks that exist, and no other zone (in any
// project) with the same dnsName visible to the same networks.
func (s *State) checkDNSZone(z *DNSZone) error {
	if err := ValidName("name", z.Name); err != nil {
		return err
	}
	z.DNSName = NormalizeDNSName(z.DNSName)
	if err := checkDNSName("dnsName", z.DNSName); err != nil {
		return err
	}
	switch z.Visibility {
	case "":
		z.Visibility = VisibilityPublic
	case VisibilityPrivate, VisibilityPublic:
	default:
		return errf(Invalid, "visibility", z.Visibility, "Visibility must be '%s' or '%s'.", VisibilityPrivate, VisibilityPublic)
	}
	if z.Visibility == VisibilityPublic && len(z.Networks) > 0 {
		return errf(Invalid, "privateVisibilityConfig", z.Networks[0], "Only a private zone can list networks.")
	}
	for i, n := range z.Networks {
		f := fmt.Sprintf("privateVisibilityConfig.networks[%d].networkUrl", i)
		p, name, ok := strings.Cut(n, "/")
		if !ok || p == "" || name == "" {
			return errf(Invalid, f, n, "A network is named 'projects/PROJECT/global/networks/NAME'.")
		}
		if s.Network(p, name) == nil {
			return &Error{Code: NotFound, Field: f, Value: n, Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(p, name))}
		}
		if slices.Contains(z.Networks[:i], n) {
			return errf(Invalid, f, n, "Network '%s' is listed twice.", n)
		}
	}
	for _, pn := range s.Projects() {
		for _, o := range s.projects[pn].dnsZones {
			if o.Project == z.Project && o.Name == z.Name {
				continue
			}
			if where, ok := zonesOverlap(z, o); ok {
				return errf(Invalid, "dnsName", z.DNSName,
					"Managed zone '%s' of project '%s' already serves '%s' to %s; two zones with the same DNS name cannot be visible to the same network.",
					o.Name, o.Project, o.DNSName, where)
			}
		}
	}
	return nil
}

// CreateDNSZone adds a managed zone (without records).
func (t *Txn) CreateDNSZone(z DNSZone) (*DNSZone, error) {
	s := t.s
	nz := z
	nz.Networks = slices.Clone(z.Networks)
	nz.RRSets, nz.Changes, nz.LastChange = nil, nil, 0
	if err := s.checkDNSZone(&nz); err != nil {
		return nil, err
	}
	if s.DNSZone(z.Project, z.Name) != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", DNSZoneKey(z.Project, z.Name))}
	}
	nz.ID = t.NewID()
	nz.Created = t.Now
	p := s.proj(z.Project)
	putMap(t, p.dnsZones, nz.Name, &nz)
	t.record(DNSZoneKey(nz.Project, nz.Name), &nz)
	return &nz, nil
}

// UpdateDNSZone changes a zone's description, visibility and networks;
// the DNS name and the records stay.
func (t *Txn) UpdateDNSZone(z DNSZone) (*DNSZone, error) {
	s := t.s
	old := s.DNSZone(z.Project, z.Name)
	if old == nil {
		return nil, notFound("managedZone", DNSZoneKey(z.Project, z.Name))
	}
	if z.DNSName != "" && NormalizeDNSName(z.DNSName) != old.DNSName {
		return nil, errf(Invalid, "dnsName", z.DNSName, "The DNS name of a managed zone cannot be changed (it is '%s').", old.DNSName)
	}
	nz := *old
	nz.Description, nz.Visibility, nz.Networks = z.Description, z.Visibility, slices.Clone(z.Networks)
	if z.Extra != nil {
		nz.Extra = z.Extra
	}
	if err := s.checkDNSZone(&nz); err != nil {
		return nil, err
	}
	putMap(t, s.proj(z.Project).dnsZones, nz.Name, &nz)
	t.record(DNSZoneKey(nz.Project, nz.Name), &nz)
	return &nz, nil
}

// DeleteDNSZone removes an empty zone (Cloud DNS refuses a zone that
// still has records other than its SOA and NS).
func (t *Txn) DeleteDNSZone(project, name string) error {
	p := t.s.projects[project]
	if p == nil || p.dnsZones[name] == nil {
		return notFound("managedZone", DNSZoneKey(project, name))
	}
	if z := p.dnsZones[name]; len(z.RRSets) > 0 {
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The resource named '%s' cannot be deleted because it is not empty: delete its %d record sets first.", name, len(z.RRSets))}
	}
	putMap[string, DNSZone](t, p.dnsZones, name, nil)
	t.record(DNSZoneKey(project, name), nil)
	return nil
}

func normRRSet(r DNSRecordSet) DNSRecordSet {
	r.Name = NormalizeDNSName(r.Name)
	r.Type = strings.ToUpper(strings.TrimSpace(r.Type))
	r.RRDatas = slices.Clone(r.RRDatas)
	return r
}

// sameRRSet compares two rrsets as Cloud DNS does for a deletion: name,
// type, ttl and the same records in any order.
func sameRRSet(a, b DNSRecordSet) bool {
	if a.Name != b.Name || a.Type != b.Type || a.TTL != b.TTL || len(a.RRDatas) != len(b.RRDatas) {
		return false
	}
	x, y := slices.Clone(a.RRDatas), slices.Clone(b.RRDatas)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// ChangeRRSets applies a Cloud DNS change to a zone: every deletion must
// match an existing rrset exactly (name, type, ttl, rrdatas), then the
// additions are added; an addition may not replace an existing rrset
// (delete it in the same change). A CNAME cannot share its name with
// another rrset. Fields are named "additions[i].…" / "deletions[i].…".
func (t *Txn) ChangeRRSets(project, zone string, additions, deletions []DNSRecordSet) (*DNSZone, *DNSChange, error) {
	s := t.s
	old := s.DNSZone(project, zone)
	if old == nil {
		return nil, nil, notFound("managedZone", DNSZoneKey(project, zone))
	}
	if len(additions) == 0 && len(deletions) == 0 {
		return nil, nil, &Error{Code: Required, Field: "additions", Reason: "The change must have at least one addition or deletion."}
	}
	sets := slices.Clone(old.RRSets)
	ch := DNSChange{Started: t.Now}
	for i, d := range deletions {
		d = normRRSet(d)
		f := fmt.Sprintf("deletions[%d]", i)
		k := slices.IndexFunc(sets, func(o DNSRecordSet) bool { return o.Name == d.Name && o.Type == d.Type })
		if k < 0 {
			return nil, nil, &Error{Code: NotFound, Field: f, Value: d.Name,
				Reason: fmt.Sprintf("The resource 'entity.change.%s' named '%s (%s)' does not exist.", f, d.Name, d.Type)}
		}
		if !sameRRSet(sets[k], d) {
			return nil, nil, &Error{Code: ConditionNotMet, Field: f, Value: d.Name,
				Reason: fmt.Sprintf("The resource 'entity.change.%s' named '%s (%s)' does not match the existing record set (ttl %d, rrdatas %s).",
					f, d.Name, d.Type, sets[k].TTL, strings.Join(sets[k].RRDatas, " "))}
		}
		sets = slices.Delete(sets, k, k+1)
		ch.Deletions = append(ch.Deletions, d)
	}
	for i, a := range additions {
		a = normRRSet(a)
		f := fmt.Sprintf("additions[%d]", i)
		if err := checkDNSName(f+".name", a.Name); err != nil {
			return nil, nil, err
		}
		if a.Name != old.DNSName && !strings.HasSuffix(a.Name, "."+old.DNSName) {
			return nil, nil, errf(Invalid, f+".name", a.Name, "The record name is not inside the zone's DNS name '%s'.", old.DNSName)
		}
		if a.Type == "" {
			return nil, nil, &Error{Code: Required, Field: f + ".type", Reason: "Required field 'entity.change." + f + ".type' not specified"}
		}
		if a.TTL < 0 || a.TTL > 1<<31-1 {
			return nil, nil, errf(Invalid, f+".ttl", itoa(a.TTL), "The TTL must be between 0 and 2147483647 seconds.")
		}
		if len(a.RRDatas) == 0 {
			return nil, nil, &Error{Code: Required, Field: f + ".rrdatas", Reason: "Required field 'entity.change." + f + ".rrdatas' not specified"}
		}
		for _, o := range sets {
			if o.Name != a.Name {
				continue
			}
			if o.Type == a.Type {
				return nil, nil, &Error{Code: AlreadyExists, Field: f, Value: a.Name,
					Reason: fmt.Sprintf("The resource 'entity.change.%s' named '%s (%s)' already exists", f, a.Name, a.Type)}
			}
			if o.Type == "CNAME" || a.Type == "CNAME" {
				return nil, nil, errf(Invalid, f+".type", a.Type,
					"A CNAME record set cannot share its name '%s' with another record set (%s exists).", a.Name, o.Type)
			}
		}
		sets = append(sets, a)
		ch.Additions = append(ch.Additions, a)
	}
	slices.SortStableFunc(sets, func(x, y DNSRecordSet) int {
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return strings.Compare(x.Type, y.Type)
	})
	nz := *old
	nz.RRSets = sets
	nz.LastChange = old.LastChange + 1
	ch.ID = nz.LastChange
	nz.Changes = append(slices.Clone(old.Changes), ch)
	if len(nz.Changes) > MaxZoneChanges {
		nz.Changes = nz.Changes[len(nz.Changes)-MaxZoneChanges:]
	}
	putMap(t, s.proj(project).dnsZones, nz.Name, &nz)
	t.record(DNSZoneKey(project, nz.Name), &nz)
	return &nz, &ch, nil
}

// --- reads ---

// DNSZone returns a managed zone or nil.
func (s *State) DNSZone(p, name string) *DNSZone {
	if pr := s.projects[p]; pr != nil {
		return pr.dnsZones[name]
	}
	return nil
}

// DNSZones lists a project's managed zones by name.
func (s *State) DNSZones(p string) []*DNSZone {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.dnsZones, nil)
	}
	return nil
}

// RRSet finds a record set of a zone by name and type.
func (z *DNSZone) RRSet(name, typ string) (DNSRecordSet, bool) {
	name, typ = NormalizeDNSName(name), strings.ToUpper(typ)
	for _, r := range z.RRSets {
		if r.Name == name && r.Type == typ {
			return r, true
		}
	}
	return DNSRecordSet{}, false
}
