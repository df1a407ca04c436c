package gce

import "github.com/aliasnet/aliasnet/internal/api/apiwire"

// The shared Google wire conventions (package apiwire) under the names
// this package's handlers use.
var (
	writeJSON   = apiwire.WriteJSON
	writeError  = apiwire.WriteError
	requestHash = apiwire.RequestHash
	lastSegment = apiwire.LastSegment
	refPart     = apiwire.RefPart
)
