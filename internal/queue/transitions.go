package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the transitions. Each names why a transition did not apply; the
// caller decides what to do (drop a message, wait, stop working).
var (
	// ErrStale: the message is of an older generation, a copy, or its job
	// already ended. Take has acknowledged it; nothing is to be run.
	ErrStale = errors.New("job message is stale")
	// ErrLeased: another worker holds a live lease on the job. Take has
	// handed the message back until the lease lapses.
	ErrLeased = errors.New("another worker holds the job")
	// ErrLeaseLost: the caller's lease is no longer the job's lease (it
	// lapsed and another worker took the job, or the job was queued again).
	// The caller must stop working on the job and leave its message alone.
	ErrLeaseLost = errors.New("the worker's lease on the job is lost")
	// ErrCancelled: the job was cancelled. The caller stops; the message has
	// been acknowledged.
	ErrCancelled = errors.New("job was cancelled")
	// ErrNotCancellable is returned when cancelling a job that has ended.
	ErrNotCancellable = errors.New("only a queued or running job can be cancelled")
	// ErrLive is returned by FoundInOrthanc for a job that is queued or
	// running: its run decides the result.
	ErrLive = errors.New("job is queued or running")
	// ErrConflict is returned when a status keeps changing under a
	// transition (many writers at once); trying again later works.
	ErrConflict = errors.New("job status keeps changing")
)

// StateError says that a transition cannot start from the job's state.
type StateError struct {
	Op   string
	From State
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s a job that is %s", e.Op, e.From)
}

// transition changes one job's status under optimistic concurrency: fn gets
// the current status (nil when the job has none) and returns the next one, or
// an error that leaves the status as it is. fn may run more than once. The
// written status is returned.
func (q *Queue) transition(ctx context.Context, id string, fn func(cur *Status) (*Status, error)) (*Status, error) {
	if !validJobID(id) {
		return nil, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	for try := 0; try < 50; try++ {
		cur, rev, err := q.get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			cur, rev = nil, 0
		case errors.Is(err, ErrCorrupt):
			// An unreadable record is replaced by the transition, as if
			// absent, but at its revision.
			q.logger.Warn().Err(err).Msg("replacing an unreadable job status")
			cur = nil
		case err != nil:
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return cur, err
		}
		next.ID = id
		next.UpdatedAt = q.now().UTC()
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("queue: encode status %s: %w", id, err)
		}
		if rev == 0 {
			_, err = q.kv.Create(ctx, id, b)
		} else {
			_, err = q.kv.Update(ctx, id, b, rev)
		}
		if err == nil {
			q.wrote(next)
			return next, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("queue: write status %s: %w", id, err)
		}
	}
	return nil, fmt.Errorf("queue: %s: %w", id, ErrConflict)
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return strings.Contains(err.Error(), "wrong last sequence")
}

func (q *Queue) timePtr() *time.Time {
	t := q.now().UTC()
	return &t
}

