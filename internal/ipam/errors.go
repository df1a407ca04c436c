package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors. Methods wrap them with context (the range, the prefix or
// the prefix length); test with errors.Is.
var (
	// ErrExhausted: no free aligned block of the requested length exists,
	// even counting quarantined space (which was drained to look).
	ErrExhausted = errors.New("ipam: range exhausted")
	// ErrNotAllocated: Release or a lookup named a prefix that is not an
	// allocated prefix of the pool (exactly).
	ErrNotAllocated = errors.New("ipam: prefix not allocated")
	// ErrOutOfRange: a prefix or block length does not fit inside the
	// pool's range, is of the other address family, or a Resize would
	// leave an allocation outside the new range.
	ErrOutOfRange = errors.New("ipam: out of range")
	// ErrInvalid: an argument is malformed: an invalid or unmasked prefix,
	// Owner 0, a nil random source or a prefix length beyond the family's.
	ErrInvalid = errors.New("ipam: invalid argument")
)

// ConflictError reports that a Claim overlaps an allocated prefix. Prefix
// and Owner describe the existing allocation (not the requested one); if
// several allocations overlap, it is the lowest-addressed one.
type ConflictError struct {
	Prefix netip.Prefix
	Owner  Owner
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("ipam: overlaps %s allocated to owner %d", e.Prefix, e.Owner)
}
