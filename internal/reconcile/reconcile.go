// Package reconcile follows Orthanc's /changes feed so that no series Orthanc
// stores is missed by the webhook: a Lua HttpPost that fails is not retried,
// and Orthanc forgets, when it restarts, which series it had not yet declared
// stable (it then reports them stable without ever logging a StableSeries
// change or running OnStableSeries). The reconciler hands every StableSeries
// change to the same admission as the webhook, and also remembers every
// series it sees arriving (NewSeries) until Orthanc says it is stable, so a
// series whose stability event was lost is admitted all the same.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// changeFeed is what the reconciler needs of Orthanc.
type changeFeed interface {
	Changes(ctx context.Context, since int64, limit int) (*orthanc.Changes, error)
	LastChange(ctx context.Context) (int64, error)
	Series(ctx context.Context, id string) (*orthanc.Series, error)
}

// store persists the reconciler's position in the feed and its pending set:
// the series seen arriving and not yet seen stable.
type store interface {
	Cursor(ctx context.Context, name string) (int64, bool, error)
	SetCursor(ctx context.Context, name string, pos int64) error
	Pending(ctx context.Context, set string) ([]string, error)
	AddPending(ctx context.Context, set, id string) error
	RemovePending(ctx context.Context, set, id string) error
}

var (
	_ changeFeed = (*orthanc.Client)(nil)
	_ store      = (*queue.Queue)(nil)
)

// Outcome is what admission did with one stable series.
type Outcome struct {
	// Queued is true when a job was queued for the series.
	Queued bool
	// Reason says why it was not queued ("modality CT is not configured",
	// "already known to the queue (done)").
	Reason string
}

// Admit decides whether one stable series is queued, with the webhook's
// rules, and queues it. The reconciler may hand it the same series again
// after a failure (at least once, not exactly once), so it must answer a
// series the queue already knows without queuing it twice. An error stops
// the pass; the series is handed over again at the next one.
type Admit func(ctx context.Context, seriesID string, tags map[string]string) (Outcome, error)

// StartLatest, as Config.StartFrom, starts a reconciler that has no saved
// cursor at Orthanc's newest change.
const StartLatest = -1

// Orthanc's change types the reconciler follows.
const (
	changeNewSeries    = "NewSeries"
	changeStableSeries = "StableSeries"
)

// Config configures the reconciler.
type Config struct {
	// Interval between passes. Default 5 s.
	Interval time.Duration
	// StartFrom is where a reconciler with no saved cursor begins:
	// StartLatest (SEGBRIDGE_RECONCILE_FROM's default: only what happens
	// from now on; a PACS with years of history would otherwise flood the
	// GPU with every MR series it holds), or a change sequence number (0,
	// the zero value: catch up on everything Orthanc has).
	StartFrom int64
	// PageSize is how many changes one request reads. Default 100.
	PageSize int
	// MaxChecks is how many pending series one pass asks Orthanc about (one
	// GET /series/{id} each), the longest unasked first. Default 20.
	MaxChecks int
	// CursorName is the key of the saved cursor; it also names the pending
	// set. Default "orthanc-changes".
	CursorName string
	// Leader, when set, lets passes run only while this bridge leads the
	// bridges that share the cursor (queue.Leader): one reconciler reads
	// the feed and advances the cursor, the others wait to take over. Nil:
	// every pass runs (a single bridge).
	Leader Leadership
}

// Leadership says whether this bridge leads, and in which term: a new term
// means another reconciler may have moved the cursor and the pending set.
type Leadership interface {
	Leading() (term uint64, ok bool)
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	}
	if c.MaxChecks == 0 {
		c.MaxChecks = 20
	}
	if c.CursorName == "" {
		c.CursorName = "orthanc-changes"
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("reconcile: Interval %s: want > 0", c.Interval)
	case c.StartFrom < StartLatest:
		return fmt.Errorf("reconcile: StartFrom %d: want a change number >= 0 or StartLatest", c.StartFrom)
	case c.PageSize < 0:
		return fmt.Errorf("reconcile: PageSize %d: want > 0", c.PageSize)
	case c.MaxChecks < 0:
		return fmt.Errorf("reconcile: MaxChecks %d: want > 0", c.MaxChecks)
	}
	return nil
}

