package cni

import (
	"crypto/sha256"
	"encoding/hex"
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
// attachment), one link per attachment to its address, and a lock file.
//
//	DATADIR/NETWORK/lock            flock(2) held for every read-modify-write;
//	                                its first line is the cursor (the address handed out last)
//	DATADIR/NETWORK/172.16.0.7      {"containerID":…,"ifName":…,"netns":…,"created":…}
//	DATADIR/NETWORK/@<hash>         symlink to "172.16.0.7": the address of an attachment
//	                                (hash of container id and interface name)
//	DATADIR/NETWORK/indexed         every allocation has its link (set once by OpenStore)
//
// An address file is created with O_EXCL, written and fsynced, and the
// directory fsynced (with the attachment's link), before ADD answers: a
// node that crashes or restarts never hands out a live pod's address
// again. Addresses are handed out round-robin after the cursor, so a
// freshly released address is the last one to come back (every other
// free address goes first).
//
// The links make ADD, DEL and CHECK find an attachment's address without
// reading every allocation (ADD runs once per pod, under the lock). An
// allocation whose attachment's link points elsewhere (a crash between
// creating the address file and the link, then a retried ADD) is an
// orphan that GC releases.
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
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	}
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
	s := &Store{dir: dir, rng: rng.Masked(), lock: f}
	if err := s.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	return s, nil
}

// Close releases the lock.
func (s *Store) Close() error { return s.lock.Close() }

// index links every allocation to its attachment once, for state written
// before the links existed.
func (s *Store) index() error {
	marker := filepath.Join(s.dir, "indexed")
	if _, err := os.Lstat(marker); err == nil {
		return nil
	}
	for _, al := range s.list() {
		if al.ContainerID != "?" {
			if err := s.link(al); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return err
	}
	return s.fsyncDir()
}

// linkName is the link of an attachment.
func (s *Store) linkName(containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return filepath.Join(s.dir, "@"+hex.EncodeToString(h[:16]))
}

// link points the attachment's link at its address.
func (s *Store) link(al Allocation) error {
	p := s.linkName(al.ContainerID, al.IfName)
	err := os.Symlink(al.IP.String(), p)
	if errors.Is(err, fs.ErrExist) {
		// A stale link (its address was released, or an orphan's).
		if err := os.Remove(p); err != nil {
			return err
		}
		err = os.Symlink(al.IP.String(), p)
	}
	return err
}

// linked reports whether the attachment's link points at a.
func (s *Store) linked(containerID, ifName string, a netip.Addr) bool {
	t, err := os.Readlink(s.linkName(containerID, ifName))
	return err == nil && t == a.String()
}

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

// cursorLen is the fixed size of the cursor record at the start of the
// lock file (the longest IPv6 text form, padded, and a newline), so that
// rewriting it in place never leaves a longer old address behind.
const cursorLen = 46

// cursor is the address handed out last (zero if unknown).
func (s *Store) cursor() netip.Addr {
	b := make([]byte, cursorLen)
	n, _ := s.lock.ReadAt(b, 0)
	txt := strings.TrimSpace(string(b[:n]))
	if n == 0 {
		// State written before the cursor moved into the lock file.
		old, _ := os.ReadFile(filepath.Join(s.dir, "cursor"))
		txt = strings.TrimSpace(string(old))
	}
	if a, err := netip.ParseAddr(txt); err == nil && s.rng.Contains(a) {
		return a
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

// setCursor records a in place: no new file and no rename, which on ext4
// would flush the new file's data at once (auto_da_alloc).
func (s *Store) setCursor(a netip.Addr) error {
	_, err := s.lock.WriteAt(fmt.Appendf(nil, "%-*s\n", cursorLen-1, a), 0)
	return err
}

// Find returns the allocations of an attachment (containerID and ifName;
// ifName "" matches any).
func (s *Store) Find(containerID, ifName string) []Allocation {
	if ifName == "" {
		var out []Allocation
		for _, al := range s.list() {
			if al.ContainerID == containerID {
				out = append(out, al)
			}
		}
		return out
	}
	t, err := os.Readlink(s.linkName(containerID, ifName))
	if err != nil {
		return nil
	}
	a, err := netip.ParseAddr(t)
	if err != nil {
		return nil
	}
	al, ok := s.read(a)
	if !ok || al.ContainerID != containerID || al.IfName != ifName {
		return nil // a stale link
	}
	return []Allocation{al}
}

// List returns every allocation.
func (s *Store) List() []Allocation { return s.list() }

// Orphan reports whether an allocation is not its attachment's address
// (its link points elsewhere): left by a crash between creating the
// address file and the link.
func (s *Store) Orphan(al Allocation) bool {
	return al.ContainerID == "?" || !s.linked(al.ContainerID, al.IfName, al.IP)
}

func (s *Store) read(a netip.Addr) (Allocation, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, a.String()))
	if err != nil {
		return Allocation{}, false
	}
	al := Allocation{IP: a}
	if json.Unmarshal(b, &al.Attachment) != nil {
		// A torn file (crash between create and write): the address
		// stays taken until GC or an explicit release.
		al.ContainerID = "?"
	}
	return al, true
}

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
		if al, ok := s.read(a); ok {
			out = append(out, al)
		}
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
	var created *os.File
	for {
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		f, err := s.create(a, body)
		if err == nil {
			created = f
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return netip.Addr{}, err
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("no free address left in %s: every address of the node's pod range is in use", s.rng)
		}
	}
	defer created.Close()
	if err := s.link(Allocation{IP: a, Attachment: att}); err != nil {
		os.Remove(created.Name())
		return netip.Addr{}, err
	}
	// The address file's content and the directory (its name and the
	// link) must both be durable before ADD answers. The two fsyncs run
	// at once: on a journaling file system they wait for one commit
	// instead of two (ADD's latency).
	errc := make(chan error, 1)
	go func() { errc <- created.Sync() }()
	errDir := s.fsyncDir()
	if err := errors.Join(<-errc, errDir); err != nil {
		os.Remove(created.Name())
		s.fsyncDir()
		return netip.Addr{}, err
	}
	// Not durable on purpose: a lost cursor only changes the order in
	// which free addresses are handed out.
	_ = s.setCursor(a)
	return a, nil
}

// create makes an address file (O_EXCL: one holder per address) with its
// attachment, not yet synced.
func (s *Store) create(a netip.Addr, body []byte) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// Release frees an address (and its attachment's link when it points
// there).
func (s *Store) Release(a netip.Addr) error {
	if al, ok := s.read(a); ok && al.ContainerID != "?" && s.linked(al.ContainerID, al.IfName, a) {
		if err := os.Remove(s.linkName(al.ContainerID, al.IfName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(filepath.Join(s.dir, a.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return s.fsyncDir()
}
