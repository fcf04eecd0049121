package inference

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/volume"
)

// jobSource is what a worker needs of the queue.
type jobSource interface {
	Next(ctx context.Context, wait time.Duration) (*queue.Delivery, error)
	Status(ctx context.Context, id string) (*queue.Status, error)
	Update(ctx context.Context, id string, fn func(st *queue.Status) error) (*queue.Status, error)
}

// pacs is what a worker needs of Orthanc.
type pacs interface {
	Series(ctx context.Context, id string) (*orthanc.Series, error)
	InstanceFile(ctx context.Context, id string) ([]byte, error)
	Store(ctx context.Context, dcm []byte) (*orthanc.Stored, error)
	SetMetadata(ctx context.Context, level, id, name, value string) error
	FindSEG(ctx context.Context, sourceSeriesID, algorithm, version string) (*orthanc.SEGRef, error)
}

// segmenter runs a model on a volume.
type segmenter interface {
	Segment(ctx context.Context, m *model.Model, v *volume.Volume) (*Result, error)
}

var (
	_ jobSource = (*queue.Queue)(nil)
	_ pacs      = (*orthanc.Client)(nil)
	_ segmenter = (*Runtime)(nil)
)

// WorkerConfig configures a worker.
type WorkerConfig struct {
	// Name identifies the worker in job statuses. Default: host name and pid.
	Name string
	// Concurrency is how many jobs the worker runs at once. Default 1.
	Concurrency int
	// DownloadConcurrency is how many instances a job downloads at once. Default 8.
	DownloadConcurrency int
	// AckWait is the queue's lease; heartbeats are sent every third of it.
	// Default 60 s.
	AckWait time.Duration
	// PollWait is how long one wait for a job lasts. Default 5 s.
	PollWait time.Duration
	// RetryDelay is the first delay before a transient failure is retried; it
	// doubles with each attempt up to MaxRetryDelay. Defaults 5 s and 5 min.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// Limits bound the series a worker accepts.
	Limits volume.Limits
	// Decoder decodes JPEG 2000 and HTJ2K frames (a codec.Pool, which the
	// caller creates and closes); nil fails such series with a reason.
	Decoder volume.FrameDecoder
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Name == "" {
		h, _ := os.Hostname()
		c.Name = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.DownloadConcurrency == 0 {
		c.DownloadConcurrency = 8
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.PollWait == 0 {
		c.PollWait = 5 * time.Second
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = 5 * time.Second
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = 5 * time.Minute
	}
	return c
}

// Worker takes jobs from the queue and runs the pipeline: download the series
// from Orthanc, build the volume, run the model, encode a DICOM SEG, store it
// in Orthanc, record the outcome.
type Worker struct {
	cfg    WorkerConfig
	logger zerolog.Logger
	jobs   jobSource
	pacs   pacs
	seg    segmenter
	models map[string]*model.Model
	now    func() time.Time

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewWorker builds a worker for the given models.
func NewWorker(logger zerolog.Logger, jobs jobSource, p pacs, seg segmenter, models []*model.Model, cfg WorkerConfig) (*Worker, error) {
	if len(models) == 0 {
		return nil, errors.New("worker: no models")
	}
	w := &Worker{
		cfg:    cfg.withDefaults(),
		jobs:   jobs,
		pacs:   p,
		seg:    seg,
		models: map[string]*model.Model{},
		now:    time.Now,
	}
	w.logger = logger.With().Str("component", "worker").Str("worker", w.cfg.Name).Logger()
	for _, m := range models {
		w.models[m.Name] = m
	}
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
// cancellation point and handed back to the queue (it is redelivered at
// once). Stop waits for that, or until ctx ends. Safe to call twice.
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
			case <-time.After(time.Second):
			}
			continue
		}
		if d == nil {
			continue
		}
		w.handle(ctx, d)
	}
}

// permanentError marks a failure that no retry can fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// isPermanent decides once whether an error is worth retrying.
func isPermanent(err error) bool {
	var pe *permanentError
	switch {
	case errors.As(err, &pe):
		return true
	case errors.Is(err, volume.ErrInvalidSeries), errors.Is(err, ErrModelMismatch):
		return true
	case errors.Is(err, orthanc.ErrNotFound):
		return true
	}
	var he *orthanc.HTTPError
	if errors.As(err, &he) && he.StatusCode < 500 {
		return true
	}
	return false
}

