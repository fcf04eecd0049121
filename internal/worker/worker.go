// Package worker runs segmentation jobs: it takes a job from the queue,
// fetches its series from Orthanc, runs the pipeline, stores its outputs (the
// SEG, and the SR and preview series when configured) in Orthanc and reports
// every step through the queue's transitions. Whatever
// happens to a job — success, a bad series, Orthanc down, a panic, a cancel,
// a shutdown — it ends in one of those transitions, and the worker takes the
// next job.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/fault"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/volume"
)

// JobSource is what a worker needs of the queue: the bridge's own queue for
// in-process workers, a queue.Remote for workers on other machines.
type JobSource interface {
	Next(ctx context.Context, wait time.Duration) (*queue.Delivery, error)
	Take(ctx context.Context, d *queue.Delivery, worker string) (*queue.Lease, error)
	Progress(ctx context.Context, l *queue.Lease, stage string, progress float64) error
	Complete(ctx context.Context, l *queue.Lease, res queue.Result) (*queue.Status, error)
	Fail(ctx context.Context, l *queue.Lease, reason string, timings map[string]float64) (*queue.Status, error)
	Skip(ctx context.Context, l *queue.Lease, reason string, timings map[string]float64) (*queue.Status, error)
	RetryLater(ctx context.Context, l *queue.Lease, delay time.Duration, reason string, timings map[string]float64) (*queue.Status, error)
	HandBack(ctx context.Context, l *queue.Lease, reason string) (*queue.Status, error)
}

// pacs is what a worker needs of Orthanc.
type pacs interface {
	Series(ctx context.Context, id string) (*orthanc.Series, error)
	InstanceFile(ctx context.Context, id string) ([]byte, error)
	ImageHeader(ctx context.Context, inst string) (*orthanc.ImageHeader, error)
	Store(ctx context.Context, dcm []byte) (*orthanc.Stored, error)
	SetMetadata(ctx context.Context, level, id, name, value string) error
	FindSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*orthanc.SEGRef, error)
	SupportsLabels(ctx context.Context) (bool, error)
	SetLabel(ctx context.Context, level, id, label string, on bool) error
}

// runner turns instances into a SEG (pipeline.Pipeline).
type runner interface {
	Run(ctx context.Context, in pipeline.Input, t *pipeline.Timer) (*pipeline.Output, error)
	Limits() volume.Limits
}

var (
	_ JobSource = (*queue.Queue)(nil)
	_ JobSource = (*queue.Remote)(nil)
	_ pacs      = (*orthanc.Client)(nil)
	_ runner    = (*pipeline.Pipeline)(nil)
)

// Config configures a worker. Every zero field takes its default.
type Config struct {
	// Name identifies the worker in job statuses. Default: host name and pid.
	Name string
	// Concurrency is how many jobs the worker runs at once. Default 1.
	Concurrency int
	// DownloadConcurrency is how many instances a job downloads at once. Default 8.
	DownloadConcurrency int
	// Heartbeat is how often a running job renews its lease; a third of the
	// queue's AckWait. Default 20 s.
	Heartbeat time.Duration
	// PollWait is how long one wait for a job lasts. Default 5 s.
	PollWait time.Duration
	// RetryDelay is the first delay before a transient failure is retried; it
	// doubles with each attempt up to MaxRetryDelay. Defaults 5 s and 5 min.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// ProgressEvery is the least time between two progress reports within a
	// stage. Default 500 ms.
	ProgressEvery time.Duration
	// Decoder decodes JPEG 2000 and HTJ2K frames (a codec.Pool, which the
	// caller creates and closes); nil fails such series with a reason.
	Decoder volume.FrameDecoder
	// Clock drives heartbeats, waits and timings; tests pass a fake one.
	// Default: the real clock.
	Clock clockwork.Clock
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		h, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.DownloadConcurrency <= 0 {
		c.DownloadConcurrency = 8
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 20 * time.Second
	}
	if c.PollWait <= 0 {
		c.PollWait = 5 * time.Second
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 5 * time.Second
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 5 * time.Minute
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 500 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return c
}

// Worker takes jobs from the queue and runs them.
type Worker struct {
	cfg    Config
	logger zerolog.Logger
	jobs   JobSource
	pacs   pacs
	run    runner
	models *models

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// handled counts jobs handled, for tests that wait on it.
	handled atomic.Int64
	ended   chan string
}

// New builds a worker for the given models.
func New(logger zerolog.Logger, jobs JobSource, p pacs, run runner, models []*model.Model, cfg Config) (*Worker, error) {
	ms, err := newModels(models)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:    cfg.withDefaults(),
		jobs:   jobs,
		pacs:   p,
		run:    run,
		models: ms,
		ended:  make(chan string, 64),
	}
	w.logger = logger.With().Str("component", "worker").Str("worker", w.cfg.Name).Logger()
	return w, nil
}

