package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Watch calls fn with every job status: first each existing one (initial
// true), then every change as it is written (initial false), until ctx ends.
// fn runs on one goroutine, in order; unreadable records are skipped. Watch
// returns once the watch is set up.
func (q *Queue) Watch(ctx context.Context, fn func(st *Status, initial bool)) error {
	w, err := q.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("queue: watch statuses: %w", err)
	}
	go func() {
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // end of the existing values
					initial = false
					continue
				}
				if st, err := decodeStatus(e.Key(), e.Value()); err == nil {
					fn(st, initial)
				}
			}
		}
	}()
	return nil
}
