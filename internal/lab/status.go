package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// Status is what `lab status` shows; the supervisor rewrites it (in
// StateDir/status.json) after every reconcile.
type Status struct {
	Project string `json:"project"`
	Server  string `json:"server,omitempty"`
	Prefix  string `json:"prefix"`
	// Pid is the supervisor's.
	Pid     int       `json:"pid,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Agent   bool      `json:"agent,omitempty"`
	// ETag of the last spec reconciled, when, how long it took, and the
	// last error ("" when the last reconcile succeeded).
	ETag   string    `json:"etag,omitempty"`
	Synced time.Time `json:"synced,omitzero"`
	Took   string    `json:"took,omitempty"`
	Error  string    `json:"error,omitempty"`
	// Namespaces are every namespace the lab made (removed by `lab down`).
	Namespaces []string         `json:"namespaces"`
	Routers    []RouterStatus   `json:"routers,omitempty"`
	Instances  []InstanceStatus `json:"instances,omitempty"`
}

// RouterStatus is one network's router namespace.
type RouterStatus struct {
	Network   string `json:"network"`
	Namespace string `json:"namespace"`
	Ports     int    `json:"ports"`
	Routes    int    `json:"routes"`
	Metadata  bool   `json:"metadataProxy,omitempty"`
}

// InstanceStatus is one instance's namespace.
type InstanceStatus struct {
	Key       string      `json:"key"`
	Name      string      `json:"name"`
	Zone      string      `json:"zone"`
	Namespace string      `json:"namespace"`
	Running   bool        `json:"running"`
	Agent     bool        `json:"agent,omitempty"`
	NICs      []NICStatus `json:"nics"`
}

// NICStatus is one NIC: ethN inside, Port in the router namespace.
type NICStatus struct {
	Device  string         `json:"device"` // ethN
	Port    string         `json:"port"`
	Router  string         `json:"router"` // router namespace
	IP      netip.Addr     `json:"ip"`
	Aliases []netip.Prefix `json:"aliases,omitempty"`
}

// fillStatus is called with l.mu held.
func (l *Lab) fillStatus(s *fabric.Spec) {
	l.status.Routers = nil
	for _, r := range l.routers {
		l.status.Routers = append(l.status.Routers, RouterStatus{Network: r.key, Namespace: r.ns, Ports: r.ports, Routes: r.routes, Metadata: r.proxy != nil})
	}
	sort.Slice(l.status.Routers, func(i, j int) bool { return l.status.Routers[i].Network < l.status.Routers[j].Network })
	l.status.Instances = nil
	for _, in := range l.insts {
		is := InstanceStatus{Key: in.key, Name: in.name, Zone: in.zone, Namespace: in.ns, Running: in.running, Agent: in.agent != nil && in.agent.alive(), NICs: []NICStatus{}}
		for _, nic := range in.nicsSpec {
			r := l.routers[nic.Network]
			if r == nil {
				continue
			}
			proj := nic.Network[:len(nic.Network)-len(lastPart(nic.Network))-1]
			is.NICs = append(is.NICs, NICStatus{Device: fmt.Sprintf("eth%d", nic.Device), Port: Port(proj, nic.Interface), Router: r.ns, IP: nic.IP, Aliases: nic.Aliases})
		}
		l.status.Instances = append(l.status.Instances, is)
	}
	sort.Slice(l.status.Instances, func(i, j int) bool { return l.status.Instances[i].Key < l.status.Instances[j].Key })
}

func lastPart(key string) string {
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] == '/' {
			return key[i+1:]
		}
	}
	return key
}

// SetSupervisor records the supervisor's identity in the status.
func (l *Lab) SetSupervisor(server string, pid int, started time.Time) {
	l.mu.Lock()
	l.status.Server, l.status.Pid, l.status.Started, l.status.Agent = server, pid, started, l.o.Agent
	l.mu.Unlock()
	l.saveStatus()
}

// SetError records an error that is not a reconcile's (the control plane
// unreachable).
func (l *Lab) SetError(err error) {
	l.mu.Lock()
	if err == nil {
		l.status.Error = ""
	} else {
		l.status.Error = err.Error()
	}
	l.mu.Unlock()
	l.saveStatus()
}

// Status returns a copy of the current status.
func (l *Lab) Status() Status {
	b, _ := json.Marshal(l.snapshot())
	var s Status
	json.Unmarshal(b, &s)
	return s
}

// snapshot is the status to encode without holding l.mu: fillStatus
// makes new Routers and Instances lists every time (and the aliases in
// them are the spec's, never modified), Namespaces is changed in place
// and so copied.
func (l *Lab) snapshot() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.status
	st.Namespaces = slices.Clone(st.Namespaces)
	return st
}

// statusDelay is how long a status write waits for more changes: at
// 10,000 aliases the file takes milliseconds to encode, which a burst of
// changes should pay once, and not on the CPU the next change needs.
const statusDelay = 100 * time.Millisecond

// saveStatusLater writes the status file from a background goroutine,
// statusDelay later; writes asked for meanwhile are coalesced into it.
func (l *Lab) saveStatusLater() {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	if l.saving {
		l.saveAgain = true
		return
	}
	l.saving = true
	l.saveWG.Add(1)
	go func() {
		defer l.saveWG.Done()
		for {
			t := time.NewTimer(statusDelay)
			select {
			case <-t.C:
			case <-l.saveKick:
				t.Stop()
			}
			l.saveStatus()
			l.saveMu.Lock()
			if !l.saveAgain {
				l.saving = false
				l.saveMu.Unlock()
				return
			}
			l.saveAgain = false
			l.saveMu.Unlock()
		}
	}()
}

// FlushStatus writes pending status changes now and waits for them.
func (l *Lab) FlushStatus() {
	done := make(chan struct{})
	go func() { l.saveWG.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return
		case l.saveKick <- struct{}{}:
		}
	}
}

func (l *Lab) saveStatus() {
	if l.o.StateDir == "" {
		return
	}
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	b, err := json.MarshalIndent(l.snapshot(), "", "  ")
	if err != nil {
		return
	}
	if err := writeFileAtomic(filepath.Join(l.o.StateDir, "status.json"), b); err != nil {
		l.log.Warn("lab status", "err", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadStatus reads StateDir/status.json.
func ReadStatus(dir string) (*Status, error) {
	if dir == "" {
		return nil, os.ErrNotExist
	}
	b, err := os.ReadFile(filepath.Join(dir, "status.json"))
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, "status.json"), err)
	}
	return &s, nil
}
