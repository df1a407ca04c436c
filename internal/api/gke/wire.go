package gke

import "github.com/aliasnet/aliasnet/internal/api/apiwire"

// The shared Google wire conventions (package apiwire) under the names
// this package's handlers use.
var (
	writeJSON   = apiwire.WriteJSON
	requestHash = apiwire.RequestHash
	lastSegment = apiwire.LastSegment
	refPart     = apiwire.RefPart
)
