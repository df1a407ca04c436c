package gce

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

// nicSpecs converts wire interfaces into model specs, naming bad fields.
func nicSpecs(in []*compute.NetworkInterface, field string) ([]model.NICSpec, error) {
	out := make([]model.NICSpec, 0, len(in))
	for i, ni := range in {
		if ni == nil {
			continue
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		spec := model.NICSpec{Network: lastSegment(ni.Network)}
		if ni.Subnetwork != "" {
			spec.Subnet = lastSegment(ni.Subnetwork)
			if r := refPart(ni.Subnetwork, "regions"); r != "" {
				spec.Subnet = r + "/" + spec.Subnet
			}
		}
		if ni.NetworkIP != "" {
			a, err := netip.ParseAddr(ni.NetworkIP)
			if err != nil || !a.Is4() {
				return nil, &model.Error{Code: model.Invalid, Field: f + ".networkIP", Value: ni.NetworkIP, Reason: "Invalid IPv4 address."}
			}
			spec.IP = a
		}
		aliases, err := aliasSpecs(ni.AliasIpRanges, f)
		if err != nil {
			return nil, err
		}
		spec.Aliases = aliases
		for j, ac := range ni.AccessConfigs {
			if ac == nil {
				continue
			}
			s, err := accessConfigSpec(ac, fmt.Sprintf("%s.accessConfigs[%d].", f, j))
			if err != nil {
				return nil, err
			}
			spec.AccessConfigs = append(spec.AccessConfigs, s)
		}
		if len(ni.Ipv6AccessConfigs) > 0 {
			return nil, &model.Error{Code: model.Invalid, Field: f + ".ipv6AccessConfigs",
				Reason: "Invalid value for field 'resource." + f + ".ipv6AccessConfigs': aliasnet subnetworks are IPv4 only, so a NIC takes no external IPv6 range."}
		}
		out = append(out, spec)
	}
	return out, nil
}

// accessConfigSpec converts a wire access config; prefix is prepended to
// field names in errors. Fields the model does not use travel in Extra
// and are echoed back.
func accessConfigSpec(ac *compute.AccessConfig, prefix string) (model.AccessConfigSpec, error) {
	s := model.AccessConfigSpec{Name: ac.Name, Type: ac.Type, NetworkTier: ac.NetworkTier}
	if ac.NatIP != "" {
		a, err := netip.ParseAddr(ac.NatIP)
		if err != nil || !a.Is4() {
			return s, &model.Error{Code: model.Invalid, Field: prefix + "natIP", Value: ac.NatIP,
				Reason: "Invalid IPv4 address (aliasnet takes natIP as an address, not as the name or URL of an address resource)."}
		}
		s.NatIP = a
	}
	rest := *ac
	rest.Kind, rest.Name, rest.Type, rest.NetworkTier, rest.NatIP = "", "", "", "", ""
	if b, err := json.Marshal(&rest); err == nil && string(b) != "{}" {
		s.Extra = b
	}
	return s, nil
}

// renderAccessConfigs is a NIC's accessConfigs: its access config, or
// the one an Alibaba EIP on its primary IP stands for.
func renderAccessConfigs(ifc *model.Interface) []*compute.AccessConfig {
	ac := ifc.ShownAccessConfig()
	if ac == nil {
		return nil
	}
	out := &compute.AccessConfig{}
	_ = json.Unmarshal(ac.Extra, out)
	out.Kind, out.Name, out.Type, out.NetworkTier = "compute#accessConfig", ac.Name, model.AccessConfigType, ac.NetworkTier
	if ifc.ExternalIP.IsValid() {
		out.NatIP = ifc.ExternalIP.String()
	}
	return []*compute.AccessConfig{out}
}

func aliasSpecs(in []*compute.AliasIpRange, field string) ([]model.AliasSpec, error) {
	var out []model.AliasSpec
	for j, ar := range in {
		if ar == nil {
			continue
		}
		af := fmt.Sprintf("%s.aliasIpRanges[%d].ipCidrRange", field, j)
		if ar.IpCidrRange == "" {
			return nil, &model.Error{Code: model.Required, Field: af, Reason: "Required field 'resource." + af + "' not specified"}
		}
		a, err := model.ParseAliasSpec(ar.IpCidrRange)
		if err != nil {
			return nil, &model.Error{Code: model.Invalid, Field: af, Value: ar.IpCidrRange, Reason: "Invalid alias IP range: " + err.Error()}
		}
		a.RangeName = ar.SubnetworkRangeName
		out = append(out, a)
	}
	return out, nil
}

func (q *req) renderNIC(ifc *model.Interface) *compute.NetworkInterface {
	region, sname, _ := strings.Cut(ifc.Subnet, "/")
	ni := &compute.NetworkInterface{
		Kind:        "compute#networkInterface",
		Name:        fmt.Sprintf("nic%d", ifc.Device),
		Network:     q.base() + "projects/" + ifc.Project + "/global/networks/" + ifc.Network,
		Subnetwork:  q.base() + "projects/" + ifc.Project + "/regions/" + region + "/subnetworks/" + sname,
		NetworkIP:   ifc.IP.String(),
		Fingerprint: ifc.Fingerprint,
		StackType:   "IPV4_ONLY",
	}
	for _, al := range ifc.Aliases {
		ni.AliasIpRanges = append(ni.AliasIpRanges, &compute.AliasIpRange{IpCidrRange: al.Range.String(), SubnetworkRangeName: al.RangeName})
	}
	ni.AccessConfigs = renderAccessConfigs(ifc)
	return ni
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (q *req) renderInstance(st *model.State, in *model.Instance) json.RawMessage {
	out := &compute.Instance{
		Kind:              "compute#instance",
		Id:                in.ID,
		Name:              in.Name,
		Description:       in.Description,
		CreationTimestamp: in.Created,
		Status:            in.Status,
		Zone:              q.link("zones/" + in.Zone),
		CanIpForward:      in.CanIPForward,
		SelfLink:          q.link("zones/" + in.Zone + "/instances/" + in.Name),
		Tags:              &compute.Tags{Items: in.Tags, Fingerprint: hashOf(in.Tags...)},
		Fingerprint:       hashOf(in.Created, in.Status, strings.Join(in.Tags, ",")),
		Hostname:          in.Hostname,
		CpuPlatform:       "Intel Cascade Lake",
		LabelFingerprint:  "42WmSpB8rSM=",
	}
	if in.MachineType != "" {
		out.MachineType = q.link("zones/" + in.Zone + "/machineTypes/" + in.MachineType)
	}
	for _, ifc := range st.NICs(in) {
		out.NetworkInterfaces = append(out.NetworkInterfaces, q.renderNIC(ifc))
	}
	return mergeExtra(out, in.Extra)
}

var instanceKnown = []string{"name", "description", "networkInterfaces", "tags", "canIpForward", "machineType",
	"kind", "id", "selfLink", "creationTimestamp", "status", "zone", "hostname", "fingerprint", "cpuPlatform", "labelFingerprint"}

func (a *API) insertInstance(q *req) {
	var in compute.Instance
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	zone := q.r.PathValue("zone")
	if _, ok := findZone(zone); !ok {
		q.fail(&model.Error{Code: model.Invalid, Field: "zone", Value: zone, Reason: fmt.Sprintf("Unknown zone '%s'.", zone)})
		return
	}
	specs, err := nicSpecs(in.NetworkInterfaces, "networkInterfaces")
	if err != nil {
		q.fail(err)
		return
	}
	extra := extraOf(raw, instanceKnown...)
	machineType := lastSegment(in.MachineType)
	canIPForward := in.CanIpForward
	var tags []string
	if in.Tags != nil {
		tags = in.Tags.Items
	}
	tmplRef := q.r.URL.Query().Get("sourceInstanceTemplate")
	q.do("zones/"+zone, "insert", model.InstanceKey(q.project, zone, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		if tmplRef != "" {
			it := tx.State().Template(q.project, lastSegment(tmplRef))
			if it == nil {
				return 0, nil, &model.Error{Code: model.NotFound, Field: "sourceInstanceTemplate", Value: tmplRef,
					Reason: "The resource '" + model.TemplateKey(q.project, lastSegment(tmplRef)) + "' was not found"}
			}
			if len(specs) == 0 {
				specs = it.NICs
			}
			var props map[string]json.RawMessage
			_ = json.Unmarshal(it.Extra, &props)
			if machineType == "" {
				var mt string
				_ = json.Unmarshal(props["machineType"], &mt)
				machineType = lastSegment(mt)
			}
			if !canIPForward {
				_ = json.Unmarshal(props["canIpForward"], &canIPForward)
			}
			if tags == nil {
				var t compute.Tags
				if json.Unmarshal(props["tags"], &t) == nil {
					tags = t.Items
				}
			}
			extra = templateExtra(extra, props)
		}
		inst, _, err := tx.CreateInstance(model.CreateInstanceReq{
			Instance: model.Instance{Project: q.project, Zone: zone, Name: in.Name, Description: in.Description,
				MachineType: machineType, CanIPForward: canIPForward, Tags: tags, Extra: extra},
			NICs: specs,
		})
		if err != nil {
			return 0, nil, err
		}
		return inst.ID, nil, nil
	})
}

// templateExtra adds template properties the request did not set.
func templateExtra(extra json.RawMessage, props map[string]json.RawMessage) json.RawMessage {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal(extra, &m)
	for k, v := range props {
		switch k {
		case "networkInterfaces", "machineType", "canIpForward", "tags":
			continue
		}
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

func (a *API) getInstance(q *req) {
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if in := st.Instance(q.project, q.r.PathValue("zone"), q.r.PathValue("instance")); in != nil {
			out = q.renderInstance(st, in)
		}
	})
	if out == nil {
		q.notFound("zones/" + q.r.PathValue("zone") + "/instances/" + q.r.PathValue("instance"))
		return
	}
	q.reply(out)
}

func (a *API) listInstances(q *req) {
	var items []json.RawMessage
	zone := q.r.PathValue("zone")
	a.svc.Read(func(st *model.State) {
		for _, in := range st.Instances(q.project, zone) {
			items = append(items, q.renderInstance(st, in))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#instanceList", ID: "projects/" + q.project + "/zones/" + zone + "/instances",
		Items: items[lo:hi], SelfLink: q.link("zones/" + zone + "/instances"), NextPageToken: next})
}

func (a *API) aggregatedInstances(q *req) {
	items := map[string]*scopedList{}
	for _, rg := range model.Regions {
		for _, z := range rg.Zones {
			items["zones/"+z] = &scopedList{Warning: &scopedWarning{Code: "NO_RESULTS_ON_PAGE", Message: "There are no results for scope 'zones/" + z + "' on this page."}}
		}
	}
	a.svc.Read(func(st *model.State) {
		for _, in := range st.Instances(q.project, "") {
			sl := items["zones/"+in.Zone]
			if sl == nil {
				sl = &scopedList{}
				items["zones/"+in.Zone] = sl
			}
			sl.Warning = nil
			sl.Instances = append(sl.Instances, q.renderInstance(st, in))
		}
	})
	q.reply(aggregatedList{Kind: "compute#instanceAggregatedList", ID: "projects/" + q.project + "/aggregated/instances", Items: items, SelfLink: q.link("aggregated/instances")})
}

func (a *API) deleteInstance(q *req) {
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	q.do("zones/"+zone, "delete", model.InstanceKey(q.project, zone, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if in := tx.State().Instance(q.project, zone, name); in != nil {
			id = in.ID
		}
		return id, nil, tx.DeleteInstance(q.project, zone, name)
	})
}

func (a *API) updateNIC(q *req) {
	var in compute.NetworkInterface
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	nic, ok := q.requiredParam("networkInterface")
	if !ok {
		return
	}
	specs, err := aliasSpecs(in.AliasIpRanges, "networkInterface")
	if err != nil {
		q.fail(err)
		return
	}
	_, hasAliases := raw["aliasIpRanges"]
	q.do("zones/"+zone, "updateNetworkInterface", model.InstanceKey(q.project, zone, name), in, func(tx *model.Txn) (uint64, any, error) {
		inst := tx.State().Instance(q.project, zone, name)
		if inst == nil {
			return 0, nil, &model.Error{Code: model.NotFound, Reason: "The resource '" + model.InstanceKey(q.project, zone, name) + "' was not found"}
		}
		if !hasAliases {
			// GCE treats an absent list like an empty one only when it
			// is sent; with no list there is nothing to change.
			for _, ifc := range tx.State().NICs(inst) {
				if ifc.Name == nic {
					for _, al := range ifc.Aliases {
						specs = append(specs, model.AliasSpec{Prefix: al.Range, RangeName: al.RangeName})
					}
				}
			}
		}
		if _, err := tx.UpdateAliases(q.project, zone, name, nic, in.Fingerprint, specs); err != nil {
			return 0, nil, err
		}
		return inst.ID, nil, nil
	})
}

func (a *API) setTags(q *req) {
	var in compute.Tags
	if _, ok := q.decode(&in); !ok {
		return
	}
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	q.do("zones/"+zone, "setTags", model.InstanceKey(q.project, zone, name), in, func(tx *model.Txn) (uint64, any, error) {
		inst := tx.State().Instance(q.project, zone, name)
		if inst == nil {
			return 0, nil, &model.Error{Code: model.NotFound, Reason: "The resource '" + model.InstanceKey(q.project, zone, name) + "' was not found"}
		}
		if in.Fingerprint != hashOf(inst.Tags...) {
			return 0, nil, &model.Error{Code: model.ConditionNotMet, Field: "tags.fingerprint", Reason: "Supplied fingerprint does not match current tags fingerprint of instance '" + name + "'."}
		}
		n, err := tx.SetTags(q.project, zone, name, in.Items)
		if err != nil {
			return 0, nil, err
		}
		return n.ID, nil, nil
	})
}

func (a *API) stopInstance(q *req)  { q.setStatus("stop", model.InstanceStopped) }
func (a *API) startInstance(q *req) { q.setStatus("start", model.InstanceRunning) }

func (q *req) setStatus(opType, status string) {
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	q.do("zones/"+zone, opType, model.InstanceKey(q.project, zone, name), nil, func(tx *model.Txn) (uint64, any, error) {
		n, err := tx.SetInstanceStatus(q.project, zone, name, status)
		if err != nil {
			return 0, nil, err
		}
		return n.ID, nil, nil
	})
}

func (a *API) addAccessConfig(q *req) {
	var in compute.AccessConfig
	if _, ok := q.decode(&in); !ok {
		return
	}
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	nic, ok := q.requiredParam("networkInterface")
	if !ok {
		return
	}
	spec, err := accessConfigSpec(&in, "")
	if err != nil {
		q.fail(err)
		return
	}
	// The hash covers the NIC too: a requestId reused for another NIC is
	// another request.
	q.do("zones/"+zone, "addAccessConfig", model.InstanceKey(q.project, zone, name), []any{nic, in}, func(tx *model.Txn) (uint64, any, error) {
		if _, err := tx.AddAccessConfig(q.project, zone, name, nic, spec); err != nil {
			return 0, nil, err
		}
		return tx.State().Instance(q.project, zone, name).ID, nil, nil
	})
}

func (a *API) deleteAccessConfig(q *req) {
	zone, name := q.r.PathValue("zone"), q.r.PathValue("instance")
	acName, ok := q.requiredParam("accessConfig")
	if !ok {
		return
	}
	nic, ok := q.requiredParam("networkInterface")
	if !ok {
		return
	}
	q.do("zones/"+zone, "deleteAccessConfig", model.InstanceKey(q.project, zone, name), []string{nic, acName}, func(tx *model.Txn) (uint64, any, error) {
		if _, err := tx.DeleteAccessConfig(q.project, zone, name, nic, acName); err != nil {
			return 0, nil, err
		}
		return tx.State().Instance(q.project, zone, name).ID, nil, nil
	})
}

// requiredParam returns a query parameter the method requires, or
// answers 400 naming it.
func (q *req) requiredParam(name string) (string, bool) {
	v := q.r.URL.Query().Get(name)
	if v == "" {
		q.badRequest("required", "Required parameter '%s' not specified", name)
	}
	return v, v != ""
}