// Start runs the worker's loops in the background and returns at once.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		return errors.New("worker: already started")
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i := 0; i < w.cfg.Concurrency; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.loop(ctx)
		}()
	}
	w.logger.Info().Int("concurrency", w.cfg.Concurrency).Msg("worker started")
	return nil
}

// Stop stops taking jobs. A job in progress is abandoned at its next
// cancellation point (ONNX Runtime stops a running inference) and handed
// back to the queue, which redelivers it at once. Stop waits for that, or
// until ctx ends. Safe to call twice.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	cancel := w.cancel
	w.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("worker: stop: %w", ctx.Err())
	}
}

// Ended delivers the id of every job the worker finished handling, however
// it ended; tests wait on it instead of sleeping.
func (w *Worker) Ended() <-chan string { return w.ended }

func (w *Worker) loop(ctx context.Context) {
	for ctx.Err() == nil {
		d, err := w.jobs.Next(ctx, w.cfg.PollWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.logger.Warn().Err(err).Msg("waiting for a job")
			select {
			case <-ctx.Done():
			case <-w.cfg.Clock.After(time.Second):
			}
			continue
		}
		if d == nil {
			continue
		}
		w.handle(ctx, d)
		w.handled.Add(1)
		select {
		case w.ended <- d.Job.ID:
		default:
		}
	}
}

// Why a job's context ends, besides the worker stopping.
var (
	errJobCancelled = errors.New("the job was cancelled")
	errLeaseLost    = errors.New("the worker's lease on the job was lost")
)

// handle takes one delivered job, runs it and ends it with a transition.
func (w *Worker) handle(ctx context.Context, d *queue.Delivery) {
	log := w.logger.With().Str("job", d.Job.ID).Uint64("generation", d.Job.Generation).Int("attempt", d.Attempt).Logger()
	lease, err := w.jobs.Take(ctx, d, w.cfg.Name)
	switch {
	case errors.Is(err, queue.ErrStale):
		log.Debug().Msg("skipping a stale job message")
		return
	case errors.Is(err, queue.ErrLeased):
		log.Info().Err(err).Msg("another worker holds the job")
		return
	case err != nil:
		// The message comes back when its lease lapses.
		log.Warn().Err(err).Msg("cannot take the job")
		return
	}

	jobCtx, stopJob := context.WithCancelCause(ctx)
	defer stopJob(nil)
	rep := &reporter{w: w, lease: lease, stop: stopJob, log: log}
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := w.cfg.Clock.NewTicker(w.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-t.Chan():
				rep.send(jobCtx, "", -1)
			}
		}
	}()

	timer := pipeline.NewTimer(w.cfg.Clock.Now, func(stage string, p float64) { rep.progress(jobCtx, stage, p) })
	res, err := w.runJob(jobCtx, lease.Job, timer)
	cause := context.Cause(jobCtx)
	stopJob(nil)
	<-hbDone
	w.end(ctx, log, lease, res, timer.Timings(), err, cause)
}

