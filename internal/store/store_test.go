package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// backends is the table every store test runs against; the etcd backend
// joins it when it exists.
var backends = []struct {
	name string
	open func(t *testing.T, dir string) Store
	// trim drops history older than about 50 revisions.
	trim func(t *testing.T, s Store)
}{
	{"bbolt", func(t *testing.T, dir string) Store {
		s, err := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{KeepLog: 50, WALSize: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T, s Store) {
		// Force the checkpoint that trims the history.
		if _, err := s.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}},
	{"etcd", openEtcdBackend, func(t *testing.T, s Store) {
		if err := s.(*Etcd).Compact(context.Background(), s.Rev()-50); err != nil {
			t.Fatal(err)
		}
	}},
}

func put(k, v string) Txn { return Txn{Puts: []KV{{Key: k, Value: []byte(v)}}} }

func commit(t *testing.T, s Store, tx Txn) int64 {
	t.Helper()
	rev, err := s.Submit(tx).Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func load(t *testing.T, s Store) map[string]string {
	t.Helper()
	snap, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range snap.KVs {
		m[kv.Key] = string(kv.Value)
	}
	return m
}

func TestCommitLoadWatch(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			dir := t.TempDir()
			s := be.open(t, dir)
			r1 := commit(t, s, put("a", "1"))
			r2 := commit(t, s, Txn{Puts: []KV{{"b", []byte("2")}, {"c", []byte("3")}}, Deletes: []string{"a"}})
			if r2 != r1+1 {
				t.Fatalf("revisions %d then %d", r1, r2)
			}
			if m := load(t, s); len(m) != 2 || m["b"] != "2" || m["c"] != "3" {
				t.Fatalf("load = %v", m)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := s.Watch(ctx, r1-1)
			if err != nil {
				t.Fatal(err)
			}
			r3 := commit(t, s, put("d", "4"))
			var got []int64
			for ev := range ch {
				got = append(got, ev.Rev)
				if ev.Rev == r3 {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint([]int64{r1, r2, r3}) {
				t.Errorf("watch revisions %v, want %d..%d", got, r1, r3)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = be.open(t, dir)
			defer s.Close()
			if m := load(t, s); len(m) != 3 || m["d"] != "4" {
				t.Fatalf("after reopen load = %v", m)
			}
			if s.Rev() != r3 {
				t.Errorf("rev after reopen %d, want %d", s.Rev(), r3)
			}
		})
	}
}

func TestWatchCompacted(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t, t.TempDir())
			defer s.Close()
			for i := range 200 {
				commit(t, s, put("k", fmt.Sprint(i)))
			}
			be.trim(t, s)
			_, err := s.Watch(context.Background(), 1)
			if !errors.Is(err, ErrCompacted) {
				t.Fatalf("watch from a trimmed revision: %v", err)
			}
			ch, err := s.Watch(context.Background(), s.Rev()-10)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ev := range ch {
				n++
				if ev.Rev == s.Rev() {
					break
				}
			}
			if n != 10 {
				t.Errorf("resumed watch got %d events, want 10", n)
			}
		})
	}
}

