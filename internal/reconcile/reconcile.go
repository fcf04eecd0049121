// Package reconcile follows Orthanc's /changes feed so that no stable series
// is missed: Orthanc drops stability events it had not fired when it
// restarts, and a Lua HttpPost that fails is not retried. The reconciler
// reads StableSeries changes from a persisted cursor and hands each series to
// the same queueing path as the webhook, which applies the same filters.
package reconcile

import (
	"context"
	"errors"
	"fmt"
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

// cursorStore persists the reconciler's position.
type cursorStore interface {
	Cursor(ctx context.Context, name string) (int64, bool, error)
	SetCursor(ctx context.Context, name string, pos int64) error
}

var (
	_ changeFeed  = (*orthanc.Client)(nil)
	_ cursorStore = (*queue.Queue)(nil)
)

// QueueFunc queues one stable series, applying the webhook's filters
// (modalities, never SEG). An error stops the pass; the series is tried
// again at the next poll.
type QueueFunc func(ctx context.Context, seriesID string, tags map[string]string) error

// StartLatest, as Config.StartFrom, starts a reconciler that has no saved
// cursor at Orthanc's newest change.
const StartLatest = -1

// Config configures the reconciler.
type Config struct {
	// Interval between polls of /changes. Default 5 s.
	Interval time.Duration
	// StartFrom is where a reconciler with no saved cursor begins: StartLatest
	// (the default: only what happens from now on; a PACS with years of
	// history would otherwise flood the GPU with every MR series it holds),
	// or a change sequence number (0: catch up on everything Orthanc has).
	StartFrom int64
	// PageSize is how many changes one request reads. Default 100.
	PageSize int
	// CursorName is the key of the saved cursor. Default "orthanc-changes".
	CursorName string
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	}
	if c.CursorName == "" {
		c.CursorName = "orthanc-changes"
	}
	return c
}

// Reconciler polls Orthanc's changes and queues the stable series it finds.
type Reconciler struct {
	cfg     Config
	logger  zerolog.Logger
	feed    changeFeed
	cursors cursorStore
	queue   QueueFunc

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds a reconciler.
func New(logger zerolog.Logger, feed changeFeed, cursors cursorStore, q QueueFunc, cfg Config) (*Reconciler, error) {
	cfg = cfg.withDefaults()
	if q == nil {
		return nil, errors.New("reconcile: QueueFunc is required")
	}
	if cfg.StartFrom < StartLatest {
		return nil, fmt.Errorf("reconcile: StartFrom %d: want a change number >= 0 or StartLatest", cfg.StartFrom)
	}
	return &Reconciler{
		cfg:     cfg,
		logger:  logger.With().Str("component", "reconciler").Logger(),
		feed:    feed,
		cursors: cursors,
		queue:   q,
	}, nil
}

// Start polls in the background until Stop; it returns at once.
func (r *Reconciler) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		return errors.New("reconcile: already started")
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			if n, err := r.Poll(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.logger.Warn().Err(err).Msg("reading Orthanc's changes; will try again")
			} else if n > 0 {
				r.logger.Info().Int("series", n).Msg("queued stable series from Orthanc's changes")
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	r.logger.Info().Dur("interval", r.cfg.Interval).Msg("reconciler started")
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

// Poll reads the changes after the cursor to the end of the feed, queues the
// stable series among them and advances the cursor. It returns how many
// series it handed to the queue.
func (r *Reconciler) Poll(ctx context.Context) (int, error) {
	pos, err := r.position(ctx)
	if err != nil {
		return 0, err
	}
	queued := 0
	for {
		page, err := r.feed.Changes(ctx, pos, r.cfg.PageSize)
		if err != nil {
			return queued, fmt.Errorf("read changes since %d: %w", pos, err)
		}
		for _, ch := range page.Changes {
			if ch.ChangeType == "StableSeries" {
				ok, err := r.handle(ctx, ch)
				if err != nil {
					// Keep the cursor before this change: it is tried again.
					_ = r.save(ctx, pos)
					return queued, err
				}
				if ok {
					queued++
				}
			}
			pos = ch.Seq
		}
		if page.Last > pos {
			pos = page.Last
		}
		if err := r.save(ctx, pos); err != nil {
			return queued, err
		}
		if page.Done || len(page.Changes) == 0 {
			return queued, nil
		}
	}
}

func (r *Reconciler) handle(ctx context.Context, ch orthanc.Change) (bool, error) {
	ser, err := r.feed.Series(ctx, ch.ID)
	if errors.Is(err, orthanc.ErrNotFound) {
		return false, nil // deleted since it became stable
	}
	if err != nil {
		return false, fmt.Errorf("read series %s: %w", ch.ID, err)
	}
	if err := r.queue(ctx, ch.ID, ser.MainDicomTags); err != nil {
		return false, fmt.Errorf("queue series %s: %w", ch.ID, err)
	}
	return true, nil
}

// position returns the saved cursor, or decides where to start. A cursor
// beyond Orthanc's newest change means Orthanc's database was replaced:
// everything in the new one is unseen, so it starts from 0.
func (r *Reconciler) position(ctx context.Context) (int64, error) {
	pos, ok, err := r.cursors.Cursor(ctx, r.cfg.CursorName)
	if err != nil {
		return 0, err
	}
	last, err := r.feed.LastChange(ctx)
	if err != nil {
		return 0, fmt.Errorf("read Orthanc's last change: %w", err)
	}
	switch {
	case !ok && r.cfg.StartFrom == StartLatest:
		r.logger.Info().Int64("change", last).Msg("no saved position in Orthanc's changes: starting at the newest (SEGBRIDGE_RECONCILE_FROM=0 catches up on older series)")
		return last, r.save(ctx, last)
	case !ok:
		r.logger.Info().Int64("change", r.cfg.StartFrom).Msg("no saved position in Orthanc's changes: starting where configured")
		return r.cfg.StartFrom, nil
	case pos > last:
		r.logger.Warn().Int64("saved", pos).Int64("last", last).Msg("Orthanc's changes restarted (new database?): reading them from the start")
		return 0, nil
	}
	return pos, nil
}

func (r *Reconciler) save(ctx context.Context, pos int64) error {
	if err := r.cursors.SetCursor(ctx, r.cfg.CursorName, pos); err != nil {
		return fmt.Errorf("save position %d: %w", pos, err)
	}
	return nil
}
