package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/aliasnet/aliasnet/internal/lab"
)

// `aliasnet lab up|down|status|exec` realise a project's networks on this
// machine with network namespaces (package lab); `lab supervise` is the
// background process `lab up` leaves behind, `lab probe` tiny test
// servers and clients.

func init() { clientCommands = append(clientCommands, newLabCmd) }

type labFlags struct {
	stateDir string
	prefix   string
}

func (f *labFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.stateDir, "state-dir", "", "where the lab keeps its pid, status and logs (default /run/aliasnet/lab/<project>)")
	cmd.PersistentFlags().StringVar(&f.prefix, "prefix", "", "namespace name prefix (default an-<project>-)")
}

func (f *labFlags) dir(g *Globals) string {
	if f.stateDir != "" {
		return f.stateDir
	}
	return filepath.Join("/run/aliasnet/lab", g.Project)
}

func newLabCmd(g *Globals) *cobra.Command {
	lf := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Realise the project's VPC networks on this machine with network namespaces (root)",
		Long: `The lab turns the control plane's state into real networking on this machine:
every instance is a network namespace with one veth per NIC (ethN, its MAC,
primary IP and default route via the subnet gateway, alias IP ranges as local
routes), every network a router namespace whose routes, anti-spoofing sets and
firewall chains (nftables) are derived from the control plane and kept in sync
by a supervisor. The machine's own namespace is never touched.

  aliasnet lab up                    # realise, leave a supervisor running
  aliasnet lab status
  aliasnet lab exec vm1 -- ip addr   # run a command inside an instance
  aliasnet lab down                  # stop the supervisor, remove every namespace`,
	}
	lf.register(cmd)
	cmd.AddCommand(newLabUpCmd(g, lf), newLabDownCmd(g, lf), newLabStatusCmd(g, lf), newLabExecCmd(g, lf),
		newLabSuperviseCmd(g, lf), newLabProbeCmd())
	return cmd
}

const readyFDEnv = "ALIASNET_LAB_READY_FD"

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie (exited, not reaped yet) is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return false
	}
	return true
}

func readPid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "supervisor.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func newLabUpCmd(g *Globals, lf *labFlags) *cobra.Command {
	var agent bool
	var metadataURL string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Realise the project's networks and leave a supervisor keeping them in sync",
		Long: `Starts 'aliasnet lab supervise' in the background (its log is
<state-dir>/supervisor.log) and returns once the lab is realised.

With --agent, aliases are configured inside instances by 'aliasnet agent'
(run in every instance namespace) from the metadata server, reached at
169.254.169.254:80 through a proxy in each router namespace that forwards to
--metadata (the server's --metadata-listen address; the server must trust
the proxy: --metadata-trusted-proxy 127.0.0.1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent && metadataURL == "" {
				return flagErr("--metadata", "required with --agent (the server's metadata listener, e.g. http://127.0.0.1:8081)")
			}
			dir := lf.dir(g)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if pid := readPid(dir); pidAlive(pid) {
				return fmt.Errorf("the lab of project %q is already up (supervisor pid %d); 'aliasnet lab down' first", g.Project, pid)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			args := []string{"lab", "supervise", "--server", g.Server, "--project", g.Project, "--state-dir", dir}
			if lf.prefix != "" {
				args = append(args, "--prefix", lf.prefix)
			}
			if agent {
				args = append(args, "--agent")
			}
			if metadataURL != "" {
				args = append(args, "--metadata", metadataURL)
			}
			logPath := filepath.Join(dir, "supervisor.log")
			logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			defer logf.Close()
			pr, pw, err := os.Pipe()
			if err != nil {
				return err
			}
			sup := exec.Command(self, args...)
			sup.Stdout, sup.Stderr = logf, logf
			sup.ExtraFiles = []*os.File{pw}
			sup.Env = append(os.Environ(), readyFDEnv+"=3")
			sup.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := sup.Start(); err != nil {
				pr.Close()
				pw.Close()
				return err
			}
			pw.Close()
			if err := os.WriteFile(filepath.Join(dir, "supervisor.pid"), []byte(strconv.Itoa(sup.Process.Pid)+"\n"), 0o644); err != nil {
				sup.Process.Kill()
				return err
			}
			sup.Process.Release()
			type res struct {
				line string
				err  error
			}
			ch := make(chan res, 1)
			go func() {
				line, err := bufio.NewReader(pr).ReadString('\n')
				ch <- res{strings.TrimSpace(line), err}
			}()
			var r res
			select {
			case r = <-ch:
			case <-time.After(timeout):
				r = res{err: fmt.Errorf("not realised within %v", timeout)}
			}
			pr.Close()
			if r.err != nil || r.line != "ok" {
				why := r.line
				if r.err != nil && why == "" {
					why = r.err.Error()
				}
				stopSupervisor(dir, 30*time.Second)
				tail, _ := os.ReadFile(logPath)
				return fmt.Errorf("lab up: %s\n%s", why, lastLines(string(tail), 20))
			}
			st, err := lab.ReadStatus(dir)
			if err != nil {
				return err
			}
			return printLabStatus(cmd.OutOrStdout(), g.Format, st, true)
		},
	}
	cmd.Flags().BoolVar(&agent, "agent", false, "configure aliases inside instances with 'aliasnet agent' (needs --metadata)")
	cmd.Flags().StringVar(&metadataURL, "metadata", "", "the server's metadata listener URL; enables the 169.254.169.254 proxy in every network")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the lab to be realised")
	return cmd
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// stopSupervisor sends SIGTERM and waits for the supervisor to exit (it
// removes the lab on the way out).
func stopSupervisor(dir string, wait time.Duration) bool {
	pid := readPid(dir)
	if !pidAlive(pid) {
		return false
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(wait)
	for pidAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if pidAlive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func newLabDownCmd(g *Globals, lf *labFlags) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the supervisor and remove every namespace and veth the lab made",
		Long: `Stops the supervisor, which removes the lab. Processes still running
