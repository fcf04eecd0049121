package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// bundle is what setup gives a test besides the queue.
type bundle struct {
	dir string
	ctx context.Context
}

func setup(t *testing.T, cfg Config) (*Queue, *bundle) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 2 * time.Second
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 3
	}
	q, err := Open(context.Background(), zerolog.Nop(), cfg)
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return q, &bundle{dir: cfg.DataDir, ctx: ctx}
}

const series = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"

func testJob(model string) Job {
	return Job{SeriesID: series, Model: model, ModelVersion: "1.0", Trigger: "manual"}
}

// next waits for a delivery and fails the test without one.
func next(t *testing.T, q interface {
	Next(context.Context, time.Duration) (*Delivery, error)
}, wait time.Duration) *Delivery {
	t.Helper()
	d, err := q.Next(context.Background(), wait)
	if err != nil || d == nil {
		t.Fatalf("next: %v %v", d, err)
	}
	return d
}

func mustStatus(t *testing.T, q *Queue, id string) *Status {
	t.Helper()
	st, err := q.Status(context.Background(), id)
	if err != nil {
		t.Fatalf("status %s: %v", id, err)
	}
	return st
}

func TestQueue_EnqueueConcurrentCollapses(t *testing.T) {
	q, b := setup(t, Config{})
	var wg sync.WaitGroup
	created := make(chan bool, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := q.Enqueue(b.ctx, testJob("m"), false)
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
	if d, _ := q.Depth(b.ctx); d != 1 {
		t.Fatalf("queue depth %d, want 1", d)
	}
}

func TestQueue_TakeCompleteAndForce(t *testing.T) {
	q, b := setup(t, Config{})
	st, created, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil || !created || st.State != StateQueued || st.Seq == 0 {
		t.Fatalf("enqueue: %v %v %+v", err, created, st)
	}
	d := next(t, q, 2*time.Second)
	if d.Job.ID != st.ID || d.Attempt != 1 || d.Seq != st.Seq {
		t.Fatalf("delivery %+v, status seq %d", d, st.Seq)
	}
	l, err := q.Take(b.ctx, d, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, q, st.ID); got.State != StateRunning || got.Worker != "w1" || got.LeaseHash == "" {
		t.Fatalf("after take: %+v", got)
	}
	if err := q.Progress(b.ctx, l, "inference", 0.5); err != nil {
		t.Fatal(err)
	}
	done, err := q.Complete(b.ctx, l, Result{SEGSeriesID: "seg", SEGInstanceID: "inst"})
	if err != nil || done.State != StateDone || done.SEGSeriesID != "seg" || done.LeaseHash != "" {
		t.Fatalf("complete: %v %+v", err, done)
	}
	if n, _ := q.Depth(b.ctx); n != 0 {
		t.Fatalf("depth %d after complete, want 0", n)
	}
	// A trigger for a done job answers done without queuing; force queues again.
	st2, created, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil || created || st2.State != StateDone {
		t.Fatalf("re-enqueue done: %v %v %+v", err, created, st2)
	}
	st3, created, err := q.Enqueue(b.ctx, testJob("m"), true)
	if err != nil || !created || st3.Generation != 2 || st3.State != StateQueued {
		t.Fatalf("force: %v %v %+v", err, created, st3)
	}
	list, err := q.SeriesStatus(b.ctx, series)
	if err != nil || len(list) != 1 {
		t.Fatalf("series status: %v %d", err, len(list))
	}
	// Transitions that do not start from running refuse a finished lease.
	if _, err := q.Complete(b.ctx, l, Result{}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("complete with an old lease: %v, want ErrLeaseLost", err)
	}
}

func TestQueue_StaleGenerationNeverRuns(t *testing.T) {
	q, b := setup(t, Config{})
	first, _, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Cancel(b.ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	second, created, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil || !created || second.Generation != 2 {
		t.Fatalf("re-queue after cancel: %v %v %+v", err, created, second)
	}
	d1 := next(t, q, 2*time.Second)
	if d1.Job.Generation != 1 {
		t.Fatalf("first delivery is generation %d", d1.Job.Generation)
	}
	if _, err := q.Take(b.ctx, d1, "w"); !errors.Is(err, ErrStale) {
		t.Fatalf("take of generation 1: %v, want ErrStale", err)
	}
	d2 := next(t, q, 2*time.Second)
	if _, err := q.Take(b.ctx, d2, "w"); err != nil || d2.Job.Generation != 2 {
		t.Fatalf("take of generation 2: %v", err)
	}
}

func TestQueue_CancelRunningStopsTheWorker(t *testing.T) {
	q, b := setup(t, Config{})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	l, err := q.Take(b.ctx, next(t, q, 2*time.Second), "w")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := q.Cancel(b.ctx, st.ID); err != nil || got.State != StateCancelled {
		t.Fatalf("cancel running: %v %+v", err, got)
	}
	if err := q.Progress(b.ctx, l, "", -1); !errors.Is(err, ErrCancelled) {
		t.Fatalf("heartbeat after cancel: %v, want ErrCancelled", err)
	}
	if _, err := q.Complete(b.ctx, l, Result{SEGSeriesID: "x"}); !errors.Is(err, ErrCancelled) {
		t.Fatalf("complete after cancel: %v", err)
	}
	if got := mustStatus(t, q, st.ID); got.State != StateCancelled {
		t.Fatalf("a cancelled job became %s", got.State)
	}
	if _, err := q.Cancel(b.ctx, st.ID); !errors.Is(err, ErrNotCancellable) {
		t.Fatalf("cancelling a cancelled job: %v", err)
	}
	waitDepth(t, q, 0)
}

// TestQueue_CancelRacingTake runs cancel and take at the same moment many
// times: the cancel is never lost — either the take sees it, or the worker
// learns it at its first heartbeat.
func TestQueue_CancelRacingTake(t *testing.T) {
	q, b := setup(t, Config{})
	for i := 0; i < 15; i++ {
		st, created, err := q.Enqueue(b.ctx, testJob("m"), true)
		if err != nil || !created {
			t.Fatalf("round %d enqueue: %v %v", i, err, created)
		}
		d := next(t, q, 2*time.Second)
		var l *Lease
		var takeErr, cancelErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); l, takeErr = q.Take(b.ctx, d, "w") }()
		go func() { defer wg.Done(); _, cancelErr = q.Cancel(b.ctx, st.ID) }()
		wg.Wait()
		if cancelErr != nil {
			t.Fatalf("round %d: cancel: %v", i, cancelErr)
		}
		switch {
		case errors.Is(takeErr, ErrStale):
		case takeErr == nil:
			if err := q.Progress(b.ctx, l, "", -1); !errors.Is(err, ErrCancelled) {
				t.Fatalf("round %d: heartbeat after a racing cancel: %v", i, err)
			}
		default:
			t.Fatalf("round %d: take: %v", i, takeErr)
		}
		if got := mustStatus(t, q, st.ID); got.State != StateCancelled {
			t.Fatalf("round %d: state %s, want cancelled", i, got.State)
		}
	}
}

