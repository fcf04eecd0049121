package queue

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
)

func TestLeader_OneLeadsAndAnotherTakesOver(t *testing.T) {
	q, b := setup(t, Config{})
	clock := clockwork.NewFakeClock()
	const ttl = 9 * time.Second
	newLeader := func(id string) *Leader {
		l, err := q.NewLeader(zerolog.Nop(), LeaderConfig{ID: id, TTL: ttl, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, c := newLeader("a"), newLeader("c")
	tick := func(t *testing.T, ls ...*Leader) {
		t.Helper()
		for _, l := range ls {
			if err := l.tick(b.ctx); err != nil {
				t.Fatalf("%s: %v", l.ID(), err)
			}
		}
	}
	leads := func(t *testing.T, want *Leader, term uint64) {
		t.Helper()
		for _, l := range []*Leader{a, c} {
			got, ok := l.Leading()
			if l == want && (!ok || got != term) {
				t.Fatalf("%s leads %v in term %d, want term %d", l.ID(), ok, got, term)
			}
			if l != want && ok {
				t.Fatalf("%s leads too (term %d)", l.ID(), got)
			}
		}
	}

	tick(t, a, c)
	leads(t, a, 1)
	for i := 0; i < 6; i++ { // renewals keep the lease however long
		clock.Advance(ttl / 3)
		tick(t, a, c)
		leads(t, a, 1)
	}

	t.Run("a leader that stops renewing stops leading before another takes over", func(t *testing.T) {
		// a stops ticking, as a killed bridge does; its lease runs out by its
		// own clock after ttl/2, c takes over when it saw no renewal for ttl.
		clock.Advance(ttl / 3)
		tick(t, c)
		leads(t, a, 1)
		clock.Advance(ttl / 3)
		tick(t, c)
		leads(t, nil, 0)
		clock.Advance(ttl / 3)
		tick(t, c)
		leads(t, c, 2)
		tick(t, a) // a comes back: it follows
		leads(t, c, 2)
	})

	t.Run("a leader that stops gracefully hands over at once", func(t *testing.T) {
		c.runMu.Lock()
		c.cancel = func() {} // as if started, so that Stop releases
		c.done = make(chan struct{})
		close(c.done)
		c.runMu.Unlock()
		if err := c.Stop(b.ctx); err != nil {
			t.Fatal(err)
		}
		leads(t, nil, 0)
		tick(t, a)
		leads(t, a, 3)
	})

	t.Run("a lost renewal race makes a follower", func(t *testing.T) {
		d := newLeader("d")
		// d saw the lease at some revision, then a renewed it.
		tick(t, d)
		clock.Advance(ttl / 3)
		tick(t, a)
		if err := d.claim(b.ctx, clock.Now(), d.seenRev, 9); err != nil {
			t.Fatal(err)
		}
		if d.IsLeader() {
			t.Fatal("d claimed over an old revision and leads")
		}
		leads(t, a, 3)
	})
}

func TestLeader_StartStop(t *testing.T) {
	q, b := setup(t, Config{})
	l, err := q.NewLeader(zerolog.Nop(), LeaderConfig{TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(b.ctx); err != nil {
		t.Fatal(err)
	}
	if !l.IsLeader() {
		t.Fatal("the only candidate does not lead after Start")
	}
	if err := l.Stop(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(b.ctx); err != nil {
		t.Fatal(err)
	}
	if l.IsLeader() {
		t.Fatal("leads after Stop")
	}
}
