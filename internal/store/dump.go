package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
)

// The snapshot file format is the same for every backend, so a backup of
// one store restores into the other:
//
//	"aliasnet-snapshot/1\n" uvarint(rev)
//	{ 0x01 uvarint(len k) k uvarint(len v) v }*
//	0x00 uvarint(count) uint32le(crc32c of every byte before it)
const dumpMagic = "aliasnet-snapshot/1\n"

// WriteSnapshot writes snap to w in the snapshot file format.
func WriteSnapshot(w io.Writer, snap Snapshot) error {
	crc := crc32.New(crcTable())
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<16)
	bw.WriteString(dumpMagic)
	var b []byte
	b = binary.AppendUvarint(b, uint64(snap.Rev))
	bw.Write(b)
	for _, kv := range snap.KVs {
		b = append(b[:0], 1)
		b = binary.AppendUvarint(b, uint64(len(kv.Key)))
		b = append(b, kv.Key...)
		b = binary.AppendUvarint(b, uint64(len(kv.Value)))
		bw.Write(b)
		bw.Write(kv.Value)
	}
	b = append(b[:0], 0)
	b = binary.AppendUvarint(b, uint64(len(snap.KVs)))
	bw.Write(b)
	if err := bw.Flush(); err != nil {
		return err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	_, err := w.Write(sum[:])
	return err
}

// ReadSnapshot reads a snapshot file, checking its checksum.
func ReadSnapshot(r io.Reader) (Snapshot, error) {
	crc := crc32.New(crcTable())
	br := bufio.NewReaderSize(r, 1<<16)
	tr := io.TeeReader(br, crc)
	bad := func(what string) error { return fmt.Errorf("store: not an aliasnet snapshot, or damaged: %s", what) }
	magic := make([]byte, len(dumpMagic))
	if _, err := io.ReadFull(tr, magic); err != nil || string(magic) != dumpMagic {
		return Snapshot{}, bad("header")
	}
	byteReader := &teeByteReader{r: tr}
	var snap Snapshot
	rev, err := binary.ReadUvarint(byteReader)
	if err != nil {
		return Snapshot{}, bad("revision")
	}
	snap.Rev = int64(rev)
	readBytes := func() ([]byte, error) {
		n, err := binary.ReadUvarint(byteReader)
		if err != nil || n > 1<<30 {
			return nil, bad("length")
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, bad("truncated")
		}
		return b, nil
	}
	for {
		tag, err := byteReader.ReadByte()
		if err != nil {
			return Snapshot{}, bad("truncated")
		}
		if tag == 0 {
			break
		}
		if tag != 1 {
			return Snapshot{}, bad("record tag")
		}
		k, err := readBytes()
		if err != nil {
			return Snapshot{}, err
		}
		v, err := readBytes()
		if err != nil {
			return Snapshot{}, err
		}
		snap.KVs = append(snap.KVs, KV{Key: string(k), Value: v})
	}
	count, err := binary.ReadUvarint(byteReader)
	if err != nil || count != uint64(len(snap.KVs)) {
		return Snapshot{}, bad("record count")
	}
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br, sum[:]); err != nil || binary.LittleEndian.Uint32(sum[:]) != want {
		return Snapshot{}, bad("checksum")
	}
	return snap, nil
}

type teeByteReader struct{ r io.Reader }

func (t *teeByteReader) ReadByte() (byte, error) {
	var b [1]byte
	_, err := io.ReadFull(t.r, b[:])
	return b[0], err
}

// ErrNotEmpty is returned by Restore into a store that holds keys.
var ErrNotEmpty = errors.New("store: target store is not empty")

// RestoreMarker is the key a restore writes before any of the state and
// deletes after the whole copy is written and checked. A store cannot take
// a large restore in one transaction (etcd refuses more than --max-txn-ops,
// 128 by default, operations per transaction), so a restore that fails
// half-way leaves part of the state behind: the marker makes that visible,
// servers refuse to start on it (ErrRestoreUnfinished), and running the
// same restore again finishes it.
const RestoreMarker = "aliasnet/restore-unfinished"

// ErrRestoreUnfinished is returned for a store holding RestoreMarker.
var ErrRestoreUnfinished = errors.New("store: holds an unfinished restore or migration")

// Digest is a hash of the snapshot's keys and values, independent of
// their order.
func (s Snapshot) Digest() string {
	kvs := slices.Clone(s.KVs)
	slices.SortFunc(kvs, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	h := sha256.New()
	for _, kv := range kvs {
		fmt.Fprintf(h, "%d:%s%d:", len(kv.Key), kv.Key, len(kv.Value))
		h.Write(kv.Value)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// Restore writes every key of snap into an empty store, in transactions
// of at most batch keys, between writing RestoreMarker (whose value is
// snap's digest) and deleting it once what the store holds reads back
// equal to snap. A store holding only the marker of this same snapshot and
// some of its keys is an earlier run of this restore that failed: it is
// finished. Nothing may use the store meanwhile.
func Restore(ctx context.Context, s Store, snap Snapshot, batch int) error {
	want := snap.Digest()
	cur, err := s.Load(ctx)
	if err != nil {
		return err
	}
	resume := false
	for _, kv := range cur.KVs {
		if kv.Key == RestoreMarker {
			if string(kv.Value) != want {
				return fmt.Errorf("%w: an unfinished restore of another snapshot (digest %.12s)", ErrNotEmpty, kv.Value)
			}
			resume = true
		}
	}
	if len(cur.KVs) > 0 && !resume {
		return fmt.Errorf("%w (%d keys)", ErrNotEmpty, len(cur.KVs))
	}
	for _, kv := range snap.KVs {
		if kv.Key == RestoreMarker {
			return fmt.Errorf("store: the snapshot holds %s: it was taken of an unfinished restore", RestoreMarker)
		}
	}
	if !resume {
		if _, err := s.Submit(Txn{Guards: []Guard{{Key: RestoreMarker}}, Puts: []KV{{Key: RestoreMarker, Value: []byte(want)}}}).Wait(ctx); err != nil {
			return fmt.Errorf("store: restore: write marker: %w", err)
		}
	}
	if batch <= 0 {
		batch = 100
	}
	var pending []*Commit
	for lo := 0; lo < len(snap.KVs); lo += batch {
		hi := min(lo+batch, len(snap.KVs))
		pending = append(pending, s.Submit(Txn{Puts: snap.KVs[lo:hi]}))
		if len(pending) >= 32 {
			if _, err := pending[0].Wait(ctx); err != nil {
				return err
			}
			pending = pending[1:]
		}
	}
	for _, c := range pending {
		if _, err := c.Wait(ctx); err != nil {
			return err
		}
	}
	got, err := s.Load(ctx)
	if err != nil {
		return err
	}
	got.KVs = slices.DeleteFunc(got.KVs, func(kv KV) bool { return kv.Key == RestoreMarker })
	if got.Digest() != want {
		return fmt.Errorf("store: restore: the store holds %d keys that differ from the snapshot's %d (keys other than the snapshot's were written meanwhile?)", len(got.KVs), len(snap.KVs))
	}
	if _, err := s.Submit(Txn{Deletes: []string{RestoreMarker}}).Wait(ctx); err != nil {
		return fmt.Errorf("store: restore: delete marker: %w", err)
	}
	return nil
}