inside the lab's namespaces (started with 'lab exec') are ended first
unless --keep-processes is given. If the supervisor is gone (crashed,
killed), the namespaces listed in <state-dir>/status.json are removed
directly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := lf.dir(g)
			st, serr := lab.ReadStatus(dir)
			stopSupervisor(dir, 60*time.Second)
			var err error
			// Whatever the supervisor left (or all of it, if it was gone).
			if after, e := lab.ReadStatus(dir); e == nil {
				err = lab.RemoveNamespaces(after.Namespaces, !keep)
			} else if serr == nil {
				err = lab.RemoveNamespaces(st.Namespaces, !keep)
			}
			for _, f := range []string{"supervisor.pid", "status.json"} {
				os.Remove(filepath.Join(dir, f))
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "agent-*")); m != nil {
				for _, f := range m {
					os.Remove(f)
				}
			}
			if err != nil {
				return err
			}
			if serr != nil && !errors.Is(serr, os.ErrNotExist) {
				return serr
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab of project %s is down\n", g.Project)
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-processes", false, "do not end processes running inside the lab's namespaces")
	return cmd
}

func newLabStatusCmd(g *Globals, lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the lab: supervisor, namespaces, instances and their addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.ReadStatus(lf.dir(g))
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no lab for project %q (state dir %s): 'aliasnet lab up' first", g.Project, lf.dir(g))
			}
			if err != nil {
				return err
			}
			return printLabStatus(cmd.OutOrStdout(), g.Format, st, pidAlive(st.Pid))
		},
	}
}

// LabStatusView is `lab status --format json`: the status file plus
// whether the supervisor is alive.
type LabStatusView struct {
	*lab.Status
	Running bool `json:"running"`
}

func printLabStatus(w io.Writer, format string, st *lab.Status, running bool) error {
	if format == "json" || format == "yaml" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(LabStatusView{Status: st, Running: running})
	}
	state := "running"
	if !running {
		state = "NOT RUNNING"
	}
	fmt.Fprintf(w, "project %s  supervisor pid %d (%s)  server %s\n", st.Project, st.Pid, state, st.Server)
	if !st.Synced.IsZero() {
		fmt.Fprintf(w, "in sync with etag %s since %s (last reconcile %s)\n", st.ETag, st.Synced.Format(time.RFC3339), st.Took)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "last error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNETWORK\tNAMESPACE\tPORTS\tROUTES\tMETADATA")
	for _, r := range st.Routers {
		md := "-"
		if r.Metadata {
			md = "169.254.169.254:80"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Network, r.Namespace, r.Ports, r.Routes, md)
	}
	fmt.Fprintln(tw, "\nINSTANCE\tZONE\tNAMESPACE\tNIC\tIP\tALIASES")
	for _, in := range st.Instances {
		if len(in.NICs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\n", in.Name, in.Zone, in.Namespace)
		}
		for _, n := range in.NICs {
			as := make([]string, len(n.Aliases))
			for i, a := range n.Aliases {
				as[i] = a.String()
			}
			name := in.Name
			if !in.Running {
				name += " (stopped)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, in.Zone, in.Namespace, n.Device, n.IP, strings.Join(as, ","))
		}
	}
	return tw.Flush()
}

