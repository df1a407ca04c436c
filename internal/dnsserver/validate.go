package dnsserver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// FieldError is returned by ValidateRRSet; Field is the Cloud DNS field path
// ("name", "type", "ttl", "rrdatas", "rrdatas[2]").
type FieldError struct {
	Field string
	Value string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Msg
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Msg)
}

// supportedTypes are the rrset types accepted in managed zones.
var supportedTypes = map[string]uint16{
	"A":     dns.TypeA,
	"AAAA":  dns.TypeAAAA,
	"CNAME": dns.TypeCNAME,
	"TXT":   dns.TypeTXT,
	"PTR":   dns.TypePTR,
	"SRV":   dns.TypeSRV,
	"MX":    dns.TypeMX,
}

// ValidateRRSet checks rr for a zone whose dnsName is zoneDNSName: the name
// is inside the zone, the type is supported, the TTL fits, and every rrdata
// parses (dns.NewRR) as that type. Errors are *FieldError.
func ValidateRRSet(rr RRSet, zoneDNSName string) error {
	apex, err := checkDNSName(zoneDNSName)
	if err != nil {
		return &FieldError{Field: "dnsName", Value: zoneDNSName, Msg: err.Error()}
	}
	_, err = parseRRSet(rr, apex)
	return err
}

// parseRRSet validates set inside the zone at apex (lower-case fqdn) and
// returns its records with lower-case owner names.
func parseRRSet(set RRSet, apex string) ([]dns.RR, error) {
	if set.Name == "" {
		return nil, &FieldError{Field: "name", Msg: "must not be empty"}
	}
	name, err := checkDNSName(set.Name)
	if err != nil {
		return nil, &FieldError{Field: "name", Value: set.Name, Msg: err.Error()}
	}
	if !dns.IsSubDomain(apex, name) {
		return nil, &FieldError{Field: "name", Value: set.Name, Msg: "is not inside zone " + apex}
	}
	typName := strings.ToUpper(set.Type)
	typ, ok := supportedTypes[typName]
	if !ok {
		msg := "unsupported type (want A, AAAA, CNAME, TXT, PTR, SRV or MX)"
		if typName == "SOA" || typName == "NS" {
			msg = "SOA and NS are synthesised at the zone apex and cannot be set"
		}
		return nil, &FieldError{Field: "type", Value: set.Type, Msg: msg}
	}
	if set.TTL > maxTTL {
		return nil, &FieldError{Field: "ttl", Value: strconv.FormatUint(uint64(set.TTL), 10), Msg: "must be at most 2147483647"}
	}
	if len(set.RRDatas) == 0 {
		return nil, &FieldError{Field: "rrdatas", Msg: "must not be empty"}
	}
	if typ == dns.TypeCNAME {
		if len(set.RRDatas) > 1 {
			return nil, &FieldError{Field: "rrdatas", Msg: "a CNAME rrset has exactly one rrdata"}
		}
		if name == apex {
			return nil, &FieldError{Field: "name", Value: set.Name, Msg: "a CNAME cannot be at the zone apex"}
		}
	}
	rrs := make([]dns.RR, 0, len(set.RRDatas))
	for i, rd := range set.RRDatas {
		field := "rrdatas[" + strconv.Itoa(i) + "]"
		if strings.TrimSpace(rd) == "" {
			return nil, &FieldError{Field: field, Value: rd, Msg: "must not be empty"}
		}
		if strings.ContainsAny(rd, "\r\n\x00") {
			return nil, &FieldError{Field: field, Value: rd, Msg: "must be a single line"}
		}
		rr, err := dns.NewRR(name + " " + strconv.FormatUint(uint64(set.TTL), 10) + " IN " + typName + " " + rd)
		if err != nil {
			msg := err.Error()
			var pe *dns.ParseError
			if errors.As(err, &pe) {
				msg = "does not parse as " + typName + ": " + msg
			}
			return nil, &FieldError{Field: field, Value: rd, Msg: msg}
		}
		if rr == nil {
			return nil, &FieldError{Field: field, Value: rd, Msg: "does not parse as " + typName + ": no record"}
		}
		h := rr.Header()
		if h.Rrtype != typ || h.Name != name || h.Class != dns.ClassINET {
			return nil, &FieldError{Field: field, Value: rd, Msg: "does not parse as " + typName}
		}
		h.Ttl = set.TTL
		for _, o := range rrs {
			if dns.IsDuplicate(o, rr) {
				return nil, &FieldError{Field: field, Value: rd, Msg: "duplicate rrdata"}
			}
		}
		rrs = append(rrs, rr)
	}
	return rrs, nil
}
