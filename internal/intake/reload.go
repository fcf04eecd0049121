package intake

import (
	"context"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
)

// Reloadable is an intake whose models can be replaced while it serves:
// SIGHUP re-reads the model manifests, and from then on every request is
// admitted against the new set. A request already being admitted finishes
// with the set it started with; jobs already queued keep the model version
// they name.
type Reloadable struct {
	logger zerolog.Logger
	queue  jobQueue
	finder segFinder
	obs    Observer
	cfg    Config
	cur    atomic.Pointer[Intake]
}

// NewReloadable builds an intake for cfg.Models that Reload can change.
func NewReloadable(logger zerolog.Logger, q jobQueue, finder segFinder, obs Observer, cfg Config) (*Reloadable, error) {
	in, err := New(logger, q, finder, obs, cfg)
	if err != nil {
		return nil, err
	}
	r := &Reloadable{logger: logger, queue: q, finder: finder, obs: obs, cfg: cfg}
	r.cur.Store(in)
	return r, nil
}

// Reload replaces the models. Models that the configuration cannot use (none,
// a name twice, a default model that is gone) are refused, and the models
// in use stay.
func (r *Reloadable) Reload(models []*model.Model) error {
	cfg := r.cfg
	cfg.Models = models
	in, err := New(r.logger, r.queue, r.finder, r.obs, cfg)
	if err != nil {
		return err
	}
	r.cur.Store(in)
	return nil
}

// Admit is Intake.Admit with the models loaded last.
func (r *Reloadable) Admit(ctx context.Context, req Request) (Outcome, error) {
	return r.cur.Load().Admit(ctx, req)
}

// Models is Intake.Models with the models loaded last.
func (r *Reloadable) Models() []*model.Model { return r.cur.Load().Models() }

// DefaultModel is Intake.DefaultModel with the models loaded last.
func (r *Reloadable) DefaultModel() *model.Model { return r.cur.Load().DefaultModel() }

// Model is Intake.Model with the models loaded last.
func (r *Reloadable) Model(name string) (*model.Model, error) { return r.cur.Load().Model(name) }
