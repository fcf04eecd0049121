package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func setup(t *testing.T, dir string) *Queue {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	q, err := Open(context.Background(), zerolog.Nop(), Config{DataDir: dir, AckWait: 2 * time.Second, MaxDeliver: 3})
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

const series = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"

func TestQueue_EnqueueConcurrentCollapses(t *testing.T) {
	q := setup(t, "")
	ctx := context.Background()
	var wg sync.WaitGroup
	created := make(chan bool, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1.0", Trigger: "manual"}, false)
			if err != nil {
				t.Errorf("enqueue: %v", err)
			}
			created <- c
		}()
	}
	wg.Wait()
	close(created)
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("created %d jobs, want 1", n)
	}
	if d, _ := q.Depth(ctx); d != 1 {
		t.Fatalf("queue depth %d, want 1", d)
	}
}

func TestQueue_DeliverAckAndDone(t *testing.T) {
	q := setup(t, "")
	ctx := context.Background()
	st, created, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1.0"}, false)
	if err != nil || !created || st.State != StateQueued {
		t.Fatalf("enqueue: %v %v %+v", err, created, st)
	}
	d, err := q.Next(ctx, 2*time.Second)
	if err != nil || d == nil {
		t.Fatalf("next: %v %v", d, err)
	}
	if d.Job.ID != st.ID || d.Attempt != 1 {
		t.Fatalf("delivery %+v", d)
	}
	if _, err := q.Update(ctx, d.Job.ID, func(s *Status) error { s.State = StateDone; s.SEGSeriesID = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	// A trigger for a done job answers done without queuing; force queues again.
	st2, created, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1.0"}, false)
	if err != nil || created || st2.State != StateDone {
		t.Fatalf("re-enqueue done: %v %v %+v", err, created, st2)
	}
	st3, created, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1.0"}, true)
	if err != nil || !created || st3.Generation != 2 {
		t.Fatalf("force: %v %v %+v", err, created, st3)
	}
	list, err := q.SeriesStatus(ctx, series)
	if err != nil || len(list) != 1 {
		t.Fatalf("series status: %v %d", err, len(list))
	}
}

func TestQueue_RedeliveredWithoutAck(t *testing.T) {
	q := setup(t, "")
	ctx := context.Background()
	if _, _, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1"}, false); err != nil {
		t.Fatal(err)
	}
	d, err := q.Next(ctx, 2*time.Second)
	if err != nil || d == nil {
		t.Fatalf("first delivery: %v", err)
	}
	// No ack: the lease (AckWait 2 s) runs out and the job comes back.
	d2, err := q.Next(ctx, 6*time.Second)
	if err != nil || d2 == nil {
		t.Fatalf("redelivery: %v", err)
	}
	if d2.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", d2.Attempt)
	}
}

func TestQueue_SurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	q := setup(t, dir)
	for _, m := range []string{"a", "b", "c"} {
		if _, _, err := q.Enqueue(ctx, Job{SeriesID: series, Model: m, ModelVersion: "1"}, false); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	q2 := setup(t, dir)
	if d, _ := q2.Depth(ctx); d != 3 {
		t.Fatalf("depth after restart %d, want 3", d)
	}
}

func TestQueue_Cancel(t *testing.T) {
	q := setup(t, "")
	ctx := context.Background()
	st, _, err := q.Enqueue(ctx, Job{SeriesID: series, Model: "m", ModelVersion: "1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Cancel(ctx, st.ID)
	if err != nil || got.State != StateCancelled {
		t.Fatalf("cancel: %v %+v", err, got)
	}
	if _, err := q.Cancel(ctx, st.ID); err == nil {
		t.Fatal("cancelling a cancelled job should fail")
	}
}
