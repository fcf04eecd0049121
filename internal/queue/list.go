package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Why listing reads the bucket's stream from its end: a KV bucket with a
// history of one is a stream that keeps only the newest message of each key,
// so the order of its messages is the order in which jobs last changed. The
// newest jobs are the last messages; a page of 50 reads about 50 messages,
// however many jobs the bucket holds, and two bridges reading the same
// stream give the same answer. (Listing keys and reading each one costs a
// request per job in the bucket: 10,000 requests for the first page of a
// busy year.)

const (
	statusStreamName    = "KV_" + StatusBucket
	statusSubjectPrefix = "$KV." + StatusBucket + "."
	// kvOperation is the header JetStream KV marks deletes and purges with.
	kvOperation = "KV-Operation"
	// listFirstWindow is how many messages the first read of a listing
	// covers at least; each further read covers four times more.
	listFirstWindow = 64
	// listBatch is how many messages one fetch asks for.
	listBatch = 512
)

// List returns job statuses, newest change first, optionally of one state,
// at most limit (0 = all). It reads the status bucket's stream backwards in
// growing windows until it has limit statuses: a page of the newest jobs
// costs about as many messages as it holds, and a state that few jobs are
// in costs a read of the stream back to where the page fills.
func (q *Queue) List(ctx context.Context, state State, limit int) ([]*Status, error) {
	info, err := q.statusStream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 || last < first {
		return nil, nil
	}
	window := uint64(max(listFirstWindow, 2*limit))
	if limit <= 0 {
		window = last - first + 1
	}
	seen := map[string]bool{}
	var out []*Status
	for end := last; ; {
		start := first
		if end-first+1 > window {
			start = end - window + 1
		}
		entries, err := q.readStatuses(ctx, start, end)
		if err != nil {
			return nil, err
		}
		for i := len(entries) - 1; i >= 0; i-- {
			e := entries[i]
			// A job changed while the list was read appears once, at its
			// newer place.
			if seen[e.key] {
				continue
			}
			seen[e.key] = true
			st, err := decodeStatus(e.key, e.value)
			if err != nil {
				// One bad record must not hide all the others.
				q.logger.Warn().Err(err).Msg("skipping an unreadable job status")
				continue
			}
			if state != "" && st.State != state {
				continue
			}
			out = append(out, st)
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
		if start <= first {
			return out, nil
		}
		end, window = start-1, window*4
	}
}

// kvEntry is one status message of the bucket's stream.
type kvEntry struct {
	key   string
	value []byte
}

// readStatuses returns the status messages whose stream sequence lies in
// [start, end], in stream order, through a short-lived consumer of the
// bucket's stream. Deleted and purged keys are left out.
func (q *Queue) readStatuses(ctx context.Context, start, end uint64) ([]kvEntry, error) {
	cons, err := q.statusStream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		AckPolicy:     jetstream.AckNonePolicy,
		// No filter subject: the bucket's stream holds only its keys, and a
		// wildcard filter makes the server count the pending messages key
		// by key (a page of 10,000 jobs took three times as long).
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: list: read statuses: %w", err)
	}
	defer func() {
		// The server removes it after InactiveThreshold anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = q.statusStream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	var out []kvEntry
	for pending > 0 {
		batch, err := cons.FetchNoWait(int(min(pending, listBatch)))
		if err != nil {
			return nil, fmt.Errorf("queue: list: fetch statuses: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > end {
				return out, nil
			}
			pending = md.NumPending
			if op := m.Headers().Get(kvOperation); op != "" {
				continue // a delete or purge marker
			}
			q.listRead.Add(1)
			out = append(out, kvEntry{key: strings.TrimPrefix(m.Subject(), statusSubjectPrefix), value: m.Data()})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("queue: list: fetch statuses: %w", err)
		}
		if n == 0 {
			// Pending was counted before some messages were replaced by
			// newer revisions (beyond end) or purged.
			return out, nil
		}
	}
	return out, nil
}

// SeriesStatus returns the status of every job for one Orthanc series,
// newest change first. It reads only the keys of that series.
func (q *Queue) SeriesStatus(ctx context.Context, seriesID string) ([]*Status, error) {
	if !validSeriesID(seriesID) {
		return nil, nil
	}
	lister, err := q.kv.ListKeysFiltered(ctx, seriesID+".>")
	if err != nil {
		return nil, fmt.Errorf("queue: list series %s: %w", seriesID, err)
	}
	type withRev struct {
		st  *Status
		rev uint64
	}
	var found []withRev
	for key := range lister.Keys() {
		st, rev, err := q.get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case errors.Is(err, ErrCorrupt):
			q.logger.Warn().Err(err).Msg("skipping an unreadable job status")
			continue
		case err != nil:
			return nil, err
		}
		found = append(found, withRev{st, rev})
	}
	slices.SortFunc(found, func(a, b withRev) int { return cmp.Compare(b.rev, a.rev) })
	out := make([]*Status, len(found))
	for i, f := range found {
		out[i] = f.st
	}
	return out, nil
}