// TestCrashRecovery copies the files of an open store (as a crash would
// leave them: log written, checkpoint behind) and opens the copy.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{WALSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := s.Submit(put(fmt.Sprintf("w%d/%d", w, i), "v")).Wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	crash := t.TempDir()
	for _, f := range []string{"s.db", "s.db.wal"} {
		copyFile(t, filepath.Join(dir, f), filepath.Join(crash, f))
	}
	c, err := OpenBolt(filepath.Join(crash, "s.db"), BoltOptions{WALSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := load(t, c); len(m) != 400 {
		t.Fatalf("recovered %d keys, want 400", len(m))
	}
	if c.Rev() != 400 {
		t.Errorf("recovered rev %d", c.Rev())
	}
}

// TestLogWraps drives more data through a small log than it holds.
func TestLogWraps(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{WALSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 900)
	for i := range 100 {
		if _, err := s.Submit(Txn{Puts: []KV{{fmt.Sprintf("k%03d", i), big}}}).Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	crash := t.TempDir()
	for _, f := range []string{"s.db", "s.db.wal"} {
		copyFile(t, filepath.Join(dir, f), filepath.Join(crash, f))
	}
	s.Close()
	c, err := OpenBolt(filepath.Join(crash, "s.db"), BoltOptions{WALSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := load(t, c); len(m) != 100 {
		t.Fatalf("recovered %d keys after wrap, want 100", len(m))
	}
}

// TestTornTail: garbage after the last record is ignored.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{WALSize: 1 << 16})
	commit(t, s, put("a", "1"))
	crash := t.TempDir()
	copyFile(t, filepath.Join(dir, "s.db"), filepath.Join(crash, "s.db"))
	copyFile(t, filepath.Join(dir, "s.db.wal"), filepath.Join(crash, "s.db.wal"))
	s.Close()
	w, _ := os.OpenFile(filepath.Join(crash, "s.db.wal"), os.O_RDWR, 0)
	// A half-written second record: a plausible header, no valid body.
	w.WriteAt([]byte{40, 0, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0, 0, 0, 0, 0, 9, 9}, 0+int64(walHeader+len(encodeEvent(Event{Puts: []KV{{"a", []byte("1")}}}))))
	w.Close()
	c, err := OpenBolt(filepath.Join(crash, "s.db"), BoltOptions{WALSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := load(t, c); len(m) != 1 || c.Rev() != 1 {
		t.Fatalf("torn tail: %v rev %d", m, c.Rev())
	}
	commit(t, c, put("b", "2"))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func TestEventCodecRoundTrip(t *testing.T) {
	ev := Event{Rev: 7, Puts: []KV{{"a", []byte("x")}, {"", nil}}, Deletes: []string{"z"}}
	got, err := decodeEvent(7, encodeEvent(ev))
	if err != nil || len(got.Puts) != 2 || got.Puts[0].Key != "a" || got.Deletes[0] != "z" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := decodeEvent(1, []byte{5}); err == nil {
		t.Fatal("corrupt entry accepted")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeEvent(Event{Puts: []KV{{"k", []byte("v")}}, Deletes: []string{"d"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(1, b)
		if err != nil {
			return
		}
		if again, err := decodeEvent(1, encodeEvent(ev)); err != nil || len(again.Puts) != len(ev.Puts) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

var _ = time.Second

// TestLogHalves drives records of varied sizes through a small log many
// times round, taking crash copies at arbitrary moments: every copy must
// recover exactly the state acknowledged when it was taken, whichever
// half the tail was in and however far the checkpoint lagged.
func TestLogHalves(t *testing.T) {
	dir := t.TempDir()
	const walSize = 16 << 10
	s, err := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{WALSize: walSize})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]string{}
	for i := range 600 {
		k := fmt.Sprintf("k%02d", i%37)
		v := fmt.Sprintf("%d:%s", i, make([]byte, 50+(i*7919)%1500))
		tx := put(k, v)
		if i%11 == 0 {
			tx.Deletes = []string{fmt.Sprintf("k%02d", (i+5)%37)}
			delete(want, tx.Deletes[0])
		}
		want[k] = v
		if i%11 == 0 && tx.Deletes[0] == k {
			t.Fatal("test bug: put and delete of one key")
		}
		commit(t, s, tx)
		if i%97 != 13 {
			continue
		}
		crash := t.TempDir()
		for _, f := range []string{"s.db", "s.db.wal"} {
			copyFile(t, filepath.Join(dir, f), filepath.Join(crash, f))
		}
		c, err := OpenBolt(filepath.Join(crash, "s.db"), BoltOptions{WALSize: walSize})
		if err != nil {
			t.Fatalf("after %d commits: %v", i+1, err)
		}
		got := load(t, c)
		if c.Rev() != int64(i+1) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %d commits recovered rev %d, %d keys; want %d keys", i+1, c.Rev(), len(got), len(want))
		}
		// The recovered store keeps working across further half switches.
		for j := range 40 {
			commit(t, c, put(fmt.Sprintf("x%d", j), string(make([]byte, 900))))
		}
		c.Close()
	}
}

// TestWatchAfterReopen: history does not outlive the process; resuming
// from before a restart answers ErrCompacted (the follower re-lists), and
// resuming from the current revision works.
func TestWatchAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, put("a", "1"))
	commit(t, s, put("b", "2"))
	s.Close()
	s, err = OpenBolt(filepath.Join(dir, "s.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Watch(context.Background(), 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from before the restart: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, s.Rev())
	if err != nil {
		t.Fatal(err)
	}
	r := commit(t, s, put("c", "3"))
	if ev := <-ch; ev.Rev != r {
		t.Fatalf("live event rev %d, want %d", ev.Rev, r)
	}
}
