// Package dnsserver is aliasnet's GCE-style internal DNS: an authoritative,
// non-recursive DNS server built on github.com/miekg/dns.
//
// # What it answers
//
// Instance names (synthesised, zone "internal."):
//
//	INSTANCE.ZONE.c.PROJECT.internal.   zonal name  → A (nic0 primary IPv4), AAAA (nic0 IPv6, if any)
//	INSTANCE.c.PROJECT.internal.        global name → same records
//
// Only the nic0 primary address is ever published: [Instance] has no field for
// alias IP ranges or other NICs, exactly as GCE does not associate them with the
// host name. A domain-scoped project ID "example.com:proj" becomes
// "proj.example.com" in names.
//
// Global-name ambiguity: GCE only guarantees global names when instance names
// are unique within a project. If two instances of one project share a name in
// different zones, the global name answers with the A/AAAA records of every
// such instance visible to the client (sorted by zone), so it still resolves
// and a client in one network only sees its own instance; the zonal names stay
// unambiguous. Two instances with the same project, zone and name are a
// [Build] error.
//
// Reverse names: a PTR for every instance address (in-addr.arpa. and, for
// IPv6, ip6.arpa.) pointing at the zonal name. The server is authoritative
// for the RFC 1918 reverse zones (10., 16-31.172., 168.192.in-addr.arpa.), the
// ULA zones (c.f. and d.f.ip6.arpa.), and for any other instance address the
// /24 (IPv4) or /64 (IPv6) reverse zone containing it.
//
// Managed private zones (Cloud DNS v1 shape, [Zone] and [RRSet]) carry names
// that users give by hand, e.g. for alias IPs. Types A, AAAA, CNAME, TXT, PTR,
// SRV and MX are supported; SOA and NS at each zone apex are synthesised
// (they are rejected as user rrsets). Rrdatas are in presentation format and
// parsed with dns.NewRR, so a domain name without a trailing dot is taken as
// absolute. A managed zone shadows everything beneath its apex, including
// instance names and PTRs of a synthesised zone (as a Cloud DNS private zone
// does in GCE); the longest visible zone wins. CNAMEs are followed across all
// zones the client can see, up to 8 hops; the rcode is that of the last name.
//
// Responses: NXDOMAIN (with SOA) for names that do not exist in a zone we
// serve, NOERROR/NODATA (with SOA) for existing names without the asked type
// (e.g. AAAA of an IPv4-only instance, or empty non-terminals), REFUSED for
// names outside every zone the client can see (we are not a recursive
// resolver), REFUSED for AXFR/IXFR and non-IN classes, NOTIMP for opcodes
// other than QUERY, FORMERR for QDCOUNT != 1 or more than one OPT, BADVERS for
// EDNS versions other than 0, SERVFAIL before the first [Server.Update].
// ANY is answered minimally (RFC 8482): the first RRset at the name (by type
// number), or SOA at an apex. AA is set on every answer from our zones.
// Name matching is ASCII case-insensitive; the question is echoed unchanged
// (0x20 safe), owner names in answers are lower-case. SOA and NS at apexes
// and all instance records use [Options].TTL; the SOA minimum (negative
// caching) is the same TTL. Managed rrsets use their own TTL.
//
// EDNS(0): OPT is echoed with our payload size (1232) and the DO bit copied.
// UDP answers are limited to min(client payload size, 1232), or 512 without
// EDNS, and truncated with TC set; TCP answers may use 65535 bytes.
//
// # Visibility
//
// Options.NetworkOf maps a client source address to a network name.
//   - If NetworkOf is nil, every client sees everything (single-network mode).
//   - Otherwise an instance's records (names and PTRs) are visible only to
//     clients in Instance.Network, as in GCE ("the DNS lookup on that host name
//     only works in the network that contains the primary interface"); an
//     instance with Network "" is visible to every client. A managed zone is
//     visible to clients in one of Zone.Networks; a zone with no Networks is
//     visible to every client.
//   - A client whose network is unknown (NetworkOf returns "") therefore sees
//     only instances with Network "" and zones without Networks.
//
// Invisible instance names are NXDOMAIN (the synthesised zones are served to
// everyone); an invisible managed zone is not served, so its names fall to the
// next enclosing visible zone or are REFUSED. Several zones may share a
// dnsName with different Networks (per-network views); for a client, a zone
// that lists its network wins over one visible to all, which wins over a
// synthesised zone. Two zones with the same dnsName that are both visible to
// all networks, or that both list a common network, are a Build error. With
// NetworkOf nil the first such zone (network-listing zones first, then by
// project and name) is served.
package dnsserver
