package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// addrKey is an address the agent added, by interface MAC (interface
// indexes change across reboots and hotplug; MACs do not).
type addrKey struct {
	MAC    string       `json:"mac"`
	Prefix netip.Prefix `json:"prefix"`
}

func cmpAddrKey(x, y addrKey) int {
	if c := strings.Compare(x.MAC, y.MAC); c != 0 {
		return c
	}
	if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
		return c
	}
	return x.Prefix.Bits() - y.Prefix.Bits()
}

// stateFile is the set of addresses the agent added, kept in memory and
// on disk so that a restarted agent still removes only its own.
type stateFile struct {
	path  string
	owned map[addrKey]bool
}

type stateJSON struct {
	Version   int       `json:"version"`
	Addresses []addrKey `json:"addresses"`
}

func loadState(path string) (*stateFile, error) {
	s := &stateFile{path: path, owned: map[addrKey]bool{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: state: %w", err)
	}
	var sj stateJSON
	if err := json.Unmarshal(b, &sj); err != nil {
		return nil, fmt.Errorf("agent: state %s: %w", path, err)
	}
	for _, k := range sj.Addresses {
		if k.Prefix.IsValid() {
			s.owned[k] = true
		}
	}
	return s, nil
}

func (s *stateFile) has(k addrKey) bool { return s.owned[k] }
func (s *stateFile) add(k addrKey)      { s.owned[k] = true }
func (s *stateFile) del(k addrKey)      { delete(s.owned, k) }

func (s *stateFile) keys() []addrKey {
	out := make([]addrKey, 0, len(s.owned))
	for k := range s.owned {
		out = append(out, k)
	}
	slices.SortFunc(out, cmpAddrKey)
	return out
}

// save writes the state atomically (temporary file + rename).
func (s *stateFile) save() error {
	sj := stateJSON{Version: 1, Addresses: s.keys()}
	b, err := json.MarshalIndent(sj, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("agent: state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".agent-state-*")
	if err != nil {
		return fmt.Errorf("agent: state: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("agent: state: %w", err)
	}
	return nil
}