func (w *Worker) handle(ctx context.Context, d *queue.Delivery) {
	job := d.Job
	log := w.logger.With().Str("job", job.ID).Int("attempt", d.Attempt).Logger()

	// Skip stale and already-settled messages: a newer generation exists, the
	// job was cancelled, or it finished but the ack was lost.
	if st, err := w.jobs.Status(ctx, job.ID); err == nil {
		if st.Generation > job.Generation || (st.Generation == job.Generation && st.State.Final()) {
			log.Info().Str("state", string(st.State)).Msg("skipping settled job")
			_ = d.Ack()
			return
		}
	}

	start := w.now()
	_, err := w.jobs.Update(ctx, job.ID, func(st *queue.Status) error {
		st.Job = job
		st.State = queue.StateRunning
		st.Stage = "download"
		st.Progress = 0
		st.Attempts = d.Attempt
		st.Worker = w.cfg.Name
		st.Error = ""
		t := start.UTC()
		st.StartedAt = &t
		return nil
	})
	if err != nil {
		log.Error().Err(err).Msg("cannot record job start; handing it back")
		_ = d.Retry(w.cfg.RetryDelay)
		return
	}

	jobCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-t.C:
				if err := d.Heartbeat(); err != nil {
					log.Warn().Err(err).Msg("heartbeat")
				}
			}
		}
	}()

	out, err := w.run(jobCtx, job, log)
	cancel()
	<-hbDone

	// The outcome is recorded with a fresh context: a stopping worker still
	// says what happened to the job it held.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	end := w.now().UTC()
	switch {
	case err == nil:
		st, uerr := w.jobs.Update(rctx, job.ID, func(st *queue.Status) error {
			st.State, st.Stage, st.Progress, st.Error = queue.StateDone, "", 1, ""
			st.SEGSeriesID, st.SEGInstanceID = out.segSeries, out.segInstance
			st.Timings = out.timings
			st.FinishedAt = &end
			return nil
		})
		if uerr != nil {
			log.Error().Err(uerr).Msg("record done")
		}
		w.recordInOrthanc(rctx, log, st)
		_ = d.Ack()
		log.Info().Str("seg_series", out.segSeries).Float64("total_ms", out.timings["total"]).Msg("job done")
	case ctx.Err() != nil:
		// Shutting down: hand the job back for another worker at once.
		_, _ = w.jobs.Update(rctx, job.ID, func(st *queue.Status) error {
			st.State, st.Stage, st.Error = queue.StateQueued, "", "worker "+w.cfg.Name+" stopped during the job; it will run again"
			return nil
		})
		_ = d.Retry(0)
		log.Info().Msg("job handed back on shutdown")
	case isPermanent(err) || d.LastAttempt:
		reason := err.Error()
		if !isPermanent(err) {
			reason = fmt.Sprintf("gave up after %d attempts: %s", d.Attempt, reason)
		}
		st, _ := w.jobs.Update(rctx, job.ID, func(st *queue.Status) error {
			st.State, st.Error = queue.StateFailed, reason
			st.Timings = out.timings
			st.FinishedAt = &end
			return nil
		})
		w.recordInOrthanc(rctx, log, st)
		_ = d.Term()
		log.Warn().Str("reason", reason).Msg("job failed")
	default:
		delay := w.cfg.RetryDelay << (d.Attempt - 1)
		if delay > w.cfg.MaxRetryDelay || delay <= 0 {
			delay = w.cfg.MaxRetryDelay
		}
		_, _ = w.jobs.Update(rctx, job.ID, func(st *queue.Status) error {
			st.State, st.Stage = queue.StateQueued, ""
			st.Error = fmt.Sprintf("attempt %d failed, retrying in %s: %s", d.Attempt, delay, err)
			return nil
		})
		_ = d.Retry(delay)
		log.Warn().Err(err).Dur("retry_in", delay).Msg("job attempt failed")
	}
}

