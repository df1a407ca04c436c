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
// /aliasnet/v1/projects/{p}/fabricSpec, long-poll). It is not safe for
// concurrent use.
type SpecClient struct {
	Server  string // base URL, e.g. http://127.0.0.1:8080
	Project string
	HTTP    *http.Client

	// wholeOnly: the server's ETags cannot be checked here (another
	// version hashes specs differently), so deltas are not asked for.
	wholeOnly bool
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

// Next returns the spec that follows have: with have nil the current
// spec at once; otherwise, after waiting up to wait for a change, the
// server's delta from have's ETag applied to have (changes lists what it
// changed; nil means anything may have), or the whole spec when the
// server cannot answer with a delta (have is too old, the server
// restarted, or it predates deltas). An unchanged spec comes back as have
// with empty changes. have is never modified.
func (c *SpecClient) Next(ctx context.Context, have *fabric.Spec, wait time.Duration) (*fabric.Spec, *fabric.Changes, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	if c.wholeOnly {
		s, err := c.Fetch(ctx, etagOf(have), wait)
		if err != nil {
			return nil, nil, err
		}
		if have != nil && s.ETag == have.ETag {
			return have, &fabric.Changes{}, nil
		}
		return s, nil, nil
	}
	u := strings.TrimRight(c.Server, "/") + "/aliasnet/v1/projects/" + url.PathEscape(c.Project) + "/fabricSpec?delta=1"
	if have != nil {
		u += fmt.Sprintf("&lastEtag=%s&timeoutSec=%d", url.QueryEscape(have.ETag), int(wait/time.Second))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", fabric.UpdateGobContentType+", "+fabric.GobContentType+", application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var up *fabric.Update
	switch resp.Header.Get("Content-Type") {
	case fabric.UpdateGobContentType:
		if up, err = fabric.DecodeUpdate(b); err != nil {
			return nil, nil, err
		}
	case fabric.GobContentType: // a server without deltas
		s, err := fabric.DecodeGob(b)
		if err != nil {
			return nil, nil, err
		}
		up = &fabric.Update{ETag: s.ETag, Spec: s}
	default:
		up = &fabric.Update{}
		if err := json.Unmarshal(b, up); err != nil {
			return nil, nil, fmt.Errorf("GET %s: %w", u, err)
		}
		if up.Spec == nil && up.Delta == nil { // a server without deltas
			var s fabric.Spec
			if err := json.Unmarshal(b, &s); err != nil {
				return nil, nil, fmt.Errorf("GET %s: %w", u, err)
			}
			up = &fabric.Update{ETag: s.ETag, Spec: &s}
		}
	}
	switch {
	case up.Spec != nil:
		if up.Spec.ContentETag() != up.Spec.ETag {
			c.wholeOnly = true
		}
		return up.Spec, nil, nil
	case up.Delta != nil && have != nil:
		if up.Delta.Empty() && up.Delta.From == have.ETag && up.Delta.To == have.ETag {
			return have, &fabric.Changes{}, nil
		}
		s, ch, err := fabric.ApplyDelta(have, up.Delta)
		if err == nil {
			return s, ch, nil
		}
		// Never run on a spec the server did not have: start over.
		full, _, ferr := c.Next(ctx, nil, 0)
		if ferr != nil {
			return nil, nil, errors.Join(err, ferr)
		}
		return full, nil, nil
	}
	return nil, nil, fmt.Errorf("GET %s: neither a spec nor a delta in the answer", u)
}

func etagOf(s *fabric.Spec) string {
	if s == nil {
		return ""
	}
	return s.ETag
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
	// have is the spec of the last successful reconcile: the next change
	// comes as a delta from it and only what the delta touches is
	// re-examined. After a failed reconcile it is dropped, so that the
	// next one starts from the whole spec and re-examines everything.
	var have *fabric.Spec
	lastResync := time.Now()
	sleep := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	for ctx.Err() == nil {
		s, ch, err := client.Next(ctx, have, 25*time.Second)
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
		if have != nil && s.ETag == have.ETag && !resync {
			continue
		}
		if resync {
			l.Resync()
			lastResync = time.Now()
			ch = nil
		}
		if have == nil {
			ch = nil
		}
		start := time.Now()
		if err := l.ReconcileChanges(ctx, s, ch); err != nil {
			log.Warn("reconcile", "err", err)
			have = nil
			if !readyDone && time.Now().After(deadline) {
				ready(err)
			}
			sleep(100 * time.Millisecond)
			continue
		}
		log.Debug("reconciled", "etag", s.ETag, "incremental", ch != nil, "took", time.Since(start))
		have = s
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
