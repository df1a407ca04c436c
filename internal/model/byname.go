package model

import "fmt"

// byName is one kind of project resource stored under its name alone
// (static routes, firewall rules): where a project keeps them, what the
// kind is called in errors and how its store key is built. The lookups,
// listings, name rule and writes every such kind needs are written once
// here rather than once per kind.
type byName[V any] struct {
	kind string
	in   func(*project) map[string]*V
	key  func(project, name string) string
}

var (
	routesByName    = byName[Route]{"route", func(p *project) map[string]*Route { return p.routes }, RouteKey}
	firewallsByName = byName[Firewall]{"firewall", func(p *project) map[string]*Firewall { return p.firewalls }, FirewallKey}
)

// get returns the resource or nil; it never creates the project, so a
// read (or a refused request) leaves no trace.
func (b byName[V]) get(s *State, project, name string) *V {
	if p := s.projects[project]; p != nil {
		return b.in(p)[name]
	}
	return nil
}

// list returns a project's resources sorted by name; keep (nil: all)
// filters them.
func (b byName[V]) list(s *State, project string, keep func(*V) bool) []*V {
	if p := s.projects[project]; p != nil {
		return sortedValues(b.in(p), keep)
	}
	return nil
}

// checkNew: an RFC 1035 name that no resource of the kind has in the
// project yet.
func (b byName[V]) checkNew(s *State, project, name string) error {
	if err := ValidName("name", name); err != nil {
		return err
	}
	if b.get(s, project, name) != nil {
		return &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", b.key(project, name))}
	}
	return nil
}

// put stores v (with undo) and records the store write.
func (b byName[V]) put(t *Txn, project, name string, v *V) {
	putMap(t, b.in(t.s.proj(project)), name, v)
	t.record(b.key(project, name), v)
}

// remove deletes an existing resource (with undo) and records the
// deletion; a missing one is NotFound.
func (b byName[V]) remove(t *Txn, project, name string) error {
	if b.get(t.s, project, name) == nil {
		return notFound(b.kind, b.key(project, name))
	}
	putMap[string, V](t, b.in(t.s.projects[project]), name, nil)
	// An untyped nil: the store reads a nil Value as a deletion.
	t.record(b.key(project, name), nil)
	return nil
}

// checkNetworkRef: the named network exists in the project.
func (s *State) checkNetworkRef(project, network string) error {
	if s.Network(project, network) == nil {
		return &Error{Code: NotFound, Field: "network", Value: network,
			Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(project, network))}
	}
	return nil
}
