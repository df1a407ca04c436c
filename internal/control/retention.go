package control

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aliasnet/aliasnet/internal/store"
)

// Operation retention. Every mutation records an operation (GCE clients
// poll it; requestId and ClientToken retries are answered from it), so
// without pruning the store and memory grow with the number of calls
// ever made — a flapping BGP peer alone writes one per learned-route
// change. GCE promises requestId deduplication for at least 60 minutes,
// which is the default age kept; the count cap bounds memory under
// extreme rates at the cost of a shorter window (logged when it bites).
const (
	DefaultOperationRetention = time.Hour
	DefaultMaxOperations      = 500_000
	pruneEvery                = time.Minute
	// pruneChunk keeps each deletion transaction within etcd's default
	// 128 operations per transaction.
	pruneChunk = 100
)

// PruneOperations deletes operations (and the request ids that point at
// them) inserted before now-retention, then the oldest beyond the count
// cap. It returns how many operations it removed.
func (s *Service) PruneOperations(ctx context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	cutoff := now.Add(-s.retention).UnixMilli()
	var old []string
	type aged struct {
		key string
		ms  int64
	}
	var rest []aged
	s.ops.keys(func(k string) {
		if ms := s.ops.insertedMs(k); ms < cutoff {
			old = append(old, k)
		} else {
			rest = append(rest, aged{k, ms})
		}
	})
	if over := len(rest) - s.maxOps; over > 0 {
		slices.SortFunc(rest, func(a, b aged) int { return cmp.Compare(a.ms, b.ms) })
		for _, a := range rest[:over] {
			old = append(old, a.key)
		}
		s.log.Warn("operation count cap reached: pruning operations younger than the retention age; requestId retries older than the oldest kept operation are no longer deduplicated",
			"cap", s.maxOps, "pruned", over, "oldestKept", time.UnixMilli(rest[over].ms).UTC())
	}
	if len(old) == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	// Operations stored together (a replica's batch) go together, once
	// every one of them is due, so memory and the store keep agreeing.
	due := make(map[string]bool, len(old))
	for _, k := range old {
		due[k] = true
	}
	gone := make(map[string]bool, len(old))
	keys := make([]string, 0, len(old))
	for _, k := range old {
		bk := s.ops.batchOf[k]
		if bk == "" {
			s.ops.del(k)
			gone[k] = true
			keys = append(keys, k)
			continue
		}
		members, ok := s.ops.batches[bk]
		if !ok || !allDue(members, due) {
			continue
		}
		for _, m := range members {
			gone[m] = true
		}
		s.ops.delBatch(bk)
		keys = append(keys, bk)
	}
	if len(gone) == 0 {
		s.mu.Unlock()
		return 0, nil
	}
	for rk, k := range s.reqs {
		if gone[k] {
			delete(s.reqs, rk)
			keys = append(keys, rk)
		}
	}
	var prev, turn chan struct{}
	if s.repl == nil {
		// Ordered with mutations like Do: a request id deleted here may
		// be written again by the next decision.
		prev, turn = s.turn, make(chan struct{})
		s.turn = turn
	}
	s.mu.Unlock()

	var commits []*store.Commit
	if s.repl == nil {
		<-prev
	}
	for c := range slices.Chunk(keys, pruneChunk) {
		// Replicas need no guard: deleting an expired record is
		// idempotent, and a replica reusing a request id checks that its
		// key does not exist, which orders it after this deletion.
		commits = append(commits, s.store.Submit(store.Txn{Deletes: c}))
	}
	if s.repl == nil {
		close(turn)
	}
	for _, c := range commits {
		if _, err := c.Wait(context.WithoutCancel(ctx)); err != nil {
			return 0, fmt.Errorf("control: prune operations: %w", err)
		}
	}
	return len(gone), nil
}

func allDue(keys []string, due map[string]bool) bool {
	for _, k := range keys {
		if !due[k] {
			return false
		}
	}
	return true
}

// pruneLoop prunes operations every pruneEvery until ctx ends.
func (s *Service) pruneLoop(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n, err := s.PruneOperations(ctx, now); err != nil {
				s.log.Error("pruning operations", "err", err)
			} else if n > 0 {
				s.log.Debug("pruned operations", "count", n)
			}
		}
	}
}