// Pass is what one pass did.
type Pass struct {
	// Changes is how many changes were read from the feed.
	Changes int
	// Arrived is how many series were seen arriving (NewSeries).
	Arrived int
	// Announced is how many StableSeries changes were handed to admission.
	Announced int
	// Checked is how many pending series Orthanc was asked about.
	Checked int
	// Unannounced is how many pending series were handed to admission
	// because Orthanc reported them stable without a StableSeries change.
	Unannounced int
	// Queued and Skipped split the series handed to admission by outcome.
	Queued, Skipped int
	// Dropped is how many series Orthanc no longer has (deleted).
	Dropped int
	// Pending is the size of the pending set after the pass.
	Pending int
	// Cursor is the position in the feed after the pass.
	Cursor int64
	// Following is true when the pass did nothing because another bridge
	// leads (Config.Leader).
	Following bool
}

func (p Pass) eventful() bool {
	return p.Arrived+p.Announced+p.Unannounced+p.Dropped > 0
}

// Stats are the reconciler's counters since it was built.
type Stats struct {
	// Passes and FailedPasses count passes that ended well and in an error.
	Passes, FailedPasses uint64
	// Queued and Skipped count the series handed to admission, by outcome.
	Queued, Skipped uint64
	// Unannounced counts series handed to admission because Orthanc
	// reported them stable without a StableSeries change (included in
	// Queued or Skipped).
	Unannounced uint64
	// Dropped counts series deleted from Orthanc before they were handed over.
	Dropped uint64
	// Pending is the size of the pending set now.
	Pending int
}

// pendingSeries is one series seen arriving and not yet seen stable.
type pendingSeries struct {
	id string
	// checked orders the last time Orthanc was asked about it (or it was
	// seen arriving): the lowest is asked first.
	checked uint64
	// stableSeen: Orthanc said it was stable at the last check, and no
	// StableSeries change had come for it. Orthanc marks a series stable,
	// then logs the change and runs the Lua callback that posts the
	// webhook; a check landing in between (or between this pass's read of
	// the feed and its checks) would race the webhook. So a series is
	// handed over only if it is still stable, and still without its change,
	// one pass later: the webhook keeps its head start, at the cost of one
	// interval when the change was really lost.
	stableSeen bool
}

