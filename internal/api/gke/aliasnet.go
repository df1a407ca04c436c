package gke

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// aliasnet's own cluster calls, under AliasnetPath:
//
//	GET  …/clusters/C/usage               Usage (pods: nodes used/possible; services: IPs used/possible)
//	GET  …/clusters/C/nodes               {"nodes":[Node…]}
//	POST …/clusters/C/nodes:join          {"instance","zone","pool"} -> Node
//	POST …/clusters/C/nodes:leave         {"instance","zone"} -> {}
//	GET  …/clusters/C/services            {"services":[ServiceIP…]}
//	POST …/clusters/C/services:allocate   {"name","ip"?} -> ServiceIP
//	POST …/clusters/C/services:release    {"name"} -> ServiceIP (as it was)
//
// Mutations are synchronous and durable when they answer; a refused
// allocation answers 4xx with the model's message (an exhausted range is
// 429 RESOURCE_EXHAUSTED).

// Node is a cluster node as aliasnet reports it.
type Node struct {
	Instance string `json:"instance"`
	Zone     string `json:"zone"`
	Pool     string `json:"pool"`
	PodRange string `json:"podRange"`
	Managed  bool   `json:"managed"`
	Created  string `json:"created"`
}

// ServiceIP is an allocated service address.
type ServiceIP struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	Created string `json:"created,omitempty"`
}

func nodeOf(n *model.ClusterNode) Node {
	return Node{Instance: n.Instance, Zone: n.Zone, Pool: n.Pool, PodRange: n.PodRange.String(), Managed: n.Managed, Created: n.Created}
}

func (a *API) aliasnetGet(q *req) {
	name := q.r.PathValue("cluster")
	var out any
	var err error
	a.svc.Read(func(st *model.State) {
		c := st.Cluster(q.project, q.location, name)
		if c == nil {
			err = &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s.", model.ClusterKey(q.project, q.location, name))}
			return
		}
		switch q.r.PathValue("what") {
		case "usage":
			out = usageOf(st.Usage(c))
		case "nodes":
			l := struct {
				Nodes []Node `json:"nodes"`
			}{Nodes: []Node{}}
			for _, n := range st.ClusterNodes(q.project, q.location, name) {
				l.Nodes = append(l.Nodes, nodeOf(n))
			}
			out = l
		case "services":
			l := struct {
				Services []ServiceIP `json:"services"`
			}{Services: []ServiceIP{}}
			for _, s := range st.ServiceIPs(q.project, q.location, name) {
				l.Services = append(l.Services, ServiceIP{Name: s.Name, IP: s.IP.String(), Created: s.Created})
			}
			out = l
		}
	})
	if err != nil {
		q.fail(err)
		return
	}
	if out == nil {
		writeError(q.w, http.StatusNotFound, "Unknown cluster collection "+q.r.PathValue("what")+".")
		return
	}
	q.reply(out)
}

type nodeReq struct {
	Instance string `json:"instance"`
	Zone     string `json:"zone"`
	Pool     string `json:"pool,omitempty"`
}

type serviceReq struct {
	Name string `json:"name"`
	IP   string `json:"ip,omitempty"`
}

func (a *API) aliasnetPost(q *req) {
	name := q.r.PathValue("cluster")
	target := model.ClusterKey(q.project, q.location, name)
	switch verb := q.r.PathValue("what"); verb {
	case "nodes:join", "nodes:leave":
		var b nodeReq
		if _, ok := q.decode(&b); !ok {
			return
		}
		if b.Instance == "" || b.Zone == "" {
			q.badRequest("Both 'instance' and 'zone' are required.")
			return
		}
		if verb == "nodes:join" {
			q.sync("JOIN_NODE", target, b, func(tx *model.Txn) (uint64, any, error) {
				n, err := tx.JoinNode(q.project, q.location, name, b.Pool, b.Zone, b.Instance)
				if err != nil {
					return 0, nil, err
				}
				return 0, nodeOf(n), nil
			})
			return
		}
		q.sync("LEAVE_NODE", target, b, func(tx *model.Txn) (uint64, any, error) {
			return 0, struct{}{}, tx.RemoveNode(q.project, q.location, name, b.Zone, b.Instance)
		})
	case "services:allocate", "services:release":
		var b serviceReq
		if _, ok := q.decode(&b); !ok {
			return
		}
		var ip netip.Addr
		if b.IP != "" {
			var err error
			if ip, err = netip.ParseAddr(b.IP); err != nil || !ip.Is4() {
				q.badRequest("Invalid value for field 'ip': '%s'. Must be an IPv4 address.", b.IP)
				return
			}
		}
		typ := "ALLOCATE_SERVICE_IP"
		if verb == "services:release" {
			typ = "RELEASE_SERVICE_IP"
		}
		q.sync(typ, target, b, func(tx *model.Txn) (uint64, any, error) {
			var sv *model.ServiceIP
			var err error
			if verb == "services:allocate" {
				sv, err = tx.AllocateServiceIP(q.project, q.location, name, b.Name, ip)
			} else {
				sv, err = tx.ReleaseServiceIP(q.project, q.location, name, b.Name)
			}
			if err != nil {
				return 0, nil, err
			}
			return 0, ServiceIP{Name: sv.Name, IP: sv.IP.String(), Created: sv.Created}, nil
		})
	default:
		writeError(q.w, http.StatusNotFound, "Unknown cluster method "+verb+".")
	}
}

// sync runs a mutation and answers with its result, or with the error a
// failed operation recorded.
func (q *req) sync(opType, target string, body any, m control.Mutation) {
	o, err := q.a.svc.Do(q.r.Context(), control.Op{
		Project: q.project, Scope: "locations/" + q.location, Type: opType, Target: target,
		RequestHash: requestHash(q.r, body),
	}, m)
	if err != nil {
		q.fail(err)
		return
	}
	if o.Error != nil {
		q.fail(&model.Error{Code: o.Error.Code, Reason: o.Error.Message})
		return
	}
	q.reply(json.RawMessage(o.Result))
}
