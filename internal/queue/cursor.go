package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursor reads a persisted position by name; ok is false when none was saved.
func (q *Queue) Cursor(ctx context.Context, name string) (pos int64, ok bool, err error) {
	if q.cursor == nil {
		return 0, false, errors.New("queue: cursors are not available to workers")
	}
	e, err := q.cursor.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("queue: read cursor %s: %w", name, err)
	}
	pos, err = strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("queue: cursor %s holds %q: %w", name, e.Value(), err)
	}
	return pos, true, nil
}

// SetCursor persists a position by name.
func (q *Queue) SetCursor(ctx context.Context, name string, pos int64) error {
	if q.cursor == nil {
		return errors.New("queue: cursors are not available to workers")
	}
	if _, err := q.cursor.Put(ctx, name, []byte(strconv.FormatInt(pos, 10))); err != nil {
		return fmt.Errorf("queue: write cursor %s: %w", name, err)
	}
	return nil
}
