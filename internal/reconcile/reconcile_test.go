package reconcile

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/orthanc"
)

// fakeOrthanc is Orthanc's change feed and series as the reconciler sees
// them, with what Orthanc 1.10 does that matters here: change numbers come
// from a sequence that deleting never takes back; deleting a series deletes
// its changes; an empty page's Last is that sequence, /changes?last the
// newest change still there; a new database starts the sequence again.
type fakeOrthanc struct {
	mu         sync.Mutex
	seq        int64
	changes    []orthanc.Change
	series     map[string]*orthanc.Series
	changesErr error
	seriesErr  error
	// asked lists the series read since the test last took the list.
	asked []string
}

var _ changeFeed = (*fakeOrthanc)(nil)

func newFakeOrthanc() *fakeOrthanc {
	return &fakeOrthanc{series: map[string]*orthanc.Series{}}
}

func (f *fakeOrthanc) logChange(changeType, id string) {
	f.seq++
	f.changes = append(f.changes, orthanc.Change{Seq: f.seq, ChangeType: changeType, ResourceType: "Series", ID: id})
}

// arrive stores the first instance of a new series: it is not stable yet.
func (f *fakeOrthanc) arrive(id, modality string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.series[id] = &orthanc.Series{ID: id, MainDicomTags: map[string]string{"Modality": modality}}
	f.logChange("NewInstance", id+"-instance")
	f.logChange(changeNewSeries, id)
}

// stable declares a series stable and logs its StableSeries change.
func (f *fakeOrthanc) stable(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.series[id].IsStable = true
	f.logChange(changeStableSeries, id)
}

// stableUnannounced is a series that was arriving when Orthanc was killed:
// stable once Orthanc is back, and no StableSeries change ever.
func (f *fakeOrthanc) stableUnannounced(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.series[id].IsStable = true
}

// remove deletes a series and, as Orthanc does, its changes and those of
// its instances.
func (f *fakeOrthanc) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.series, id)
	f.changes = slices.DeleteFunc(f.changes, func(c orthanc.Change) bool { return c.ID == id || c.ID == id+"-instance" })
}

// newDatabase replaces Orthanc's index by an empty one.
func (f *fakeOrthanc) newDatabase() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq, f.changes, f.series = 0, nil, map[string]*orthanc.Series{}
}

func (f *fakeOrthanc) setErrors(changes, series error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changesErr, f.seriesErr = changes, series
}

func (f *fakeOrthanc) takeAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.asked
	f.asked = nil
	return out
}

func (f *fakeOrthanc) Changes(ctx context.Context, since int64, limit int) (*orthanc.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changesErr != nil {
		return nil, f.changesErr
	}
	out := &orthanc.Changes{Done: true, Last: f.seq}
	for _, c := range f.changes {
		if c.Seq <= since {
			continue
		}
		if len(out.Changes) == limit {
			out.Done = false
			break
		}
		out.Changes = append(out.Changes, c)
		out.Last = c.Seq
	}
	return out, nil
}

func (f *fakeOrthanc) LastChange(ctx context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changesErr != nil {
		return 0, f.changesErr
	}
	if n := len(f.changes); n > 0 {
		return f.changes[n-1].Seq, nil
	}
	return f.seq, nil
}

func (f *fakeOrthanc) Series(ctx context.Context, id string) (*orthanc.Series, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, id)
	if f.seriesErr != nil {
		return nil, f.seriesErr
	}
	s, ok := f.series[id]
	if !ok {
		return nil, &orthanc.HTTPError{Method: http.MethodGet, Path: "/series/" + id, StatusCode: http.StatusNotFound}
	}
	c := *s
	return &c, nil
}

// fakeStore is the queue's cursor bucket.
type fakeStore struct {
	mu      sync.Mutex
	cursors map[string]int64
	pending map[string]map[string]bool
	addErr  error
	rmErr   error
}

