// Package agent is aliasnet's guest agent: it runs inside a VM, follows the
// instance metadata server (GCE or Alibaba form) and makes the guest's
// network stack match it:
//
//   - alias IP ranges become routes of type local in the local table with
//     protocol 66, on the interface whose MAC the metadata names — what
//     Google's guest agent does (`ip route add to local RANGE scope host
//     dev ethX proto 66`), so the kernel answers for the whole range;
//   - secondary private IPs (Alibaba dialect) become addresses (/32, /128)
//     on that interface;
//   - except on a Kubernetes node: its pod range (the alias range the
//     metadata names in the instance attribute aliasnet-pod-range, or
//     Config.PodRanges) is forwarded to pods by the CNI plugin, so the
//     agent installs nothing for it — a local route would make the node
//     answer for its pods' addresses itself. GKE nodes likewise leave the
//     pod range alone.
//
// It removes only what it added: routes with protocol 66 in the local table,
// and addresses it recorded in its state file. It keeps the last known
// configuration while the metadata server is unreachable, retries with
// backoff, and reconciles again when routes, addresses or links change
// (netlink subscription) and at least every Resync interval. All netlink
// work happens in one network namespace (the current one by default).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Dialect selects the metadata form.
type Dialect string

const (
	GCE     Dialect = "gce"
	Alibaba Dialect = "alibaba"
)

// Default metadata endpoints of the two clouds.
const (
	DefaultGCEURL     = "http://169.254.169.254"
	DefaultAlibabaURL = "http://100.100.100.200"
)

// RouteProtocol marks the routes the agent owns (as Google's agent does).
const RouteProtocol = 66

// Config configures an Agent.
type Config struct {
	// MetadataURL is the server's base URL (scheme://host[:port]); a
	// trailing /computeMetadata/v1/ or /latest/meta-data/ is ignored.
	MetadataURL string
	Dialect     Dialect
	// StateFile records the addresses the agent added. Default
	// /run/aliasnet/agent-<netns inode>.json.
	StateFile string
	// Resync is the periodic reconcile interval (default 1s).
	Resync time.Duration
	// PollTimeout is the long-poll timeout_sec (default 60s).
	PollTimeout time.Duration
	// PollInterval is used when the server cannot long-poll (default 1s).
	PollInterval time.Duration
	// PodRanges are pod ranges to leave alone on top of those the
	// metadata names (a metadata server that does not name them).
	PodRanges []netip.Prefix
	// NetNS, when set, is the namespace to work in (tests); default the
	// current one.
	NetNS *netns.NsHandle
	// HTTPClient overrides the metadata client.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Agent reconciles a guest's network configuration with the metadata.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	src   source
	h     *netlink.Handle
	state *stateFile

	warnMu sync.Mutex
	warned map[string]bool
}

