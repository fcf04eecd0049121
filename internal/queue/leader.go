package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Why a leader: two or more bridges may share one NATS cluster for
// availability. Each can answer requests and serve workers, but the
// reconciler follows Orthanc's change feed from one saved cursor: two
// reconcilers would read every change twice and ask Orthanc about every
// series twice (the intake would still queue each series once). So the
// bridges elect one leader with a lease in the cursor bucket, and only the
// leader reconciles, sweeps and reports the cluster-wide gauges.
//
// The lease is a KV record (holder, term) changed only by compare-and-set
// on its revision. The leader renews it every TTL/3. A follower takes it
// over when it has seen the same revision for TTL by its own clock, so no
// two clocks are compared; the leader stops calling itself leader TTL/2
// after its last successful renewal began, before any follower can take
// over. A bridge that stops gracefully releases the lease at once.

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	// Name names the lease: the key "leader.<Name>" in the cursor bucket.
	// Default "bridge".
	Name string
	// TTL is how long a lease outlives its holder: a follower takes over
	// after seeing it unchanged for TTL. Default 10 s.
	TTL time.Duration
	// ID names this candidate in the lease. Default: host name, process id
	// and a random suffix.
	ID string
	// Clock drives renewals and timeouts; tests pass a fake one. Default:
	// the real clock.
	Clock clockwork.Clock
}

