package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	sdkerr "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/responses"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// The Alibaba verbs (vpcs, vswitches, enis, eips, ecs-instances) talk to
// the server's Alibaba ECS/VPC RPC API through the official Go SDK, signed
// with an AccessKey the server was started with (--access-key).

// aliCreds are the flags every Alibaba verb takes.
type aliCreds struct {
	id, secret, region string
}

func (c *aliCreds) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.id, "access-key-id", os.Getenv("ALIBABA_CLOUD_ACCESS_KEY_ID"), "AccessKey ID (env ALIBABA_CLOUD_ACCESS_KEY_ID)")
	pf.StringVar(&c.secret, "access-key-secret", os.Getenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "AccessKey secret (env ALIBABA_CLOUD_ACCESS_KEY_SECRET)")
	pf.StringVar(&c.region, "region", envOr("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou"), "region (env ALIBABA_CLOUD_REGION_ID)")
}

// aliClient is one verb's connection.
type aliClient struct {
	g      *Globals
	cmd    *cobra.Command
	ecs    *ecs.Client
	vpc    *vpc.Client
	scheme string
	region string
}

func newAliClient(g *Globals, cmd *cobra.Command, c *aliCreds) (*aliClient, error) {
	switch g.Format {
	case "table", "json", "yaml":
	default:
		return nil, fmt.Errorf("--format: unknown format %q (valid: table, json, yaml)", g.Format)
	}
	if c.id == "" || c.secret == "" {
		return nil, errors.New("--access-key-id and --access-key-secret are required (or ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET): an AccessKey the server was started with (serve --access-key ID:SECRET)")
	}
	u, err := url.Parse(g.Server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q: not a URL like http://127.0.0.1:8080", g.Server)
	}
	ec, err := ecs.NewClientWithAccessKey(c.region, c.id, c.secret)
	if err != nil {
		return nil, err
	}
	vc, err := vpc.NewClientWithAccessKey(c.region, c.id, c.secret)
	if err != nil {
		return nil, err
	}
	ec.Domain, vc.Domain = u.Host, u.Host
	// One try: a verb's mutation is not repeated behind the user's back
	// (use --client-token for safe retries).
	ec.GetConfig().AutoRetry, vc.GetConfig().AutoRetry = false, false
	return &aliClient{g: g, cmd: cmd, ecs: ec, vpc: vc, scheme: u.Scheme, region: c.region}, nil
}

// req prepares an SDK request for the server.
func (c *aliClient) req(r interface{ SetScheme(string) }) { r.SetScheme(c.scheme) }

func (c *aliClient) out() io.Writer {
	w := c.cmd.OutOrStdout()
	if w == os.Stdout && c.g.Out != nil {
		w = c.g.Out
	}
	return w
}

func (c *aliClient) errw() io.Writer {
	w := c.cmd.ErrOrStderr()
	if w == os.Stderr && c.g.Err != nil {
		w = c.g.Err
	}
	return w
}

// aliErr turns an SDK error into the server's code and message.
func aliErr(err error) error {
	if err == nil {
		return nil
	}
	var se *sdkerr.ServerError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %s", se.ErrorCode(), se.Message())
	}
	var ce *sdkerr.ClientError
	if errors.As(err, &ce) {
		msg := ce.Message()
		if oe := ce.OriginError(); oe != nil {
			msg += ": " + oe.Error()
		}
		return fmt.Errorf("%s: %s", ce.ErrorCode(), msg)
	}
	return err
}

// aliTable is a resource kind's table columns.
type aliTable[T any] struct {
	header []string
	row    func(T) []string
}

// aliItem is a resource decoded and as the server sent it.
type aliItem[T any] struct {
	v   T
	raw json.RawMessage
}

// items pairs decoded list items with their raw JSON, found at path in
// the response body (e.g. "NetworkInterfaceSets", "NetworkInterfaceSet").
func items[T any](resp responses.AcsResponse, decoded []T, path ...string) ([]aliItem[T], error) {
	var cur json.RawMessage = resp.GetHttpContentBytes()
	for _, k := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil {
			return nil, fmt.Errorf("decoding the response: %w", err)
		}
		cur = m[k]
	}
	var raws []json.RawMessage
	if len(cur) > 0 && string(cur) != "null" {
		if err := json.Unmarshal(cur, &raws); err != nil {
			return nil, fmt.Errorf("decoding the response: %w", err)
		}
	}
	if len(raws) != len(decoded) {
		return nil, fmt.Errorf("decoding the response: %d items, %d decoded", len(raws), len(decoded))
	}
	out := make([]aliItem[T], len(raws))
	for i := range raws {
		out[i] = aliItem[T]{v: decoded[i], raw: raws[i]}
	}
	return out, nil
}

// describeFormat is YAML for one resource unless --format was given.
func (c *aliClient) describeFormat() string {
	if f := c.cmd.Flags().Lookup("format"); f != nil && f.Changed {
		return c.g.Format
	}
	return "yaml"
}

func aliPrint[T any](c *aliClient, format string, t aliTable[T], its []aliItem[T], single bool) error {
	switch format {
	case "json":
		var v any = its
		raws := make([]json.RawMessage, len(its))
		for i, it := range its {
			raws[i] = it.raw
		}
		v = raws
		if single && len(raws) == 1 {
			v = raws[0]
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.out(), "%s\n", b)
		return err
	case "yaml":
		for i, it := range its {
			y, err := yaml.JSONToYAML(it.raw)
			if err != nil {
				return err
			}
			if !single || i > 0 {
				fmt.Fprint(c.out(), "---\n")
			}
			c.out().Write(y)
		}
		return nil
	}
	if len(its) == 0 {
		fmt.Fprintln(c.errw(), "Listed 0 items.")
		return nil
	}
	tw := tabwriter.NewWriter(c.out(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, it := range its {
		fmt.Fprintln(tw, strings.Join(t.row(it.v), "\t"))
	}
	return tw.Flush()
}

// printResult prints a mutation's response: the whole body as JSON/YAML,
// or lines of text in table format.
func (c *aliClient) printResult(resp responses.AcsResponse, lines ...string) error {
	switch c.g.Format {
	case "json":
		var b bytes.Buffer
		if err := json.Indent(&b, resp.GetHttpContentBytes(), "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := c.out().Write(b.Bytes())
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(resp.GetHttpContentBytes())
		if err != nil {
			return err
		}
		_, err = c.out().Write(y)
		return err
	}
	for _, l := range lines {
		fmt.Fprintln(c.out(), l)
	}
	return nil
}

// aliRunE builds the client before running a verb.
func aliRunE(g *Globals, creds *aliCreds, f func(c *aliClient, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newAliClient(g, cmd, creds)
		if err != nil {
			return err
		}
		return aliErr(f(c, args))
	}
}

// aliGroup makes a top-level Alibaba command with the credential flags.
func aliGroup(use, short string, creds *aliCreds, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short}
	creds.register(cmd)
	cmd.AddCommand(subs...)
	return cmd
}

func aliRequire(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if f := cmd.Flags().Lookup(n); f == nil || !f.Changed || f.Value.String() == "" || f.Value.String() == "[]" {
			return fmt.Errorf("--%s: required", n)
		}
	}
	return nil
}

func joinOr(ss []string, empty string) string {
	if len(ss) == 0 {
		return empty
	}
	return strings.Join(ss, ",")
}

// aliSplit flattens repeated, comma-separated flag values.
func aliSplit(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