// end records a job's outcome with the transition it calls for. It uses a
// context of its own: a stopping worker still says what happened.
func (w *Worker) end(ctx context.Context, log zerolog.Logger, l *queue.Lease, res queue.Result, timings map[string]float64, err, cause error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var st *queue.Status
	var terr error
	switch {
	case errors.Is(cause, errJobCancelled):
		log.Info().Msg("job cancelled; stopped")
		return
	case errors.Is(cause, errLeaseLost):
		log.Warn().Msg("lost the lease on the job (another worker has it); stopped")
		return
	case err == nil:
		res.Timings = timings
		st, terr = w.jobs.Complete(rctx, l, res)
		var refused *queue.RefusedError
		if errors.As(terr, &refused) {
			st, terr = w.jobs.Fail(rctx, l, "the bridge refused the result: "+refused.Msg, timings)
		}
		if terr == nil {
			log.Info().Str("seg_series", res.SEGSeriesID).Bool("found", res.Found).Float64("total_ms", timings["total"]).
				Strs("warnings", res.Warnings).Msg("job done")
		}
	case errors.As(err, new(*pipeline.NotApplicable)):
		var na *pipeline.NotApplicable
		errors.As(err, &na)
		st, terr = w.jobs.Skip(rctx, l, na.Reason, timings)
		log.Info().Str("reason", na.Reason).Msg("job skipped: the model does not apply to the series")
	case ctx.Err() != nil:
		st, terr = w.jobs.HandBack(rctx, l, "worker "+w.cfg.Name+" stopped during the job; it will run again")
		if terr == nil {
			log.Info().Msg("job handed back on shutdown")
		}
	default:
		switch kind := fault.Classify(err); kind {
		case fault.KindPermanent:
			var pe *fault.PanicError
			if errors.As(err, &pe) {
				log.Error().Str("panic", fmt.Sprint(pe.Value)).Str("stack", string(pe.Stack)).Msg("job panicked")
			}
			st, terr = w.jobs.Fail(rctx, l, err.Error(), timings)
			log.Warn().Str("reason", err.Error()).Msg("job failed")
		case fault.KindCancelled:
			// Stopped while this worker goes on: not a shutdown, so it counts
			// as an attempt (HandBack would not, and could loop for ever).
			delay := w.retryDelay(l.Attempt)
			st, terr = w.jobs.RetryLater(rctx, l, delay, "attempt stopped: "+err.Error(), timings)
			log.Info().Err(err).Dur("retry_in", delay).Msg("job attempt stopped; it will run again")
		default:
			delay := w.retryDelay(l.Attempt)
			st, terr = w.jobs.RetryLater(rctx, l, delay, err.Error(), timings)
			log.Warn().Err(err).Dur("retry_in", delay).Bool("last_attempt", l.LastAttempt).Msg("job attempt failed")
		}
	}
	switch {
	case errors.Is(terr, queue.ErrCancelled):
		log.Info().Msg("the job was cancelled meanwhile")
	case errors.Is(terr, queue.ErrLeaseLost):
		log.Warn().Msg("lost the lease on the job before recording its outcome")
	case terr != nil:
		// The message comes back after its lease lapses, and the next
		// attempt finds the stored SEG.
		log.Error().Err(terr).Msg("cannot record the job's outcome")
	}
	if st != nil && st.State.Final() {
		w.recordInOrthanc(rctx, log, st)
	}
}

// retryDelay is RetryDelay doubled per attempt, capped at MaxRetryDelay.
func (w *Worker) retryDelay(attempt int) time.Duration {
	shift := max(0, attempt-1)
	if shift >= 63-bits.Len64(uint64(w.cfg.RetryDelay)) {
		return w.cfg.MaxRetryDelay
	}
	return min(w.cfg.RetryDelay<<shift, w.cfg.MaxRetryDelay)
}

