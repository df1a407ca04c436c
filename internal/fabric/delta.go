package fabric

import (
	"bytes"
	"cmp"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"

	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// A spec is made of units: instances, networks without their interfaces
// ("heads"), and the interfaces of each network. A Delta carries the units
// that differ between two specs, in wire form (what encode keeps: NIC
// aliases, Forwarding and AntiSpoof are derived from the interfaces), so
// that a data plane holding the spec with ETag From gets the one with
// ETag To without the server encoding, or the data plane decoding and
// planning, the whole project again.

// Delta turns the spec with ETag From into the one with ETag To.
type Delta struct {
	Project string `json:"project"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Instances are the instances added or changed, whole, in key order.
	Instances        []Instance     `json:"instances,omitempty"`
	RemovedInstances []string       `json:"removedInstances,omitempty"`
	Networks         []NetworkDelta `json:"networks,omitempty"`
	RemovedNetworks  []string       `json:"removedNetworks,omitempty"`
}

// NetworkDelta is one network's change: the whole network when anything
// but its interfaces changed (or it is new, or its interfaces were added,
// removed or reordered), otherwise the changed interfaces.
type NetworkDelta struct {
	Key     string   `json:"key"`
	Network *Network `json:"network,omitempty"`
	// Interfaces replace the network's interfaces with the same IDs.
	Interfaces []netpolicy.FabricInterface `json:"interfaces,omitempty"`
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return len(d.Instances) == 0 && len(d.RemovedInstances) == 0 && len(d.Networks) == 0 && len(d.RemovedNetworks) == 0
}

// Update is the answer of the fabric spec endpoint asked for deltas
// (?delta=1): the whole spec, or a delta from the ETag the caller holds.
type Update struct {
	ETag  string `json:"etag"`
	Spec  *Spec  `json:"spec,omitempty"`
	Delta *Delta `json:"delta,omitempty"`
}

// UpdateGobContentType is the media type of EncodeUpdate's output.
const UpdateGobContentType = "application/x-aliasnet-spec-update+gob"

// EncodeUpdate encodes u for DecodeUpdate; a whole spec goes in its wire
// form.
func EncodeUpdate(u *Update) ([]byte, error) {
	w := *u
	if u.Spec != nil {
		w.Spec = u.Spec.wire()
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&w); err != nil {
		return nil, fmt.Errorf("fabric: encode update: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeUpdate decodes EncodeUpdate's output (a whole spec comes back
// expanded, as DecodeGob's).
func DecodeUpdate(b []byte) (*Update, error) {
	var u Update
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&u); err != nil {
		return nil, fmt.Errorf("fabric: decode update: %w", err)
	}
	if u.Spec != nil {
		u.Spec.expand()
	}
	return &u, nil
}

// Changes says which parts of a spec differ from the spec before it;
// ApplyDelta returns it so that a data plane re-examines only those. A nil
// *Changes means "anything may have changed".
type Changes struct {
	// Instances are the keys of the instances added, removed or changed,
	// NIC aliases included.
	Instances map[string]bool
	// Networks are the networks added, removed or changed.
	Networks map[string]*NetChange
}

// NetChange is the change of one network.
type NetChange struct {
	// Whole: more than interfaces changed; plan the network afresh.
	Whole bool
	// Interfaces are the IDs of the changed interfaces (when not Whole).
	Interfaces map[string]bool
}

// Network returns the change of a network: nil when it did not change.
func (c *Changes) Network(key string) *NetChange {
	if c == nil {
		return &NetChange{Whole: true}
	}
	return c.Networks[key]
}

// Instance reports whether an instance (may have) changed.
func (c *Changes) Instance(key string) bool { return c == nil || c.Instances[key] }

// ErrDeltaBase is returned by ApplyDelta when the delta does not start
// from the given spec, or does not lead to its To ETag.
var ErrDeltaBase = errors.New("fabric: delta does not apply to the spec held")

// ApplyDelta returns the spec d makes of s (an expanded spec, as
// DecodeGob returns; s is not modified and shares what did not change)
// and what changed. The result's ETag is recomputed from its content and
// must be d.To: a data plane never runs on a spec the server did not
// have.
func ApplyDelta(s *Spec, d *Delta) (*Spec, *Changes, error) {
	if s == nil || d.From != s.ETag || d.Project != s.Project {
		return nil, nil, ErrDeltaBase
	}
	s = s.Expanded() // s itself unless it came in wire form
	out, ch, err := s.apply(d, true)
	if err != nil {
		return nil, nil, err
	}
	if out.ETag != d.To {
		return nil, nil, fmt.Errorf("%w: the result's etag is %s, the server's %s", ErrDeltaBase, out.ETag, d.To)
	}
	return out, ch, nil
}

// ContentETag returns the ETag of s's content, computed (and kept for
// ApplyDelta) from its units. It equals s.ETag unless the spec was
// altered, or the server hashes units differently (another version):
// then deltas cannot be checked, and a data plane should follow whole
// specs.
func (s *Spec) ContentETag() string { return s.hashes().etag(s) }

// hasDerived reports whether s carries derived parts (the expanded form;
// the wire form has none, not even empty lists).
func (s *Spec) hasDerived() bool {
	for _, nw := range s.Networks {
		if nw.AntiSpoof != nil || (nw.Desired != nil && (nw.Desired.Forwarding != nil || nw.Desired.AntiSpoof != nil)) {
			return true
		}
	}
	for _, in := range s.Instances {
		for _, n := range in.NICs {
			if n.Aliases != nil {
				return true
			}
		}
	}
	return false
}

// wire returns s without its derived parts (s itself when it has none).
func (s *Spec) wire() *Spec {
	if !s.hasDerived() {
		return s
	}
	w := *s
	w.Networks = make([]Network, len(s.Networks))
	for i, nw := range s.Networks {
		if nw.Desired != nil {
			d := *nw.Desired
			d.Forwarding, d.AntiSpoof = nil, nil
			nw.Desired = &d
		}
		nw.AntiSpoof = nil
		w.Networks[i] = nw
	}
	w.Instances = make([]Instance, len(s.Instances))
	for i, in := range s.Instances {
		nics := make([]NIC, len(in.NICs))
		for j, n := range in.NICs {
			n.Aliases = nil
			nics[j] = n
		}
		in.NICs = nics
		w.Instances[i] = in
	}
	return &w
}

// Expanded returns s with its derived parts (s itself when it has them):
// what JSON clients get.
func (s *Spec) Expanded() *Spec {
	if s.hasDerived() {
		return s
	}
	e := *s
	e.Networks = make([]Network, len(s.Networks))
	for i, nw := range s.Networks {
		if nw.Desired != nil {
			d := *nw.Desired
			nw.Desired = &d
		}
		e.Networks[i] = nw
		expandNetwork(&e.Networks[i])
	}
	e.Instances = make([]Instance, len(s.Instances))
	for i, in := range s.Instances {
		in.NICs = slices.Clone(in.NICs)
		e.Instances[i] = in
	}
	e.deriveNICAliases(nil)
	return &e
}

func findNetwork(nets []Network, key string) (int, bool) {
	return slices.BinarySearchFunc(nets, key, func(n Network, k string) int { return cmp.Compare(n.Key, k) })
}

func findInstance(insts []Instance, key string) (int, bool) {
	return slices.BinarySearchFunc(insts, key, func(in Instance, k string) int { return cmp.Compare(in.Key, k) })
}

// apply makes the spec d describes from s, without modifying s (the two
// share every unit d does not touch). With expanded, the derived parts
// are kept up to date too (a data plane's spec); without, s is in wire
// form and so is the result (a server's). The result's ETag is computed
// from its unit hashes.
func (s *Spec) apply(d *Delta, expanded bool) (*Spec, *Changes, error) {
	h := s.hashes().clone()
	ch := &Changes{Instances: map[string]bool{}, Networks: map[string]*NetChange{}}
	nets := slices.Clone(s.Networks)
	aliasDirty := map[string]bool{} // instances whose NIC aliases must be derived again
	wholeNets := map[string]bool{}  // networks replaced or removed
	markNet := func(nw *Network) {
		if nw.Desired == nil {
			return
		}
		for _, fi := range nw.Desired.Interfaces {
			if fi.Instance != "" {
				aliasDirty[fi.Instance] = true
			}
		}
	}
	for _, key := range d.RemovedNetworks {
		i, ok := findNetwork(nets, key)
		if !ok {
			continue
		}
		h.dropNetwork(&nets[i])
		markNet(&nets[i])
		nets = slices.Delete(nets, i, i+1)
		ch.Networks[key] = &NetChange{Whole: true}
		wholeNets[key] = true
	}
	for _, nd := range d.Networks {
		if nd.Network != nil {
			nw := *nd.Network
			if nw.Key != nd.Key {
				return nil, nil, fmt.Errorf("fabric: delta: network %s under key %s", nw.Key, nd.Key)
			}
			if nw.Desired != nil {
				// The delta's network may be shared (a server's): derive
				// into copies.
				dd := *nw.Desired
				nw.Desired = &dd
			}
			if expanded {
				expandNetwork(&nw)
			} else {
				nw.AntiSpoof = nil
				if nw.Desired != nil {
					nw.Desired.Forwarding, nw.Desired.AntiSpoof = nil, nil
				}
			}
			i, ok := findNetwork(nets, nd.Key)
			if ok {
				h.dropNetwork(&nets[i])
				markNet(&nets[i])
				nets[i] = nw
			} else {
				nets = slices.Insert(nets, i, nw)
			}
			h.addNetwork(&nw)
			markNet(&nw)
			ch.Networks[nd.Key] = &NetChange{Whole: true}
			wholeNets[nd.Key] = true
			continue
		}
		i, ok := findNetwork(nets, nd.Key)
		if !ok || nets[i].Desired == nil {
			return nil, nil, fmt.Errorf("%w: no network %s to change", ErrDeltaBase, nd.Key)
		}
		nw := nets[i]
		dd := *nw.Desired
		dd.Interfaces = slices.Clone(dd.Interfaces)
		idx := make(map[string]int, len(dd.Interfaces))
		for k, fi := range dd.Interfaces {
			idx[fi.ID] = k
		}
		nc := ch.Networks[nd.Key]
		if nc == nil {
			nc = &NetChange{Interfaces: map[string]bool{}}
			ch.Networks[nd.Key] = nc
		}
		olds := make([]netpolicy.FabricInterface, 0, len(nd.Interfaces))
		for _, fi := range nd.Interfaces {
			k, ok := idx[fi.ID]
			if !ok {
				return nil, nil, fmt.Errorf("%w: no interface %s in network %s", ErrDeltaBase, fi.ID, nd.Key)
			}
			old := dd.Interfaces[k]
			olds = append(olds, old)
			dd.Interfaces[k] = fi
			h.iface[ifaceKey{nd.Key, fi.ID}] = canonHash(fi)
			if nc.Interfaces != nil {
				nc.Interfaces[fi.ID] = true
			}
			for _, inst := range []string{old.Instance, fi.Instance} {
				if inst != "" {
					aliasDirty[inst] = true
				}
			}
		}
		if expanded {
			dd.Forwarding = patchForwarding(dd.Forwarding, olds, nd.Interfaces)
			nw.AntiSpoof = patchAntiSpoof(nw.AntiSpoof, olds, nd.Interfaces)
		}
		nw.Desired = &dd
		nets[i] = nw
	}

	// A network's router links towards its peers depend on which networks
	// the spec holds: a network that came or went changes its peers' plans.
	var cameOrWent []string
	for key := range wholeNets {
		_, had := findNetwork(s.Networks, key)
		_, has := findNetwork(nets, key)
		if had != has {
			cameOrWent = append(cameOrWent, key)
		}
	}
	for _, nw := range nets {
		if nw.Desired == nil || wholeNets[nw.Key] {
			continue
		}
		for _, pe := range nw.Desired.Peers {
			if slices.Contains(cameOrWent, pe.Network) {
				ch.Networks[nw.Key] = &NetChange{Whole: true}
			}
		}
	}

	insts := slices.Clone(s.Instances)
	for _, key := range d.RemovedInstances {
		if i, ok := findInstance(insts, key); ok {
			insts = slices.Delete(insts, i, i+1)
			delete(h.inst, key)
			ch.Instances[key] = true
		}
	}
	for _, in := range d.Instances {
		in.NICs = slices.Clone(in.NICs)
		for j := range in.NICs {
			in.NICs[j].Aliases = nil
		}
		if i, ok := findInstance(insts, in.Key); ok {
			insts[i] = in
		} else {
			insts = slices.Insert(insts, i, in)
		}
		h.inst[in.Key] = instanceHash(in)
		ch.Instances[in.Key] = true
		aliasDirty[in.Key] = true
	}
	out := &Spec{Project: s.Project, Networks: nets, Instances: insts}
	if expanded {
		// Instances with a NIC on a replaced or removed network, and
		// those whose interfaces changed, take their aliases afresh.
		for i := range insts {
			in := &insts[i]
			if !aliasDirty[in.Key] {
				for _, n := range in.NICs {
					if wholeNets[n.Network] {
						aliasDirty[in.Key] = true
						break
					}
				}
			}
			if aliasDirty[in.Key] {
				ch.Instances[in.Key] = true
				in.NICs = slices.Clone(in.NICs)
			}
		}
		out.deriveNICAliases(aliasDirty)
	}
	out.h = h
	out.ETag = h.etag(out)
	return out, ch, nil
}

// patchForwarding replaces the delivery entries of the interfaces olds
// by those of news in a sorted Forwarding list (one merge, no sort of the
// whole list).
func patchForwarding(fw []netpolicy.Forward, olds, news []netpolicy.FabricInterface) []netpolicy.Forward {
	var del, add []netpolicy.Forward
	for _, fi := range olds {
		del = appendForwarding(del, fi)
	}
	for _, fi := range news {
		add = appendForwarding(add, fi)
	}
	sortForwarding(del)
	sortForwarding(add)
	return patchSorted(fw, del, add, forwardOrder, func(a, b netpolicy.Forward) bool { return a.Interface == b.Interface })
}

// patchAntiSpoof replaces the anti-spoofing entries of the interfaces
// olds by those of news (the list stays sorted by interface).
func patchAntiSpoof(as []AntiSpoof, olds, news []netpolicy.FabricInterface) []AntiSpoof {
	out := slices.Clone(as)
	gone := map[string]bool{}
	for _, fi := range olds {
		gone[fi.ID] = true
	}
	out = slices.DeleteFunc(out, func(a AntiSpoof) bool { return gone[a.Interface] })
	for _, fi := range news {
		if a, ok := antiSpoofOf(fi); ok {
			i, _ := slices.BinarySearchFunc(out, a.Interface, func(x AntiSpoof, id string) int { return cmp.Compare(x.Interface, id) })
			out = slices.Insert(out, i, a)
		}
	}
	return out
}
