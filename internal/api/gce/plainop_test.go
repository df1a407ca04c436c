package gce

import (
	"encoding/json"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// The reply encodes operations without the SDK's MarshalJSON; clients
// must not see a difference.
func TestPlainOpSameBytes(t *testing.T) {
	for _, op := range []*compute.Operation{
		{Kind: "compute#operation", Id: 18446744073709551615, Name: "operation-1-00", Status: "DONE", Progress: 100,
			TargetId: 7, SelfLink: "http://x/compute/v1/projects/p/zones/z/operations/operation-1-00", Zone: "http://x/z"},
		{Kind: "compute#operation", Name: "op", Status: "DONE",
			Error:               &compute.OperationError{Errors: []*compute.OperationErrorErrors{{Code: "IP_SPACE_EXHAUSTED", Message: "m"}}},
			HttpErrorStatusCode: 400, HttpErrorMessage: "BAD REQUEST"},
	} {
		want, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal((*plainOp)(op))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("plain encoding\n%s\nSDK encoding\n%s", got, want)
		}
	}
}
