package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// Invoked reports whether the process was started as a CNI plugin: with
// CNI_COMMAND set (the runtime always sets it) or under the name
// "aliasnet-cni".
func Invoked(argv0 string) bool {
	return os.Getenv("CNI_COMMAND") != "" || filepath.Base(argv0) == "aliasnet-cni"
}

// Versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Main runs one plugin invocation (environment and stdin as the CNI spec
// says) and returns the exit code.
func Main() int {
	if e := skel.PluginMainFuncsWithError(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus},
		Versions, "aliasnet CNI plugin: pod addresses from the node's alias IP range"); e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintln(os.Stderr, "aliasnet:", err)
		}
		return 1
	}
	return 0
}

func load(args *skel.CmdArgs) (*NetConf, netip.Prefix, error) {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	rng, err := c.podRange()
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	return c, rng, nil
}

// trace prints phase timings of ADD to stderr when ALIASNET_CNI_TRACE is
// set (latency work; the runtime logs a plugin's stderr).
func trace() func(string) {
	if os.Getenv("ALIASNET_CNI_TRACE") == "" {
		return func(string) {}
	}
	t0 := time.Now()
	last := t0
	return func(what string) {
		now := time.Now()
		fmt.Fprintf(os.Stderr, "aliasnet-cni: %-10s %6dµs (total %6dµs)\n", what, now.Sub(last).Microseconds(), now.Sub(t0).Microseconds())
		last = now
	}
}

func cmdAdd(args *skel.CmdArgs) error {
	tr := trace()
	c, rng, err := load(args)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidNetNS, "aliasnet: ADD needs CNI_NETNS", "")
	}
	hv := hostVethName(args.ContainerID, args.IfName)
	// The allocation waits for the disk (its fsyncs) and creating the veth
	// pair for the kernel; neither needs the other, so they overlap (ADD
	// runs once per pod and its latency is the pod's start-up time).
	type allocated struct {
		a     netip.Addr
		fresh bool // allocated by this ADD (not a retried ADD's address)
		err   error
	}
	ach := make(chan allocated, 1)
	go func() {
		st, err := OpenStore(c.DataDir, c.Name, rng)
		if err != nil {
			ach <- allocated{err: err}
			return
		}
		defer st.Close()
		if prev := st.Find(args.ContainerID, args.IfName); len(prev) > 0 {
			ach <- allocated{a: prev[0].IP} // a retried ADD keeps its address
			return
		}
		a, err := st.Allocate(Attachment{ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, HostVeth: hv})
		ach <- allocated{a, err == nil, err}
	}()
	r := allocated{}
	// A failed ADD gives back what it allocated, never a retried ADD's
	// address: the pod may still be using it.
	release := func() {
		if !r.fresh {
			return
		}
		if st, err := OpenStore(c.DataDir, c.Name, rng); err == nil {
			_ = st.Release(r.a)
			st.Close()
		}
	}
	h, err := nodeHandle()
	if err == nil {
		defer h.Close()
	}
	var v *veth
	if err == nil {
		v, err = createVeth(h, args.Netns, args.IfName, args.ContainerID, hv, c.MTU)
	}
	tr("veth")
	r = <-ach
	tr("allocate")
	if err != nil {
		release()
		return err
	}
	defer v.close()
	if r.err != nil {
		v.remove(h)
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("aliasnet: allocate an address for container %s %s in %s: %v", args.ContainerID, args.IfName, rng, r.err), "")
	}
	a := r.a
	if err := checkNotLocal(h, a, rng); err != nil {
		v.remove(h)
		release()
		return err
	}
	tr("checklocal")
	if err := v.configure(h, a); err != nil {
		v.remove(h)
		release()
		return err
	}
	tr("setup")
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hv, Mac: v.hostMAC.String()},
			{Name: args.IfName, Mac: v.podMAC.String(), Sandbox: args.Netns},
		},
		IPs:    []*current.IPConfig{{Interface: current.Int(1), Address: *hostPrefix(a), Gateway: gateway}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gateway}},
	}
	return types.PrintResult(res, c.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := teardown(hostVethName(args.ContainerID, args.IfName)); err != nil {
		return fmt.Errorf("aliasnet: remove veth: %w", err)
	}
	rng, err := c.podRange()
	if err != nil {
		// Without a range there is nothing we could have allocated.
		return nil
	}
	st, err := OpenStore(c.DataDir, c.Name, rng)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, al := range st.Find(args.ContainerID, args.IfName) {
		if err := st.Release(al.IP); err != nil {
			return err
		}
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	c, rng, err := load(args)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return err
	}
	if c.PrevResult == nil {
		return fmt.Errorf("aliasnet: CHECK needs a prevResult")
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return err
	}
	st, err := OpenStore(c.DataDir, c.Name, rng)
	if err != nil {
		return err
	}
	allocs := st.Find(args.ContainerID, args.IfName)
	st.Close()
	if len(allocs) == 0 {
		return fmt.Errorf("aliasnet: no address is allocated to container %s %s", args.ContainerID, args.IfName)
	}
	a := allocs[0].IP
	if !rng.Contains(a) {
		return fmt.Errorf("aliasnet: allocated %s is outside the node's pod range %s", a, rng)
	}
	found := false
	for _, ipc := range prev.IPs {
		if p, ok := netip.AddrFromSlice(ipc.Address.IP); ok && p.Unmap() == a {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("aliasnet: prevResult does not list the allocated address %s", a)
	}
	return checkPod(args.Netns, args.IfName, hostVethName(args.ContainerID, args.IfName), a)
}

// cmdGC releases every allocation whose attachment is not in the valid
// list, with its host veth, and every orphan (see Store).
func cmdGC(args *skel.CmdArgs) error {
	c, rng, err := load(args)
	if err != nil {
		return err
	}
	valid := map[types.GCAttachment]bool{}
	for _, v := range c.ValidAttachments {
		valid[v] = true
	}
	st, err := OpenStore(c.DataDir, c.Name, rng)
	if err != nil {
		return err
	}
	defer st.Close()
	var errs []error
	for _, al := range st.List() {
		live := valid[types.GCAttachment{ContainerID: al.ContainerID, IfName: al.IfName}]
		if live && !st.Orphan(al) {
			continue
		}
		// An orphan of a live attachment keeps the attachment's veth.
		if !live && al.ContainerID != "?" {
			if err := teardown(hostVethName(al.ContainerID, al.IfName)); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := st.Release(al.IP); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cmdStatus is ready when the node's pod range is known and the state
// directory is usable.
func cmdStatus(args *skel.CmdArgs) error {
	c, rng, err := load(args)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	st, err := OpenStore(c.DataDir, c.Name, rng)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	return st.Close()
}