// Enqueue queues job unless the same job is already queued or running, or is
// done (and force is false). It returns the job's status and whether this
// call queued a new generation (of concurrent calls, exactly one did). Concurrent calls for the same job id queue it once:
// the publish is deduplicated by message id and the status by KV revision. A
// running job whose worker is gone (its lease lapsed) is queued again only
// with force; a running job with a live lease never is, so one job never runs
// twice at once.
func (q *Queue) Enqueue(ctx context.Context, job Job, force bool) (*Status, bool, error) {
	if job.ID == "" {
		job.ID = JobID(job.SeriesID, job.Model, job.ModelVersion)
	}
	if !validJobID(job.ID) || job.ID != JobID(job.SeriesID, job.Model, job.ModelVersion) {
		return nil, false, fmt.Errorf("queue: job id %q does not match its series and model", job.ID)
	}
	// published is the message this call put in the stream (not a
	// duplicate of another caller's), once it did.
	var published struct{ generation, seq uint64 }
	for try := 0; try < 20; try++ {
		cur, rev, err := q.get(ctx, job.ID)
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
			cur = nil
		case err != nil:
			return nil, false, err
		}
		now := q.now()
		if cur != nil && published.seq != 0 && cur.Generation == published.generation && cur.Seq == published.seq {
			// A worker took this call's message before its status was
			// written (Take writes it then): the job is this call's.
			return cur, true, nil
		}
		if cur != nil {
			switch {
			case cur.State == StateQueued:
				return cur, false, nil
			case cur.State == StateRunning && (cur.leaseLive(now) || !force):
				return cur, false, nil
			case cur.State == StateDone && !force && !job.Changed:
				return cur, false, nil
			}
		}
		j := job
		j.Force = force
		j.Generation = 1
		if cur != nil {
			j.Generation = cur.Generation + 1
		}
		if j.RequestedAt.IsZero() {
			j.RequestedAt = now.UTC()
		}
		// Publish first: if this process dies before the status is written,
		// the worker that takes the message writes the status itself.
		seq, dup, err := q.publish(ctx, j, fmt.Sprintf("%s#%d", j.ID, j.Generation))
		if err != nil {
			return nil, false, err
		}
		if !dup {
			published.generation, published.seq = j.Generation, seq
		}
		if q.afterPublish != nil {
			q.afterPublish()
		}
		st := &Status{Job: j, State: StateQueued, Seq: seq, UpdatedAt: now.UTC()}
		b, _ := json.Marshal(st)
		if cur == nil && rev == 0 {
			_, err = q.kv.Create(ctx, j.ID, b)
		} else {
			_, err = q.kv.Update(ctx, j.ID, b, rev)
		}
		if err != nil {
			if isConflict(err) {
				continue // someone else moved it; look again
			}
			return nil, false, fmt.Errorf("queue: write status %s: %w", j.ID, err)
		}
		q.wrote(st)
		// Of callers racing on one generation, the one whose message
		// JetStream kept created the job, whoever wrote its status.
		return st, !dup, nil
	}
	return nil, false, fmt.Errorf("queue: %s: %w", job.ID, ErrConflict)
}

