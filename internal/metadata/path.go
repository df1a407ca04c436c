package metadata

import (
	"errors"
	"strings"
)

// dialect says which metadata tree a path addresses.
type dialect uint8

const (
	rootDialect    dialect = iota // "/", "/computeMetadata/", "/latest/"
	gceDialect                    // /computeMetadata/v1/...
	alibabaDialect                // /latest/meta-data/..., /2016-01-01/meta-data/...
)

// reqPath is a parsed request path.
type reqPath struct {
	dialect dialect
	// prefix is the dialect root as requested, e.g. "/computeMetadata/v1/".
	prefix string
	// segs are the segments below the dialect root; never empty strings.
	segs []string
	// dir is set when the path ends with "/" (or is the root itself).
	dir bool
	// redirect, when set, is where a path missing its root's trailing
	// slash should go ("/computeMetadata/v1" -> "/computeMetadata/v1/").
	redirect string
}

// Limits on what a request path may be.
const (
	maxPathLen = 1024
	maxSegLen  = 255
	maxSegs    = 16
)

var errBadPath = errors.New("metadata: bad path")

var roots = []struct {
	prefix  string
	dialect dialect
}{
	{"/computeMetadata/v1", gceDialect},
	{"/latest/meta-data", alibabaDialect},
	{"/2016-01-01/meta-data", alibabaDialect},
}

// parsePath splits a request path (already percent-decoded) into its
// dialect and segments. It rejects what no metadata key can be: empty
// segments ("a//b"), "." and "..", control characters and over-long paths.
func parsePath(p string) (reqPath, error) {
	if len(p) == 0 || p[0] != '/' || len(p) > maxPathLen {
		return reqPath{}, errBadPath
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return reqPath{}, errBadPath
		}
	}
	switch p {
	case "/", "/computeMetadata/", "/latest/", "/2016-01-01/":
		return reqPath{dialect: rootDialect, prefix: p, dir: true}, nil
	case "/computeMetadata", "/latest", "/2016-01-01":
		return reqPath{dialect: rootDialect, prefix: p + "/", dir: true, redirect: p + "/"}, nil
	}
	for _, r := range roots {
		if !strings.HasPrefix(p, r.prefix) {
			continue
		}
		rest := p[len(r.prefix):]
		if rest == "" {
			return reqPath{dialect: r.dialect, prefix: r.prefix + "/", dir: true, redirect: r.prefix + "/"}, nil
		}
		if rest[0] != '/' {
			continue
		}
		rp := reqPath{dialect: r.dialect, prefix: r.prefix + "/"}
		rest = rest[1:]
		if rest == "" {
			rp.dir = true
			return rp, nil
		}
		if strings.HasSuffix(rest, "/") {
			rp.dir = true
			rest = rest[:len(rest)-1]
		}
		segs := strings.Split(rest, "/")
		if len(segs) > maxSegs {
			return reqPath{}, errBadPath
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." || len(s) > maxSegLen {
				return reqPath{}, errBadPath
			}
		}
		rp.segs = segs
		return rp, nil
	}
	return reqPath{}, errBadPath
}

// String is the canonical form of the path.
func (rp reqPath) String() string {
	s := rp.prefix + strings.Join(rp.segs, "/")
	if rp.dir && len(rp.segs) > 0 {
		s += "/"
	}
	return s
}
