package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/queue"
)

const secret = "0123456789abcdef0123456789abcdef"

// fakeStatuses hands the watch callback to the test and keeps claims in a
// map that several notifiers (bridges) may share.
type fakeStatuses struct {
	mu     sync.Mutex
	fn     func(*queue.Status, bool)
	claims *claims
}

type claims struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (f *fakeStatuses) Watch(_ context.Context, fn func(*queue.Status, bool)) error {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
	return nil
}

func (f *fakeStatuses) ClaimOnce(_ context.Context, what, jobID string, gen uint64) (bool, error) {
	f.claims.mu.Lock()
	defer f.claims.mu.Unlock()
	key := what + "/" + jobID + "/" + strconv.FormatUint(gen, 10)
	if f.claims.seen[key] {
		return false, nil
	}
	f.claims.seen[key] = true
	return true, nil
}

func (f *fakeStatuses) publish(st *queue.Status, initial bool) {
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	fn(st, initial)
}

// received is one request the receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver answers with codes in turn (200 when they run out) and records
// every request.
type receiver struct {
	mu    sync.Mutex
	codes []int
	got   []received
	srv   *httptest.Server
}

func newReceiver(t *testing.T, codes ...int) *receiver {
	r := &receiver{codes: codes}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), b})
		code := http.StatusOK
		if len(r.codes) > 0 {
			code, r.codes = r.codes[0], r.codes[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

type bundle struct {
	q     *fakeStatuses
	clock *clockwork.FakeClock
	recv  *receiver
}

func setup(t *testing.T, recv *receiver, shared *claims, cfg Config) (*Notifier, *bundle) {
	t.Helper()
	if shared == nil {
		shared = &claims{seen: map[string]bool{}}
	}
	b := &bundle{q: &fakeStatuses{claims: shared}, clock: clockwork.NewFakeClock(), recv: recv}
	cfg.URL, cfg.Secret, cfg.Clock = recv.srv.URL, secret, b.clock
	cfg.Body = func(st *queue.Status) ([]byte, error) { return json.Marshal(st) }
	n, err := New(zerolog.Nop(), b.q, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return n, b
}

func ended(id string, gen uint64, state queue.State) *queue.Status {
	now := time.Now()
	return &queue.Status{Job: queue.Job{ID: id, Generation: gen}, State: state, FinishedAt: &now}
}

func waitOutcome(t *testing.T, n *Notifier) Outcome {
	t.Helper()
	select {
	case o := <-n.Outcomes():
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no notification ended")
		return Outcome{}
	}
}

func TestNotifier_SignedNotification(t *testing.T) {
	n, b := setup(t, newReceiver(t), nil, Config{})
	st := ended("s.m.1", 3, queue.StateDone)
	b.q.publish(st, false)
	if o := waitOutcome(t, n); !o.Sent || o.Attempts != 1 || o.Delivery != "s.m.1.3" {
		t.Fatalf("outcome %+v", o)
	}
	got := b.recv.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	h, body := got[0].header, got[0].body
	want, _ := json.Marshal(st)
	if string(body) != string(want) || h.Get("Content-Type") != "application/json" {
		t.Errorf("body %s, content type %s", body, h.Get("Content-Type"))
	}
	if h.Get(HeaderEvent) != "job.done" || h.Get(HeaderDelivery) != "s.m.1.3" {
		t.Errorf("event %q, delivery %q", h.Get(HeaderEvent), h.Get(HeaderDelivery))
	}
	if !Verify([]byte(secret), h.Get(HeaderTimestamp), body, h.Get(HeaderSignature)) {
		t.Errorf("signature %q does not verify", h.Get(HeaderSignature))
	}
	if Verify([]byte("another secret, another secret!!"), h.Get(HeaderTimestamp), body, h.Get(HeaderSignature)) ||
		Verify([]byte(secret), h.Get(HeaderTimestamp), append(body, ' '), h.Get(HeaderSignature)) {
		t.Error("a signature verified with another secret or body")
	}
}

// TestNotifier_Retries: 503 and 429 are retried after FirstDelay, doubling;
// a 4xx is given up at once; Attempts bound the rest.
func TestNotifier_Retries(t *testing.T) {
	t.Run("until taken", func(t *testing.T) {
		n, b := setup(t, newReceiver(t, 503, 429, 500), nil, Config{FirstDelay: time.Second})
		b.q.publish(ended("s.m.1", 1, queue.StateFailed), false)
		for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			if err := b.clock.BlockUntilContext(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			b.clock.Advance(wait - time.Millisecond)
			if n := len(b.recv.requests()); n > 4 {
				t.Fatalf("%d requests before the backoff passed", n)
			}
			b.clock.Advance(time.Millisecond)
		}
		if o := waitOutcome(t, n); !o.Sent || o.Attempts != 4 {
			t.Fatalf("outcome %+v", o)
		}
		for _, r := range b.recv.requests() {
			if r.header.Get(HeaderEvent) != "job.failed" || r.header.Get(HeaderDelivery) != "s.m.1.1" {
				t.Errorf("attempt headers %v", r.header)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		n, b := setup(t, newReceiver(t, 400), nil, Config{})
		b.q.publish(ended("s.m.1", 1, queue.StateDone), false)
		if o := waitOutcome(t, n); o.Sent || o.Attempts != 1 || o.Err == nil {
			t.Fatalf("outcome %+v", o)
		}
	})
	t.Run("attempts run out", func(t *testing.T) {
		n, b := setup(t, newReceiver(t, 502, 502, 502, 502), nil, Config{Attempts: 3, FirstDelay: time.Second})
		b.q.publish(ended("s.m.1", 1, queue.StateDone), false)
		for range 2 {
			if err := b.clock.BlockUntilContext(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			b.clock.Advance(time.Minute)
		}
		if o := waitOutcome(t, n); o.Sent || o.Attempts != 3 {
			t.Fatalf("outcome %+v", o)
		}
	})
}

// TestNotifier_OncePerGeneration: two bridges follow the same statuses, and
// the watch repeats a status; each job generation is notified once, and a new
// generation again.
func TestNotifier_OncePerGeneration(t *testing.T) {
	recv := newReceiver(t)
	shared := &claims{seen: map[string]bool{}}
	n1, b1 := setup(t, recv, shared, Config{})
	n2, b2 := setup(t, recv, shared, Config{})
	st := ended("s.m.1", 1, queue.StateDone)
	for _, b := range []*bundle{b1, b2, b1} {
		b.q.publish(st, false)
	}
	b2.q.publish(ended("s.m.1", 2, queue.StateDone), false)
	var outcomes []Outcome
	for len(outcomes) < 2 {
		select {
		case o := <-n1.Outcomes():
			outcomes = append(outcomes, o)
		case o := <-n2.Outcomes():
			outcomes = append(outcomes, o)
		case <-time.After(10 * time.Second):
			t.Fatalf("outcomes %+v", outcomes)
		}
	}
	deliveries := map[string]int{}
	for _, r := range recv.requests() {
		deliveries[r.header.Get(HeaderDelivery)]++
	}
	if len(deliveries) != 2 || deliveries["s.m.1.1"] != 1 || deliveries["s.m.1.2"] != 1 {
		t.Errorf("deliveries %v, want each generation once", deliveries)
	}
}

func TestNotifier_WhatIsNotified(t *testing.T) {
	n, b := setup(t, newReceiver(t), nil, Config{CatchUp: 10 * time.Minute})
	start := b.clock.Now()
	old := start.Add(-time.Hour)
	recent := start.Add(-time.Minute)
	for _, st := range []*queue.Status{
		{Job: queue.Job{ID: "a.m.1"}, State: queue.StateRunning},
		{Job: queue.Job{ID: "b.m.1"}, State: queue.StateQueued},
	} {
		b.q.publish(st, false)
	}
	// Of the statuses there when the notifier started, only the job that
	// ended within CatchUp is announced.
	b.q.publish(&queue.Status{Job: queue.Job{ID: "c.m.1"}, State: queue.StateDone, FinishedAt: &old}, true)
	b.q.publish(&queue.Status{Job: queue.Job{ID: "d.m.1"}, State: queue.StateCancelled, FinishedAt: &recent}, true)
	b.q.publish(ended("e.m.1", 1, queue.StateSkipped), false)
	var got []string
	for range 2 {
		got = append(got, waitOutcome(t, n).Delivery)
	}
	select {
	case o := <-n.Outcomes():
		t.Fatalf("an extra notification: %+v", o)
	case <-time.After(200 * time.Millisecond):
	}
	want := map[string]bool{"d.m.1.0": true, "e.m.1.1": true}
	for _, d := range got {
		if !want[d] {
			t.Errorf("notified %s; want only %v", d, want)
		}
	}
}

// TestNotifier_NeverBlocksTheWatch: with the receiver hanging and every
// sender busy, a status change still returns at once.
func TestNotifier_NeverBlocksTheWatch(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	b := &fakeStatuses{claims: &claims{seen: map[string]bool{}}}
	n, err := New(zerolog.Nop(), b, Config{URL: srv.URL, Secret: secret, Senders: 1, Backlog: 2, Timeout: time.Minute,
		Body: func(st *queue.Status) ([]byte, error) { return json.Marshal(st) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 100 {
		b.publish(ended("s.m.1", uint64(i), queue.StateDone), false)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("100 status changes took %s with the receiver hanging", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Errorf("Stop with a hanging receiver: %v", err)
	}
}