// publish sends a job message and returns its stream sequence, and whether
// JetStream dropped it as a duplicate (the sequence is then the first
// copy's).
func (q *Queue) publish(ctx context.Context, job Job, msgID string) (seq uint64, duplicate bool, err error) {
	b, err := json.Marshal(job)
	if err != nil {
		return 0, false, err
	}
	ack, err := q.js.Publish(ctx, Subject, b, jetstream.WithMsgID(msgID))
	if err != nil {
		return 0, false, fmt.Errorf("queue: publish %s: %w", msgID, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

// Delivery is one job message handed to a worker. The worker takes it with
// Take; every later transition goes through the Lease that Take returns.
type Delivery struct {
	Job Job
	// Attempt is 1 on the first delivery of this message.
	Attempt int
	// Seq is the message's stream sequence.
	Seq uint64
	// ack is the message's reply subject, on which JetStream takes
	// acknowledgements.
	ack string
}

// Next waits up to wait for a job message. It returns (nil, nil) when none came.
func (q *Queue) Next(ctx context.Context, wait time.Duration) (*Delivery, error) {
	d, err := nextDelivery(ctx, q.cons, wait)
	if errors.Is(err, errUnreadable) && d != nil {
		// A message we cannot read can never run; drop it loudly.
		q.publishAck(d.ack, ackTerm)
	}
	return d, err
}

var errUnreadable = errors.New("unreadable job message")

func nextDelivery(ctx context.Context, cons jetstream.Consumer, wait time.Duration) (*Delivery, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := cons.Next(jetstream.FetchContext(wctx))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if wctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("queue: next: %w", err)
	}
	d := &Delivery{Attempt: 1, ack: msg.Reply()}
	if md, err := msg.Metadata(); err == nil {
		d.Attempt, d.Seq = int(md.NumDelivered), md.Sequence.Stream
	}
	if err := json.Unmarshal(msg.Data(), &d.Job); err != nil || !validJobID(d.Job.ID) ||
		d.Job.ID != JobID(d.Job.SeriesID, d.Job.Model, d.Job.ModelVersion) {
		return d, fmt.Errorf("queue: message %d: %w", d.Seq, errUnreadable)
	}
	return d, nil
}

// Acknowledgement bodies of JetStream's ack protocol.
const (
	ackAck        = "+ACK"
	ackTerm       = "+TERM"
	ackInProgress = "+WPI"
)

// nakBody hands a message back for redelivery after delay. Why never a
// plain NAK: the server keeps an undelayed redelivery only in memory, so a
// message handed back by a stopping worker of a stopping server would wait
// out its whole lease after the restart; a delayed one is saved with the
// consumer's state.
func nakBody(delay time.Duration) string {
	delay = max(delay, time.Millisecond)
	return fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds())
}

// publishAck sends an acknowledgement on a message's reply subject. It is
// best effort: a lost ack means a redelivery, which Take recognises.
func (q *Queue) publishAck(subject, body string) {
	if subject == "" {
		return
	}
	if body == ackAck {
		// Wait for JetStream to confirm, so that a job acknowledged as done
		// is not redelivered after a reply.
		if _, err := q.nc.Request(subject, []byte(body), 5*time.Second); err == nil {
			return
		}
	}
	if err := q.nc.Publish(subject, []byte(body)); err != nil {
		q.logger.Warn().Err(err).Str("ack", body).Msg("cannot acknowledge a job message")
	}
}

// Lease is a worker's hold on a running job, from Take to its end.
type Lease struct {
	Job Job
	// Attempt is the delivery number of the job's message.
	Attempt int
	// LastAttempt is true when no redelivery will follow: a retry later
	// ends the job as failed instead.
	LastAttempt bool
	// Until is when the lease lapses without a heartbeat.
	Until time.Time
	token string
	ack   string
}

func leaseHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:12])
}

// Take starts a delivered job: queued (or running under a lapsed lease, a
// worker that died) becomes running under a new lease held by worker. A
// message that must not run — of an older generation, a copy, a job that
// ended or was cancelled — is acknowledged and ErrStale returned; a job
// another worker holds under a live lease gives ErrLeased and the message
// comes back when that lease would lapse. A cancel that lands at the same
// moment is never lost: whichever write comes second sees the first.
func (q *Queue) Take(ctx context.Context, d *Delivery, worker string) (*Lease, error) {
	token := randomToken()
	now := q.now()
	until := now.Add(q.cfg.AckWait)
	var leasedUntil time.Time
	_, err := q.transition(ctx, d.Job.ID, func(cur *Status) (*Status, error) {
		if cur != nil {
			switch {
			case cur.Generation > d.Job.Generation:
				return nil, ErrStale
			case cur.Generation == d.Job.Generation && cur.State.Final():
				return nil, ErrStale
			case cur.Generation == d.Job.Generation && cur.Seq != 0 && cur.Seq != d.Seq:
				// A copy: of the message that runs, or a message replaced
				// by a hand-back's fresh copy (HandBack) or a requeue.
				return nil, ErrStale
			case cur.leaseLive(now):
				leasedUntil = *cur.LeaseUntil
				return nil, ErrLeased
			}
		}
		next := &Status{Job: d.Job, State: StateRunning, Stage: "download", Attempts: d.Attempt, Worker: worker,
			Seq: d.Seq, LeaseHash: leaseHash(token), LeaseUntil: &until, StartedAt: q.timePtr()}
		if cur != nil && cur.Generation == d.Job.Generation {
			next.Error = cur.Error // the last attempt's reason, until this one ends
		}
		return next, nil
	})
	switch {
	case errors.Is(err, ErrStale):
		q.publishAck(d.ack, ackAck)
		return nil, fmt.Errorf("take %s generation %d: %w", d.Job.ID, d.Job.Generation, err)
	case errors.Is(err, ErrLeased):
		q.publishAck(d.ack, nakBody(leasedUntil.Sub(now)+time.Second))
		return nil, fmt.Errorf("take %s: %w until %s", d.Job.ID, err, leasedUntil.Format(time.RFC3339))
	case err != nil:
		return nil, fmt.Errorf("take %s: %w", d.Job.ID, err)
	}
	return &Lease{Job: d.Job, Attempt: d.Attempt, LastAttempt: d.Attempt >= q.cfg.MaxDeliver, Until: until, token: token, ack: d.ack}, nil
}

