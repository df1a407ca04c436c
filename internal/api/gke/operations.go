package gke

import (
	"net/http"
	"strings"

	container "google.golang.org/api/container/v1"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// opCode is the google.rpc code of a failed operation.
func opCode(c model.Code) int64 {
	switch c {
	case model.NotFound:
		return 5
	case model.AlreadyExists:
		return 6
	case model.Exhausted:
		return 8 // RESOURCE_EXHAUSTED
	case model.FailedPrecondition, model.ConditionNotMet:
		return 9
	}
	return 3 // INVALID_ARGUMENT
}

// renderOp renders a control operation as a GKE operation. Operations run
// synchronously, so they are always DONE; a failed one carries error and
// statusMessage (gcloud reports the latter).
func (q *req) renderOp(o *control.Operation) *container.Operation {
	loc := strings.TrimPrefix(o.Scope, "locations/")
	op := &container.Operation{
		Name:          o.Name,
		Zone:          loc,
		Location:      loc,
		OperationType: o.Type,
		Status:        "DONE",
		StartTime:     o.Inserted,
		EndTime:       o.Ended,
		SelfLink:      q.base() + "v1/projects/" + o.Project + "/zones/" + loc + "/operations/" + o.Name,
		Progress:      &container.OperationProgress{Status: "DONE"},
	}
	if t := strings.TrimPrefix(o.Target, "projects/"+o.Project+"/locations/"+loc+"/"); t != o.Target {
		op.TargetLink = q.base() + "v1/projects/" + o.Project + "/zones/" + loc + "/" + t
	}
	if o.Error != nil {
		op.StatusMessage = o.Error.Message
		op.Error = &container.Status{Code: opCode(o.Error.Code), Message: o.Error.Message}
	}
	return op
}

func (a *API) findOp(q *req, name string) *control.Operation {
	if q.location != "-" {
		return a.svc.Operation(q.project, "locations/"+q.location, name)
	}
	for _, o := range a.svc.Operations(q.project, "") {
		if o.Name == name && strings.HasPrefix(o.Scope, "locations/") {
			return o
		}
	}
	return nil
}

func (a *API) getOperation(q *req) {
	name := q.r.PathValue("operation")
	o := a.findOp(q, name)
	if o == nil {
		writeError(q.w, http.StatusNotFound, "Not found: "+control.OpKey(q.project, "locations/"+q.location, name)+".")
		return
	}
	q.reply(q.renderOp(o))
}

// opVerb serves "operations/OP:wait" (answers at once: operations are
// DONE when created) and ":cancel" (nothing to cancel).
func (a *API) opVerb(q *req) {
	name, verb, _ := strings.Cut(q.r.PathValue("opverb"), ":")
	switch verb {
	case "wait":
		q.r.SetPathValue("operation", name)
		a.getOperation(q)
	case "cancel":
		if a.findOp(q, name) == nil {
			writeError(q.w, http.StatusNotFound, "Not found: "+control.OpKey(q.project, "locations/"+q.location, name)+".")
			return
		}
		q.reply(struct{}{})
	default:
		writeError(q.w, http.StatusNotFound, "aliasnet does not implement operations:"+verb+".")
	}
}

func (a *API) listOperations(q *req) {
	out := &container.ListOperationsResponse{Operations: []*container.Operation{}}
	scope := ""
	if q.location != "-" {
		scope = "locations/" + q.location
	}
	for _, o := range a.svc.Operations(q.project, scope) {
		if strings.HasPrefix(o.Scope, "locations/") {
			out.Operations = append(out.Operations, q.renderOp(o))
		}
	}
	q.reply(out)
}
