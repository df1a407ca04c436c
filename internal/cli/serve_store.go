package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/server"
	"github.com/aliasnet/aliasnet/internal/store"
)

// storeServeFlags choose serve's store: the embedded bbolt file (default)
// or an etcd cluster shared by several replicas (docs/ha.md).
type storeServeFlags struct {
	kind      string
	etcd      etcdFlags
	relay     bool
	advertise string
}

// etcdFlags are the etcd connection flags (serve and the store verbs).
type etcdFlags struct {
	endpoints []string
	cert, key string
	ca        string
	prefix    string
}

func (f *etcdFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.endpoints, "etcd-endpoints", nil, "etcd client URLs, comma-separated (https:// for TLS)")
	fl.StringVar(&f.cert, "etcd-cert", "", "TLS client certificate for etcd")
	fl.StringVar(&f.key, "etcd-key", "", "TLS client key for etcd")
	fl.StringVar(&f.ca, "etcd-ca", "", "CA bundle that signed the etcd servers' certificates")
	fl.StringVar(&f.prefix, "etcd-prefix", "/aliasnet/", "key prefix of this installation (several installations can share one etcd cluster)")
}

func (f *etcdFlags) options(endpoints []string) (store.EtcdOptions, error) {
	if len(endpoints) == 0 {
		endpoints = f.endpoints
	}
	var eps []string
	for _, e := range endpoints {
		for _, x := range strings.Split(e, ",") {
			if x = strings.TrimSpace(x); x != "" {
				eps = append(eps, x)
			}
		}
	}
	if len(eps) == 0 {
		return store.EtcdOptions{}, fmt.Errorf("no etcd endpoints (--etcd-endpoints)")
	}
	if (f.cert == "") != (f.key == "") {
		return store.EtcdOptions{}, fmt.Errorf("--etcd-cert and --etcd-key go together")
	}
	p := f.prefix
	if p == "" {
		p = "/aliasnet/"
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return store.EtcdOptions{Endpoints: eps, CertFile: f.cert, KeyFile: f.key, CAFile: f.ca, Prefix: p}, nil
}

func (f *storeServeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kind, "store", "bbolt", "state store: bbolt (embedded, in --data-dir) or etcd (shared by several serve replicas)")
	f.etcd.register(cmd)
	cmd.Flags().BoolVar(&f.relay, "relay-writes", true, "with --store etcd: relay mutations to one elected replica (the committer), which groups them into fewer, larger etcd transactions; reads stay local")
	cmd.Flags().StringVar(&f.advertise, "advertise-url", "", "with --store etcd: the API URL other replicas reach this one at (default http:// and the --listen address, when it names a host)")
}

func (f *storeServeFlags) apply(cfg *server.Config) error {
	switch f.kind {
	case "", "bbolt":
		if len(f.etcd.endpoints) > 0 {
			return fmt.Errorf("--etcd-endpoints needs --store etcd")
		}
		if f.advertise != "" {
			return fmt.Errorf("--advertise-url needs --store etcd (one server on bbolt has no other replicas)")
		}
		cfg.Store = "bbolt"
	case "etcd":
		o, err := f.etcd.options(nil)
		if err != nil {
			return err
		}
		cfg.Store, cfg.Etcd = "etcd", o
		cfg.RelayWrites, cfg.AdvertiseURL = f.relay, f.advertise
	default:
		return fmt.Errorf("--store %q: bbolt or etcd", f.kind)
	}
	return nil
}
