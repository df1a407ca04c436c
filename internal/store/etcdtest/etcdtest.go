// Package etcdtest starts real etcd clusters inside a test process
// (go.etcd.io/etcd/server/v3/embed) on loopback ports in temporary
// directories. Only tests import it.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	members []*member
	rmDir   string
	// TLS is the test PKI when Options.TLS is set.
	TLS *TLSFiles
}

type member struct {
	cfg *embed.Config
	etc *embed.Etcd
	url string
}

// Options tune a cluster.
type Options struct {
	// NoFsync turns off etcd's fsyncs (only for tests that measure
	// something else; benchmarks keep them).
	NoFsync bool
	// Dir holds the members' data (default: a t.TempDir()).
	Dir string
	// TLS serves clients over https only, with client certificates
	// required (Cluster.TLS names the files).
	TLS bool
}

func freeURL() (url.URL, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	return url.URL{Scheme: "http", Host: addr}, nil
}

// Start runs an n-member cluster and waits until it serves; it is
// stopped when the test ends.
func Start(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	c, err := start(n, o, t.TempDir)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(c.Close)
	return c
}

// New runs an n-member cluster outside a test (e.g. in TestMain); Close
// stops it and removes its directory when it made one.
func New(n int, o Options) (*Cluster, error) {
	var made string
	c, err := start(n, o, func() string {
		made, _ = os.MkdirTemp("", "etcdtest")
		return made
	})
	if err != nil {
		if made != "" {
			os.RemoveAll(made)
		}
		return nil, err
	}
	c.rmDir = made
	return c, nil
}

func start(n int, o Options, tempDir func() string) (*Cluster, error) {
	if o.Dir == "" {
		o.Dir = tempDir()
	}
	c := &Cluster{}
	if o.TLS {
		var err error
		if c.TLS, err = makePKI(o.Dir); err != nil {
			return nil, err
		}
	}
	var initial []string
	for i := range n {
		peer, err := freeURL()
		if err != nil {
			return nil, err
		}
		client, err := freeURL()
		if err != nil {
			return nil, err
		}
		if c.TLS != nil {
			client.Scheme = "https"
		}
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(o.Dir, cfg.Name)
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = []url.URL{peer}
		cfg.ListenClientUrls = []url.URL{client}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.InitialClusterToken = "aliasnet-test"
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{filepath.Join(o.Dir, cfg.Name+".log")}
		cfg.UnsafeNoFsync = o.NoFsync
		cfg.ListenMetricsUrls = nil
		cfg.TickMs = 50
		cfg.ElectionMs = 500
		if c.TLS != nil {
			cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = c.TLS.ServerCert, c.TLS.ServerKey
			cfg.ClientTLSInfo.TrustedCAFile, cfg.ClientTLSInfo.ClientCertAuth = c.TLS.CA, true
		}
		c.members = append(c.members, &member{cfg: cfg, url: client.String()})
		initial = append(initial, cfg.Name+"="+peer.String())
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		m.cfg.ClusterState = embed.ClusterStateFlagNew
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.start()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (m *member) start() error {
	if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
		return err
	}
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd member %s: %w", m.cfg.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s did not become ready", m.cfg.Name)
	}
	m.etc = e
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.url)
	}
	return out
}

// Stop stops member i (its data stays).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[i]; m.etc != nil {
		m.etc.Close()
		m.etc = nil
	}
}

// Restart starts a stopped member i again on its data and ports.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.etc != nil {
		return nil
	}
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if err = m.start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
	if c.rmDir != "" {
		os.RemoveAll(c.rmDir)
	}
}
