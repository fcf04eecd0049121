package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Why a supervisor: a worker that is killed (crash, OOM kill, SIGKILL) on
// every delivery never gets to say why, and JetStream only stops
// redelivering its message. Without someone watching, that job would show
// "running" for ever. The supervisor ends such jobs: at once, from
// JetStream's max-deliveries advisory, and, for advisories missed while no
// bridge ran, by a sweep over the jobs that have not ended. The same sweep
// puts back the message of a job that lost it.

// SupervisorConfig configures a Supervisor.
type SupervisorConfig struct {
	// Interval between sweeps. Default: the queue's AckWait.
	Interval time.Duration
	// Grace is how long past a lapsed lease a job may wait for its
	// redelivery before the sweep acts. Default: the queue's AckWait.
	Grace time.Duration
	// Clock drives the sweeps; tests pass a fake one. Default: the real clock.
	Clock clockwork.Clock
	// Leading, when set, lets only the leader of several bridges sweep
	// (Leader.IsLeader); every sweep action is a checked transition, so two
	// sweeping bridges are safe, but each would read every job. Nil: always
	// sweep. The max-deliveries advisories go to one bridge either way.
	Leading func() bool
}

// Supervisor ends jobs whose workers kept dying and repairs jobs whose
// message was lost. Several bridges may each run one: every action is a
// transition that checks its starting state.
type Supervisor struct {
	q      *Queue
	cfg    SupervisorConfig
	logger zerolog.Logger

	mu      sync.Mutex
	live    map[string]*Status   // jobs not ended, from the status watch
	checked map[string]time.Time // when a queued job's message was last looked for
	cancel  context.CancelFunc
	done    chan struct{}
	// swept is signalled after each sweep, for tests.
	swept chan SweepReport
}

// SweepReport says what one sweep did.
type SweepReport struct {
	GaveUp, Requeued, Checked int
}

// NewSupervisor builds a supervisor for q.
func (q *Queue) NewSupervisor(logger zerolog.Logger, cfg SupervisorConfig) *Supervisor {
	if cfg.Interval <= 0 {
		cfg.Interval = q.cfg.AckWait
	}
	if cfg.Grace <= 0 {
		cfg.Grace = q.cfg.AckWait
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	return &Supervisor{
		q: q, cfg: cfg,
		logger:  logger.With().Str("component", "supervisor").Logger(),
		live:    map[string]*Status{},
		checked: map[string]time.Time{},
		swept:   make(chan SweepReport, 1),
	}
}

// advisory is JetStream's max-deliveries advisory.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// Start watches statuses and advisories and sweeps every Interval, in the
// background; it returns once both are set up.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("supervisor: already started")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := s.q.Watch(ctx, s.observe); err != nil {
		cancel()
		return err
	}
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", StreamName, ConsumerName)
	sub, err := s.q.nc.QueueSubscribe(subject, "segbridge-supervisors", func(m *nats.Msg) {
		var a advisory
		if json.Unmarshal(m.Data, &a) != nil || a.StreamSeq == 0 {
			return
		}
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		defer acancel()
		s.exhausted(actx, a.StreamSeq, a.Deliveries)
	})
	if err != nil {
		cancel()
		return fmt.Errorf("supervisor: subscribe to advisories: %w", err)
	}
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		defer func() { _ = sub.Unsubscribe() }()
		t := s.cfg.Clock.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.Chan():
				if s.cfg.Leading != nil && !s.cfg.Leading() {
					continue
				}
				rep, err := s.Sweep(ctx)
				if err != nil && ctx.Err() == nil {
					s.logger.Warn().Err(err).Msg("sweep")
				}
				select {
				case s.swept <- rep:
				default:
				}
			}
		}
	}()
	return nil
}

// Stop ends the supervisor and waits for it. Safe to call twice.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("supervisor: stop: %w", ctx.Err())
	}
}

// Swept delivers the report of each background sweep (the latest one when
// nobody read the previous); tests wait on it instead of sleeping.
func (s *Supervisor) Swept() <-chan SweepReport { return s.swept }

func (s *Supervisor) observe(st *Status, _ bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.State.Final() {
		delete(s.live, st.ID)
		delete(s.checked, st.ID)
		return
	}
	s.live[st.ID] = st
}

// exhausted handles a max-deliveries advisory for the message at seq.
func (s *Supervisor) exhausted(ctx context.Context, seq uint64, deliveries int) {
	raw, err := s.q.stream.GetMsg(ctx, seq)
	if err != nil {
		return // already gone: someone settled it
	}
	var job Job
	if err := json.Unmarshal(raw.Data, &job); err != nil || !validJobID(job.ID) {
		_ = s.q.stream.DeleteMsg(ctx, seq)
		return
	}
	st, err := s.q.GiveUp(ctx, job.ID, job.Generation, seq, deliveries)
	switch {
	case err == nil:
		s.logger.Warn().Str("job", job.ID).Int("deliveries", deliveries).Str("reason", st.Error).Msg("job failed: deliveries exhausted")
	case errors.Is(err, ErrStale):
	default:
		s.logger.Warn().Err(err).Str("job", job.ID).Msg("cannot end a job whose deliveries ran out")
	}
}

// Sweep looks once at every job that has not ended: a running job whose
// lease lapsed more than Grace ago is given up when it had its last
// delivery, and put back in the queue when its message is gone; a queued job
// that waited more than Grace gets its message looked for (at most once per
// Grace) and put back when it is gone.
func (s *Supervisor) Sweep(ctx context.Context) (SweepReport, error) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	var todo []*Status
	for id, st := range s.live {
		switch {
		case st.State == StateRunning && st.LeaseUntil != nil && st.LeaseUntil.Add(s.cfg.Grace).Before(now):
			todo = append(todo, st)
		case st.State == StateQueued && st.UpdatedAt.Add(s.cfg.Grace).Before(now) && s.checked[id].Add(s.cfg.Grace).Before(now):
			s.checked[id] = now
			todo = append(todo, st)
		}
	}
	s.mu.Unlock()
	var rep SweepReport
	var errs []error
	for _, st := range todo {
		rep.Checked++
		if st.State == StateRunning && st.Attempts >= s.q.cfg.MaxDeliver {
			if _, err := s.q.GiveUp(ctx, st.ID, st.Generation, st.Seq, st.Attempts); err == nil {
				rep.GaveUp++
				s.logger.Warn().Str("job", st.ID).Int("attempts", st.Attempts).Msg("job failed: its worker stopped responding on the last attempt")
			} else if !errors.Is(err, ErrStale) {
				errs = append(errs, err)
			}
			continue
		}
		if st.Seq == 0 {
			continue
		}
		_, err := s.q.stream.GetMsg(ctx, st.Seq)
		if err == nil {
			continue // waiting for a worker or a redelivery
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			errs = append(errs, err)
			continue
		}
		if _, err := s.q.Requeue(ctx, st.ID, st.Generation, st.Seq); err == nil {
			rep.Requeued++
			s.logger.Warn().Str("job", st.ID).Uint64("lost_seq", st.Seq).Msg("job's message was lost: queued it again")
		} else if !errors.Is(err, ErrStale) {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}