// New checks the configuration and opens the netlink handle.
func New(cfg Config) (*Agent, error) {
	if cfg.Dialect == "" {
		cfg.Dialect = GCE
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 60 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	base := strings.TrimRight(cfg.MetadataURL, "/")
	for _, suf := range []string{"/computeMetadata/v1", "/latest/meta-data", "/latest"} {
		base = strings.TrimSuffix(base, suf)
	}
	if base == "" {
		if cfg.Dialect == Alibaba {
			base = DefaultAlibabaURL
		} else {
			base = DefaultGCEURL
		}
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		base = "http://" + base
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // never send metadata requests through a proxy
		hc = &http.Client{Transport: tr, Timeout: cfg.PollTimeout + 15*time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, warned: map[string]bool{}}
	switch cfg.Dialect {
	case GCE:
		a.src = &gceSource{base: base, hc: hc, timeout: cfg.PollTimeout, warn: a.warnOnce}
	case Alibaba:
		a.src = &alibabaSource{base: base, hc: hc, timeout: cfg.PollTimeout, interval: cfg.PollInterval, warn: a.warnOnce}
	default:
		return nil, fmt.Errorf("agent: unknown dialect %q (gce or alibaba)", cfg.Dialect)
	}
	var err error
	if cfg.NetNS != nil {
		a.h, err = netlink.NewHandleAt(*cfg.NetNS)
	} else {
		a.h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("agent: netlink: %w", err)
	}
	if cfg.StateFile == "" {
		cfg.StateFile, err = defaultStateFile()
		if err != nil {
			a.h.Close()
			return nil, err
		}
		a.cfg.StateFile = cfg.StateFile
	}
	if a.state, err = loadState(cfg.StateFile); err != nil {
		a.h.Close()
		return nil, err
	}
	return a, nil
}

// defaultStateFile names the state file after the network namespace, so
// agents in different namespaces of one host do not share it.
func defaultStateFile() (string, error) {
	fi, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("agent: %w (use --state-file)", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", errors.New("agent: cannot identify the network namespace (use --state-file)")
	}
	return fmt.Sprintf("/run/aliasnet/agent-%d.json", st.Ino), nil
}

// Close releases the netlink handle.
func (a *Agent) Close() { a.h.Close() }

// warnOnce logs a warning the first time it is seen.
func (a *Agent) warnOnce(msg string, args ...any) {
	if a.first(msg, args) {
		a.log.Warn(msg, args...)
	}
}

// infoOnce logs at info level the first time it is seen (every
// reconcile would repeat it).
func (a *Agent) infoOnce(msg string, args ...any) {
	if a.first(msg, args) {
		a.log.Info(msg, args...)
	}
}

func (a *Agent) first(msg string, args []any) bool {
	key := fmt.Sprint(msg, args)
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	seen := a.warned[key]
	a.warned[key] = true
	return !seen
}

// Once fetches the metadata (retrying until ctx ends) and reconciles once.
func (a *Agent) Once(ctx context.Context) error {
	bo := newBackoff()
	for i := 0; ; i++ {
		d, err := a.src.fetch(ctx, false)
		if err == nil {
			_, err = a.Reconcile(d)
			return err
		}
		if i == 0 {
			a.log.Warn("metadata unavailable; retrying", "err", err)
		} else {
			a.log.Debug("metadata unavailable", "err", err)
		}
		if !bo.sleep(ctx) {
			return fmt.Errorf("agent: metadata: %w", err)
		}
	}
}

// Run follows the metadata and keeps the guest in line until ctx ends. It
// leaves the configuration in place on exit.
func (a *Agent) Run(ctx context.Context) error {
	desired := make(chan *Desired, 1)
	go a.fetchLoop(ctx, desired)
	kick := make(chan struct{}, 1)
	go a.watch(ctx, kick)
	tick := time.NewTicker(a.cfg.Resync)
	defer tick.Stop()
	var cur *Desired
	for {
		select {
		case <-ctx.Done():
			return nil
		case cur = <-desired:
		case <-kick:
		case <-tick.C:
		}
		if cur == nil {
			continue
		}
		if _, err := a.Reconcile(cur); err != nil {
			a.log.Error("reconcile", "err", err)
		}
	}
}

// backoff is exponential with jitter, 100 ms to 2 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

func (b *backoff) sleep(ctx context.Context) bool {
	d := b.d/2 + time.Duration(rand.Int64N(int64(b.d)))
	b.d = min(b.d*2, 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *Agent) fetchLoop(ctx context.Context, out chan *Desired) {
	bo := newBackoff()
	wait := false
	failing := false
	for ctx.Err() == nil {
		d, err := a.src.fetch(ctx, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				a.log.Warn("metadata unavailable; keeping the current configuration and retrying", "err", err)
			} else {
				a.log.Debug("metadata still unavailable", "err", err)
			}
			failing = true
			wait = false
			bo.sleep(ctx)
			continue
		}
		if failing {
			a.log.Info("metadata reachable again")
		}
		failing = false
		bo.reset()
		wait = true
		// Latest wins: drop an unconsumed older state.
		select {
		case <-out:
		default:
		}
		out <- d
	}
}

// watch kicks a reconcile on every change of local-table routes, addresses
// and links in the namespace, resubscribing if the subscription breaks.
func (a *Agent) watch(ctx context.Context, kick chan struct{}) {
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		done := make(chan struct{})
		rch := make(chan netlink.RouteUpdate, 256)
		ach := make(chan netlink.AddrUpdate, 256)
		lch := make(chan netlink.LinkUpdate, 64)
		errf := func(err error) { a.log.Debug("netlink subscription", "err", err) }
		// The library's readers block on full channels: once done is
		// closed, drain each subscribed channel until the reader notices
		// the closed socket and closes it.
		var drains []func()
		err := netlink.RouteSubscribeWithOptions(rch, done, netlink.RouteSubscribeOptions{Namespace: a.cfg.NetNS, ErrorCallback: errf})
		if err == nil {
			drains = append(drains, func() {
				for range rch {
				}
			})
			err = netlink.AddrSubscribeWithOptions(ach, done, netlink.AddrSubscribeOptions{Namespace: a.cfg.NetNS, ErrorCallback: errf})
		}
		if err == nil {
			drains = append(drains, func() {
				for range ach {
				}
			})
			err = netlink.LinkSubscribeWithOptions(lch, done, netlink.LinkSubscribeOptions{Namespace: a.cfg.NetNS, ErrorCallback: errf})
		}
		if err != nil {
			a.warnOnce("netlink subscription failed; relying on periodic resync", "err", err)
		} else {
			drains = append(drains, func() {
				for range lch {
				}
			})
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case u, ok := <-rch:
					if !ok {
						break loop
					}
					if u.Table == 255 {
						poke()
					}
				case _, ok := <-ach:
					if !ok {
						break loop
					}
					poke()
				case _, ok := <-lch:
					if !ok {
						break loop
					}
					poke()
				}
			}
		}
		close(done)
		for _, d := range drains {
			go d()
		}
		poke() // events may have been lost
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}