func TestQueue_LeaseLapsesAndAnotherWorkerTakesOver(t *testing.T) {
	q, b := setup(t, Config{AckWait: time.Second})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	d1 := next(t, q, 2*time.Second)
	l1, err := q.Take(b.ctx, d1, "a")
	if err != nil {
		t.Fatal(err)
	}
	// The same message again while a's lease is live: another worker must not run it.
	if _, err := q.Take(b.ctx, d1, "b"); !errors.Is(err, ErrLeased) {
		t.Fatalf("second take under a live lease: %v, want ErrLeased", err)
	}
	// a stops heartbeating: JetStream redelivers after AckWait, b takes over.
	d2 := next(t, q, 5*time.Second)
	if d2.Attempt < 2 {
		t.Fatalf("redelivery attempt %d", d2.Attempt)
	}
	l2, err := q.Take(b.ctx, d2, "b")
	if err != nil {
		t.Fatalf("take after a's lease lapsed: %v", err)
	}
	if err := q.Progress(b.ctx, l1, "", -1); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's heartbeat: %v, want ErrLeaseLost", err)
	}
	if _, err := q.Complete(b.ctx, l1, Result{SEGSeriesID: "a"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's complete: %v, want ErrLeaseLost", err)
	}
	if _, err := q.Complete(b.ctx, l2, Result{SEGSeriesID: "b"}); err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, q, st.ID); got.SEGSeriesID != "b" || got.Worker != "b" {
		t.Fatalf("status %+v", got)
	}
}

