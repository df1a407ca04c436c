package gce

import (
	"net/http"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// opErrorCode is the GCE operation error code of a failed allocation.
func opErrorCode(c model.Code) string {
	switch c {
	case model.InUse:
		return "IP_IN_USE_BY_ANOTHER_RESOURCE"
	case model.Exhausted:
		return "IP_SPACE_EXHAUSTED"
	}
	return "INVALID_USAGE"
}

func (q *req) renderOp(o *control.Operation) *compute.Operation {
	op := &compute.Operation{
		Kind:          "compute#operation",
		Id:            o.ID,
		Name:          o.Name,
		OperationType: o.Type,
		Status:        "DONE",
		Progress:      100,
		InsertTime:    o.Inserted,
		StartTime:     o.Inserted,
		EndTime:       o.Ended,
		TargetId:      o.TargetID,
		User:          "aliasnet",
		SelfLink:      q.base() + "projects/" + o.Project + "/" + o.Scope + "/operations/" + o.Name,
	}
	if o.Target != "" {
		op.TargetLink = q.base() + o.Target
	}
	switch {
	case strings.HasPrefix(o.Scope, "zones/"):
		op.Zone = q.base() + "projects/" + o.Project + "/" + o.Scope
	case strings.HasPrefix(o.Scope, "regions/"):
		op.Region = q.base() + "projects/" + o.Project + "/" + o.Scope
	}
	if o.Error != nil {
		op.Error = &compute.OperationError{Errors: []*compute.OperationErrorErrors{{
			Code: opErrorCode(o.Error.Code), Message: o.Error.Message,
		}}}
		op.HttpErrorStatusCode = http.StatusBadRequest
		op.HttpErrorMessage = "BAD REQUEST"
	}
	return op
}

// do runs a mutation and answers with its operation.
func (q *req) do(scope, opType, target string, body any, m control.Mutation) {
	op := control.Op{Project: q.project, Scope: scope, Type: opType, Target: target,
		RequestID: q.r.URL.Query().Get("requestId")}
	if op.RequestID != "" {
		// Only a reused requestId is checked against it; hashing the
		// body is a twentieth of a mutation's CPU.
		op.RequestHash = requestHash(q.r, body)
	}
	o, err := q.a.svc.Do(q.r.Context(), op, m)
	if err != nil {
		q.fail(err)
		return
	}
	q.reply((*plainOp)(q.renderOp(o)))
}

// plainOp is compute.Operation without its MarshalJSON method: the SDK's
// method encodes twice (a method-less copy, then its null/force-send
// pass) and the encoder compacts the result again, a tenth of the
// server's CPU per mutation. The renderer sets no ForceSendFields or
// NullFields, so the bytes are the same.
type plainOp compute.Operation

func (q *req) scope() string {
	if z := q.r.PathValue("zone"); z != "" {
		return "zones/" + z
	}
	if r := q.r.PathValue("region"); r != "" {
		return "regions/" + r
	}
	return "global"
}

func (a *API) getOperation(q *req) {
	o := a.svc.Operation(q.project, q.scope(), q.r.PathValue("operation"))
	if o == nil {
		writeError(q.w, http.StatusNotFound, "notFound", "The resource '"+control.OpKey(q.project, q.scope(), q.r.PathValue("operation"))+"' was not found")
		return
	}
	q.reply(q.renderOp(o))
}

func (a *API) deleteOperation(q *req) {
	if a.svc.Operation(q.project, q.scope(), q.r.PathValue("operation")) == nil {
		writeError(q.w, http.StatusNotFound, "notFound", "The resource '"+control.OpKey(q.project, q.scope(), q.r.PathValue("operation"))+"' was not found")
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

func (a *API) listOperations(q *req) {
	ops := a.svc.Operations(q.project, q.scope())
	lo, hi, next := q.listPage(len(ops))
	out := &compute.OperationList{Kind: "compute#operationList", SelfLink: q.link(q.scope() + "/operations"), NextPageToken: next}
	for _, o := range ops[lo:hi] {
		out.Items = append(out.Items, q.renderOp(o))
	}
	q.reply(out)
}
