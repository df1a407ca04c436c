package control

import "strings"

// k8sKind classifies the Kubernetes keys of model/cluster.go:
//
//	projects/P/locations/L/clusters/C                      cluster
//	projects/P/locations/L/clusters/C/nodes/ZONE/INSTANCE  clusterNode
//	projects/P/locations/L/clusters/C/serviceIPs/NAME      serviceIP
//
// and returns "" for every other key.
func k8sKind(key string) string {
	if !strings.HasPrefix(key, "projects/") {
		return ""
	}
	parts := strings.Split(key, "/")
	if len(parts) < 6 || parts[2] != "locations" || parts[4] != "clusters" {
		return ""
	}
	switch {
	case len(parts) == 6:
		return "cluster"
	case len(parts) == 9 && parts[6] == "nodes":
		return "clusterNode"
	case len(parts) == 8 && parts[6] == "serviceIPs":
		return "serviceIP"
	}
	return ""
}