func newLabExecCmd(g *Globals, lf *labFlags) *cobra.Command {
	var zone string
	cmd := &cobra.Command{
		Use:   "exec INSTANCE [--zone Z] -- COMMAND [ARGS...]",
		Short: "Run a command inside an instance's network namespace",
		Example: `  aliasnet lab exec vm1 -- ip addr
  aliasnet lab exec vm1 -- python3 -m http.server --bind 172.16.0.5 8080`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 {
				return flagErr("--", "usage: aliasnet lab exec INSTANCE -- COMMAND [ARGS...]")
			}
			st, err := lab.ReadStatus(lf.dir(g))
			if err != nil {
				return fmt.Errorf("no lab for project %q: %w", g.Project, err)
			}
			ns, err := st.NamespaceOf(args[0], zone)
			if err != nil {
				return err
			}
			argv := args[1:]
			path, err := exec.LookPath(argv[0])
			if err != nil {
				return err
			}
			// Switch this thread into the instance and exec: the new
			// program keeps the thread's namespace.
			runtime.LockOSThread()
			h, err := netns.GetFromName(ns)
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ns, err)
			}
			if err := netns.Set(h); err != nil {
				return fmt.Errorf("enter %s: %w", ns, err)
			}
			return syscall.Exec(path, argv, os.Environ())
		},
	}
	cmd.Flags().StringVar(&zone, "zone", "", "zone of the instance, when its name is not unique")
	return cmd
}

func newLabSuperviseCmd(g *Globals, lf *labFlags) *cobra.Command {
	var so lab.SuperviseOptions
	var verbose, keep bool
	cmd := &cobra.Command{
		Use:    "supervise",
		Short:  "Realise the lab and keep it in sync (run by 'lab up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			so.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			so.Project, so.Server, so.StateDir, so.Prefix = g.Project, g.Server, lf.dir(g), lf.prefix
			so.KeepProcesses = keep
			var ready *os.File
			if fd := os.Getenv(readyFDEnv); fd != "" {
				n, _ := strconv.Atoi(fd)
				ready = os.NewFile(uintptr(n), "ready")
				os.Unsetenv(readyFDEnv)
			}
			so.Ready = func(err error) {
				if ready == nil {
					return
				}
				if err != nil {
					fmt.Fprintf(ready, "%s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
				} else {
					fmt.Fprintln(ready, "ok")
				}
				ready.Close()
				ready = nil
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := lab.Supervise(ctx, so)
			if pid := readPid(so.StateDir); pid == os.Getpid() {
				os.Remove(filepath.Join(so.StateDir, "supervisor.pid"))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&so.Agent, "agent", false, "run the guest agent in every instance")
	f.StringVar(&so.MetadataUpstream, "metadata", "", "the server's metadata listener URL")
	f.DurationVar(&so.ReadyTimeout, "ready-timeout", time.Minute, "give up reporting readiness after this long")
	f.BoolVar(&keep, "keep-processes", false, "on exit, do not end processes inside the lab's namespaces")
	f.BoolVar(&verbose, "verbose", false, "debug logging")
	return cmd
}

func newLabProbeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "probe", Short: "Test servers and clients for lab instances", Hidden: true}
	var name string
	var tcp, udp []string
	listen := &cobra.Command{
		Use:   "listen --name N [--tcp IP:PORT]... [--udp IP:PORT]...",
		Short: "Greet TCP connections and answer UDP datagrams with a name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.ProbeListen(ctx, name, tcp, udp, cmd.OutOrStdout())
		},
	}
	listen.Flags().StringVar(&name, "name", "probe", "greeting")
	listen.Flags().StringSliceVar(&tcp, "tcp", nil, "TCP address to listen on (repeatable)")
	listen.Flags().StringSliceVar(&udp, "udp", nil, "UDP address to listen on (repeatable)")

	var proto, src, dst string
	var port, count int
	var timeout time.Duration
	var sendOnly bool
	connect := &cobra.Command{
		Use:   "connect --proto tcp|udp|icmp --to IP [--port N] [--src IP]",
		Short: "Probe a destination; exit 0 when it answered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := netip.ParseAddr(dst)
			if err != nil {
				return flagErr("--to", "%q is not an IP address", dst)
			}
			var s netip.Addr
			if src != "" {
				if s, err = netip.ParseAddr(src); err != nil {
					return flagErr("--src", "%q is not an IP address", src)
				}
			}
			if sendOnly {
				return lab.ProbeSend(s, d, port, count)
			}
			r := lab.Probe(context.Background(), proto, s, d, port, timeout)
			json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			if !r.Delivered() {
				return fmt.Errorf("no answer from %s", dst)
			}
			return nil
		},
	}
	cf := connect.Flags()
	cf.StringVar(&proto, "proto", "tcp", "tcp, udp or icmp")
	cf.StringVar(&dst, "to", "", "destination address")
	cf.IntVar(&port, "port", 80, "destination port (tcp, udp)")
	cf.StringVar(&src, "src", "", "source address (any: the socket is transparent)")
	cf.DurationVar(&timeout, "timeout", time.Second, "how long to wait for an answer")
	cf.BoolVar(&sendOnly, "send-only", false, "send --count UDP datagrams and do not wait (needs --src)")
	cf.IntVar(&count, "count", 1, "datagrams to send with --send-only")
	cmd.AddCommand(listen, connect)
	return cmd
}