// recordInOrthanc writes the outcome on the source series, so Orthanc holds
// the record too. Orthanc accepts it only when its UserMetadata declares
// "segbridge"; without that the job is still fine.
func (w *Worker) recordInOrthanc(ctx context.Context, log zerolog.Logger, st *queue.Status) {
	if st == nil {
		return
	}
	b, err := marshalOutcome(st)
	if err != nil {
		return
	}
	if err := w.pacs.SetMetadata(ctx, "series", st.SeriesID, "segbridge", string(b)); err != nil {
		log.Debug().Err(err).Msg("cannot record outcome on the series (declare UserMetadata \"segbridge\" in Orthanc's configuration)")
	}
}

// marshalOutcome is the record written on the source series in Orthanc.
func marshalOutcome(st *queue.Status) ([]byte, error) {
	return json.Marshal(map[string]any{
		"job":           st.ID,
		"model":         st.Model,
		"model_version": st.ModelVersion,
		"state":         st.State,
		"error":         st.Error,
		"seg_series_id": st.SEGSeriesID,
		"timings_ms":    st.Timings,
		"finished_at":   st.FinishedAt,
	})
}

type outcome struct {
	segSeries, segInstance string
	timings                map[string]float64
}

// stageTimer records how long each stage takes and reports progress.
type stageTimer struct {
	w       *Worker
	ctx     context.Context
	jobID   string
	timings map[string]float64
	start   time.Time

	mu   sync.Mutex
	last time.Time
}

func (t *stageTimer) stage(name string) func() {
	t.report(name, 0)
	begin := t.w.now()
	return func() { t.timings[name] = ms(t.w.now().Sub(begin)) }
}