// Reconciler polls Orthanc's changes and hands stable series to admission.
type Reconciler struct {
	cfg    Config
	logger zerolog.Logger
	feed   changeFeed
	store  store
	admit  Admit

	// newTicker paces the passes; tests drive their own.
	newTicker func(time.Duration) (<-chan time.Time, func())
	// passDone, when set by a test, is called after each background pass.
	passDone func(Pass, error)

	passMu  sync.Mutex // one pass at a time
	pending map[string]*pendingSeries
	stamp   uint64 // last pendingSeries.checked given
	term    uint64 // leadership term of the pending set in memory

	statsMu sync.Mutex
	stats   Stats

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds a reconciler. Orthanc's client is the feed; the queue is the
// store.
func New(logger zerolog.Logger, feed changeFeed, st store, admit Admit, cfg Config) (*Reconciler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if feed == nil || st == nil || admit == nil {
		return nil, errors.New("reconcile: a feed, a store and an Admit function are required")
	}
	return &Reconciler{
		cfg:    cfg,
		logger: logger.With().Str("component", "reconciler").Logger(),
		feed:   feed,
		store:  st,
		admit:  admit,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
	}, nil
}

// Start runs a pass at once and then every Interval, in the background,
// until Stop; it returns at once.
func (r *Reconciler) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return errors.New("reconcile: already started")
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	tick, stop := r.newTicker(r.cfg.Interval)
	go func() {
		defer close(r.done)
		defer stop()
		for {
			p, err := r.Poll(ctx)
			if err != nil && ctx.Err() != nil {
				return
			}
			if !p.Following {
				r.log(p, err)
			}
			if r.passDone != nil {
				r.passDone(p, err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
	r.logger.Info().Dur("interval", r.cfg.Interval).Int("max_checks", r.cfg.MaxChecks).Msg("reconciler started")
	return nil
}

// Stop ends polling and waits for the current pass. Safe to call twice.
func (r *Reconciler) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("reconcile: stop: %w", ctx.Err())
	}
}

// Stats returns the counters so far.
func (r *Reconciler) Stats() Stats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	return r.stats
}

// log writes one line per pass: at info when it did something, at debug when
// it found nothing, as a warning when it failed.
func (r *Reconciler) log(p Pass, err error) {
	var ev *zerolog.Event
	switch {
	case err != nil:
		ev = r.logger.Warn().Err(err)
	case p.eventful():
		ev = r.logger.Info()
	default:
		ev = r.logger.Debug()
	}
	ev = ev.Int("changes", p.Changes).Int("arrived", p.Arrived).Int("announced", p.Announced).
		Int("checked", p.Checked).Int("unannounced", p.Unannounced).
		Int("queued", p.Queued).Int("skipped", p.Skipped).Int("dropped", p.Dropped).
		Int("pending", p.Pending).Int64("cursor", p.Cursor)
	if err != nil {
		ev.Msg("reconcile pass failed; will try again")
		return
	}
	ev.Msg("reconcile pass")
}

// Poll runs one pass: it reads the changes after the cursor to the end of
// the feed (remembering arriving series, handing StableSeries changes to
// admission, advancing the cursor), then asks Orthanc about up to MaxChecks
// pending series and hands over those it reports stable. A pass that fails
// keeps the cursor before the change it failed on, and the pending set as it
// was for the series it failed on.
func (r *Reconciler) Poll(ctx context.Context) (Pass, error) {
	r.passMu.Lock()
	defer r.passMu.Unlock()
	if r.cfg.Leader != nil {
		term, ok := r.cfg.Leader.Leading()
		if !ok {
			r.statsMu.Lock()
			r.stats.Pending = 0 // the leader reports the set
			r.statsMu.Unlock()
			return Pass{Following: true}, nil
		}
		if term != r.term {
			// Another leader may have run since this one last did: read
			// the set again (the cursor is read at every pass).
			r.pending, r.term = nil, term
		}
	}
	var p Pass
	err := r.pass(ctx, &p)
	p.Pending = len(r.pending)

	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	if err != nil {
		r.stats.FailedPasses++
	} else {
		r.stats.Passes++
	}
	r.stats.Queued += uint64(p.Queued)
	r.stats.Skipped += uint64(p.Skipped)
	r.stats.Unannounced += uint64(p.Unannounced)
	r.stats.Dropped += uint64(p.Dropped)
	r.stats.Pending = p.Pending
	return p, err
}

func (r *Reconciler) pass(ctx context.Context, p *Pass) error {
	if err := r.loadPending(ctx); err != nil {
		return err
	}
	pos, err := r.position(ctx)
	if err != nil {
		return err
	}
	p.Cursor = pos
	if err := r.readChanges(ctx, p); err != nil {
		return err
	}
	return r.checkPending(ctx, p)
}

// loadPending reads the pending set saved by an earlier reconciler, once.
func (r *Reconciler) loadPending(ctx context.Context) error {
	if r.pending != nil {
		return nil
	}
	ids, err := r.store.Pending(ctx, r.cfg.CursorName)
	if err != nil {
		return fmt.Errorf("read pending series: %w", err)
	}
	r.pending = make(map[string]*pendingSeries, len(ids))
	for _, id := range ids {
		r.pending[id] = &pendingSeries{id: id}
	}
	if len(ids) > 0 {
		r.logger.Info().Int("pending", len(ids)).Msg("resuming series seen arriving and not yet seen stable")
	}
	return nil
}

func (r *Reconciler) readChanges(ctx context.Context, p *Pass) error {
	pos := p.Cursor
	for first := true; ; first = false {
		page, err := r.feed.Changes(ctx, pos, r.cfg.PageSize)
		if err != nil {
			return fmt.Errorf("read changes since %d: %w", pos, err)
		}
		// An empty page's Last is the number the newest change ever logged
		// got (Orthanc's sequence), which deleting changes never takes back;
		// /changes?last is the newest change still there, which deleting
		// the newest series does take back, so it cannot tell a new
		// database. A sequence behind the cursor is a new database:
		// everything in it is unread.
		if first && len(page.Changes) == 0 && page.Last < pos {
			r.logger.Warn().Int64("saved", pos).Int64("last", page.Last).Msg("Orthanc's changes restarted (new database?): reading them from the start")
			pos = 0
			continue
		}
		for _, ch := range page.Changes {
			var err error
			switch ch.ChangeType {
			case changeNewSeries:
				err = r.arrived(ctx, ch.ID, p)
			case changeStableSeries:
				err = r.announced(ctx, ch.ID, p)
			}
			if err != nil {
				// Keep the cursor before this change: it is read again.
				_ = r.saveCursor(ctx, pos)
				p.Cursor = pos
				return err
			}
			pos = ch.Seq
			p.Changes++
		}
		if page.Last > pos {
			pos = page.Last
		}
		if err := r.saveCursor(ctx, pos); err != nil {
			return err
		}
		p.Cursor = pos
		if page.Done || len(page.Changes) == 0 {
			return nil
		}
	}
}

// arrived remembers a series seen arriving, in the store first: a cursor
// saved past its NewSeries change must never lose it.
func (r *Reconciler) arrived(ctx context.Context, id string, p *Pass) error {
	if _, ok := r.pending[id]; ok {
		return nil
	}
	if err := r.store.AddPending(ctx, r.cfg.CursorName, id); err != nil {
		return fmt.Errorf("remember series %s: %w", id, err)
	}
	// It has just arrived: every series pending longer is asked about first.
	r.stamp++
	r.pending[id] = &pendingSeries{id: id, checked: r.stamp}
	p.Arrived++
	return nil
}

// announced hands over a series Orthanc logged as stable.
func (r *Reconciler) announced(ctx context.Context, id string, p *Pass) error {
	ser, err := r.feed.Series(ctx, id)
	if errors.Is(err, orthanc.ErrNotFound) {
		// Deleted since it became stable.
		if _, ok := r.pending[id]; ok {
			p.Dropped++
		}
		return r.forget(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("read series %s: %w", id, err)
	}
	if err := r.handOver(ctx, id, ser.MainDicomTags, p); err != nil {
		return err
	}
	p.Announced++
	return r.forget(ctx, id)
}

// checkPending asks Orthanc about the pending series that waited longest,
// at most MaxChecks of them, and hands over those stable without a
// StableSeries change (see pendingSeries.stableSeen).
func (r *Reconciler) checkPending(ctx context.Context, p *Pass) error {
	order := make([]*pendingSeries, 0, len(r.pending))
	for _, e := range r.pending {
		order = append(order, e)
	}
	slices.SortFunc(order, func(a, b *pendingSeries) int {
		switch {
		case a.stableSeen != b.stableSeen:
			if a.stableSeen {
				return -1
			}
			return 1
		case a.checked != b.checked:
			if a.checked < b.checked {
				return -1
			}
			return 1
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	for _, e := range order[:min(len(order), r.cfg.MaxChecks)] {
		ser, err := r.feed.Series(ctx, e.id)
		p.Checked++
		r.stamp++
		e.checked = r.stamp
		switch {
		case errors.Is(err, orthanc.ErrNotFound):
			r.logger.Debug().Str("series", e.id).Msg("series deleted before it was stable: forgotten")
			if err := r.forget(ctx, e.id); err != nil {
				return err
			}
			p.Dropped++
		case err != nil:
			return fmt.Errorf("check series %s: %w", e.id, err)
		case !ser.IsStable:
			e.stableSeen = false
		case !e.stableSeen:
			e.stableSeen = true
		default:
			r.logger.Info().Str("series", e.id).Msg("Orthanc reports the series stable but never announced it (restarted while it arrived?): handing it over")
			if err := r.handOver(ctx, e.id, ser.MainDicomTags, p); err != nil {
				return err
			}
			p.Unannounced++
			if err := r.forget(ctx, e.id); err != nil {
				return err
			}
		}
	}
	return nil
}

// handOver gives one stable series to admission and counts the outcome.
func (r *Reconciler) handOver(ctx context.Context, id string, tags map[string]string, p *Pass) error {
	out, err := r.admit(ctx, id, tags)
	if err != nil {
		return fmt.Errorf("admit series %s: %w", id, err)
	}
	if out.Queued {
		p.Queued++
		r.logger.Debug().Str("series", id).Msg("series queued")
	} else {
		p.Skipped++
		r.logger.Debug().Str("series", id).Str("reason", out.Reason).Msg("series skipped")
	}
	return nil
}

// forget removes a series from the pending set, if it is there.
func (r *Reconciler) forget(ctx context.Context, id string) error {
	if _, ok := r.pending[id]; !ok {
		return nil
	}
	if err := r.store.RemovePending(ctx, r.cfg.CursorName, id); err != nil {
		return fmt.Errorf("forget series %s: %w", id, err)
	}
	delete(r.pending, id)
	return nil
}

// position returns the saved cursor, or decides where to start.
func (r *Reconciler) position(ctx context.Context) (int64, error) {
	pos, ok, err := r.store.Cursor(ctx, r.cfg.CursorName)
	switch {
	case err != nil:
		return 0, err
	case ok:
		return pos, nil
	case r.cfg.StartFrom == StartLatest:
		last, err := r.feed.LastChange(ctx)
		if err != nil {
			return 0, fmt.Errorf("read Orthanc's last change: %w", err)
		}
		r.logger.Info().Int64("change", last).Msg("no saved position in Orthanc's changes: starting at the newest (SEGBRIDGE_RECONCILE_FROM=0 catches up on older series)")
		return last, r.saveCursor(ctx, last)
	default:
		r.logger.Info().Int64("change", r.cfg.StartFrom).Msg("no saved position in Orthanc's changes: starting where configured")
		return r.cfg.StartFrom, nil
	}
}

func (r *Reconciler) saveCursor(ctx context.Context, pos int64) error {
	if err := r.store.SetCursor(ctx, r.cfg.CursorName, pos); err != nil {
		return fmt.Errorf("save position %d: %w", pos, err)
	}
	return nil
}
