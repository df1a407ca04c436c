package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"sigs.k8s.io/yaml"
)

// client is one verb's connection to a server's GCE Compute v1 API,
// through the official Go client, as users' own tools talk to it.
type client struct {
	g       *Globals
	cmd     *cobra.Command
	ctx     context.Context
	svc     *compute.Service
	rec     *recorder
	project string
}

// recorder keeps the body of the last response, so that --format json and
// yaml print resources exactly as the API returned them (decoding into the
// client's types and encoding again would drop false and zero fields).
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	last []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	r.mu.Lock()
	r.last = b
	r.mu.Unlock()
	return resp, nil
}

// last is the body of the latest response.
func (c *client) last() json.RawMessage {
	c.rec.mu.Lock()
	defer c.rec.mu.Unlock()
	return bytes.Clone(c.rec.last)
}

func newClient(g *Globals, cmd *cobra.Command) (*client, error) {
	switch g.Format {
	case "table", "json", "yaml":
	default:
		return nil, flagErr("--format", "unknown format %q (valid: table, json, yaml)", g.Format)
	}
	if g.Project == "" {
		return nil, flagErr("--project", "must not be empty")
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	endpoint := strings.TrimRight(g.Server, "/") + "/compute/v1/"
	rec := &recorder{base: http.DefaultTransport}
	svc, err := compute.NewService(ctx, option.WithEndpoint(endpoint), option.WithoutAuthentication(),
		option.WithHTTPClient(&http.Client{Transport: rec}), option.WithUserAgent("aliasnet-cli"))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", g.Server, err)
	}
	return &client{g: g, cmd: cmd, ctx: ctx, svc: svc, rec: rec, project: g.Project}, nil
}

// out and errw are where results and progress messages go: the command's
// writers (tests set them on the root), else the Globals'.
func (c *client) out() io.Writer {
	w := c.cmd.OutOrStdout()
	if w == os.Stdout && c.g.Out != nil {
		w = c.g.Out
	}
	return w
}

func (c *client) errw() io.Writer {
	w := c.cmd.ErrOrStderr()
	if w == os.Stderr && c.g.Err != nil {
		w = c.g.Err
	}
	return w
}

// url is the full URL of a project-relative path, e.g. "global/networks/n".
// A value that already is a URL or a "projects/…" path is kept as given.
func (c *client) url(kind, value string) string {
	switch {
	case strings.HasPrefix(value, "http://"), strings.HasPrefix(value, "https://"):
		return value
	case strings.HasPrefix(value, "projects/"):
		return c.svc.BasePath + value
	case strings.Contains(value, "/"):
		return c.svc.BasePath + "projects/" + c.project + "/" + value
	}
	return c.svc.BasePath + "projects/" + c.project + "/" + kind + "/" + value
}

// apiError turns a client error into the server's own message.
func apiError(err error) error {
	if err == nil {
		return nil
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg := ge.Message
		if msg == "" && len(ge.Errors) > 0 {
			msg = ge.Errors[0].Message
		}
		if msg == "" {
			msg = strings.TrimSpace(ge.Body)
		}
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", ge.Code)
		}
		return errors.New(msg)
	}
	return err
}

