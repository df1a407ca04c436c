// Package apiwire holds the wire conventions the Google-shaped dialects
// (Compute, Cloud DNS, GKE, aliasnet's own) share: JSON responses, the
// {"error":{"code","message","errors":[…]}} envelope, resource references
// and request fingerprints for requestId reuse checks.
package apiwire

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrorItem is one entry of the envelope's "errors" list.
type ErrorItem struct {
	Domain  string `json:"domain"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// ErrorBody is Google's JSON error envelope.
type ErrorBody struct {
	Error struct {
		Code    int         `json:"code"`
		Message string      `json:"message"`
		Errors  []ErrorItem `json:"errors"`
	} `json:"error"`
}

// WriteError answers with the error envelope (domain "global").
func WriteError(w http.ResponseWriter, status int, reason, msg string) {
	var b ErrorBody
	b.Error.Code = status
	b.Error.Message = msg
	b.Error.Errors = []ErrorItem{{Domain: "global", Reason: reason, Message: msg}}
	WriteJSON(w, status, b)
}

// RequestHash fingerprints a mutation (method, path, body).
func RequestHash(r *http.Request, body any) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", r.Method, r.URL.Path)
	_ = json.NewEncoder(h).Encode(body)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// LastSegment returns the name at the end of a resource reference: a full
// URL, a partial path ("regions/r/subnetworks/s") or a bare name.
func LastSegment(ref string) string {
	ref = strings.TrimRight(ref, "/")
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// RefPart returns the value after key in a reference path, e.g.
// RefPart("…/projects/p/regions/r/subnetworks/s", "regions") == "r".
func RefPart(ref, key string) string {
	parts := strings.Split(ref, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == key {
			return parts[i+1]
		}
	}
	return ""
}