// TestQueue_RetriggerWhileRunningStartsNoSecondRun covers a re-trigger after
// JetStream's deduplication window: its copy of the message is dropped.
func TestQueue_RetriggerWhileRunningStartsNoSecondRun(t *testing.T) {
	q, b := setup(t, Config{})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	l, err := q.Take(b.ctx, next(t, q, 2*time.Second), "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		got, created, err := q.Enqueue(b.ctx, testJob("m"), force)
		if err != nil || created || got.State != StateRunning {
			t.Fatalf("re-trigger (force %v) while running: %v %v %+v", force, err, created, got)
		}
	}
	// A copy that JetStream's deduplication did not catch (its window had
	// passed, so it goes into the stream as a new message): delivered,
	// recognised, dropped.
	if _, _, err := q.publish(b.ctx, st.Job, st.ID+"#1#late-copy"); err != nil {
		t.Fatal(err)
	}
	d := next(t, q, 2*time.Second)
	if _, err := q.Take(b.ctx, d, "b"); !errors.Is(err, ErrStale) {
		t.Fatalf("take of the copy: %v, want ErrStale", err)
	}
	if _, err := q.Complete(b.ctx, l, Result{SEGSeriesID: "a"}); err != nil {
		t.Fatalf("the first run could not complete: %v", err)
	}
	waitDepth(t, q, 0)
}

func TestQueue_RetryLaterAndLastAttempt(t *testing.T) {
	q, b := setup(t, Config{MaxDeliver: 2})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	l, _ := q.Take(b.ctx, next(t, q, 2*time.Second), "w")
	got, err := q.RetryLater(b.ctx, l, 100*time.Millisecond, "orthanc answered 503", nil)
	if err != nil || got.State != StateQueued || !strings.Contains(got.Error, "503") {
		t.Fatalf("retry later: %v %+v", err, got)
	}
	d := next(t, q, 3*time.Second)
	l2, err := q.Take(b.ctx, d, "w")
	if err != nil || !l2.LastAttempt || l2.Attempt != 2 {
		t.Fatalf("second take: %v %+v", err, l2)
	}
	got, err = q.RetryLater(b.ctx, l2, time.Second, "orthanc answered 503 again", nil)
	if err != nil || got.State != StateFailed || !strings.HasPrefix(got.Error, "gave up after 2 attempts") {
		t.Fatalf("retry on the last attempt: %v %+v", err, got)
	}
	if mustStatus(t, q, st.ID).State != StateFailed {
		t.Fatal("not failed")
	}
	waitDepth(t, q, 0)
}

func TestQueue_HandBack(t *testing.T) {
	q, b := setup(t, Config{MaxDeliver: 2})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	// Five stops in a row, more than the job's two deliveries: a hand-back
	// is the worker's doing, not the job's, and uses up none of them.
	for i := 0; i < 5; i++ {
		l, err := q.Take(b.ctx, next(t, q, 2*time.Second), fmt.Sprint("w", i)) // at once, not after AckWait
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if l.Attempt != 1 || l.LastAttempt {
			t.Fatalf("take %d: delivery %d (last %v), want the first of a fresh message", i, l.Attempt, l.LastAttempt)
		}
		got, err := q.HandBack(b.ctx, l, "worker stopping")
		if err != nil || got.State != StateQueued || got.Error != "worker stopping" {
			t.Fatalf("hand back %d: %v %+v", i, err, got)
		}
	}
	l, err := q.Take(b.ctx, next(t, q, 2*time.Second), "w5")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Complete(b.ctx, l, Result{SEGSeriesID: "s", SEGInstanceID: "i"}); err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, q, st.ID); got.State != StateDone || got.Worker != "w5" || got.Generation != 1 {
		t.Fatalf("status %+v, want done by w5 in generation 1", got)
	}
	waitDepth(t, q, 0)
}

// TestQueue_HandBackDropsTheReplacedMessage redelivers the message a
// hand-back replaced, as when its acknowledgement is lost: it must not run
// the job beside the fresh copy.
func TestQueue_HandBackDropsTheReplacedMessage(t *testing.T) {
	q, b := setup(t, Config{})
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	old := next(t, q, 2*time.Second)
	l, err := q.Take(b.ctx, old, "w")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.HandBack(b.ctx, l, "worker stopping"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Take(b.ctx, old, "w-late"); !errors.Is(err, ErrStale) {
		t.Fatalf("taking the replaced message: %v, want ErrStale", err)
	}
	if _, err := q.Take(b.ctx, next(t, q, 2*time.Second), "w2"); err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, q, st.ID); got.Worker != "w2" || got.State != StateRunning {
		t.Fatalf("status %+v, want running on w2", got)
	}
}

