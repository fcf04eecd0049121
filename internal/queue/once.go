package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OnceBucket holds markers of things done once for a job generation by
// whichever bridge gets there first, such as telling SEGBRIDGE_NOTIFY_URL
// that the job ended. Markers expire after OnceTTL.
const OnceBucket = "segbridge_once"

// OnceTTL is how long a marker is kept: longer than any retry of what it
// guards, short enough that the bucket stays small.
const OnceTTL = 7 * 24 * time.Hour

// onceBucket opens the marker bucket on first use: only bridges that notify
// need it.
type onceBucket struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

// ClaimOnce records that what (a name such as "notify") is being done for
// generation generation of job jobID, and reports whether this call was the
// first to claim it: a create that fails when the key exists is a
// compare-and-set across every bridge on the NATS server. Only the first
// claimer should act.
func (q *Queue) ClaimOnce(ctx context.Context, what, jobID string, generation uint64) (bool, error) {
	if !keyPart(what) || !validJobID(jobID) {
		return false, fmt.Errorf("queue: claim %q of job %q: not a valid name", what, jobID)
	}
	kv, err := q.onceKV(ctx)
	if err != nil {
		return false, err
	}
	key := what + "." + jobID + "." + strconv.FormatUint(generation, 10)
	_, err = kv.Create(ctx, key, []byte(q.now().UTC().Format(time.RFC3339Nano)))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("queue: claim %s: %w", key, err)
}

func (q *Queue) onceKV(ctx context.Context) (jetstream.KeyValue, error) {
	q.once.mu.Lock()
	defer q.once.mu.Unlock()
	if q.once.kv != nil {
		return q.once.kv, nil
	}
	if q.js == nil {
		return nil, errors.New("queue: markers are not available to workers")
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       OnceBucket,
		Description:  "segbridge markers of things done once per job generation",
		History:      1,
		TTL:          OnceTTL,
		Storage:      jetstream.FileStorage,
		MaxValueSize: maxCursorValue,
		MaxBytes:     cursorBucketSize,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: marker bucket: %w", err)
	}
	q.once.kv = kv
	return kv, nil
}
