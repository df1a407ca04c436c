package netpolicy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Verdicts and step kinds of a trace.
const (
	Delivered = "DELIVERED"
	Dropped   = "DROPPED"

	StepSource    = "source" // only when the sender cannot send (not running)
	StepAntiSpoof = "anti-spoof"
	StepEgress    = "egress-firewall"
	StepRoute     = "route"
	StepIngress   = "ingress-firewall"
	StepDeliver   = "deliver"

	// Step results.
	Pass = "PASS"
	Drop = "DROP"
)

// Query is one packet to trace: the first packet of a connection.
type Query struct {
	Project  string
	Zone     string
	Instance string
	// NIC is "nic0".."nic7" (default nic0) or an interface ID.
	NIC string
	// Src defaults to the interface's primary IP.
	Src netip.Addr
	Dst netip.Addr
	// Protocol is an IP protocol number (6 tcp, 17 udp, 1 icmp, ...).
	Protocol uint8
	// Port is the destination port (TCP, UDP, SCTP).
	Port uint16
}

// Step is one decision on the packet's way.
type Step struct {
	Kind string `json:"kind"`
	// Result is PASS, DROP, or for the last step of a delivered packet
	// DELIVERED.
	Result string `json:"result"`
	// Rule names the firewall rule (or implied rule) that decided.
	Rule     string `json:"rule,omitempty"`
	Priority *int   `json:"priority,omitempty"`
	// Route names the route chosen, with its kind and destination.
	Route     string       `json:"route,omitempty"`
	RouteKind string       `json:"routeKind,omitempty"`
	DestRange netip.Prefix `json:"destRange,omitzero"`
	NextHop   *NextHop     `json:"nextHop,omitempty"`
	// Network is "PROJECT/NETWORK" where the step happens; Instance
	// ("PROJECT/ZONE/NAME") and Interface (nicN) where it applies.
	Network   string `json:"network,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Interface string `json:"interface,omitempty"`
	Detail    string `json:"detail"`
}

// Result is a trace's verdict and the steps that led to it.
type Result struct {
	Verdict string `json:"verdict"`
	Packet  Packet `json:"packet"`
	Steps   []Step `json:"steps"`
	// DeliveredTo is the receiving instance and interface (also set when a
	// next-hop instance takes the packet for forwarding); Egress says the
	// packet left the VPC ("internet-gateway" or "external").
	DeliveredTo *Endpoint `json:"deliveredTo,omitempty"`
	Egress      string    `json:"egress,omitempty"`
}

// Packet echoes the traced packet.
type Packet struct {
	From     string     `json:"from"` // PROJECT/ZONE/NAME:nicN
	Src      netip.Addr `json:"src"`
	Dst      netip.Addr `json:"dst"`
	Protocol string     `json:"protocol"`
	Port     int        `json:"port,omitempty"`
}

// Endpoint is an instance's interface.
type Endpoint struct {
	Instance  string `json:"instance"` // PROJECT/ZONE/NAME
	Interface string `json:"interface"`
	Network   string `json:"network"`
	// Forwarded: the packet is not addressed to this interface; the
	// instance took it as a route's next hop (canIpForward).
	Forwarded bool `json:"forwarded,omitempty"`
}

// ResolveTarget returns the primary IP of an instance's interface, for
// "--to INSTANCE[:nic]".
func (e *Engine) ResolveTarget(project, zone, instance, nic string) (netip.Addr, error) {
	f, err := e.iface(project, zone, instance, nic)
	if err != nil {
		return netip.Addr{}, err
	}
	return f.ip, nil
}

// FindInstance returns the zones of a project's instances named name.
func (e *Engine) FindInstance(project, name string) []string {
	var zones []string
	for _, in := range e.insts {
		if in.project == project && in.name == name {
			zones = append(zones, in.zone)
		}
	}
	return zones
}

// Trace follows one packet. It fails only on a malformed query (unknown
// instance or interface, mixed IP versions); every network outcome is a
// Result.
func (e *Engine) Trace(q Query) (Result, error) {
	f, err := e.iface(q.Project, q.Zone, q.Instance, q.NIC)
	if err != nil {
		return Result{}, err
	}
	src := q.Src
	if !src.IsValid() {
		src = f.ip
	}
	if !q.Dst.IsValid() {
		return Result{}, &model.Error{Code: model.Required, Field: "to", Reason: "Required parameter 'to' not specified"}
	}
	if src.Is4() != q.Dst.Is4() {
		return Result{}, &model.Error{Code: model.Invalid, Field: "src", Value: src.String(),
			Reason: fmt.Sprintf("Source %s and destination %s are of different IP versions.", src, q.Dst)}
	}
	t := &tracer{e: e, q: q, src: src, dst: q.Dst}
	t.res.Packet = Packet{From: f.inst.key + ":" + f.name, Src: src, Dst: q.Dst, Protocol: model.ProtocolName(q.Protocol)}
	if model.HasPorts(q.Protocol) {
		t.res.Packet.Port = int(q.Port)
	}
	t.run(f)
	return t.res, nil
}

type tracer struct {
	e        *Engine
	q        Query
	src, dst netip.Addr
	res      Result
}

func (t *tracer) step(s Step) { t.res.Steps = append(t.res.Steps, s) }

func (t *tracer) drop(s Step) {
	s.Result = Drop
	t.step(s)
	t.res.Verdict = Dropped
}

func where(f *iface) (string, string, string) {
	in := ""
	if f.inst != nil {
		in = f.inst.key
	}
	return f.net.key, in, f.name
}

func (t *tracer) run(f *iface) {
	netKey, instKey, nic := where(f)
	base := Step{Network: netKey, Instance: instKey, Interface: nic}

	if f.inst.status != model.InstanceRunning {
		s := base
		s.Kind = StepSource
		s.Detail = fmt.Sprintf("instance %s is %s: a stopped instance sends no packets", instKey, f.inst.status)
		t.drop(s)
		return
	}

	// 0. A packet to one of the instance's own addresses — on any of its
	// interfaces, the primary IP or inside an alias range — is the
	// guest's own business: its kernel delivers it (or routes it on, for
	// a range it serves such as a node's pods or a gateway's remote
	// network) without it ever reaching the fabric, so no anti-spoofing
	// or firewall rule applies.
	for _, g := range f.inst.nics {
		if pfx, ok := g.ownsAddr(t.dst); ok {
			d := base
			d.Kind = StepDeliver
			d.Result = Delivered
			d.Interface = g.name
			d.Detail = fmt.Sprintf("%s is an address of the sending instance itself (%s on %s): the guest handles it locally and it never reaches the fabric",
				t.dst, ownWhy(g, pfx, t.dst), g.name)
			t.step(d)
			t.res.Verdict = Delivered
			t.res.DeliveredTo = &Endpoint{Instance: instKey, Interface: g.name, Network: g.net.key}
			return
		}
	}

	// 1. Anti-spoofing on the sending interface.
	s := base
	s.Kind = StepAntiSpoof
	if f.inst.canIPForward {
		s.Result = Pass
		s.Detail = fmt.Sprintf("canIpForward is true on %s: anti-spoofing is off, any source address may leave", instKey)
		t.step(s)
	} else if ok, why := f.ownsSource(t.src); ok {
		s.Result = Pass
		s.Detail = why
		t.step(s)
	} else {
		s.Detail = fmt.Sprintf("source %s is neither the primary IP %s nor inside an alias IP range%s of %s %s, and canIpForward is false: the fabric drops it",
			t.src, f.ip, aliasList(f.aliases), instKey, nic)
		t.drop(s)
		return
	}

	// 2. Egress firewall.
	r := f.eg.eval(t.src, t.dst, t.q.Protocol, t.q.Port)
	s = base
	s.Kind = StepEgress
	s.Rule = r.name
	s.Priority = ptr(r.priority)
	s.Detail = r.explain(t.src, t.dst, t.q.Protocol, t.q.Port)
	if r.deny {
		t.drop(s)
		return
	}
	s.Result = Pass
	t.step(s)

	// 3. Route.
	sl, ok := f.view.lookup(t.dst)
	if !ok {
		s = base
		s.Kind = StepRoute
		s.Detail = fmt.Sprintf("no route in network %s (for this instance's tags) covers %s", netKey, t.dst)
		t.drop(s)
		return
	}
	rt := sl.win
	hop := rt.NextHop
	s = base
	s.Kind = StepRoute
	s.Result = Pass
	s.Route, s.RouteKind, s.DestRange, s.NextHop = rt.Name, rt.Kind, rt.Dst, &hop
	s.Detail = routeDetail(rt, sl)
	t.step(s)

	// 4. Next hop.
	switch hop.Kind {
	case HopNetwork, HopPeering:
		nw := f.net
		if hop.Kind == HopPeering {
			nw = t.e.nets[hop.Network]
		}
		to, pfx, ok := nw.owner(t.dst)
		if !ok || to.inst == nil {
			d := Step{Kind: StepDeliver, Network: nw.key}
			if ok {
				d.Detail = fmt.Sprintf("%s is held by interface %s, which is not attached to any instance", t.dst, to.id)
			} else {
				d.Detail = fmt.Sprintf("no instance in network %s has %s as its primary IP or inside an alias IP range", nw.key, t.dst)
			}
			t.drop(d)
			return
		}
		t.arrive(to, false, pfx)
	case HopInstance:
		to := t.e.ifaces[f.net.project+"/"+hop.Interface]
		if to == nil || to.inst == nil {
			t.drop(Step{Kind: StepDeliver, Network: netKey, Detail: "the next hop instance's interface is gone"})
			return
		}
		pfx, owned := to.ownsAddr(t.dst)
		t.arrive(to, !owned, pfx)
	case HopInternet:
		d := base
		d.Kind = StepDeliver
		if f.external.IsValid() {
			d.Result = Delivered
			d.Detail = fmt.Sprintf("leaves the VPC through the default internet gateway, source NATed to the external IP %s of %s %s; what happens beyond is outside aliasnet",
				f.external, instKey, nic)
			t.step(d)
			t.res.Verdict = Delivered
			t.res.Egress = HopInternet
			return
		}
		d.Detail = fmt.Sprintf("the default internet gateway only carries packets of interfaces with an external IP; %s %s has none", instKey, nic)
		t.drop(d)
	case HopExternal:
		d := base
		d.Kind = StepDeliver
		d.Result = Delivered
		d.Detail = fmt.Sprintf("handed to the BGP next hop %s, outside the VPC; what happens beyond is outside aliasnet", hop.IP)
		t.step(d)
		t.res.Verdict = Delivered
		t.res.Egress = HopExternal
	}
}

// arrive runs the receiving side: instance state, ingress firewall,
// destination check.
func (t *tracer) arrive(to *iface, forwarded bool, pfx netip.Prefix) {
	netKey, instKey, nic := where(to)
	base := Step{Network: netKey, Instance: instKey, Interface: nic}
	if to.inst.status != model.InstanceRunning {
		d := base
		d.Kind = StepDeliver
		d.Detail = fmt.Sprintf("instance %s is %s: nothing receives the packet", instKey, to.inst.status)
		t.drop(d)
		return
	}
	r := to.in.eval(t.src, t.dst, t.q.Protocol, t.q.Port)
	s := base
	s.Kind = StepIngress
	s.Rule = r.name
	s.Priority = ptr(r.priority)
	s.Detail = r.explain(t.src, t.dst, t.q.Protocol, t.q.Port)
	if r.deny {
		t.drop(s)
		return
	}
	s.Result = Pass
	t.step(s)
	d := base
	d.Kind = StepDeliver
	if forwarded {
		if !to.inst.canIPForward {
			d.Detail = fmt.Sprintf("%s is not an address of %s %s and canIpForward is false: the destination check drops it", t.dst, instKey, nic)
			t.drop(d)
			return
		}
		d.Result = Delivered
		d.Detail = fmt.Sprintf("handed to next-hop instance %s %s (canIpForward): %s is not its own address; what the instance does with it next is its own routing",
			instKey, nic, t.dst)
		t.step(d)
		t.res.Verdict = Delivered
		t.res.DeliveredTo = &Endpoint{Instance: instKey, Interface: nic, Network: netKey, Forwarded: true}
		return
	}
	d.Result = Delivered
	d.Detail = fmt.Sprintf("delivered to %s %s: %s", instKey, nic, ownWhy(to, pfx, t.dst))
	t.step(d)
	t.res.Verdict = Delivered
	t.res.DeliveredTo = &Endpoint{Instance: instKey, Interface: nic, Network: netKey}
}

func ptr[T any](v T) *T { return &v }

func (f *iface) ownsAddr(a netip.Addr) (netip.Prefix, bool) {
	if a == f.ip {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	for _, p := range f.aliases {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (f *iface) ownsSource(a netip.Addr) (bool, string) {
	pfx, ok := f.ownsAddr(a)
	if !ok {
		return false, ""
	}
	return true, fmt.Sprintf("source %s of %s %s", ownWhy(f, pfx, a), f.inst.key, f.name)
}

func ownWhy(f *iface, pfx netip.Prefix, a netip.Addr) string {
	if a == f.ip {
		return fmt.Sprintf("%s is the primary IP", a)
	}
	return fmt.Sprintf("%s is inside the alias IP range %s", a, pfx)
}

func aliasList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return " (it has none)"
	}
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return " (" + strings.Join(ss, ", ") + ")"
}

func routeDetail(r *Route, sl *slot) string {
	var b strings.Builder
	switch r.Kind {
	case KindSubnet:
		which := "primary range"
		if r.RangeName != "" {
			which = "secondary range '" + r.RangeName + "'"
		}
		fmt.Fprintf(&b, "subnet route %s of subnetwork %s (%s)", r.Dst, r.Subnet, which)
	case KindPeeringSubnet:
		which := "primary range"
		if r.RangeName != "" {
			which = "secondary range '" + r.RangeName + "'"
		}
		fmt.Fprintf(&b, "peering subnet route %s via peering '%s' to %s (subnetwork %s, %s)", r.Dst, r.NextHop.Peering, r.NextHop.Network, r.Subnet, which)
	case KindStatic:
		fmt.Fprintf(&b, "static route '%s' %s priority %d", r.Name, r.Dst, r.Priority)
		if len(r.Tags) > 0 {
			fmt.Fprintf(&b, " (tags %s)", strings.Join(r.Tags, ","))
		}
		switch r.NextHop.Kind {
		case HopInternet:
			b.WriteString(" to the default internet gateway")
		case HopInstance:
			fmt.Fprintf(&b, " to next-hop instance %s (%s)", r.NextHop.Instance, r.NextHop.IP)
		}
	case KindDynamic:
		fmt.Fprintf(&b, "dynamic (BGP) route %s priority %d to %s", r.Dst, r.Priority, r.NextHop.IP)
	}
	b.WriteString("; longest matching prefix")
	if len(sl.others) > 0 {
		names := make([]string, len(sl.others))
		for i, o := range sl.others {
			names[i] = fmt.Sprintf("%s (priority %d)", o.Name, o.Priority)
		}
		fmt.Fprintf(&b, ", preferred over %s", strings.Join(names, ", "))
	}
	return b.String()
}
