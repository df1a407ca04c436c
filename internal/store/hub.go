package store

import (
	"context"
	"sync"
)

// hub fans committed events out to live watchers. A watcher that cannot
// keep up is cut off (its channel closed) rather than slowing commits; it
// resumes with Watch from the last revision it saw.
type hub struct {
	mu   sync.Mutex
	subs map[*sub]struct{}
}

type sub struct {
	ch   chan Event
	done <-chan struct{}
}

const watchBuffer = 4096

func (h *hub) add(ctx context.Context) *sub {
	s := &sub{ch: make(chan Event, watchBuffer), done: ctx.Done()}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[*sub]struct{}{}
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.remove(s)
	}()
	return s
}

func (h *hub) remove(s *sub) {
	h.mu.Lock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
	h.mu.Unlock()
}

func (h *hub) publish(evs []Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, ev := range evs {
			select {
			case s.ch <- ev:
			default:
				delete(h.subs, s)
				close(s.ch)
				goto next
			}
		}
	next:
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	for s := range h.subs {
		close(s.ch)
	}
	h.subs = nil
	h.mu.Unlock()
}
