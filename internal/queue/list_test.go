package queue

import (
	"fmt"
	"testing"
	"time"
)

// seriesN is the n-th of many distinct Orthanc series ids.
func seriesN(n int) string {
	h := fmt.Sprintf("%040x", n)
	return h[0:8] + "-" + h[8:16] + "-" + h[16:24] + "-" + h[24:32] + "-" + h[32:40]
}

func TestQueue_List(t *testing.T) {
	q, b := setup(t, Config{})
	const n = 600
	for i := 0; i < n; i++ {
		if _, _, err := q.Enqueue(b.ctx, Job{SeriesID: seriesN(i), Model: "m", ModelVersion: "1", Trigger: "webhook"}, false); err != nil {
			t.Fatal(err)
		}
	}
	// The first job changes last: it is listed first.
	d := next(t, q, 5*time.Second)
	l, err := q.Take(b.ctx, d, "w")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Complete(b.ctx, l, Result{SEGSeriesID: "s", SEGInstanceID: "i"}); err != nil {
		t.Fatal(err)
	}
	doneID := l.Job.ID

	t.Run("a page reads about as many messages as it holds", func(t *testing.T) {
		before := q.listRead.Load()
		page, err := q.List(b.ctx, "", 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 50 {
			t.Fatalf("%d statuses, want 50", len(page))
		}
		if page[0].ID != doneID || page[0].State != StateDone {
			t.Fatalf("first is %s %s, want the job that changed last (%s)", page[0].ID, page[0].State, doneID)
		}
		if page[1].SeriesID != seriesN(n-1) || page[49].SeriesID != seriesN(n-49) {
			t.Fatalf("page runs from %s to %s, want the newest jobs first", page[1].SeriesID, page[49].SeriesID)
		}
		if read := q.listRead.Load() - before; read > 2*listFirstWindow {
			t.Fatalf("a page of 50 of %d jobs read %d statuses", n, read)
		}
	})
	t.Run("a state few jobs are in is found further back", func(t *testing.T) {
		done, err := q.List(b.ctx, StateDone, 50)
		if err != nil || len(done) != 1 || done[0].ID != doneID {
			t.Fatalf("done: %v %+v", err, done)
		}
		queued, err := q.List(b.ctx, StateQueued, 0)
		if err != nil || len(queued) != n-1 {
			t.Fatalf("queued: %v, %d statuses, want %d", err, len(queued), n-1)
		}
		seen := map[string]bool{}
		for i, st := range queued {
			if seen[st.ID] {
				t.Fatalf("%s listed twice", st.ID)
			}
			seen[st.ID] = true
			if i > 0 && st.UpdatedAt.After(queued[i-1].UpdatedAt) {
				t.Fatalf("not newest first at %d", i)
			}
		}
	})
	t.Run("all", func(t *testing.T) {
		all, err := q.List(b.ctx, "", 0)
		if err != nil || len(all) != n {
			t.Fatalf("all: %v, %d statuses, want %d", err, len(all), n)
		}
	})
	t.Run("series", func(t *testing.T) {
		if _, _, err := q.Enqueue(b.ctx, Job{SeriesID: seriesN(3), Model: "other", ModelVersion: "2", Trigger: "manual"}, false); err != nil {
			t.Fatal(err)
		}
		sts, err := q.SeriesStatus(b.ctx, seriesN(3))
		if err != nil || len(sts) != 2 || sts[0].Model != "other" || sts[1].Model != "m" {
			t.Fatalf("series: %v %+v", err, sts)
		}
	})
}