// reporter sends a running job's progress and heartbeats to the queue, at
// most every ProgressEvery within a stage, and stops the job when the queue
// says it was cancelled or its lease lost.
type reporter struct {
	w     *Worker
	lease *queue.Lease
	stop  context.CancelCauseFunc
	log   zerolog.Logger

	mu    sync.Mutex
	last  time.Time
	stage string
}

func (r *reporter) progress(ctx context.Context, stage string, p float64) {
	now := r.w.cfg.Clock.Now()
	r.mu.Lock()
	if stage == r.stage && p > 0 && p < 1 && now.Sub(r.last) < r.w.cfg.ProgressEvery {
		r.mu.Unlock()
		return
	}
	r.last, r.stage = now, stage
	r.mu.Unlock()
	r.send(ctx, stage, p)
}

func (r *reporter) send(ctx context.Context, stage string, p float64) {
	if ctx.Err() != nil {
		return
	}
	err := r.w.jobs.Progress(ctx, r.lease, stage, p)
	switch {
	case errors.Is(err, queue.ErrCancelled):
		r.stop(errJobCancelled)
	case errors.Is(err, queue.ErrLeaseLost):
		r.stop(errLeaseLost)
	case err != nil && ctx.Err() == nil:
		r.log.Warn().Err(err).Msg("cannot report progress; the lease may lapse")
	}
}

// runJob does the work of one job and returns its result. A panic in it
// becomes a permanent error.
func (w *Worker) runJob(ctx context.Context, job queue.Job, t *pipeline.Timer) (res queue.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fault.Recovered(r)
		}
	}()
	m, err := w.models.lookup(job.Model, job.ModelVersion)
	if err != nil {
		return res, fmt.Errorf("worker %s: %w", w.cfg.Name, err)
	}
	start := w.cfg.Clock.Now()
	if !job.RequestedAt.IsZero() {
		t.Set("wait", start.Sub(job.RequestedAt))
	}

	done := t.Stage("download")
	ser, err := w.pacs.Series(ctx, job.SeriesID)
	if err != nil {
		return res, fmt.Errorf("read series %s: %w", job.SeriesID, err)
	}
	if ser.Modality() == "SEG" {
		return res, fault.Permanent(fmt.Errorf("series %s is itself a segmentation (SEG)", job.SeriesID))
	}
	// A SEG by this model version may already be in Orthanc: stored by an
	// attempt that died before it said so, or before the bridge lost its
	// state. Unless asked to redo it, or the series changed since, that SEG
	// is the result.
	if !job.Force && !job.Changed {
		ref, err := w.pacs.FindSEG(ctx, job.SeriesID, m.Name, m.Version)
		if err != nil {
			return res, fmt.Errorf("look for an existing SEG of series %s: %w", job.SeriesID, err)
		}
		if ref != nil {
			done()
			t.Total()
			return queue.Result{SEGSeriesID: ref.SeriesID, SEGInstanceID: ref.InstanceID, Found: true}, nil
		}
	}
	instances, err := w.download(ctx, ser, t)
	done()
	if err != nil {
		return res, err
	}

	out, err := w.run.Run(ctx, pipeline.Input{
		Model:          m,
		Instances:      instances,
		UIDSeed:        uidSeed(job),
		ContentCreator: "segbridge^" + w.cfg.Name,
		Force:          job.Force,
	}, t)
	if err != nil {
		return res, fmt.Errorf("series %s: %w", job.SeriesID, err)
	}
	res, err = w.store(ctx, out, t)
	if err != nil {
		return res, err
	}
	res.Instances = len(ser.Instances)
	t.Total()
	if !job.RequestedAt.IsZero() {
		t.Set("end_to_end", w.cfg.Clock.Now().Sub(job.RequestedAt))
	}
	res.Warnings = out.Warnings
	return res, nil
}

