package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Store is the node-local allocation state of one network: a directory
// with one file per allocated address (named by the address, holding the
// attachment), a cursor, and a lock file.
//
//	DATADIR/NETWORK/lock            flock(2) held for every read-modify-write
//	DATADIR/NETWORK/172.16.0.7      {"containerID":…,"ifName":…,"netns":…,"created":…}
//	DATADIR/NETWORK/cursor          the address handed out last
//
// An address file is created with O_EXCL, written and fsynced, and the
// directory fsynced, before ADD answers: a node that crashes or restarts
// never hands out a live pod's address again. Addresses are handed out
// round-robin after the cursor, so a freshly released address is the last
// one to come back (every other free address goes first).
type Store struct {
	dir  string
	rng  netip.Prefix
	lock *os.File
}

// Attachment is what an address file records.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns,omitempty"`
	HostVeth    string `json:"hostVeth,omitempty"`
	Created     string `json:"created,omitempty"`
}

// Allocation is an address and its attachment.
type Allocation struct {
	IP netip.Addr
	Attachment
}

// OpenStore opens (creating) the state of network name in dataDir and
// takes its lock; Close releases it.
func OpenStore(dataDir, name string, rng netip.Prefix) (*Store, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("invalid network name %q", name)
	}
	dir := filepath.Join(dataDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Store{dir: dir, rng: rng.Masked(), lock: f}, nil
}

// Close releases the lock.
func (s *Store) Close() error { return s.lock.Close() }

// usable returns the first and last address handed out: every address of
// the range but the network and broadcast addresses (kept out so that no
// pod gets an address some stacks treat specially).
func usable(rng netip.Prefix) (netip.Addr, netip.Addr) {
	first := rng.Masked().Addr()
	last := lastAddr(rng)
	if rng.Addr().Is4() && rng.Bits() <= 30 {
		first, last = first.Next(), last.Prev()
	}
	return first, last
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (s *Store) fsyncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// cursor is the address handed out last (zero if unknown).
func (s *Store) cursor() netip.Addr {
	b, err := os.ReadFile(filepath.Join(s.dir, "cursor"))
	if err == nil {
		if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && s.rng.Contains(a) {
			return a
		}
	}
	// Lost or torn cursor (it is written without fsync): continue after
	// the newest allocation still on disk.
	var best netip.Addr
	var bestT time.Time
	for _, al := range s.list() {
		if t, err := time.Parse(time.RFC3339Nano, al.Created); err == nil && t.After(bestT) {
			best, bestT = al.IP, t
		}
	}
	return best
}

func (s *Store) setCursor(a netip.Addr) error {
	tmp := filepath.Join(s.dir, "cursor.tmp")
	if err := os.WriteFile(tmp, []byte(a.String()+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, "cursor"))
}

// Find returns the allocations of an attachment (containerID and ifName;
// ifName "" matches any).
func (s *Store) Find(containerID, ifName string) []Allocation {
	var out []Allocation
	for _, al := range s.list() {
		if al.ContainerID == containerID && (ifName == "" || al.IfName == ifName) {
			out = append(out, al)
		}
	}
	return out
}

// List returns every allocation.
func (s *Store) List() []Allocation { return s.list() }

func (s *Store) list() []Allocation {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []Allocation
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue
		}
		al := Allocation{IP: a}
		if json.Unmarshal(b, &al.Attachment) != nil {
			// A torn file (crash between create and write): the address
			// stays taken until GC or an explicit release.
			al.ContainerID = "?"
		}
		out = append(out, al)
	}
	return out
}

// Allocate takes the next free address after the cursor for att.
func (s *Store) Allocate(att Attachment) (netip.Addr, error) {
	first, last := usable(s.rng)
	start := s.cursor()
	if !start.IsValid() || !s.rng.Contains(start) || start.Less(first) || last.Less(start) {
		start = last // so that the first candidate is first
	}
	att.Created = time.Now().UTC().Format(time.RFC3339Nano)
	body, _ := json.Marshal(att)
	a := start
	for {
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		err := s.create(a, body)
		if err == nil {
			if err := s.setCursor(a); err != nil {
				return netip.Addr{}, err
			}
			if err := s.fsyncDir(); err != nil {
				return netip.Addr{}, err
			}
			return a, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return netip.Addr{}, err
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("no free address left in %s: every address of the node's pod range is in use", s.rng)
		}
	}
}

func (s *Store) create(a netip.Addr, body []byte) error {
	f, err := os.OpenFile(filepath.Join(s.dir, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return f.Close()
}

// Release frees an address.
func (s *Store) Release(a netip.Addr) error {
	if err := os.Remove(filepath.Join(s.dir, a.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.fsyncDir()
}
