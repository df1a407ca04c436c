package ecs

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/aliasnet/aliasnet/internal/model"
)

// ParseInstanceTypes reads an operator's instance-type file, YAML or JSON:
//
//	instanceTypes:
//	- name: ecs.c7.large
//	  enis: 3                # ENIs per instance, the primary one included
//	  privateIpv4PerEni: 6   # private IPv4 per ENI, the primary address included
//	  ipv6PerEni: 6
//
// A bare list of types is accepted too. Unknown fields are errors (a typo
// would otherwise silently give a type no quota).
func ParseInstanceTypes(data []byte) ([]model.InstanceType, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	var doc struct {
		InstanceTypes []model.InstanceType `json:"instanceTypes"`
	}
	if data[0] == '[' || data[0] == '-' {
		if err := yaml.UnmarshalStrict(data, &doc.InstanceTypes); err != nil {
			return nil, err
		}
	} else if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, err
	}
	for _, t := range doc.InstanceTypes {
		if err := model.CheckInstanceType(t); err != nil {
			return nil, err
		}
	}
	return doc.InstanceTypes, nil
}

// LoadInstanceTypes returns the shipped table with the types of file (if
// any) added.
func LoadInstanceTypes(file string) (model.InstanceTypes, error) {
	ts := model.DefaultInstanceTypes()
	if file == "" {
		return ts, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("instance types: %w", err)
	}
	extra, err := ParseInstanceTypes(data)
	if err != nil {
		return nil, fmt.Errorf("instance types %s: %w", file, err)
	}
	return ts.With(extra...)
}