// wait polls an operation until DONE and fails with its error messages.
func (c *client) wait(op *compute.Operation, err error) (*compute.Operation, error) {
	if err != nil {
		return nil, apiError(err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Minute)
	defer cancel()
	delay := 50 * time.Millisecond
	for op.Status != "DONE" {
		var next *compute.Operation
		switch {
		case op.Zone != "":
			next, err = c.svc.ZoneOperations.Wait(c.project, lastSegment(op.Zone), op.Name).Context(ctx).Do()
		case op.Region != "":
			next, err = c.svc.RegionOperations.Wait(c.project, lastSegment(op.Region), op.Name).Context(ctx).Do()
		default:
			next, err = c.svc.GlobalOperations.Wait(c.project, op.Name).Context(ctx).Do()
		}
		if err != nil {
			return nil, fmt.Errorf("waiting for operation %s: %w", op.Name, apiError(err))
		}
		op = next
		if op.Status != "DONE" {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for operation %s: %w", op.Name, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(2*delay, 2*time.Second)
		}
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		if len(op.Error.Errors) == 1 {
			return op, errors.New(op.Error.Errors[0].Message)
		}
		var b strings.Builder
		b.WriteString("operation " + op.Name + " failed:")
		for _, e := range op.Error.Errors {
			b.WriteString("\n - " + e.Message)
		}
		return op, errors.New(b.String())
	}
	return op, nil
}

func lastSegment(ref string) string {
	ref = strings.TrimRight(ref, "/")
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// refPart returns the path element after key ("regions" in
// ".../regions/r/subnetworks/s" gives "r").
func refPart(ref, key string) string {
	parts := strings.Split(ref, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == key {
			return parts[i+1]
		}
	}
	return ""
}

// zoneRegion is the region of a zone name ("us-central1-a" -> "us-central1").
func zoneRegion(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

func (c *client) created(link string) { fmt.Fprintf(c.errw(), "Created [%s].\n", link) }
func (c *client) updated(link string) { fmt.Fprintf(c.errw(), "Updated [%s].\n", link) }
func (c *client) deleted(link string) { fmt.Fprintf(c.errw(), "Deleted [%s].\n", link) }

// table is a resource kind's columns.
type table[T any] struct {
	header []string
	row    func(T) []string
}

// describeFormat is the format of describe verbs: YAML unless --format was
// given, as gcloud does.
func (c *client) describeFormat() string {
	if f := c.cmd.Flags().Lookup("format"); f != nil && f.Changed {
		return c.g.Format
	}
	return "yaml"
}

// res is a resource as the client types decode it and as the API sent it.
type res[T any] struct {
	v   T
	raw json.RawMessage
}

// fetch runs a Get call's Do and pairs the result with its body.
func fetch[T any](c *client, do func(...googleapi.CallOption) (T, error)) (res[T], error) {
	v, err := do()
	if err != nil {
		return res[T]{}, apiError(err)
	}
	return res[T]{v: v, raw: c.last()}, nil
}

// pages collects a list call's items over every page.
func pages[T, L any](c *client, key string, run func(func(L) error) error) ([]res[T], error) {
	var out []res[T]
	err := run(func(L) error {
		items, err := pageItems[T](c.last(), key)
		out = append(out, items...)
		return err
	})
	return out, apiError(err)
}

// pageItems decodes the items of a list page: {"items":[…]}, or with key
// set, an aggregated list {"items":{"SCOPE":{key:[…]}}} in scope order.
func pageItems[T any](body []byte, key string) ([]res[T], error) {
	var raws []json.RawMessage
	if key == "" {
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, fmt.Errorf("decoding list: %w", err)
		}
		raws = l.Items
	} else {
		var l struct {
			Items map[string]map[string]json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, fmt.Errorf("decoding aggregated list: %w", err)
		}
		for _, scope := range sortedKeys(l.Items) {
			var rs []json.RawMessage
			if b, ok := l.Items[scope][key]; ok {
				if err := json.Unmarshal(b, &rs); err != nil {
					return nil, fmt.Errorf("decoding aggregated list: %w", err)
				}
			}
			raws = append(raws, rs...)
		}
	}
	out := make([]res[T], 0, len(raws))
	for _, r := range raws {
		var v T
		if err := json.Unmarshal(r, &v); err != nil {
			return nil, fmt.Errorf("decoding list item: %w", err)
		}
		out = append(out, res[T]{v: v, raw: r})
	}
	return out, nil
}

// printOne prints one resource in format f.
func printOne[T any](c *client, f string, t table[T], r res[T]) error {
	switch f {
	case "json":
		var b bytes.Buffer
		if err := json.Indent(&b, bytes.TrimSpace(r.raw), "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := c.out().Write(b.Bytes())
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(r.raw)
		if err != nil {
			return err
		}
		_, err = c.out().Write(y)
		return err
	}
	return printTable(c, t, []res[T]{r})
}

// printList prints resources: a table, a JSON array, or YAML documents
// each introduced by "---" (as gcloud does).
func printList[T any](c *client, t table[T], rs []res[T]) error {
	switch c.g.Format {
	case "json":
		raws := make([]json.RawMessage, len(rs))
		for i, r := range rs {
			raws[i] = bytes.TrimSpace(r.raw)
		}
		b, err := json.MarshalIndent(raws, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out(), "%s\n", b)
		return err
	case "yaml":
		for _, r := range rs {
			y, err := yaml.JSONToYAML(r.raw)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(c.out(), "---\n%s", y); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rs) == 0 {
		fmt.Fprintln(c.errw(), "Listed 0 items.")
		return nil
	}
	return printTable(c, t, rs)
}

func printTable[T any](c *client, t table[T], rs []res[T]) error {
	tw := tabwriter.NewWriter(c.out(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, r := range rs {
		fmt.Fprintln(tw, strings.Join(t.row(r.v), "\t"))
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// clientRunE wraps a verb body: it builds the client first.
func clientRunE(g *Globals, f func(c *client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newClient(g, cmd)
		if err != nil {
			return err
		}
		return f(c, args)
	}
}

// requireFlag fails when a required flag is missing, naming it.
func requireFlag(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if f := cmd.Flags().Lookup(n); f == nil || !f.Changed || f.Value.String() == "" {
			return flagErr("--"+n, "required")
		}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
