package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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

// Restore writes every key of snap into an empty store, in transactions
// of at most batch keys (etcd refuses more than --max-txn-ops, 128 by
// default, operations per transaction). It is not atomic: nothing may use
// the store meanwhile, and a failed restore is retried into an emptied
// store.
func Restore(ctx context.Context, s Store, snap Snapshot, batch int) error {
	cur, err := s.Load(ctx)
	if err != nil {
		return err
	}
	if len(cur.KVs) > 0 {
		return fmt.Errorf("%w (%d keys)", ErrNotEmpty, len(cur.KVs))
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
	return nil
}
