package model

import (
	"errors"
	"fmt"
)

// Code classifies a failure independently of any API dialect. Each dialect
// maps a Code to its own status, reason and error code.
type Code int

const (
	// Invalid: the request is malformed or breaks a rule (HTTP 400).
	Invalid Code = iota + 1
	// Required: a mandatory field is missing (HTTP 400).
	Required
	// NotFound: the named resource does not exist (HTTP 404).
	NotFound
	// AlreadyExists: a resource with that name exists (HTTP 409).
	AlreadyExists
	// InUse: an address or range is held by another resource.
	InUse
	// Exhausted: no free block of the requested size is left in a range.
	Exhausted
	// ConditionNotMet: a fingerprint did not match (HTTP 412).
	ConditionNotMet
	// FailedPrecondition: the resource is in a state that forbids the
	// operation (e.g. deleting a subnet that still has instances).
	FailedPrecondition
	// QuotaExceeded: a per-resource limit would be exceeded.
	QuotaExceeded
)

func (c Code) String() string {
	switch c {
	case Invalid:
		return "invalid"
	case Required:
		return "required"
	case NotFound:
		return "notFound"
	case AlreadyExists:
		return "alreadyExists"
	case InUse:
		return "inUse"
	case Exhausted:
		return "exhausted"
	case ConditionNotMet:
		return "conditionNotMet"
	case FailedPrecondition:
		return "failedPrecondition"
	case QuotaExceeded:
		return "quotaExceeded"
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Error is the one error type the model returns for a refused request. Field
// is a JSON path in the GCE resource shape (e.g.
// "networkInterfaces[0].aliasIpRanges[1].ipCidrRange"); dialects with other
// names translate it. Value is the offending value as the user wrote it.
type Error struct {
	Code   Code
	Field  string
	Value  string
	Reason string
	// Resource names the resource the request was about, e.g.
	// "projects/p/regions/r/subnetworks/s"; Holder names the resource that
	// holds a conflicting address, when there is one.
	Resource string
	Holder   string
	Err      error
}

func (e *Error) Error() string {
	// GCE names the field in the message only when it quotes a value;
	// otherwise the reason stands alone (and Field still travels with the
	// error for dialects that report it separately).
	if e.Field != "" && e.Value != "" {
		return fmt.Sprintf("Invalid value for field 'resource.%s': '%s'. %s", e.Field, e.Value, e.Reason)
	}
	return e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of err, or 0 when err is not a model error.
func CodeOf(err error) Code {
	var me *Error
	if errors.As(err, &me) {
		return me.Code
	}
	return 0
}

func errf(code Code, field, value, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

func notFound(kind, name string) *Error {
	return &Error{Code: NotFound, Reason: fmt.Sprintf("The resource '%s' was not found", name), Resource: kind}
}