var _ store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{cursors: map[string]int64{}, pending: map[string]map[string]bool{}}
}

func (s *fakeStore) Cursor(ctx context.Context, name string) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, ok := s.cursors[name]
	return pos, ok, nil
}

func (s *fakeStore) SetCursor(ctx context.Context, name string, pos int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursors[name] = pos
	return nil
}

func (s *fakeStore) Pending(ctx context.Context, set string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.pending[set] {
		ids = append(ids, id)
	}
	return ids, nil
}

func (s *fakeStore) AddPending(ctx context.Context, set, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addErr != nil {
		return s.addErr
	}
	if s.pending[set] == nil {
		s.pending[set] = map[string]bool{}
	}
	s.pending[set][id] = true
	return nil
}

func (s *fakeStore) RemovePending(ctx context.Context, set, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rmErr != nil {
		return s.rmErr
	}
	delete(s.pending[set], id)
	return nil
}

func (s *fakeStore) setErrors(add, rm error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addErr, s.rmErr = add, rm
}

func (s *fakeStore) cursor(t *testing.T) int64 {
	t.Helper()
	pos, _, _ := s.Cursor(context.Background(), "orthanc-changes")
	return pos
}

func (s *fakeStore) pendingIDs() []string {
	ids, _ := s.Pending(context.Background(), "orthanc-changes")
	sort.Strings(ids)
	return ids
}

// admissions records what the reconciler hands over and answers as the
// bridge would: MR is queued, anything else skipped.
type admissions struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (a *admissions) admit(ctx context.Context, id string, tags map[string]string) (Outcome, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, id)
	if a.err != nil {
		return Outcome{}, a.err
	}
	if m := tags["Modality"]; m != "MR" {
		return Outcome{Reason: "modality " + m + " is not configured"}, nil
	}
	return Outcome{Queued: true}, nil
}

func (a *admissions) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

// count is how many times id was handed over.
func (a *admissions) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if c == id {
			n++
		}
	}
	return n
}

func (a *admissions) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

type testBundle struct {
	orthanc *fakeOrthanc
	store   *fakeStore
	admit   *admissions
	cfg     Config
}

// setup returns a reconciler reading Orthanc's feed from its start, and its
// fakes.
func setup(t *testing.T, cfg Config) (*Reconciler, *testBundle) {
	t.Helper()
	b := &testBundle{orthanc: newFakeOrthanc(), store: newFakeStore(), admit: &admissions{}, cfg: cfg}
	return b.reconciler(t), b
}