// owned checks that cur is the running job of lease l; op names the
// transition for errors.
func owned(op string, cur *Status, l *Lease) error {
	switch {
	case cur == nil:
		return fmt.Errorf("%s: %w", op, ErrLeaseLost)
	case cur.Generation == l.Job.Generation && cur.State == StateCancelled:
		return ErrCancelled
	case cur.Generation != l.Job.Generation || cur.State != StateRunning || cur.LeaseHash != leaseHash(l.token):
		return fmt.Errorf("%s: %w", op, ErrLeaseLost)
	}
	return nil
}

// Progress records the stage and progress of a running job (progress < 0
// keeps the current one: a heartbeat) and renews the lease. ErrCancelled
// and ErrLeaseLost tell the worker to stop.
func (q *Queue) Progress(ctx context.Context, l *Lease, stage string, progress float64) error {
	now := q.now()
	until := now.Add(q.cfg.AckWait)
	_, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("progress", cur, l); err != nil {
			return nil, err
		}
		next := *cur
		if stage != "" {
			next.Stage = stage
		}
		if progress >= 0 {
			next.Progress = min(progress, 1)
		}
		next.LeaseUntil = &until
		return &next, nil
	})
	if errors.Is(err, ErrCancelled) {
		q.publishAck(l.ack, ackAck)
	}
	if err != nil {
		return err
	}
	l.Until = until
	q.publishAck(l.ack, ackInProgress)
	return nil
}

// Complete ends a running job as done with its result, and acknowledges
// its message.
func (q *Queue) Complete(ctx context.Context, l *Lease, res Result) (*Status, error) {
	st, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("complete", cur, l); err != nil {
			return nil, err
		}
		next := *cur
		next.State, next.Stage, next.Progress, next.Error = StateDone, "", 1, ""
		next.SEGSeriesID, next.SEGInstanceID, next.Timings = res.SEGSeriesID, res.SEGInstanceID, res.Timings
		next.SRSeriesID, next.PreviewSeriesID, next.Volumes = res.SRSeriesID, res.PreviewSeriesID, res.Volumes
		next.Instances = res.Instances
		next.Warnings = res.Warnings
		next.Source = ""
		if res.Found {
			next.Source = "orthanc"
		}
		next.LeaseHash, next.LeaseUntil, next.FinishedAt = "", nil, q.timePtr()
		return &next, nil
	})
	return st, q.settle(l, err, ackAck)
}

// Fail ends a running job as failed with reason, and terminates its message.
func (q *Queue) Fail(ctx context.Context, l *Lease, reason string, timings map[string]float64) (*Status, error) {
	st, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("fail", cur, l); err != nil {
			return nil, err
		}
		next := *cur
		next.State, next.Stage, next.Error, next.Timings = StateFailed, "", reason, timings
		next.LeaseHash, next.LeaseUntil, next.FinishedAt = "", nil, q.timePtr()
		return &next, nil
	})
	return st, q.settle(l, err, ackTerm)
}

