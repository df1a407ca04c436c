package metadata

import (
	"encoding/json"
	"net/http"

	"github.com/aliasnet/aliasnet/internal/model"
)

// NICInfo is one interface as the aliasnet-specific NIC endpoint shows it.
type NICInfo struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	ID      string `json:"id"`
	IP      string `json:"ip"`
	MAC     string `json:"mac"`
	Network string `json:"network"`
	Subnet  string `json:"subnet"` // "REGION/NAME"
}

// NICsPattern is where the server mounts NICsHandler on its API listener.
const NICsPattern = "GET /aliasnet/v1/projects/{project}/zones/{zone}/instances/{instance}/nics"

// NICsHandler answers NICsPattern: an instance's interfaces in device order
// with their MACs, which the Compute API has no field for. `aliasnet
// guest-config` uses it; it shows nothing the API does not, except MACs.
func NICsHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, z, n := r.PathValue("project"), r.PathValue("zone"), r.PathValue("instance")
		var out []NICInfo
		found := false
		src.Read(func(st *model.State) {
			in := st.Instance(p, z, n)
			if in == nil {
				return
			}
			found = true
			for i, ifc := range st.NICs(in) {
				out = append(out, NICInfo{Index: i, Name: ifc.Name, ID: ifc.ID, IP: ifc.IP.String(), MAC: ifc.MAC,
					Network: ifc.Network, Subnet: ifc.Subnet})
			}
		})
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		if !found {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": 404,
				"message": "The resource '" + model.InstanceKey(p, z, n) + "' was not found"}})
			return
		}
		if out == nil {
			out = []NICInfo{}
		}
		json.NewEncoder(w).Encode(map[string]any{"nics": out})
	})
}