// Leader takes part in the election of one leader among the bridges of a
// cluster.
type Leader struct {
	q      *Queue
	cfg    LeaderConfig
	key    string
	logger zerolog.Logger

	mu      sync.Mutex
	leading bool
	term    uint64
	rev     uint64    // the lease record's revision, as this leader wrote it
	until   time.Time // leading only before this, by this process's clock
	seenRev uint64    // as a follower: the lease revision last seen changing
	seenAt  time.Time // and when

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// leaseRecord is the lease's value.
type leaseRecord struct {
	// Holder is the leader's ID; empty when released.
	Holder string `json:"holder"`
	// Term counts leaders; each new leader takes the next term.
	Term uint64 `json:"term"`
	// At is when the holder last renewed, for a person looking.
	At time.Time `json:"at"`
}

// NewLeader builds a candidate for the lease named in cfg.
func (q *Queue) NewLeader(logger zerolog.Logger, cfg LeaderConfig) (*Leader, error) {
	if q.cursor == nil {
		return nil, errors.New("queue: leader election needs the cursor bucket")
	}
	if cfg.Name == "" {
		cfg.Name = "bridge"
	}
	if !keyPart(cfg.Name) {
		return nil, fmt.Errorf("queue: leader name %q: want letters, digits, '-' and '_'", cfg.Name)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	return &Leader{
		q: q, cfg: cfg, key: "leader." + cfg.Name,
		logger: logger.With().Str("component", "leader").Str("candidate", cfg.ID).Logger(),
	}, nil
}

// ID is this candidate's name in the lease.
func (l *Leader) ID() string { return l.cfg.ID }

// Leading reports whether this candidate holds the lease now, and in which
// term. The term changes whenever leadership changes hands, so a part that
// keeps state while leading can tell that another leader ran meanwhile.
func (l *Leader) Leading() (term uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leading && l.cfg.Clock.Now().Before(l.until) {
		return l.term, true
	}
	return 0, false
}

// IsLeader is Leading without the term.
func (l *Leader) IsLeader() bool {
	_, ok := l.Leading()
	return ok
}

// Start tries for the lease at once and then every TTL/3 in the background,
// until Stop.
func (l *Leader) Start(ctx context.Context) error {
	l.runMu.Lock()
	defer l.runMu.Unlock()
	if l.cancel != nil {
		return errors.New("leader: already started")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel, l.done = cancel, make(chan struct{})
	if err := l.tick(ctx); err != nil {
		l.logger.Warn().Err(err).Msg("cannot read the leader lease; trying again")
	}
	go func() {
		defer close(l.done)
		t := l.cfg.Clock.NewTicker(l.cfg.TTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.Chan():
				if err := l.tick(ctx); err != nil && ctx.Err() == nil {
					l.logger.Warn().Err(err).Msg("cannot renew or read the leader lease")
				}
			}
		}
	}()
	return nil
}

// Stop ends the candidacy and, when leading, releases the lease so that
// another bridge takes over at its next try. Safe to call twice.
func (l *Leader) Stop(ctx context.Context) error {
	if !l.halt(ctx) {
		return nil
	}
	l.mu.Lock()
	leading, term, rev := l.leading, l.term, l.rev
	l.leading = false
	l.mu.Unlock()
	if !leading {
		return nil
	}
	b, _ := json.Marshal(leaseRecord{Term: term, At: l.cfg.Clock.Now().UTC()})
	if _, err := l.q.cursor.Update(ctx, l.key, b, rev); err != nil && !isConflict(err) {
		return fmt.Errorf("leader: release the lease: %w", err)
	}
	l.logger.Info().Uint64("term", term).Msg("released the leader lease")
	return nil
}

// halt stops the background loop without releasing the lease, as a crash
// would; it reports whether the loop was running.
func (l *Leader) halt(ctx context.Context) bool {
	l.runMu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel = nil
	l.runMu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return true
}

// tick reads the lease once and renews it, takes it over, or follows.
func (l *Leader) tick(ctx context.Context) error {
	// The lease counts from before the request: a renewal that takes long
	// must not stretch it.
	now := l.cfg.Clock.Now()
	e, err := l.q.cursor.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return l.claim(ctx, now, 0, 0)
	}
	if err != nil {
		return fmt.Errorf("leader: read the lease: %w", err)
	}
	var rec leaseRecord
	if json.Unmarshal(e.Value(), &rec) != nil {
		rec = leaseRecord{} // unreadable: as if released
	}
	switch {
	case rec.Holder == l.cfg.ID:
		return l.claim(ctx, now, e.Revision(), rec.Term)
	case rec.Holder == "":
		return l.claim(ctx, now, e.Revision(), rec.Term+1)
	}
	l.mu.Lock()
	if l.leading {
		l.leading = false
		l.logger.Warn().Str("leader", rec.Holder).Uint64("term", rec.Term).Msg("another bridge took over the leader lease")
	}
	takeOver := false
	if e.Revision() != l.seenRev {
		l.seenRev, l.seenAt = e.Revision(), now
	} else {
		takeOver = now.Sub(l.seenAt) >= l.cfg.TTL
	}
	l.mu.Unlock()
	if !takeOver {
		return nil
	}
	if err := l.claim(ctx, now, e.Revision(), rec.Term+1); err != nil {
		return err
	}
	if l.IsLeader() {
		l.logger.Warn().Str("previous", rec.Holder).Msg("took over the leader lease from a bridge that stopped renewing it")
	}
	return nil
}

// claim writes the lease for this candidate in term over revision rev (0:
// the lease does not exist yet).
func (l *Leader) claim(ctx context.Context, now time.Time, rev, term uint64) error {
	if term == 0 {
		term = 1
	}
	b, _ := json.Marshal(leaseRecord{Holder: l.cfg.ID, Term: term, At: now.UTC()})
	var newRev uint64
	var err error
	if rev == 0 {
		newRev, err = l.q.cursor.Create(ctx, l.key, b)
	} else {
		newRev, err = l.q.cursor.Update(ctx, l.key, b, rev)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if isConflict(err) {
			// Someone else wrote first: follow from their revision.
			l.leading, l.seenRev = false, 0
			return nil
		}
		return fmt.Errorf("leader: write the lease: %w", err)
	}
	if !l.leading || l.term != term {
		l.logger.Info().Uint64("term", term).Msg("this bridge leads")
	}
	l.leading, l.term, l.rev, l.until = true, term, newRev, now.Add(l.cfg.TTL/2)
	return nil
}
