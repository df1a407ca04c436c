package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
)

// wal is a fixed-size, zero-filled, reused log file. A commit is one
// pwrite of whole records and one fdatasync: because the file's blocks
// already exist, fdatasync flushes only data, not file-system metadata,
// which is what makes a durable commit cost a fraction of a millisecond
// where bbolt's own commit (copy-on-write pages, two syncs) costs several.
//
// Record: uint32 len | uint32 crc32c(rev|payload) | uint64 rev | payload.
//
// The file is two halves written in turn. Writing moves into the other
// half only once the bbolt checkpoint holds every record that half
// holds, which by then was written a whole half-lap ago — so the
// checkpoint is long past it and committing never waits for bbolt (a
// single ring would have to checkpoint everything up to the tail before
// rewinding). Replay scans both halves from their starts, each up to its
// first record that does not check out, and keeps the records newer than
// the checkpoint: stale records beyond a half's tail are older than the
// checkpoint, by the rule above.
type wal struct {
	f    *os.File
	size int64 // of the file; each half is size/2
	half int   // 0 or 1: the half being written
	off  int64 // write offset within the half
	// left is the last revision written into the other half before
	// writing moved away from it: moving back needs the checkpoint there.
	left int64
}

const walHeader = 16

// crcTable is built on first use: every aliasnet process (the CLI, the CNI
// plugin) links this package, and building it at start-up cost 0.25 ms.
var crcTable = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

func openWAL(path string, size int64) (*wal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() < size {
		// Write real zeros (not fallocate: unwritten extents would make
		// every later fdatasync a metadata commit).
		zero := make([]byte, 1<<20)
		for off := st.Size(); off < size; off += int64(len(zero)) {
			n := min(int64(len(zero)), size-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				f.Close()
				return nil, err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	} else {
		size = st.Size()
	}
	return &wal{f: f, size: size}, nil
}

func (w *wal) halfSize() int64 { return w.size / 2 }

// replay returns the events after rev found in the log, in order, and
// places the write position after the newest record.
func (w *wal) replay(rev int64) ([]Event, error) {
	buf := make([]byte, w.size)
	if _, err := w.f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	hs := w.halfSize()
	type found struct {
		ev   Event
		half int
		end  int64
	}
	var all []found
	for h := range 2 {
		hb := buf[int64(h)*hs : int64(h+1)*hs]
		for off := int64(0); off+walHeader <= hs; {
			n := int64(binary.LittleEndian.Uint32(hb[off:]))
			if n == 0 || off+walHeader+n > hs {
				break
			}
			body := hb[off+8 : off+walHeader+n]
			if crc32.Checksum(body, crcTable()) != binary.LittleEndian.Uint32(hb[off+4:]) {
				break
			}
			off += walHeader + n
			r := int64(binary.LittleEndian.Uint64(body))
			if r <= rev {
				continue
			}
			ev, err := decodeEvent(r, body[8:])
			if err != nil {
				return nil, err
			}
			all = append(all, found{ev, h, off})
		}
	}
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(a.ev.Rev, b.ev.Rev) })
	out := make([]Event, len(all))
	for i, f := range all {
		if f.ev.Rev != rev+int64(i)+1 {
			return nil, fmt.Errorf("store: log has revision %d where %d was expected", f.ev.Rev, rev+int64(i)+1)
		}
		out[i] = f.ev
	}
	w.half, w.off, w.left = 0, 0, rev
	if len(all) > 0 {
		last := all[len(all)-1]
		w.half, w.off = last.half, last.end
		// The other half's newest record is at most the one before this
		// half's oldest; rev is a safe lower bound for "checkpointed".
		for _, f := range all {
			if f.half != last.half {
				w.left = f.ev.Rev
			}
		}
	}
	return out, nil
}

// appendRecords encodes events as records into b.
func appendRecords(b []byte, evs []Event) []byte {
	for _, ev := range evs {
		payload := encodeEvent(ev)
		var h [walHeader]byte
		binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
		binary.LittleEndian.PutUint64(h[8:], uint64(ev.Rev))
		crc := crc32.Update(0, crcTable(), h[8:16])
		crc = crc32.Update(crc, crcTable(), payload)
		binary.LittleEndian.PutUint32(h[4:], crc)
		b = append(b, h[:]...)
		b = append(b, payload...)
	}
	return b
}

// fits reports whether n more bytes fit in the current half.
func (w *wal) fits(n int) bool { return w.off+int64(n) <= w.halfSize() }

// write appends b at the tail and makes it durable.
func (w *wal) write(b []byte, sync bool) error {
	if _, err := w.f.WriteAt(b, int64(w.half)*w.halfSize()+w.off); err != nil {
		return err
	}
	if sync {
		if err := syscall.Fdatasync(int(w.f.Fd())); err != nil {
			return err
		}
	}
	w.off += int64(len(b))
	return nil
}

// switchHalf moves writing to the start of the other half; the caller
// guarantees the checkpoint holds w.left, and passes the last revision
// written so far (which becomes the new w.left).
func (w *wal) switchHalf(last int64) {
	w.half, w.off, w.left = 1-w.half, 0, last
}

func (w *wal) close() error { return w.f.Close() }
