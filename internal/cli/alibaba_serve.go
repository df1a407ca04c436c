package cli

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/api/ecs"
	"github.com/aliasnet/aliasnet/internal/server"
)

// alibabaServeFlags are the `serve` flags of the Alibaba dialect.
type alibabaServeFlags struct {
	keys          []string
	eipPools      []string
	instanceTypes string
}

func (f *alibabaServeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.keys, "access-key", nil,
		"Alibaba AccessKey the ECS/VPC API accepts, ID:SECRET[:PROJECT] (repeatable; project \"default\" when omitted; "+
			"env ALIASNET_ACCESS_KEYS takes a comma-separated list, which keeps secrets out of the process list)")
	fl.StringArrayVar(&f.eipPools, "eip-pool", nil, "CIDR of public addresses EIPs are allocated from (repeatable)")
	fl.StringVar(&f.instanceTypes, "instance-types", "", "YAML or JSON file of instance types to add to the shipped table (see docs/alibaba.md)")
}

func (f *alibabaServeFlags) apply(cfg *server.Config) error {
	raw := append([]string(nil), f.keys...)
	if env := os.Getenv("ALIASNET_ACCESS_KEYS"); env != "" {
		for _, k := range strings.Split(env, ",") {
			if k = strings.TrimSpace(k); k != "" {
				raw = append(raw, k)
			}
		}
	}
	seen := map[string]bool{}
	for _, s := range raw {
		k, err := ecs.ParseAccessKey(s)
		if err != nil {
			return fmt.Errorf("--access-key: %w", err)
		}
		if seen[k.ID] {
			return fmt.Errorf("--access-key: AccessKey ID %s is given twice", k.ID)
		}
		seen[k.ID] = true
		cfg.AccessKeys = append(cfg.AccessKeys, k)
	}
	for _, s := range f.eipPools {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--eip-pool %q: %w", s, err)
		}
		if p.Masked() != p {
			return fmt.Errorf("--eip-pool %s: not a network address (did you mean %s?)", p, p.Masked())
		}
		cfg.EIPPools = append(cfg.EIPPools, p)
	}
	ts, err := ecs.LoadInstanceTypes(f.instanceTypes)
	if err != nil {
		return fmt.Errorf("--instance-types: %w", err)
	}
	cfg.InstanceTypes = ts
	return nil
}
