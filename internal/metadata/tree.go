package metadata

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// kind is the shape of a metadata node.
type kind uint8

const (
	leafNode  kind = iota // a value
	dirNode               // named children, listed as "name" or "name/"
	arrayNode             // indexed children (network-interfaces/0/ ...), listed as "0/"
	listNode              // indexed values (ip-aliases/), listed one value per line
)

// node is one entry of a metadata tree. Trees are built per request from
// immutable model resources and never shared between goroutines.
type node struct {
	kind  kind
	text  string          // leaf: text form
	raw   json.RawMessage // leaf: JSON form when not a JSON string (numbers, arrays)
	names []string        // dir: child names, sorted
	kids  map[string]*node
	elems []*node  // array
	items []string // list
	// fold makes child lookup case-insensitive (Alibaba MAC directories).
	fold bool
	// verbatim keeps child names as they are in recursive JSON: they are
	// data (attribute keys), not field names, and GCE does not camelCase
	// them.
	verbatim bool
}

func newDir() *node { return &node{kind: dirNode, kids: map[string]*node{}} }

// set adds (or replaces) a child of a directory and returns the directory.
func (n *node) set(name string, c *node) *node {
	if n.fold {
		name = strings.ToLower(name)
	}
	if _, ok := n.kids[name]; !ok {
		i, _ := slices.BinarySearch(n.names, name)
		n.names = slices.Insert(n.names, i, name)
	}
	n.kids[name] = c
	return n
}

func str(s string) *node { return &node{kind: leafNode, text: s} }

func num(u uint64) *node {
	s := strconv.FormatUint(u, 10)
	return &node{kind: leafNode, text: s, raw: json.RawMessage(s)}
}

// jsonLeaf is a value whose text form is already JSON (GCE "tags").
func jsonLeaf(v any) *node {
	b, _ := json.Marshal(v)
	return &node{kind: leafNode, text: string(b), raw: b}
}

func strList(items []string) *node {
	if items == nil {
		items = []string{}
	}
	return &node{kind: listNode, items: items}
}

func array(elems ...*node) *node { return &node{kind: arrayNode, elems: elems} }

// isDir reports whether n is listed with a trailing slash and needs one in
// its URL.
func (n *node) isDir() bool { return n.kind != leafNode }

// parseIndex accepts canonical non-negative decimal indexes only ("0",
// "12"; not "01", "+1", "1e2").
func parseIndex(s string) (int, bool) {
	if s == "" || len(s) > 6 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// lookup walks segs down from n. It returns nil when a segment names
// nothing.
func (n *node) lookup(segs []string) *node {
	cur := n
	for _, s := range segs {
		switch cur.kind {
		case dirNode:
			if cur.fold {
				s = strings.ToLower(s)
			}
			c, ok := cur.kids[s]
			if !ok {
				return nil
			}
			cur = c
		case arrayNode:
			i, ok := parseIndex(s)
			if !ok || i >= len(cur.elems) {
				return nil
			}
			cur = cur.elems[i]
		case listNode:
			i, ok := parseIndex(s)
			if !ok || i >= len(cur.items) {
				return nil
			}
			cur = str(cur.items[i])
		default:
			return nil
		}
	}
	return cur
}

// listing is a directory's entries as GCE and Alibaba print them:
// sub-directories end with "/".
func (n *node) listing() []string {
	var out []string
	switch n.kind {
	case dirNode:
		for _, name := range n.names {
			if n.kids[name].isDir() {
				name += "/"
			}
			out = append(out, name)
		}
	case arrayNode:
		for i := range n.elems {
			out = append(out, strconv.Itoa(i)+"/")
		}
	case listNode:
		out = append(out, n.items...)
	}
	return out
}

// camel turns a metadata key into the key of GCE's recursive JSON:
// "network-interfaces" -> "networkInterfaces", "ip-aliases" -> "ipAliases".
func camel(s string) string {
	if !strings.Contains(s, "-") {
		return s
	}
	var b strings.Builder
	up := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteByte(c)
	}
	return b.String()
}

// writeJSON writes the recursive JSON form of n: directories as objects
// with camelCase keys in sorted order, arrays and lists as arrays.
func (n *node) writeJSON(b *bytes.Buffer) {
	switch n.kind {
	case leafNode:
		if n.raw != nil {
			b.Write(n.raw)
			return
		}
		writeJSONString(b, n.text)
	case dirNode:
		type kv struct {
			k string
			v *node
		}
		kvs := make([]kv, 0, len(n.names))
		for _, name := range n.names {
			k := name
			if !n.verbatim {
				k = camel(name)
			}
			kvs = append(kvs, kv{k, n.kids[name]})
		}
		slices.SortFunc(kvs, func(a, c kv) int { return strings.Compare(a.k, c.k) })
		b.WriteByte('{')
		for i, e := range kvs {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, e.k)
			b.WriteByte(':')
			e.v.writeJSON(b)
		}
		b.WriteByte('}')
	case arrayNode:
		b.WriteByte('[')
		for i, e := range n.elems {
			if i > 0 {
				b.WriteByte(',')
			}
			e.writeJSON(b)
		}
		b.WriteByte(']')
	case listNode:
		b.WriteByte('[')
		for i, s := range n.items {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, s)
		}
		b.WriteByte(']')
	}
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// writeFlat writes the recursive text form of n: one "path value" line
// per leaf, paths relative to n.
func (n *node) writeFlat(b *bytes.Buffer, prefix string) {
	switch n.kind {
	case leafNode:
		b.WriteString(prefix)
		if prefix != "" {
			b.WriteByte(' ')
		}
		b.WriteString(n.text)
		b.WriteByte('\n')
	case dirNode:
		for _, name := range n.names {
			c := n.kids[name]
			p := prefix + name
			if c.isDir() {
				p += "/"
			}
			c.writeFlat(b, p)
		}
	case arrayNode:
		for i, e := range n.elems {
			e.writeFlat(b, prefix+strconv.Itoa(i)+"/")
		}
	case listNode:
		for i, s := range n.items {
			str(s).writeFlat(b, prefix+strconv.Itoa(i))
		}
	}
}