// Skip ends a running job as skipped with reason: its worker found that the
// model must not run on the series. It terminates the message.
func (q *Queue) Skip(ctx context.Context, l *Lease, reason string, timings map[string]float64) (*Status, error) {
	st, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("skip", cur, l); err != nil {
			return nil, err
		}
		next := *cur
		next.State, next.Stage, next.Error, next.Timings = StateSkipped, "", reason, timings
		next.LeaseHash, next.LeaseUntil, next.FinishedAt = "", nil, q.timePtr()
		return &next, nil
	})
	return st, q.settle(l, err, ackTerm)
}

// RetryLater puts a running job back in the queue after a transient failure:
// its message is delivered again after delay. On the last delivery the job
// fails instead ("gave up after N attempts: reason").
func (q *Queue) RetryLater(ctx context.Context, l *Lease, delay time.Duration, reason string, timings map[string]float64) (*Status, error) {
	if l.LastAttempt {
		return q.Fail(ctx, l, fmt.Sprintf("gave up after %d attempts: %s", l.Attempt, reason), timings)
	}
	st, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("retry", cur, l); err != nil {
			return nil, err
		}
		next := *cur
		next.State, next.Stage, next.Progress = StateQueued, "", 0
		next.Error = fmt.Sprintf("attempt %d failed, retrying in %s: %s", l.Attempt, delay.Round(time.Millisecond), reason)
		next.Timings = timings
		next.LeaseHash, next.LeaseUntil = "", nil
		return &next, nil
	})
	return st, q.settle(l, err, nakBody(delay))
}

// HandBack returns a running job to the queue at once, for another worker:
// its worker is stopping. Stopping is not the job's fault, so it does not
// use up one of the job's deliveries: the job goes back as a fresh copy of
// its message, and the delivered one is acknowledged. (A NAK would count:
// a job caught by three restarts in a row would end as failed, "gave up
// after 3 attempts", with nothing wrong with it.) Should the copy not
// publish — the server itself is going away — the delivered message is
// handed back instead, and counts. Either way exactly one message can run
// the job: Take drops a message whose sequence is not the status's.
func (q *Queue) HandBack(ctx context.Context, l *Lease, reason string) (*Status, error) {
	var seq uint64
	tried := false
	st, err := q.transition(ctx, l.Job.ID, func(cur *Status) (*Status, error) {
		if err := owned("hand back", cur, l); err != nil {
			return nil, err
		}
		if !tried {
			tried = true
			s, _, perr := q.publish(ctx, cur.Job, fmt.Sprintf("%s#%d#back%d", cur.ID, cur.Generation, cur.Seq))
			if perr != nil {
				q.logger.Warn().Err(perr).Str("job", cur.ID).
					Msg("hand back: cannot publish a fresh copy of the job's message; its own comes back and counts as a delivery")
			}
			seq = s
		}
		next := *cur
		next.State, next.Stage, next.Progress, next.Error = StateQueued, "", 0, reason
		next.LeaseHash, next.LeaseUntil = "", nil
		if seq != 0 {
			next.Seq = seq
		}
		return &next, nil
	})
	if seq != 0 {
		return st, q.settle(l, err, ackAck)
	}
	return st, q.settle(l, err, nakBody(0))
}

// settle acknowledges a lease's message after its job's final transition:
// with body when the transition was written, with an ack when the job turned
// out cancelled (it will never run), and not at all when the lease was lost
// (the message belongs to its new holder).
func (q *Queue) settle(l *Lease, err error, body string) error {
	switch {
	case err == nil:
		q.publishAck(l.ack, body)
	case errors.Is(err, ErrCancelled):
		q.publishAck(l.ack, ackAck)
	}
	return err
}

// Cancel ends a queued or running job as cancelled. A running job's worker
// learns it at its next heartbeat and stops; a queued job's message is
// dropped when delivered.
func (q *Queue) Cancel(ctx context.Context, id string) (*Status, error) {
	st, err := q.transition(ctx, id, func(cur *Status) (*Status, error) {
		if cur == nil {
			return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
		}
		if cur.State != StateQueued && cur.State != StateRunning {
			return nil, fmt.Errorf("job %s is %s: %w", id, cur.State, ErrNotCancellable)
		}
		next := *cur
		next.State, next.Stage, next.Error = StateCancelled, "", "cancelled on request"
		next.LeaseHash, next.LeaseUntil, next.FinishedAt = "", nil, q.timePtr()
		return &next, nil
	})
	if err != nil {
		return st, err
	}
	return st, nil
}