func TestQueue_FoundInOrthanc(t *testing.T) {
	q, b := setup(t, Config{})
	job := testJob("m")
	st, err := q.FoundInOrthanc(b.ctx, job, Result{SEGSeriesID: "s", SEGInstanceID: "i"})
	if err != nil || st.State != StateDone || st.Source != "orthanc" {
		t.Fatalf("found: %v %+v", err, st)
	}
	if _, _, err := q.Enqueue(b.ctx, job, true); err != nil {
		t.Fatal(err)
	}
	if _, err := q.FoundInOrthanc(b.ctx, job, Result{SEGSeriesID: "s"}); !errors.Is(err, ErrLive) {
		t.Fatalf("found on a queued job: %v, want ErrLive", err)
	}
}

func TestQueue_SurvivesRestart(t *testing.T) {
	q, b := setup(t, Config{})
	for _, m := range []string{"a", "b", "c"} {
		if _, _, err := q.Enqueue(b.ctx, testJob(m), false); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	q2, _ := setup(t, Config{DataDir: b.dir})
	if d, _ := q2.Depth(b.ctx); d != 3 {
		t.Fatalf("depth after restart %d, want 3", d)
	}
}

func TestQueue_ListSurvivesMalformedEntry(t *testing.T) {
	q, b := setup(t, Config{})
	if _, _, err := q.Enqueue(b.ctx, testJob("good"), false); err != nil {
		t.Fatal(err)
	}
	bad := JobID(series, "bad", "1.0")
	if _, err := q.kv.Put(b.ctx, bad, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.kv.Put(b.ctx, JobID(series, "other", "1.0"), []byte(`{"id":"someone-else","state":"done"}`)); err != nil {
		t.Fatal(err)
	}
	list, err := q.List(b.ctx, "", 0)
	if err != nil || len(list) != 1 || list[0].Model != "good" {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := q.Status(b.ctx, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("status of the bad entry: %v, want ErrCorrupt", err)
	}
	// A trigger for the job replaces the unreadable record.
	if st, created, err := q.Enqueue(b.ctx, testJob("bad"), false); err != nil || !created || st.State != StateQueued {
		t.Fatalf("enqueue over a corrupt record: %v %v %+v", err, created, st)
	}
}

func TestQueue_BucketsAreBounded(t *testing.T) {
	q, b := setup(t, Config{})
	big := make([]byte, maxStatusValue+1)
	if _, err := q.kv.Put(b.ctx, JobID(series, "big", "1"), big); err == nil {
		t.Fatal("the status bucket took a value over its limit")
	}
	if _, err := q.cursor.Put(b.ctx, "c", make([]byte, maxCursorValue+1)); err == nil {
		t.Fatal("the cursor bucket took a value over its limit")
	}
}

func TestQueue_RejectsMalformedIDs(t *testing.T) {
	q, b := setup(t, Config{})
	for _, id := range []string{"", ">", "a.b", series + ".m", series + ".m.1.x", "$KV.x.y.z"} {
		if _, err := q.Status(b.ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("status %q: %v", id, err)
		}
		if _, err := q.Cancel(b.ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("cancel %q: %v", id, err)
		}
	}
	if _, _, err := q.Enqueue(b.ctx, Job{ID: "x", SeriesID: series, Model: "m", ModelVersion: "1"}, false); err == nil {
		t.Error("enqueued a job whose id does not match it")
	}
}

// waitDepth waits until the work queue holds n messages.
func waitDepth(t *testing.T, q *Queue, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := q.Depth(context.Background())
		if err == nil && d == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue depth %d, want %d (%v)", d, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A worker may take a job's message before Enqueue has written its status
// (Take writes it then): the trigger still queued the job, and says so.
func TestQueue_EnqueueRacingTake(t *testing.T) {
	q, b := setup(t, Config{})
	var took *Lease
	q.afterPublish = func() {
		q.afterPublish = nil
		d := next(t, q, 2*time.Second)
		l, err := q.Take(b.ctx, d, "fast")
		if err != nil {
			t.Errorf("take: %v", err)
		}
		took = l
	}
	st, created, err := q.Enqueue(b.ctx, testJob("m"), false)
	if err != nil || !created || st.State != StateRunning || took == nil {
		t.Fatalf("enqueue: %v, created %v, %+v; want the job created, running", err, created, st)
	}
	// Another trigger of the running job creates nothing.
	if _, created, err := q.Enqueue(b.ctx, testJob("m"), false); err != nil || created {
		t.Fatalf("second enqueue: %v, created %v", err, created)
	}
}
