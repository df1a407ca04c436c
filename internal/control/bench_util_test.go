package control_test

import (
	"encoding/json"
	"net/netip"
)

type netipPrefix = netip.Prefix

func parsePrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
