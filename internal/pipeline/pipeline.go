// Package pipeline turns the instances of one series into what segbridge
// writes back — a DICOM SEG, and beside it, as configured, a TID 1500 SR of
// the segments' volumes and a burned-in preview series — through the same
// stages for the worker and for `segbridge segment`: series → volume → model
// (preprocess, inference, postprocess) → SEG → SR → preview. One Timer
// records every stage's time and reports progress, so both callers show the
// same timings.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/dicomsr"
	"github.com/segbridge/segbridge/internal/fault"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/preview"
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
	// Outputs are what a run writes besides the SEG; the zero value writes
	// the SEG alone (SEGBRIDGE_OUTPUTS's default asks for the SR too).
	Outputs Outputs
}

// Outputs select the objects a run writes beside the SEG, which it always
// writes (Orthanc's SEG is the record of a done job).
type Outputs struct {
	// SR is the TID 1500 report of the segments' volumes (dicomsr).
	SR bool
	// Preview is the burned-in Secondary Capture series (preview).
	Preview bool
}

// ParseOutputs reads a list of output names — "seg", "sr", "preview" — as
// SEGBRIDGE_OUTPUTS gives it. "seg" must be in it.
func ParseOutputs(names []string) (Outputs, error) {
	var o Outputs
	seg := false
	for _, n := range names {
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "seg":
			seg = true
		case "sr":
			o.SR = true
		case "preview":
			o.Preview = true
		case "":
		default:
			return o, fmt.Errorf("unknown output %q (want seg, sr, preview)", n)
		}
	}
	if !seg {
		return o, errors.New("seg must be one of the outputs: the SEG in Orthanc is the record of a done job")
	}
	return o, nil
}

// NotApplicable is the error of a run whose model must not run on the series
// by a rule of its manifest that needs the series itself (its headers or
// geometry). The job ends skipped with Reason, not failed.
type NotApplicable struct {
	Reason string
}

func (e *NotApplicable) Error() string { return "not applicable: " + e.Reason }

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
	// UIDSeed, when set, derives every object's UIDs from it
	// (dicomseg.DerivedUIDs, a seed per object), so that a job that runs
	// twice stores the same instances again; empty: random UIDs.
	UIDSeed string
	// ContentCreator is the SEG's ContentCreatorName, e.g. "segbridge^worker-1".
	ContentCreator string
	// Force runs the model even on a series its manifest's rules refuse (a
	// person asked for it, force=true); otherwise such a run ends with a
	// *NotApplicable error.
	Force bool
}

// uids returns the UID maker of one object of a run: derived from the seed
// (the SEG's from the seed itself, as before there were other objects), or
// random without one.
func (in Input) uids(object string) func() string {
	switch {
	case in.UIDSeed == "":
		return dicomseg.NewUID
	case object == "seg":
		return dicomseg.DerivedUIDs(in.UIDSeed)
	}
	return dicomseg.DerivedUIDs(in.UIDSeed + "\x00" + object)
}

