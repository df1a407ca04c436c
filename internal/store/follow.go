package store

import (
	"context"
	"errors"
	"time"
)

// Follow calls apply for every change after rev, in revision order, until
// ctx ends or a callback fails. A watch that closes (the store cut off a
// slow watcher, an etcd member went away) is resumed from the last
// revision applied. When the history after that revision is gone
// (ErrCompacted: the follower fell behind a compaction), Follow re-lists:
// reset receives the whole key space at a newer revision and following
// resumes from there, so the follower's view never misses a change.
func Follow(ctx context.Context, s Store, rev int64, apply func(Event) error, reset func(Snapshot) error) error {
	backoff := 10 * time.Millisecond
	wait := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		return nil
	}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ch, err := s.Watch(ctx, rev)
		if errors.Is(err, ErrCompacted) {
			snap, err := s.Load(ctx)
			if errors.Is(err, ErrClosed) {
				return err
			}
			if err != nil {
				if werr := wait(); werr != nil {
					return werr
				}
				continue
			}
			if err := reset(snap); err != nil {
				return err
			}
			rev = snap.Rev
			continue
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil {
			if werr := wait(); werr != nil {
				return werr
			}
			continue
		}
		for ev := range ch {
			if ev.Rev <= rev {
				continue
			}
			if err := apply(ev); err != nil {
				return err
			}
			rev = ev.Rev
			backoff = 10 * time.Millisecond
		}
		if err := wait(); err != nil {
			return err
		}
	}
}
