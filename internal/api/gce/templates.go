package gce

import (
	"encoding/json"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

func (q *req) renderTemplate(it *model.InstanceTemplate) json.RawMessage {
	out := map[string]any{
		"kind":              "compute#instanceTemplate",
		"id":                itoa64(it.ID),
		"name":              it.Name,
		"creationTimestamp": it.Created,
		"selfLink":          q.link("global/instanceTemplates/" + it.Name),
		"properties":        json.RawMessage(it.Extra),
	}
	if it.Description != "" {
		out["description"] = it.Description
	}
	if len(it.Extra) == 0 {
		out["properties"] = map[string]any{}
	}
	b, _ := json.Marshal(out)
	return b
}

func (a *API) insertTemplate(q *req) {
	var in compute.InstanceTemplate
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	if in.Properties == nil {
		q.fail(&model.Error{Code: model.Required, Field: "properties", Reason: "Required field 'resource.properties' not specified"})
		return
	}
	specs, err := nicSpecs(in.Properties.NetworkInterfaces, "properties.networkInterfaces")
	if err != nil {
		q.fail(err)
		return
	}
	it := model.InstanceTemplate{Project: q.project, Name: in.Name, Description: in.Description, NICs: specs, Extra: raw["properties"]}
	q.do("global", "insert", model.TemplateKey(q.project, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		t, err := tx.CreateTemplate(it)
		if err != nil {
			return 0, nil, err
		}
		return t.ID, nil, nil
	})
}

func (a *API) getTemplate(q *req) {
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if it := st.Template(q.project, q.r.PathValue("template")); it != nil {
			out = q.renderTemplate(it)
		}
	})
	if out == nil {
		q.notFound("global/instanceTemplates/" + q.r.PathValue("template"))
		return
	}
	q.reply(out)
}

func (a *API) listTemplates(q *req) {
	var items []json.RawMessage
	a.svc.Read(func(st *model.State) {
		for _, it := range st.Templates(q.project) {
			items = append(items, q.renderTemplate(it))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#instanceTemplateList", ID: "projects/" + q.project + "/global/instanceTemplates",
		Items: items[lo:hi], SelfLink: q.link("global/instanceTemplates"), NextPageToken: next})
}

func (a *API) deleteTemplate(q *req) {
	name := q.r.PathValue("template")
	q.do("global", "delete", model.TemplateKey(q.project, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if it := tx.State().Template(q.project, name); it != nil {
			id = it.ID
		}
		return id, nil, tx.DeleteTemplate(q.project, name)
	})
}
