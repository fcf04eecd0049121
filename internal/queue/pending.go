package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A pending set is a named set of ids kept in the cursor bucket, one key per
// id ("pending.<set>.<id>"), so that it survives a restart of the bridge. The
// reconciler keeps in one the Orthanc series it saw arriving and has not yet
// seen declared stable.

func pendingPrefix(set string) (string, error) {
	if !keyPart(set) {
		return "", fmt.Errorf("queue: pending set name %q: want letters, digits, '-' and '_'", set)
	}
	return "pending." + set + ".", nil
}

func pendingKey(set, id string) (string, error) {
	prefix, err := pendingPrefix(set)
	if err != nil {
		return "", err
	}
	if !keyPart(id) {
		return "", fmt.Errorf("queue: pending id %q: want letters, digits, '-' and '_'", id)
	}
	return prefix + id, nil
}

// keyPart reports whether s can be one dot-separated part of a KV key and be
// read back unchanged (Orthanc ids are hex digits and dashes).
func keyPart(s string) bool {
	return s != "" && keySafe(s) == s
}

// AddPending adds id to the named pending set. Adding it twice is not an error.
func (q *Queue) AddPending(ctx context.Context, set, id string) error {
	if q.cursor == nil {
		return errors.New("queue: pending sets are not available to workers")
	}
	key, err := pendingKey(set, id)
	if err != nil {
		return err
	}
	// The value is only for a person looking at the bucket: when it was added.
	if _, err := q.cursor.Put(ctx, key, []byte(q.now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("queue: add %s to pending set %s: %w", id, set, err)
	}
	return nil
}

// RemovePending removes id from the named pending set. Removing an id that
// is not there is not an error.
func (q *Queue) RemovePending(ctx context.Context, set, id string) error {
	if q.cursor == nil {
		return errors.New("queue: pending sets are not available to workers")
	}
	key, err := pendingKey(set, id)
	if err != nil {
		return err
	}
	// A KV Delete leaves a delete marker per key forever (the bucket keeps the
	// last message of every subject), and every series Orthanc ever receives
	// passes through the set: purging the key's subject from the bucket's
	// stream removes it without a trace.
	st, err := q.cursor.Status(ctx)
	if err != nil {
		return fmt.Errorf("queue: remove %s from pending set %s: %w", id, set, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("queue: remove %s from pending set %s: unexpected bucket status %T", id, set, st)
	}
	stream, err := q.js.Stream(ctx, bs.StreamInfo().Config.Name)
	if err != nil {
		return fmt.Errorf("queue: remove %s from pending set %s: %w", id, set, err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+CursorBucket+"."+key)); err != nil {
		return fmt.Errorf("queue: remove %s from pending set %s: %w", id, set, err)
	}
	return nil
}

// Pending lists the ids in the named pending set, in no particular order.
func (q *Queue) Pending(ctx context.Context, set string) ([]string, error) {
	if q.cursor == nil {
		return nil, errors.New("queue: pending sets are not available to workers")
	}
	prefix, err := pendingPrefix(set)
	if err != nil {
		return nil, err
	}
	lister, err := q.cursor.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("queue: list pending set %s: %w", set, err)
	}
	var ids []string
	for key := range lister.Keys() {
		ids = append(ids, strings.TrimPrefix(key, prefix))
	}
	// The lister ends its channel early, without an error, when ctx ends: a
	// cut-short list must not pass for the whole set.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("queue: list pending set %s: %w", set, err)
	}
	return ids, nil
}
