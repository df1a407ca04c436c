package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// SpecClient follows a server's fabric spec (GET
// /aliasnet/v1/projects/{p}/fabricSpec, long-poll).
type SpecClient struct {
	Server  string // base URL, e.g. http://127.0.0.1:8080
	Project string
	HTTP    *http.Client
}

// Fetch returns the project's spec; with lastETag it waits (up to wait)
// for one with another etag.
func (c *SpecClient) Fetch(ctx context.Context, lastETag string, wait time.Duration) (*fabric.Spec, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	u := strings.TrimRight(c.Server, "/") + "/aliasnet/v1/projects/" + url.PathEscape(c.Project) + "/fabricSpec"
	if lastETag != "" {
		u += fmt.Sprintf("?lastEtag=%s&timeoutSec=%d", url.QueryEscape(lastETag), int(wait/time.Second))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", fabric.GobContentType+", application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if resp.Header.Get("Content-Type") == fabric.GobContentType {
		return fabric.DecodeGob(b)
	}
	var s fabric.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &s, nil
}

// SuperviseOptions configure Supervise.
type SuperviseOptions struct {
	Options
	Server string
	// Ready is called once: with nil after the first successful
	// reconcile, or with the last error when ReadyTimeout passes first.
	Ready        func(error)
	ReadyTimeout time.Duration
	// Resync is how often the kernel state is re-read and repaired
	// (default 30 s).
	Resync time.Duration
	// KeepProcesses: on exit, do not end processes still running in the
	// lab's namespaces (they then keep anonymous namespaces alive).
	KeepProcesses bool
}

// Supervise realises the project and keeps it in sync with the control
// plane until ctx ends, then removes everything it made.
func Supervise(ctx context.Context, so SuperviseOptions) error {
	l, err := New(so.Options)
	if err != nil {
		if so.Ready != nil {
			so.Ready(err)
		}
		return err
	}
	log := l.log
	l.SetSupervisor(so.Server, os.Getpid(), time.Now().UTC())
	if so.ReadyTimeout == 0 {
		so.ReadyTimeout = time.Minute
	}
	if so.Resync == 0 {
		so.Resync = 30 * time.Second
	}
	client := &SpecClient{Server: so.Server, Project: so.Project, HTTP: &http.Client{}}
	readyDone := false
	ready := func(err error) {
		if !readyDone && so.Ready != nil {
			so.Ready(err)
		}
		readyDone = true
	}
	deadline := time.Now().Add(so.ReadyTimeout)
	etag := ""
	lastResync := time.Now()
	sleep := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	for ctx.Err() == nil {
		s, err := client.Fetch(ctx, etag, 25*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			l.SetError(err)
			log.Warn("fabric spec", "err", err)
			if !readyDone && time.Now().After(deadline) {
				ready(err)
			}
			sleep(250 * time.Millisecond)
			continue
		}
		resync := time.Since(lastResync) >= so.Resync
		if s.ETag == etag && !resync {
			continue
		}
		if resync {
			l.Resync()
			lastResync = time.Now()
		}
		start := time.Now()
		if err := l.Reconcile(ctx, s); err != nil {
			log.Warn("reconcile", "err", err)
			etag = ""
			if !readyDone && time.Now().After(deadline) {
				ready(err)
			}
			sleep(100 * time.Millisecond)
			continue
		}
		log.Debug("reconciled", "etag", s.ETag, "took", time.Since(start))
		etag = s.ETag
		if !readyDone {
			l.FlushStatus() // `lab up` prints it
		}
		ready(nil)
	}
	log.Info("supervisor stopping: removing the lab")
	err = l.Teardown(!so.KeepProcesses)
	if errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	return err
}
