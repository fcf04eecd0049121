package reconcile

import (
	"slices"
	"sync"
	"testing"
)

// fakeLeadership is a lease two reconcilers share: holder leads in term.
type fakeLeadership struct {
	mu     sync.Mutex
	holder string
	term   uint64
}

func (f *fakeLeadership) handTo(holder string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holder = holder
	f.term++
}

// as is the lease as the candidate named id sees it.
type as struct {
	f  *fakeLeadership
	id string
}

func (a as) Leading() (uint64, bool) {
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	return a.f.term, a.f.holder == a.id
}

func TestReconciler_TwoBridgesShareOneCursor(t *testing.T) {
	lease := &fakeLeadership{}
	b := &testBundle{orthanc: newFakeOrthanc(), store: newFakeStore(), admit: &admissions{}}
	b.cfg = Config{Leader: as{lease, "one"}}
	one := b.reconciler(t)
	b.cfg = Config{Leader: as{lease, "two"}}
	two := b.reconciler(t)
	lease.handTo("one")

	b.orthanc.arrive(seriesA, "MR")
	b.orthanc.arrive(seriesB, "MR")
	b.orthanc.stable(seriesA)
	if p := poll(t, one); p.Announced != 1 || p.Arrived != 2 || p.Pending != 1 {
		t.Fatalf("leader's pass %+v", p)
	}
	b.orthanc.takeAsked()
	if p := poll(t, two); !p.Following || p.Changes != 0 {
		t.Fatalf("follower's pass %+v, want nothing done", p)
	}
	if asked := b.orthanc.takeAsked(); len(asked) != 0 {
		t.Fatalf("the follower asked Orthanc about %v", asked)
	}
	if st := two.Stats(); st.Passes != 0 || st.Pending != 0 {
		t.Fatalf("follower's stats %+v: it counts nothing", st)
	}

	// The leader dies; the other bridge takes over where it left off: the
	// cursor after A and B, and B still pending.
	lease.handTo("two")
	if p := poll(t, one); !p.Following {
		t.Fatalf("the old leader's pass %+v ran", p)
	}
	b.orthanc.stable(seriesB)
	b.orthanc.arrive(seriesC, "MR")
	p := poll(t, two)
	if p.Changes != 3 || p.Announced != 1 || p.Arrived != 1 || p.Pending != 1 { // B stable; C's instance and series
		t.Fatalf("new leader's pass %+v: want only the changes after the old leader's cursor", p)
	}
	if ids := b.store.pendingIDs(); !slices.Equal(ids, []string{seriesC}) {
		t.Fatalf("pending set %v, want [C]", ids)
	}

	// Leadership comes back to the first bridge: it reads the pending set
	// again instead of trusting what it held (B, since handed over).
	lease.handTo("one")
	b.orthanc.stableUnannounced(seriesC)
	poll(t, one)
	p = poll(t, one)
	if p.Unannounced != 1 || p.Pending != 0 {
		t.Fatalf("returning leader's pass %+v", p)
	}
	for _, id := range []string{seriesA, seriesB, seriesC} {
		if n := b.admit.count(id); n != 1 {
			t.Errorf("series %s handed over %d times, want once", id, n)
		}
	}
}