// store puts a run's outputs in Orthanc: the preview series, the SR, and the
// SEG last. The SEG in Orthanc is the record that the job is done — a retried
// job that finds it does not run again — so it goes in only once everything
// that belongs with it is there. The objects' UIDs are derived from the job,
// so a retry after a partial store stores the same instances again (Orthanc
// answers AlreadyStored), and the SR may name the SEG before Orthanc has it.
func (w *Worker) store(ctx context.Context, out *pipeline.Output, t *pipeline.Timer) (queue.Result, error) {
	var res queue.Result
	if out.Preview != nil {
		done := t.Stage("upload_preview")
		files := make([][]byte, len(out.Preview.Instances))
		for i, in := range out.Preview.Instances {
			files[i] = in.Bytes
		}
		series, err := storeAll(ctx, w.pacs, files, w.cfg.DownloadConcurrency)
		done()
		if err != nil {
			return res, fmt.Errorf("store the preview series in Orthanc: %w", err)
		}
		res.PreviewSeriesID = series
	}
	if out.SR != nil {
		done := t.Stage("upload_sr")
		stored, err := w.pacs.Store(ctx, out.SR.Bytes)
		done()
		if err != nil {
			return res, fmt.Errorf("store SR in Orthanc: %w", err)
		}
		res.SRSeriesID = stored.ParentSeries
	}
	done := t.Stage("upload")
	stored, err := w.pacs.Store(ctx, out.SEG)
	done()
	if err != nil {
		return res, fmt.Errorf("store SEG in Orthanc: %w", err)
	}
	res.SEGSeriesID, res.SEGInstanceID = stored.ParentSeries, stored.ID
	for _, v := range out.Volumes {
		res.Volumes = append(res.Volumes, queue.SegmentVolume{Segment: v.SegmentNumber, Name: v.Segment.Name, Voxels: v.Voxels, ML: v.VolumeML})
	}
	return res, nil
}

// storeAll stores files in Orthanc, concurrency at a time, and returns the
// series they went into. The first error stops the rest.
func storeAll(ctx context.Context, p pacs, files [][]byte, concurrency int) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		series string
		first  error
	)
	next := make(chan []byte)
	for range max(1, min(concurrency, len(files))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				st, err := p.Store(ctx, f)
				mu.Lock()
				if err != nil && first == nil {
					first = err
					cancel()
				}
				if err == nil && series == "" {
					series = st.ParentSeries
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return "", first
	}
	return series, ctx.Err()
}

// uidSeed derives the SEG's UIDs from the job's message (id, generation and
// request time): an attempt that stored its SEG but died before saying so
// stores the same instance again, and a job queued anew after the bridge lost
// its state still gets new UIDs.
func uidSeed(job queue.Job) string {
	return fmt.Sprintf("%s\x00%d\x00%d", job.ID, job.Generation, job.RequestedAt.UnixNano())
}

