package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSupervisor_WorkerDiesEveryTime: a worker that takes the job and dies
// on every delivery (never acks, never fails it) — the job ends failed with
// "gave up after N attempts" from JetStream's advisory, and its message is
// removed.
func TestSupervisor_WorkerDiesEveryTime(t *testing.T) {
	q, b := setup(t, Config{AckWait: time.Second, MaxDeliver: 2})
	sup := q.NewSupervisor(zerolog.Nop(), SupervisorConfig{Interval: time.Hour})
	if err := sup.Start(b.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Stop(context.Background()) })
	st, _, _ := q.Enqueue(b.ctx, testJob("crashy"), false)
	for attempt := 1; attempt <= 2; attempt++ {
		d := next(t, q, 5*time.Second)
		if d.Attempt != attempt {
			t.Fatalf("delivery %d, want %d", d.Attempt, attempt)
		}
		if _, err := q.Take(b.ctx, d, "doomed"); err != nil {
			t.Fatalf("take %d: %v", attempt, err)
		}
		// ... and the worker is SIGKILLed: nothing more from it.
	}
	// Other workers keep pulling: JetStream notices the exhausted message when
	// it would redeliver it, and says so in its advisory.
	if d, err := q.Next(b.ctx, 3*time.Second); err != nil || d != nil {
		t.Fatalf("a third delivery: %+v %v", d, err)
	}
	waitFor(t, "the job to fail", func() bool { return mustStatus(t, q, st.ID).State == StateFailed })
	got := mustStatus(t, q, st.ID)
	if !strings.HasPrefix(got.Error, "gave up after 2 attempts") {
		t.Fatalf("reason %q", got.Error)
	}
	waitDepth(t, q, 0)
	// force and DELETE work on it as on any ended job.
	if _, created, err := q.Enqueue(b.ctx, testJob("crashy"), true); err != nil || !created {
		t.Fatalf("force after give-up: %v %v", err, created)
	}
}

// TestSupervisor_SweepEndsWhatTheAdvisoryMissed drives the sweep with a fake
// clock, as when no bridge ran when the last delivery's lease lapsed.
func TestSupervisor_SweepEndsWhatTheAdvisoryMissed(t *testing.T) {
	q, b := setup(t, Config{AckWait: time.Minute, MaxDeliver: 1})
	clock := clockwork.NewFakeClockAt(time.Now())
	q.now = clock.Now
	sup := q.NewSupervisor(zerolog.Nop(), SupervisorConfig{Interval: time.Hour, Clock: clock})
	if err := q.Watch(b.ctx, sup.observe); err != nil {
		t.Fatal(err)
	}
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	if _, err := q.Take(b.ctx, next(t, q, 2*time.Second), "gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the supervisor to see the job running", func() bool {
		sup.mu.Lock()
		defer sup.mu.Unlock()
		return sup.live[st.ID] != nil && sup.live[st.ID].State == StateRunning
	})
	// Lease live: nothing to do.
	if rep, err := sup.Sweep(b.ctx); err != nil || rep.Checked != 0 {
		t.Fatalf("sweep under a live lease: %+v %v", rep, err)
	}
	clock.Advance(90 * time.Second) // lease lapsed, grace not yet over
	if rep, _ := sup.Sweep(b.ctx); rep.Checked != 0 {
		t.Fatalf("sweep within the grace: %+v", rep)
	}
	clock.Advance(time.Minute)
	rep, err := sup.Sweep(b.ctx)
	if err != nil || rep.GaveUp != 1 {
		t.Fatalf("sweep after the grace: %+v %v", rep, err)
	}
	if got := mustStatus(t, q, st.ID); got.State != StateFailed || !strings.Contains(got.Error, "gave up after 1 attempts") {
		t.Fatalf("status %+v", got)
	}
	waitDepth(t, q, 0)
}

// TestSupervisor_SweepRequeuesALostMessage: a queued job whose message was
// deleted is published again and runs.
func TestSupervisor_SweepRequeuesALostMessage(t *testing.T) {
	q, b := setup(t, Config{AckWait: time.Minute})
	clock := clockwork.NewFakeClockAt(time.Now())
	q.now = clock.Now
	sup := q.NewSupervisor(zerolog.Nop(), SupervisorConfig{Interval: time.Hour, Clock: clock})
	if err := q.Watch(b.ctx, sup.observe); err != nil {
		t.Fatal(err)
	}
	st, _, _ := q.Enqueue(b.ctx, testJob("m"), false)
	if err := q.stream.DeleteMsg(b.ctx, st.Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the supervisor to see the job", func() bool {
		sup.mu.Lock()
		defer sup.mu.Unlock()
		return sup.live[st.ID] != nil
	})
	clock.Advance(2 * time.Minute)
	rep, err := sup.Sweep(b.ctx)
	if err != nil || rep.Requeued != 1 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	d := next(t, q, 2*time.Second)
	if _, err := q.Take(b.ctx, d, "w"); err != nil {
		t.Fatalf("take of the requeued message: %v", err)
	}
	// Checked at most once per grace period.
	if rep, _ := sup.Sweep(b.ctx); rep.Checked != 0 {
		t.Fatalf("second sweep checked again: %+v", rep)
	}
}
