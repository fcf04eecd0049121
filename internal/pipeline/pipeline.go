// Package pipeline turns the instances of one series into what segbridge
// writes back — a DICOM SEG — through the same stages for the worker and for
// `segbridge segment`: series → volume → model (preprocess, inference,
// postprocess) → SEG. One Timer records every stage's time and reports
// progress, so both callers show the same timings.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/fault"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// Segmenter runs a model on a volume (inference.Runtime).
type Segmenter interface {
	SegmentWith(ctx context.Context, m *model.Model, v *volume.Volume, opts inference.SegmentOptions) (*inference.Result, error)
}

var _ Segmenter = (*inference.Runtime)(nil)

// Config configures a Pipeline.
type Config struct {
	// Limits bound the series the pipeline accepts (volume.Limits defaults).
	Limits volume.Limits
	// SoftwareVersions is written in the SEG's equipment module, e.g.
	// "segbridge 1.2.0". Default "segbridge".
	SoftwareVersions string
}

// Pipeline runs series through a model.
type Pipeline struct {
	seg Segmenter
	cfg Config
}

// New builds a pipeline around a model runtime.
func New(seg Segmenter, cfg Config) (*Pipeline, error) {
	if seg == nil {
		return nil, errors.New("pipeline: no model runtime")
	}
	if cfg.SoftwareVersions == "" {
		cfg.SoftwareVersions = dicomseg.DefaultSoftwareVersions
	}
	return &Pipeline{seg: seg, cfg: cfg}, nil
}

// Limits returns the limits the pipeline enforces.
func (p *Pipeline) Limits() volume.Limits { return p.cfg.Limits.WithDefaults() }

// Input is one series to segment.
type Input struct {
	Model     *model.Model
	Instances []*volume.Instance
	// NewUID makes the SEG's UIDs (dicomseg.DerivedUIDs for jobs that may
	// run twice); nil: random ones.
	NewUID func() string
	// ContentCreator is the SEG's ContentCreatorName, e.g. "segbridge^worker-1".
	ContentCreator string
}

// Output is what a run made.
type Output struct {
	// SEG is the DICOM SEG Part-10 file.
	SEG []byte
	// Frames is the number of frames the SEG holds.
	Frames int
	// Volume is the source volume: its geometry, slices and header. Its
	// voxels were handed to the model, which may have normalised them in
	// place (inference.SegmentOptions.ReuseVoxels).
	Volume *volume.Volume
	// Labels are the labels on the source grid (i + Cols*(j + Rows*k)).
	Labels []uint8
	// Steps are the model's finer steps, for people reading timings.
	Steps []inference.Step
}

// Run segments one series: it assembles the volume, runs the model and
// encodes the SEG, timing each stage on t. A panic anywhere in it — in this
// goroutine or one the stages start, which re-raise here — becomes a
// *fault.PanicError (permanent), so no input can end the process.
func (p *Pipeline) Run(ctx context.Context, in Input, t *Timer) (out *Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fault.Recovered(r)
		}
	}()
	m := in.Model
	if m == nil {
		return nil, fault.Permanent(errors.New("pipeline: no model"))
	}
	done := t.Stage("volume")
	vol, err := volume.Assemble(in.Instances, p.cfg.Limits)
	in.Instances = nil
	done()
	if err != nil {
		return nil, err
	}

	t.Progress("preprocess", 0)
	// Nothing after the model reads the voxels (the SEG needs the
	// geometry): the model may normalise them in place.
	res, err := p.seg.SegmentWith(ctx, m, vol, inference.SegmentOptions{ReuseVoxels: true, Progress: func(pr inference.Progress) {
		f := 0.0
		if pr.Total > 0 {
			f = float64(pr.Done) / float64(pr.Total)
		}
		t.Progress(pr.Stage, f)
	}})
	if err != nil {
		return nil, fmt.Errorf("run model %s: %w", m.Name, err)
	}
	t.Set("preprocess", res.Preprocess)
	t.Set("inference", res.Inference)
	t.Set("postprocess", res.Postprocess)

	done = t.Stage("encode")
	seg, err := dicomseg.Encode(vol, res.Labels, m.Segments(), dicomseg.Options{
		SeriesDescription: "AI segmentation: " + m.Name,
		AlgorithmName:     m.Name,
		AlgorithmVersion:  m.Version,
		SoftwareVersions:  p.cfg.SoftwareVersions,
		ContentCreator:    in.ContentCreator,
		NewUID:            in.NewUID,
	})
	done()
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("encode SEG: %w", err))
	}
	return &Output{SEG: seg.Bytes, Frames: seg.Frames, Volume: vol, Labels: res.Labels, Steps: res.Steps}, nil
}

// Timer records how long each stage takes and reports progress. It is safe
// for concurrent use (download goroutines report progress).
type Timer struct {
	now    func() time.Time
	report func(stage string, progress float64)
	start  time.Time

	mu      sync.Mutex
	timings map[string]float64
}

// NewTimer starts a timer; report, when set, is called at the start of each
// stage (progress 0) and with progress within a stage.
func NewTimer(now func() time.Time, report func(stage string, progress float64)) *Timer {
	if now == nil {
		now = time.Now
	}
	if report == nil {
		report = func(string, float64) {}
	}
	return &Timer{now: now, report: report, start: now(), timings: map[string]float64{}}
}

// Stage starts stage name and returns the function that ends it.
func (t *Timer) Stage(name string) (done func()) {
	t.report(name, 0)
	begin := t.now()
	return func() { t.Set(name, t.now().Sub(begin)) }
}

// Set records a stage's duration measured elsewhere.
func (t *Timer) Set(name string, d time.Duration) {
	t.mu.Lock()
	t.timings[name] = Millis(d)
	t.mu.Unlock()
}

// Progress reports progress (0..1) within a stage.
func (t *Timer) Progress(stage string, progress float64) { t.report(stage, progress) }

// Total records the time since the timer started as "total".
func (t *Timer) Total() { t.Set("total", t.now().Sub(t.start)) }

// Timings returns a copy of the stage durations in milliseconds.
func (t *Timer) Timings() map[string]float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.timings)
}

// Millis is a duration in milliseconds with microsecond resolution, as the
// timings are written.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
