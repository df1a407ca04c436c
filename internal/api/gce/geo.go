package gce

import (
	"hash/fnv"
	"net/http"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

// stableID gives catalogue objects (projects, regions, zones) a fixed id.
func stableID(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64() >> 1
}

// Projects exist from first use: any name answers.
func (a *API) getProject(q *req) {
	q.reply(&compute.Project{
		Kind:                   "compute#project",
		Name:                   q.project,
		Id:                     stableID(q.project),
		SelfLink:               q.link("")[:len(q.link(""))-1],
		CreationTimestamp:      "2024-01-01T00:00:00.000-00:00",
		DefaultServiceAccount:  "default@" + q.project + ".iam.gserviceaccount.com",
		DefaultNetworkTier:     "PREMIUM",
		XpnProjectStatus:       "UNSPECIFIED_XPN_PROJECT_STATUS",
		CommonInstanceMetadata: &compute.Metadata{Kind: "compute#metadata", Fingerprint: "aliasnet"},
	})
}

func (q *req) renderRegion(rg model.Region) *compute.Region {
	out := &compute.Region{Kind: "compute#region", Name: rg.Name, Id: stableID(rg.Name), Status: "UP",
		Description: rg.Name, SelfLink: q.link("regions/" + rg.Name), CreationTimestamp: "2024-01-01T00:00:00.000-00:00"}
	for _, z := range rg.Zones {
		out.Zones = append(out.Zones, q.link("zones/"+z))
	}
	return out
}

func (a *API) listRegions(q *req) {
	out := &compute.RegionList{Kind: "compute#regionList", SelfLink: q.link("regions")}
	for _, rg := range model.Regions {
		out.Items = append(out.Items, q.renderRegion(rg))
	}
	q.reply(out)
}

func (a *API) getRegion(q *req) {
	rg, ok := model.RegionByName(q.r.PathValue("region"))
	if !ok {
		writeError(q.w, http.StatusNotFound, "notFound", "The resource '"+q.link("regions/"+q.r.PathValue("region"))+"' was not found")
		return
	}
	q.reply(q.renderRegion(rg))
}

func (q *req) renderZone(rg model.Region, z string) *compute.Zone {
	return &compute.Zone{Kind: "compute#zone", Name: z, Id: stableID(z), Status: "UP", Description: z,
		Region: q.link("regions/" + rg.Name), SelfLink: q.link("zones/" + z),
		CreationTimestamp: "2024-01-01T00:00:00.000-00:00", AvailableCpuPlatforms: []string{"Intel Cascade Lake"}}
}

func (a *API) listZones(q *req) {
	out := &compute.ZoneList{Kind: "compute#zoneList", SelfLink: q.link("zones")}
	for _, rg := range model.Regions {
		for _, z := range rg.Zones {
			out.Items = append(out.Items, q.renderZone(rg, z))
		}
	}
	q.reply(out)
}

func findZone(z string) (model.Region, bool) {
	for _, rg := range model.Regions {
		for _, zz := range rg.Zones {
			if zz == z {
				return rg, true
			}
		}
	}
	return model.Region{}, false
}

func (a *API) getZone(q *req) {
	z := q.r.PathValue("zone")
	rg, ok := findZone(z)
	if !ok {
		writeError(q.w, http.StatusNotFound, "notFound", "The resource '"+q.link("zones/"+z)+"' was not found")
		return
	}
	q.reply(q.renderZone(rg, z))
}

// getMachineType answers for any machine type: aliasnet does not model
// compute capacity, only addresses.
func (a *API) getMachineType(q *req) {
	mt := q.r.PathValue("mt")
	q.reply(&compute.MachineType{Kind: "compute#machineType", Name: mt, Id: stableID(mt), Zone: q.r.PathValue("zone"),
		GuestCpus: 2, MemoryMb: 4096, MaximumPersistentDisks: 128, SelfLink: q.link("zones/" + q.r.PathValue("zone") + "/machineTypes/" + mt)})
}