// reconciler builds another reconciler on the same fakes, as a restarted
// bridge would.
func (b *testBundle) reconciler(t *testing.T) *Reconciler {
	t.Helper()
	r, err := New(zerolog.Nop(), b.orthanc, b.store, b.admit.admit, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func poll(t *testing.T, r *Reconciler) Pass {
	t.Helper()
	p, err := r.Poll(context.Background())
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return p
}

const (
	seriesA = "aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa"
	seriesB = "bbbbbbbb-bbbbbbbb-bbbbbbbb-bbbbbbbb-bbbbbbbb"
	seriesC = "cccccccc-cccccccc-cccccccc-cccccccc-cccccccc"
	seriesD = "dddddddd-dddddddd-dddddddd-dddddddd-dddddddd"
)

func TestReconciler_Poll(t *testing.T) {
	t.Run("a StableSeries change is handed over once", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.stable(seriesA)
		p := poll(t, r)
		if p.Announced != 1 || p.Queued != 1 || p.Pending != 0 || b.admit.count(seriesA) != 1 {
			t.Fatalf("pass %+v, handed over %d times; want once, queued, nothing pending", p, b.admit.count(seriesA))
		}
		if ids := b.store.pendingIDs(); len(ids) != 0 {
			t.Fatalf("stored pending set %v, want empty", ids)
		}
		p = poll(t, r)
		if b.admit.count(seriesA) != 1 || p.Changes != 0 {
			t.Fatalf("second pass %+v handed it over again (%d)", p, b.admit.count(seriesA))
		}
	})

	t.Run("a series seen arriving is handed over when its StableSeries change comes", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		p := poll(t, r)
		if p.Arrived != 1 || p.Pending != 1 || b.admit.total() != 0 {
			t.Fatalf("pass %+v, %d handed over; want A pending, none handed over", p, b.admit.total())
		}
		if ids := b.store.pendingIDs(); !slices.Equal(ids, []string{seriesA}) {
			t.Fatalf("stored pending set %v, want [A]", ids)
		}
		// Orthanc's answer for A is unchanged: still arriving.
		p = poll(t, r)
		if p.Checked != 1 || b.admit.total() != 0 {
			t.Fatalf("pass %+v: an unstable series was handed over", p)
		}
		b.orthanc.stable(seriesA)
		p = poll(t, r)
		if p.Announced != 1 || p.Queued != 1 || p.Pending != 0 || b.admit.count(seriesA) != 1 {
			t.Fatalf("pass %+v, handed over %d times; want once", p, b.admit.count(seriesA))
		}
		poll(t, r)
		if n := b.admit.count(seriesA); n != 1 || len(b.store.pendingIDs()) != 0 {
			t.Fatalf("handed over %d times, stored pending %v; want once, none", n, b.store.pendingIDs())
		}
	})

	t.Run("a series Orthanc reports stable without a StableSeries change is handed over one pass later, once", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		poll(t, r)
		b.orthanc.stableUnannounced(seriesA)
		p := poll(t, r)
		if p.Checked != 1 || b.admit.total() != 0 || p.Pending != 1 {
			t.Fatalf("pass %+v: handed over at the first sight of stability (the webhook's head start)", p)
		}
		p = poll(t, r)
		if p.Unannounced != 1 || p.Queued != 1 || p.Pending != 0 || b.admit.count(seriesA) != 1 {
			t.Fatalf("pass %+v, handed over %d times; want once, unannounced", p, b.admit.count(seriesA))
		}
		poll(t, r)
		if n := b.admit.count(seriesA); n != 1 {
			t.Fatalf("handed over %d times, want once", n)
		}
		if st := r.Stats(); st.Unannounced != 1 || st.Queued != 1 || st.Skipped != 0 || st.Pending != 0 || st.Passes != 4 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("a StableSeries change after the series was seen stable hands it over once", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		poll(t, r)
		b.orthanc.stableUnannounced(seriesA)
		poll(t, r) // seen stable, no change yet
		b.orthanc.stable(seriesA)
		p := poll(t, r)
		if p.Announced != 1 || p.Unannounced != 0 || b.admit.count(seriesA) != 1 {
			t.Fatalf("pass %+v, handed over %d times; want once, by its change", p, b.admit.count(seriesA))
		}
		poll(t, r)
		if n := b.admit.count(seriesA); n != 1 {
			t.Fatalf("handed over %d times, want once", n)
		}
	})

	t.Run("a series that is unstable again waits again", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		poll(t, r)
		b.orthanc.stableUnannounced(seriesA)
		poll(t, r)
		// More instances: Orthanc marks it unstable again.
		b.orthanc.mu.Lock()
		b.orthanc.series[seriesA].IsStable = false
		b.orthanc.mu.Unlock()
		poll(t, r)
		b.orthanc.stableUnannounced(seriesA)
		poll(t, r)
		if n := b.admit.total(); n != 0 {
			t.Fatalf("handed over %d times before two stable sightings in a row", n)
		}
		poll(t, r)
		if n := b.admit.count(seriesA); n != 1 {
			t.Fatalf("handed over %d times, want once", n)
		}
	})

	t.Run("the pending set survives a restart of the reconciler", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		poll(t, r)

		r2 := b.reconciler(t) // a new bridge process, the same store
		b.orthanc.stableUnannounced(seriesA)
		p := poll(t, r2)
		if p.Arrived != 0 || p.Changes != 0 || p.Checked != 1 || p.Pending != 1 {
			t.Fatalf("first pass after the restart %+v: want A from the store, not from the feed", p)
		}
		p = poll(t, r2)
		if p.Unannounced != 1 || b.admit.count(seriesA) != 1 || len(b.store.pendingIDs()) != 0 {
			t.Fatalf("pass %+v, handed over %d times, stored %v; want once, none left", p, b.admit.count(seriesA), b.store.pendingIDs())
		}
	})

	t.Run("a deleted series is dropped", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.arrive(seriesB, "MR")
		poll(t, r)
		b.orthanc.remove(seriesA)
		p := poll(t, r)
		if p.Dropped != 1 || p.Pending != 1 || b.admit.total() != 0 {
			t.Fatalf("pass %+v: want A dropped, B still pending", p)
		}
		if ids := b.store.pendingIDs(); !slices.Equal(ids, []string{seriesB}) {
			t.Fatalf("stored pending set %v, want [B]", ids)
		}
		if st := r.Stats(); st.Dropped != 1 {
			t.Fatalf("stats %+v, want 1 dropped", st)
		}
	})

	t.Run("skipped and queued are counted apart", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.arrive(seriesB, "SEG")
		b.orthanc.arrive(seriesC, "CT")
		poll(t, r)
		b.orthanc.stable(seriesA)
		b.orthanc.stable(seriesB)
		b.orthanc.stableUnannounced(seriesC)
		p := poll(t, r)
		if p.Queued != 1 || p.Skipped != 1 {
			t.Fatalf("pass %+v, want 1 queued (MR), 1 skipped (SEG)", p)
		}
		p = poll(t, r)
		if p.Unannounced != 1 || p.Skipped != 1 || p.Queued != 0 {
			t.Fatalf("pass %+v, want the CT series skipped", p)
		}
		want := Stats{Passes: 3, Queued: 1, Skipped: 2, Unannounced: 1}
		if st := r.Stats(); st != want {
			t.Fatalf("stats %+v, want %+v", st, want)
		}
	})

	t.Run("each pass asks Orthanc about at most MaxChecks pending series, longest waiting first", func(t *testing.T) {
		r, b := setup(t, Config{MaxChecks: 2})
		ids := []string{seriesA, seriesB, seriesC, seriesD}
		for _, id := range ids {
			b.orthanc.arrive(id, "MR")
		}
		asked := map[string]int{}
		for range 2 {
			p := poll(t, r)
			got := b.orthanc.takeAsked()
			if len(got) != 2 || p.Checked != 2 {
				t.Fatalf("pass %+v asked about %v, want 2 series", p, got)
			}
			for _, id := range got {
				asked[id]++
			}
		}
		if len(asked) != 4 {
			t.Fatalf("two passes of 2 checks asked about %v, want each of the 4 once", asked)
		}
		for _, id := range ids {
			b.orthanc.stableUnannounced(id)
		}
		for range 6 {
			poll(t, r)
			if got := b.orthanc.takeAsked(); len(got) > 2 {
				t.Fatalf("a pass asked about %d series", len(got))
			}
		}
		for _, id := range ids {
			if n := b.admit.count(id); n != 1 {
				t.Errorf("series %s handed over %d times, want once", id[:8], n)
			}
		}
	})

	t.Run("a feed error keeps the cursor", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.stable(seriesA)
		b.orthanc.setErrors(errors.New("connection refused"), nil)
		if _, err := r.Poll(context.Background()); err == nil {
			t.Fatal("poll succeeded with the feed failing")
		}
		if pos := b.store.cursor(t); pos != 0 || b.admit.total() != 0 {
			t.Fatalf("cursor %d, %d handed over after a failed read", pos, b.admit.total())
		}
		b.orthanc.setErrors(nil, nil)
		poll(t, r)
		if n := b.admit.count(seriesA); n != 1 {
			t.Fatalf("handed over %d times after the feed came back, want once", n)
		}
		if st := r.Stats(); st.FailedPasses != 1 || st.Passes != 1 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("an admission error keeps the cursor before the change", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.stable(seriesA) // changes 1..3: NewInstance, NewSeries, StableSeries
		b.admit.setErr(errors.New("queue unavailable"))
		p, err := r.Poll(context.Background())
		if err == nil {
			t.Fatal("poll succeeded with admission failing")
		}
		if pos := b.store.cursor(t); pos != 2 || p.Pending != 1 {
			t.Fatalf("cursor %d, pass %+v; want the cursor before the StableSeries change (2), A pending", pos, p)
		}
		b.admit.setErr(nil)
		p = poll(t, r)
		if p.Announced != 1 || p.Queued != 1 || p.Pending != 0 || b.store.cursor(t) != 3 {
			t.Fatalf("pass %+v, cursor %d after admission came back", p, b.store.cursor(t))
		}
	})

	t.Run("a store error keeps the cursor before the series it could not remember", func(t *testing.T) {
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR") // changes 1, 2
		b.store.setErrors(errors.New("nats: timeout"), nil)
		if _, err := r.Poll(context.Background()); err == nil {
			t.Fatal("poll succeeded with the store failing")
		}
		if pos := b.store.cursor(t); pos != 1 {
			t.Fatalf("cursor %d, want 1: before the NewSeries change", pos)
		}
		b.store.setErrors(nil, nil)
		if p := poll(t, r); p.Arrived != 1 || !slices.Equal(b.store.pendingIDs(), []string{seriesA}) {
			t.Fatalf("pass %+v, stored %v; want A remembered", p, b.store.pendingIDs())
		}
	})

	t.Run("a new Orthanc database is read from its start", func(t *testing.T) {
		r, b := setup(t, Config{})
		for _, id := range []string{seriesA, seriesB, seriesC} {
			b.orthanc.arrive(id, "MR")
			b.orthanc.stable(id)
		}
		poll(t, r)
		if pos := b.store.cursor(t); pos != 9 {
			t.Fatalf("cursor %d, want 9", pos)
		}
		b.orthanc.newDatabase()
		b.orthanc.arrive(seriesD, "MR")
		b.orthanc.stable(seriesD) // changes 1..3 of the new database
		p := poll(t, r)
		if b.admit.count(seriesD) != 1 || p.Cursor != 3 {
			t.Fatalf("pass %+v, D handed over %d times; want once, cursor 3", p, b.admit.count(seriesD))
		}
	})

	t.Run("deleting the newest series does not read Orthanc's history again", func(t *testing.T) {
		// Orthanc 1.10: deleting the newest series deletes the newest
		// changes, and /changes?last goes back; the sequence does not.
		r, b := setup(t, Config{})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.stable(seriesA)
		b.orthanc.arrive(seriesB, "MR")
		b.orthanc.stable(seriesB)
		poll(t, r)
		b.orthanc.remove(seriesB)
		if last, _ := b.orthanc.LastChange(context.Background()); last != 3 {
			t.Fatalf("fake: last change %d after the delete, want 3", last)
		}
		p := poll(t, r)
		if b.admit.count(seriesA) != 1 || p.Changes != 0 || p.Cursor != 6 {
			t.Fatalf("pass %+v, A handed over %d times: the history was read again", p, b.admit.count(seriesA))
		}
		b.orthanc.arrive(seriesC, "MR") // changes 7, 8
		if p := poll(t, r); p.Arrived != 1 || p.Cursor != 8 {
			t.Fatalf("pass %+v, want C seen arriving", p)
		}
	})

	t.Run("with no saved cursor it starts at Orthanc's newest change", func(t *testing.T) {
		r, b := setup(t, Config{StartFrom: StartLatest})
		b.orthanc.arrive(seriesA, "MR")
		b.orthanc.stable(seriesA)
		b.orthanc.arrive(seriesB, "MR") // arriving before the bridge started: not followed
		p := poll(t, r)
		if b.admit.total() != 0 || p.Pending != 0 || p.Cursor != 5 {
			t.Fatalf("pass %+v, %d handed over; want nothing from before the start", p, b.admit.total())
		}
		b.orthanc.arrive(seriesC, "MR")
		if p := poll(t, r); p.Arrived != 1 || p.Pending != 1 {
			t.Fatalf("pass %+v, want C pending", p)
		}
	})

	t.Run("pages are read to the end of the feed", func(t *testing.T) {
		r, b := setup(t, Config{PageSize: 2})
		for _, id := range []string{seriesA, seriesB, seriesC} {
			b.orthanc.arrive(id, "MR")
			b.orthanc.stable(id)
		}
		p := poll(t, r)
		if p.Changes != 9 || p.Announced != 3 || p.Cursor != 9 {
			t.Fatalf("pass %+v, want all 9 changes read", p)
		}
	})
}