// report writes the stage and progress to the status, at most every 500 ms
// for progress within a stage.
func (t *stageTimer) report(stage string, progress float64) {
	now := t.w.now()
	t.mu.Lock()
	if progress > 0 && progress < 1 && now.Sub(t.last) < 500*time.Millisecond {
		t.mu.Unlock()
		return
	}
	t.last = now
	t.mu.Unlock()
	_, _ = t.w.jobs.Update(t.ctx, t.jobID, func(st *queue.Status) error {
		if st.State != queue.StateRunning {
			return errors.New("not running")
		}
		st.Stage, st.Progress = stage, progress
		return nil
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (w *Worker) run(ctx context.Context, job queue.Job, log zerolog.Logger) (outcome, error) {
	t := &stageTimer{w: w, ctx: ctx, jobID: job.ID, timings: map[string]float64{}, start: w.now()}
	out := outcome{timings: t.timings}
	m, ok := w.models[job.Model]
	if !ok {
		return out, permanent(fmt.Errorf("model %q is not installed on worker %s", job.Model, w.cfg.Name))
	}
	if m.Version != job.ModelVersion {
		return out, permanent(fmt.Errorf("job wants %s version %s but worker %s has version %s", job.Model, job.ModelVersion, w.cfg.Name, m.Version))
	}
	if job.RequestedAt.IsZero() {
		job.RequestedAt = t.start
	}
	t.timings["wait"] = ms(t.start.Sub(job.RequestedAt))

	done := t.stage("download")
	ser, err := w.pacs.Series(ctx, job.SeriesID)
	if err != nil {
		return out, fmt.Errorf("read series %s: %w", job.SeriesID, err)
	}
	if ser.Modality() == "SEG" {
		return out, permanent(fmt.Errorf("series %s is itself a segmentation (SEG)", job.SeriesID))
	}
	if ok, reason := m.Matches(model.SeriesInfo{
		Modality:          ser.Modality(),
		SeriesDescription: ser.MainDicomTags["SeriesDescription"],
		BodyPartExamined:  ser.MainDicomTags["BodyPartExamined"],
	}); !ok {
		return out, permanent(fmt.Errorf("model %s does not apply to series %s: %s", m.Name, job.SeriesID, reason))
	}
	// A SEG by this model version may already be in Orthanc: stored by an
	// attempt that died before its ack, or before the bridge lost its state.
	// Unless asked to redo it, that SEG is the result.
	if !job.Force {
		if ref, err := w.pacs.FindSEG(ctx, job.SeriesID, m.Name, m.Version); err != nil {
			return out, fmt.Errorf("look for an existing SEG of series %s: %w", job.SeriesID, err)
		} else if ref != nil {
			done()
			log.Info().Str("seg_series", ref.SeriesID).Msg("Orthanc already has this SEG; not running the model again")
			out.segSeries, out.segInstance = ref.SeriesID, ref.InstanceID
			out.timings["total"] = ms(w.now().Sub(t.start))
			return out, nil
		}
	}
	instances, err := w.download(ctx, ser, t)
	done()
	if err != nil {
		return out, err
	}

	done = t.stage("volume")
	vol, err := volume.Assemble(instances, w.cfg.Limits)
	instances = nil
	done()
	if err != nil {
		return out, fmt.Errorf("series %s: %w", job.SeriesID, err)
	}
	log.Debug().Int("cols", vol.Cols).Int("rows", vol.Rows).Int("depth", vol.Depth).Msg("volume built")

	t.report("inference", 0)
	res, err := w.seg.Segment(ctx, m, vol)
	if err != nil {
		return out, fmt.Errorf("run model %s: %w", m.Name, err)
	}
	t.timings["preprocess"] = ms(res.Preprocess)
	t.timings["inference"] = ms(res.Inference)
	t.timings["postprocess"] = ms(res.Postprocess)

	done = t.stage("encode")
	seg, err := dicomseg.Encode(vol, res.Labels, m.Segments(), dicomseg.Options{
		SeriesDescription: "AI segmentation: " + m.Name,
		AlgorithmName:     m.Name,
		AlgorithmVersion:  m.Version,
		SoftwareVersions:  "segbridge",
		ContentCreator:    "segbridge^" + w.cfg.Name,
		// UIDs derived from the job and its generation: an attempt that
		// stored its SEG but died before the ack stores the same instance
		// again, which Orthanc answers AlreadyStored — still one SEG.
		NewUID: jobUIDs(job),
	})
	done()
	if err != nil {
		return out, permanent(fmt.Errorf("encode SEG: %w", err))
	}

	done = t.stage("upload")
	stored, err := w.pacs.Store(ctx, seg.Bytes)
	done()
	if err != nil {
		return out, fmt.Errorf("store SEG in Orthanc: %w", err)
	}
	out.segSeries, out.segInstance = stored.ParentSeries, stored.ID
	t.timings["total"] = ms(w.now().Sub(t.start))
	t.timings["end_to_end"] = ms(w.now().Sub(job.RequestedAt))
	return out, nil
}

// jobUIDs returns a NewUID function that yields, in turn, UIDs derived
// from the job's message (id, generation and request time, so a job queued
// again after the bridge lost its state still gets new UIDs) as 2.25 UIDs
// from a SHA-256, as PS3.5 B.2 allows for UUID-derived values.
func jobUIDs(job queue.Job) func() string {
	n := 0
	return func() string {
		n++
		h := sha256.Sum256([]byte(fmt.Sprintf("segbridge\x00%s\x00%d\x00%d\x00%d", job.ID, job.Generation, job.RequestedAt.UnixNano(), n)))
		b := h[:16]
		b[6] = b[6]&0x0f | 0x80 // version 8 (name-based, custom hash)
		b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
		return "2.25." + new(big.Int).SetBytes(b).String()
	}
}

// uncompressed fetches instances as Explicit VR Little Endian, asking
// Orthanc to transcode those stored compressed.
type uncompressed struct{ p pacs }

func (u uncompressed) InstanceFile(ctx context.Context, id string) ([]byte, error) {
	return orthanc.UncompressedInstanceFile(ctx, u.p, id)
}

// download fetches and parses every instance of the series with
// FetchInstances (parsing overlaps the downloads) and records the parse
// time, summed over the download goroutines, as its own stage.
func (w *Worker) download(ctx context.Context, ser *orthanc.Series, t *stageTimer) ([]*volume.Instance, error) {
	if len(ser.Instances) == 0 {
		return nil, permanent(fmt.Errorf("series %s has no instances", ser.ID))
	}
	parser := volume.Parser{Decoder: w.cfg.Decoder, MaxBytes: w.cfg.Limits.MaxBytes}
	instances, parse, err := FetchInstancesWith(ctx, uncompressed{w.pacs}, parser, ser.Instances, w.cfg.DownloadConcurrency,
		func(done, total int) { t.report("download", float64(done)/float64(total)) })
	t.timings["parse"] = ms(parse)
	return instances, err
}
