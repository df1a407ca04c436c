package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"
)

// wal is a fixed-size, zero-filled, reused log file. A commit is one
// pwrite of whole records and one fdatasync: because the file's blocks
// already exist, fdatasync flushes only data, not file-system metadata,
// which is what makes a durable commit cost a fraction of a millisecond
// where bbolt's own commit (copy-on-write pages, two syncs) costs several.
//
// Record: uint32 len | uint32 crc32c(rev|payload) | uint64 rev | payload.
// Replay reads from offset 0 and stops at the first record that does not
// check out; records older than the bbolt checkpoint are skipped. The log
// wraps to offset 0 only once bbolt holds everything written so far, so
// stale records beyond the tail are always older than the checkpoint.
type wal struct {
	f    *os.File
	size int64
	off  int64
}

const walHeader = 16

var crcTable = crc32.MakeTable(crc32.Castagnoli)

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

// replay returns the events after rev found in the log, in order, and
// sets the write offset after the last one.
func (w *wal) replay(rev int64) ([]Event, error) {
	buf := make([]byte, w.size)
	if _, err := w.f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var out []Event
	off := int64(0)
	next := rev + 1
	end := int64(0)
	for off+walHeader <= w.size {
		n := int64(binary.LittleEndian.Uint32(buf[off:]))
		if n == 0 || off+walHeader+n > w.size {
			break
		}
		sum := binary.LittleEndian.Uint32(buf[off+4:])
		body := buf[off+8 : off+walHeader+n]
		if crc32.Checksum(body, crcTable) != sum {
			break
		}
		r := int64(binary.LittleEndian.Uint64(body))
		if r >= next {
			if r != next {
				return nil, fmt.Errorf("store: log has revision %d where %d was expected", r, next)
			}
			ev, err := decodeEvent(r, body[8:])
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
			next++
			end = off + walHeader + n
		}
		off += walHeader + n
	}
	w.off = end
	return out, nil
}

// appendRecords encodes events as records into b.
func appendRecords(b []byte, evs []Event) []byte {
	for _, ev := range evs {
		payload := encodeEvent(ev)
		var h [walHeader]byte
		binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
		binary.LittleEndian.PutUint64(h[8:], uint64(ev.Rev))
		crc := crc32.Update(0, crcTable, h[8:16])
		crc = crc32.Update(crc, crcTable, payload)
		binary.LittleEndian.PutUint32(h[4:], crc)
		b = append(b, h[:]...)
		b = append(b, payload...)
	}
	return b
}

// fits reports whether n more bytes fit before the end of the file.
func (w *wal) fits(n int) bool { return w.off+int64(n) <= w.size }

// write appends b at the tail and makes it durable.
func (w *wal) write(b []byte, sync bool) error {
	if _, err := w.f.WriteAt(b, w.off); err != nil {
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

// rewind starts writing at offset 0 again; the caller guarantees the
// checkpoint holds everything written so far.
func (w *wal) rewind() { w.off = 0 }

func (w *wal) close() error { return w.f.Close() }