// ticks is a ticker the test drives.
type ticks struct {
	c       chan time.Time
	stopped chan struct{}
}

func TestReconciler_Start(t *testing.T) {
	r, b := setup(t, Config{Interval: time.Hour})
	tk := &ticks{c: make(chan time.Time), stopped: make(chan struct{})}
	r.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		if d != time.Hour {
			t.Errorf("ticker interval %s, want the configured hour", d)
		}
		return tk.c, func() { close(tk.stopped) }
	}
	passes := make(chan Pass)
	r.passDone = func(p Pass, err error) {
		if err != nil {
			t.Errorf("pass: %v", err)
		}
		passes <- p
	}
	next := func() Pass {
		t.Helper()
		select {
		case p := <-passes:
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("no pass within 10 s")
			return Pass{}
		}
	}
	tick := func() Pass {
		t.Helper()
		select {
		case tk.c <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("the reconciler did not wait for a tick")
		}
		return next()
	}

	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	next() // the first pass runs at once

	b.orthanc.arrive(seriesA, "MR")
	if p := tick(); p.Arrived != 1 {
		t.Fatalf("pass %+v, want A seen arriving", p)
	}
	// The pass is complete (the signal above): an unstable series was not
	// handed over.
	if n := b.admit.total(); n != 0 {
		t.Fatalf("%d handed over while A is not stable", n)
	}
	b.orthanc.stableUnannounced(seriesA)
	tick()
	if p := tick(); p.Unannounced != 1 || p.Queued != 1 {
		t.Fatalf("pass %+v, want A handed over", p)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tk.stopped:
	default:
		t.Error("Stop left the ticker running")
	}
	if err := r.Stop(stopCtx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if n := b.admit.count(seriesA); n != 1 {
		t.Fatalf("handed over %d times, want once", n)
	}
}

func TestNew_Config(t *testing.T) {
	feed, st, a := newFakeOrthanc(), newFakeStore(), (&admissions{}).admit
	for _, tc := range []struct {
		name    string
		cfg     Config
		admit   Admit
		wantErr bool
	}{
		{name: "defaults", admit: a},
		{name: "no admission", wantErr: true},
		{name: "negative MaxChecks", cfg: Config{MaxChecks: -1}, admit: a, wantErr: true},
		{name: "negative interval", cfg: Config{Interval: -time.Second}, admit: a, wantErr: true},
		{name: "StartFrom below StartLatest", cfg: Config{StartFrom: -2}, admit: a, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(zerolog.Nop(), feed, st, tc.admit, tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (r.cfg.Interval != 5*time.Second || r.cfg.MaxChecks != 20 || r.cfg.PageSize != 100 || r.cfg.CursorName != "orthanc-changes") {
				t.Fatalf("defaults %+v", r.cfg)
			}
		})
	}
}