// Output is what a run made.
type Output struct {
	// SEG is the DICOM SEG Part-10 file, and SEGInfo its UIDs and frames.
	SEG     []byte
	SEGInfo *dicomseg.Result
	// Frames is the number of frames the SEG holds.
	Frames int
	// Volumes measure each segment, in SEG segment order.
	Volumes []dicomsr.Measurement
	// SR is the volumes report, when Outputs.SR.
	SR *dicomsr.Result
	// Preview is the burned-in preview series, when Outputs.Preview and the
	// mask is not empty.
	Preview *preview.SeriesResult
	// Volume is the source volume: its geometry, slices and header. Unless
	// the preview output is on, its voxels were handed to the model, which
	// may have normalised them in place (inference.SegmentOptions.ReuseVoxels).
	Volume *volume.Volume
	// Labels are the labels on the source grid (i + Cols*(j + Rows*k)).
	Labels []uint8
	// Steps are the model's finer steps, for people reading timings.
	Steps []inference.Step
	// VolumeML is each label's volume in millilitres (labels present only).
	VolumeML map[int]float64
	// Warnings say what the result should be read with: segments outside
	// the volumes the manifest expects (model.Plausibility). The SEG's
	// series description says so too.
	Warnings []string
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
	if vol.FrameOfReferenceUID == "" {
		// Checked before the model runs: the SEG could not be written.
		return nil, fault.Permanent(fmt.Errorf("%w: series %s has no FrameOfReferenceUID (required in MR and CT images; "+
			"some anonymisers strip it): a SEG must share its source's frame of reference", volume.ErrInvalidSeries, vol.SeriesInstanceUID))
	}
	if !in.Force {
		if ok, why := m.Matches(SeriesInfo(vol)); !ok {
			return nil, &NotApplicable{Reason: fmt.Sprintf("model %s does not apply to series %s: %s", m.Name, vol.SeriesInstanceUID, why)}
		}
	}

	t.Progress("preprocess", 0)
	// Nothing after the model reads the voxels but the preview (the SEG and
	// the SR need the geometry only): without a preview the model may
	// normalise them in place.
	res, err := p.seg.SegmentWith(ctx, m, vol, inference.SegmentOptions{ReuseVoxels: !p.cfg.Outputs.Preview, Progress: func(pr inference.Progress) {
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

	volumes := VolumesML(vol, res.Labels)
	warnings := m.Implausible(volumes)

	done = t.Stage("encode")
	seg, err := dicomseg.Encode(vol, res.Labels, m.Segments(), dicomseg.Options{
		SeriesDescription: seriesDescription(m.Name, len(warnings) > 0),
		AlgorithmName:     m.Name,
		AlgorithmVersion:  m.Version,
		SoftwareVersions:  p.cfg.SoftwareVersions,
		ContentCreator:    in.ContentCreator,
		NewUID:            in.uids("seg"),
	})
	done()
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("encode SEG: %w", err))
	}
	out = &Output{SEG: seg.Bytes, SEGInfo: seg, Frames: seg.Frames, Volume: vol, Labels: res.Labels, Steps: res.Steps,
		VolumeML: volumes, Warnings: warnings}
	out.Volumes = dicomsr.Volumes(vol, res.Labels, m.Segments())
	if p.cfg.Outputs.SR {
		done = t.Stage("sr")
		out.SR, err = dicomsr.Encode(vol, dicomsr.SEG{SOPInstanceUID: seg.SOPInstanceUID, SeriesInstanceUID: seg.SeriesInstanceUID}, out.Volumes, dicomsr.Options{
			AlgorithmName:     m.Name,
			AlgorithmVersion:  m.Version,
			SeriesDescription: "AI volumes: " + m.Name,
			SoftwareVersions:  p.cfg.SoftwareVersions,
			NewUID:            in.uids("sr"),
		})
		done()
		if err != nil {
			return nil, fault.Permanent(fmt.Errorf("encode SR: %w", err))
		}
	}
	if p.cfg.Outputs.Preview {
		done = t.Stage("preview")
		out.Preview, err = preview.EncodeSeries(vol, res.Labels, PreviewSegments(m.Segments()), preview.SeriesOptions{
			AlgorithmName:    m.Name,
			AlgorithmVersion: m.Version,
			SoftwareVersions: p.cfg.SoftwareVersions,
			NewUID:           in.uids("preview"),
		})
		done()
		// An empty mask has nothing to show: the SEG and the SR say so.
		if errors.Is(err, preview.ErrEmpty) {
			out.Preview, err = nil, nil
		}
		if err != nil {
			return nil, fault.Permanent(fmt.Errorf("encode preview: %w", err))
		}
	}
	return out, nil
}

// PreviewSegments are a model's segments as the preview draws them.
func PreviewSegments(segs []dicomseg.Segment) []preview.Segment {
	out := make([]preview.Segment, 0, len(segs))
	for _, s := range segs {
		if s.Label > 0 && s.Label < 256 {
			out = append(out, preview.Segment{Label: uint8(s.Label), Name: s.Name, RGB: s.RGB})
		}
	}
	return out
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