// FoundInOrthanc records that Orthanc already holds the result of a job that
// is not queued or running (none, failed, cancelled or done): it becomes
// done, with source "orthanc", at its current generation. A live job gives
// ErrLive.
func (q *Queue) FoundInOrthanc(ctx context.Context, job Job, res Result) (*Status, error) {
	if job.ID == "" {
		job.ID = JobID(job.SeriesID, job.Model, job.ModelVersion)
	}
	return q.transition(ctx, job.ID, func(cur *Status) (*Status, error) {
		next := &Status{Job: job}
		if cur != nil {
			if cur.State == StateQueued || cur.State == StateRunning {
				return nil, ErrLive
			}
			next.Job, next.Seq = cur.Job, cur.Seq
		}
		if next.RequestedAt.IsZero() {
			next.RequestedAt = q.now().UTC()
		}
		next.State, next.Progress, next.Source = StateDone, 1, "orthanc"
		next.SEGSeriesID, next.SEGInstanceID = res.SEGSeriesID, res.SEGInstanceID
		next.FinishedAt = q.timePtr()
		return next, nil
	})
}

// GiveUp ends a job whose message ran out of deliveries — its workers failed
// or died every time — as failed ("gave up after N attempts"), and removes
// the message. It applies only to the message that runs the job (generation
// and sequence match) and never while a worker holds a live lease.
func (q *Queue) GiveUp(ctx context.Context, id string, generation, seq uint64, deliveries int) (*Status, error) {
	now := q.now()
	st, err := q.transition(ctx, id, func(cur *Status) (*Status, error) {
		if cur == nil || cur.Generation != generation || cur.Seq != seq || cur.State.Final() || cur.leaseLive(now) {
			return nil, ErrStale
		}
		next := *cur
		reason := "the worker stopped responding"
		if cur.Error != "" {
			reason = cur.Error
		}
		next.State, next.Stage = StateFailed, ""
		next.Error = fmt.Sprintf("gave up after %d attempts: %s", deliveries, reason)
		next.Attempts = max(next.Attempts, deliveries)
		next.LeaseHash, next.LeaseUntil, next.FinishedAt = "", nil, q.timePtr()
		return &next, nil
	})
	if err == nil || errors.Is(err, ErrStale) {
		if derr := q.stream.DeleteMsg(ctx, seq); derr != nil && !errors.Is(derr, jetstream.ErrMsgNotFound) {
			q.logger.Debug().Err(derr).Uint64("seq", seq).Msg("cannot delete an exhausted job message")
		}
	}
	return st, err
}

// Requeue publishes a job's message again when it is lost — the job is
// queued, or running under a lapsed lease, but its message is no longer in
// the stream (a stream restored from an older backup, a message deleted by
// hand) — so that every job reaches an end.
func (q *Queue) Requeue(ctx context.Context, id string, generation, lostSeq uint64) (*Status, error) {
	now := q.now()
	var seq uint64
	return q.transition(ctx, id, func(cur *Status) (*Status, error) {
		if cur == nil || cur.Generation != generation || cur.Seq != lostSeq || cur.State.Final() || cur.leaseLive(now) {
			return nil, ErrStale
		}
		if seq == 0 {
			s, _, err := q.publish(ctx, cur.Job, fmt.Sprintf("%s#%d#%d", id, generation, lostSeq))
			if err != nil {
				return nil, err
			}
			seq = s
		}
		next := *cur
		next.State, next.Stage, next.Seq = StateQueued, "", seq
		next.LeaseHash, next.LeaseUntil = "", nil
		return &next, nil
	})
}