// download checks the series' size from Orthanc's instance count and the
// first instance's header against the limits, then fetches and parses every
// instance, refusing the series as soon as its bytes pass the limit. Parse
// time, summed over the download goroutines, is its own timing.
func (w *Worker) download(ctx context.Context, ser *orthanc.Series, t *pipeline.Timer) ([]*volume.Instance, error) {
	if len(ser.Instances) == 0 {
		return nil, fault.Permanent(fmt.Errorf("series %s has no instances", ser.ID))
	}
	lim := w.run.Limits()
	h, err := w.pacs.ImageHeader(ctx, ser.Instances[0])
	if err != nil {
		return nil, fmt.Errorf("read the header of instance %s: %w", ser.Instances[0], err)
	}
	if h.Rows == 0 && h.Columns == 0 {
		// A series of reports, raw data or a vendor's non-image objects
		// (such as Siemens' PhoenixZIPReport series of CSA Non-Image
		// objects): nothing to segment, and nothing wrong with it.
		what := "SOP class " + h.SOPClassUID
		if name := volume.SOPClassName(h.SOPClassUID); name != "unknown SOP class" {
			what = fmt.Sprintf("%s, %s", name, what)
		}
		return nil, &pipeline.NotApplicable{Reason: fmt.Sprintf(
			"series %s holds no images: its first instance (%s) has no Rows or Columns; nothing to segment", ser.ID, what)}
	}
	hdr := volume.Header{Rows: int(h.Rows), Columns: int(h.Columns), NumberOfFrames: int(h.NumberOfFrames),
		BitsAllocated: int(h.BitsAllocated), SamplesPerPixel: int(h.SamplesPerPixel)}
	if err := lim.CheckSeries(hdr, len(ser.Instances)); err != nil {
		return nil, fmt.Errorf("series %s: %w", ser.ID, err)
	}
	budget := lim.NewBudget()
	parser := volume.Parser{Decoder: w.cfg.Decoder, MaxBytes: lim.MaxBytes}
	instances, parse, err := FetchInstances(ctx, w.pacs, parser, ser.Instances, w.cfg.DownloadConcurrency, budget.Add,
		func(done, total int) { t.Progress("download", float64(done)/float64(total)) })
	t.Set("parse", parse)
	return instances, err
}

// recordInOrthanc writes the outcome on the source series, so Orthanc holds
// the record too. Orthanc accepts it only when its UserMetadata declares
// "segbridge"; without that the job is still fine.
func (w *Worker) recordInOrthanc(ctx context.Context, log zerolog.Logger, st *queue.Status) {
	b, err := json.Marshal(map[string]any{
		"job":           st.ID,
		"model":         st.Model,
		"model_version": st.ModelVersion,
		"state":         st.State,
		"error":         st.Error,
		"seg_series_id": st.SEGSeriesID,
		"sr_series_id":  st.SRSeriesID,
		"preview_id":    st.PreviewSeriesID,
		"volumes":       st.Volumes,
		"timings_ms":    st.Timings,
		"finished_at":   st.FinishedAt,
	})
	if err != nil {
		return
	}
	if err := w.pacs.SetMetadata(ctx, "series", st.SeriesID, "segbridge", string(b)); err != nil {
		log.Debug().Err(err).Msg("cannot record outcome on the series (declare UserMetadata \"segbridge\" in Orthanc's configuration)")
	}
	w.label(ctx, log, st)
}

// Labels a worklist can filter on: the outcome of the latest AI job on a
// series and its study (Orthanc 1.12 and later).
const (
	LabelDone   = "ai-done"
	LabelFailed = "ai-failed"
)

// label puts the job's outcome as a label on the series and its study, where
// Orthanc has labels: ai-done (and no ai-failed) when done, ai-failed when it
// failed. Older Orthancs keep the metadata alone.
func (w *Worker) label(ctx context.Context, log zerolog.Logger, st *queue.Status) {
	var add, remove string
	switch st.State {
	case queue.StateDone:
		add, remove = LabelDone, LabelFailed
	case queue.StateFailed:
		add = LabelFailed
	default:
		return
	}
	ok, err := w.pacs.SupportsLabels(ctx)
	if err != nil || !ok {
		return
	}
	ser, err := w.pacs.Series(ctx, st.SeriesID)
	if err != nil {
		log.Debug().Err(err).Msg("cannot label the outcome: series unreadable")
		return
	}
	for _, r := range []struct{ level, id string }{{"series", ser.ID}, {"studies", ser.ParentStudy}} {
		if r.id == "" {
			continue
		}
		if err := w.pacs.SetLabel(ctx, r.level, r.id, add, true); err != nil {
			log.Warn().Err(err).Str("label", add).Str(r.level, r.id).Msg("cannot label the outcome in Orthanc")
			continue
		}
		if remove != "" {
			if err := w.pacs.SetLabel(ctx, r.level, r.id, remove, false); err != nil {
				log.Debug().Err(err).Str("label", remove).Msg("cannot remove a label")
			}
		}
	}
}
