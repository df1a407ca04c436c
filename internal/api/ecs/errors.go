package ecs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// Error is an Alibaba API error: an HTTP status, a code and a message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errMissing(name string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "MissingParameter",
		Message: fmt.Sprintf("The input parameter %q that is mandatory for processing this request is not supplied.", name)}
}

func errInvalidParameter(name, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: fmt.Sprintf("The parameter %s is invalid: %s", name, msg)}
}

func errNotFound(code, what, id string) *Error {
	return &Error{Status: http.StatusNotFound, Code: code, Message: fmt.Sprintf("The specified %s %q does not exist.", what, id)}
}

// sentinelCodes maps the model's rule errors to Alibaba codes.
var sentinelCodes = []struct {
	err    error
	status int
	code   string
}{
	{model.ErrENIState, 400, "InvalidOperation.InvalidEniState"},
	{model.ErrDetachPrimary, 400, "InvalidOperation.DetachPrimaryEniNotAllowed"},
	{model.ErrNotElastic, 400, "InvalidOperation.InvalidEniType"},
	{model.ErrZoneMismatch, 400, "InvalidOperation.AvailabilityZoneMismatch"},
	{model.ErrVPCMismatch, 400, "InvalidOperation.VpcMismatch"},
	{model.ErrInstanceState, 400, "IncorrectInstanceStatus"},
	{model.ErrENILimit, 403, "EniPerInstanceLimitExceeded"},
	{model.ErrIPLimit, 403, "MaxEniPrivateIpsCountExceeded"},
	{model.ErrIPNotInSubnet, 400, "InvalidVSwitchId.IpInvalid"},
	{model.ErrIPAssigned, 400, "InvalidIp.IpAssigned"},
	{model.ErrIPNotAssigned, 400, "InvalidIp.IpUnassigned"},
	{model.ErrIPv6Disabled, 400, "InvalidVSwitchId.Ipv6NotTurnOn"},
	{model.ErrInstanceType, 400, "InvalidInstanceType.ValueNotSupported"},
	{model.ErrNotZonal, 400, "InvalidVSwitchId.NotVSwitch"},
	{model.ErrSecurityGroups, 400, "InvalidParameter.SecurityGroupIds"},
	{model.ErrBothExplicitAuto, 400, "InvalidParameter.Conflict"},
	{model.ErrCIDRInvalid, 400, "InvalidCidrBlock.Malformed"},
	{model.ErrCIDROverlap, 400, "InvalidCidrBlock.Overlapped"},
	{model.ErrCIDRNotInVPC, 400, "InvalidCidrBlock.NotInVpc"},
	{model.ErrCIDRNotFound, 400, "InvalidCidrBlock.NotFound"},
	{model.ErrCIDRInUse, 400, "DependencyViolation.VSwitch"},
	{model.ErrZoneRegion, 400, "InvalidZoneId.NotFound"},
	{model.ErrEIPNotInPool, 400, "InvalidIpAddress.NotInPool"},
	{model.ErrEIPTaken, 400, "InvalidIpAddress.AlreadyAllocated"},
	{model.ErrEIPExhausted, 400, "ResourceNotEnough.Eip"},
	{model.ErrEIPState, 400, "IncorrectEipStatus"},
	{model.ErrEIPDuplicate, 400, "InvalidAssociation.Duplicated"},
	{model.ErrEIPAssociated, 400, "DependencyViolation.EipAddress"},
	{model.ErrPrivateIPNotOn, 400, "InvalidPrivateIpAddress.NotFound"},
}

var notFoundCodes = map[string][2]string{
	"networkInterface": {"InvalidEniId.NotFound", "network interface"},
	"instance":         {"InvalidInstanceId.NotFound", "instance"},
	"subnetwork":       {"InvalidVSwitchId.NotFound", "vSwitch"},
	"network":          {"InvalidVpcId.NotFound", "VPC"},
	"eip":              {"InvalidAllocationId.NotFound", "EIP"},
}

// toError renders any error of a request in Alibaba's terms.
func toError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, control.ErrIdempotentMismatch) {
		return &Error{Status: http.StatusBadRequest, Code: "IdempotentFailed",
			Message: "The ClientToken was already used for a request with other parameters."}
	}
	var me *model.Error
	if !errors.As(err, &me) {
		return &Error{Status: http.StatusInternalServerError, Code: "InternalError", Message: "The request processing has failed due to some unknown error: " + err.Error()}
	}
	msg := me.Reason
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return &Error{Status: s.status, Code: s.code, Message: msg}
		}
	}
	switch me.Code {
	case model.NotFound:
		if c, ok := notFoundCodes[me.Resource]; ok {
			return &Error{Status: http.StatusNotFound, Code: c[0], Message: fmt.Sprintf("The specified %s %q does not exist.", c[1], lastPart(msg))}
		}
		return &Error{Status: http.StatusNotFound, Code: "InvalidParameter.NotFound", Message: msg}
	case model.InUse:
		holder := holderName(me.Holder)
		m := fmt.Sprintf("The private IP address %s is already in use", me.Value)
		if holder != "" {
			m += " by " + holder
		}
		return &Error{Status: http.StatusBadRequest, Code: "InvalidPrivateIpAddress.Duplicated", Message: m + "."}
	case model.Exhausted:
		return &Error{Status: http.StatusForbidden, Code: "InvalidVSwitchId.IpNotEnough", Message: msg}
	case model.QuotaExceeded:
		return &Error{Status: http.StatusForbidden, Code: "QuotaExceeded", Message: msg}
	case model.FailedPrecondition:
		return &Error{Status: http.StatusBadRequest, Code: "DependencyViolation", Message: msg}
	case model.AlreadyExists:
		return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter.Duplicate", Message: msg}
	case model.Required:
		return &Error{Status: http.StatusBadRequest, Code: "MissingParameter", Message: msg}
	}
	return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Message: msg}
}

// lastPart is the ID at the end of "The resource 'projects/p/…/ID' was not
// found".
func lastPart(msg string) string {
	if i := strings.Index(msg, "'"); i >= 0 {
		if j := strings.Index(msg[i+1:], "'"); j >= 0 {
			return lastSegment(msg[i+1 : i+1+j])
		}
	}
	return msg
}

func lastSegment(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// holderName turns the model's holder key into what an Alibaba user
// knows: "instance i-…", "network interface eni-…", "EIP eip-…".
func holderName(key string) string {
	switch {
	case key == "":
		return ""
	case strings.Contains(key, "/instances/"):
		return "instance " + lastSegment(key)
	case strings.Contains(key, "/interfaces/"):
		return "network interface " + lastSegment(key)
	case strings.Contains(key, "/eips/"):
		return "EIP " + lastSegment(key)
	}
	return key
}
