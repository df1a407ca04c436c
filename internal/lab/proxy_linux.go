package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// mdProxy is the metadata server as instances see it: a listener at
// 169.254.169.254:80 inside a router namespace (instances reach it through
// their default gateway, like on GCE) forwarding to the server's metadata
// listener. It names the instance by X-Forwarded-For (its source address
// as the fabric delivered it) and the network by X-Aliasnet-Network; the
// server must trust the supervisor's address (`serve
// --metadata-trusted-proxy 127.0.0.1`).
type mdProxy struct {
	srv *http.Server
}

func startProxy(ns netns.NsHandle, upstream, network string, log *slog.Logger) (*mdProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("lab: metadata upstream %q: not a URL", upstream)
	}
	// The socket is made in the router namespace; serving it and dialing
	// the upstream happen from the supervisor's own namespace.
	ln, err := fabric.DoValue(ns, func() (net.Listener, error) {
		return net.Listen("tcp4", net.JoinHostPort(fabric.MetadataAddr.String(), "80"))
	})
	if err != nil {
		return nil, fmt.Errorf("lab: metadata proxy in %s: %w", network, err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			client, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			// Rewrite starts without the client's X-Forwarded-* headers:
			// an instance cannot claim to be another.
			pr.Out.Header.Set("X-Forwarded-For", client)
			pr.Out.Header.Set("X-Aliasnet-Network", network)
		},
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &mdProxy{srv: srv}, nil
}

func (p *mdProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if p.srv.Shutdown(ctx) != nil {
		p.srv.Close()
	}
}

// agentProc is `aliasnet agent` running inside an instance namespace.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startAgent(ins *instNS, o Options) (*agentProc, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dir := o.StateDir
	if dir == "" {
		dir = os.TempDir()
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent-"+ins.ns+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "--metadata", "http://"+fabric.MetadataAddr.String(),
		"--state-file", filepath.Join(dir, "agent-"+ins.ns+".json"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Forked from a thread inside the instance's namespace: the agent
	// lives there.
	if err := fabric.Do(ins.h, cmd.Start); err != nil {
		return nil, fmt.Errorf("lab: agent in %s: %w", ins.ns, err)
	}
	a := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(a.done) }()
	return a, nil
}

func (a *agentProc) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (a *agentProc) stop() {
	if !a.alive() {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(3 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}
