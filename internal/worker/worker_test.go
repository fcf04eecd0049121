package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/dicomsr"
	"github.com/segbridge/segbridge/internal/fault"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/preview"
	"github.com/segbridge/segbridge/internal/queue"
	"github.com/segbridge/segbridge/internal/volume"
)

// event is one call a worker made on the queue.
type event struct {
	op     string // take, progress, complete, fail, retry, handback
	job    string
	reason string
	delay  time.Duration
	res    queue.Result
}

// fakeJobs hands out deliveries put on its channel and records every
// transition; progressErr, when set, is what Progress answers.
type fakeJobs struct {
	deliveries chan *queue.Delivery
	events     chan event

	mu          sync.Mutex
	progressErr error
	takeErr     error
}

func newFakeJobs() *fakeJobs {
	return &fakeJobs{deliveries: make(chan *queue.Delivery, 16), events: make(chan event, 256)}
}

func (f *fakeJobs) Next(ctx context.Context, _ time.Duration) (*queue.Delivery, error) {
	select {
	case d := <-f.deliveries:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeJobs) Take(_ context.Context, d *queue.Delivery, _ string) (*queue.Lease, error) {
	f.mu.Lock()
	err := f.takeErr
	f.mu.Unlock()
	f.events <- event{op: "take", job: d.Job.ID}
	if err != nil {
		return nil, err
	}
	return &queue.Lease{Job: d.Job, Attempt: d.Attempt, LastAttempt: d.Attempt >= 3}, nil
}

func (f *fakeJobs) Progress(_ context.Context, l *queue.Lease, stage string, _ float64) error {
	f.mu.Lock()
	err := f.progressErr
	f.mu.Unlock()
	f.events <- event{op: "progress", job: l.Job.ID, reason: stage}
	return err
}

func (f *fakeJobs) Complete(_ context.Context, l *queue.Lease, res queue.Result) (*queue.Status, error) {
	f.events <- event{op: "complete", job: l.Job.ID, res: res}
	return &queue.Status{Job: l.Job, State: queue.StateDone}, nil
}

func (f *fakeJobs) Fail(_ context.Context, l *queue.Lease, reason string, _ map[string]float64) (*queue.Status, error) {
	f.events <- event{op: "fail", job: l.Job.ID, reason: reason}
	return &queue.Status{Job: l.Job, State: queue.StateFailed}, nil
}

func (f *fakeJobs) Skip(_ context.Context, l *queue.Lease, reason string, _ map[string]float64) (*queue.Status, error) {
	f.events <- event{op: "skip", job: l.Job.ID, reason: reason}
	return &queue.Status{Job: l.Job, State: queue.StateSkipped}, nil
}

func (f *fakeJobs) RetryLater(_ context.Context, l *queue.Lease, delay time.Duration, reason string, _ map[string]float64) (*queue.Status, error) {
	f.events <- event{op: "retry", job: l.Job.ID, reason: reason, delay: delay}
	return &queue.Status{Job: l.Job, State: queue.StateQueued}, nil
}

func (f *fakeJobs) HandBack(_ context.Context, l *queue.Lease, reason string) (*queue.Status, error) {
	f.events <- event{op: "handback", job: l.Job.ID, reason: reason}
	return &queue.Status{Job: l.Job, State: queue.StateQueued}, nil
}

// fakePACS serves one series of synthetic instances.
type fakePACS struct {
	mu     sync.Mutex
	series map[string]*orthanc.Series
	files  map[string][]byte
	header orthanc.ImageHeader
	seg    *orthanc.SEGRef
	stored int
	// storedFiles are the files stored, in order; labels the label calls
	// ("+level/id/label" or "-level/id/label"), with labels supported when
	// hasLabels.
	storedFiles [][]byte
	labels      []string
	hasLabels   bool
	seriesErr   error
	panicOn     string // instance id whose download panics
	downloads   int
}

func (p *fakePACS) Series(_ context.Context, id string) (*orthanc.Series, error) {
	if p.seriesErr != nil {
		return nil, p.seriesErr
	}
	if s, ok := p.series[id]; ok {
		return s, nil
	}
	return nil, orthanc.ErrNotFound
}

func (p *fakePACS) InstanceFile(_ context.Context, id string) ([]byte, error) {
	p.mu.Lock()
	p.downloads++
	p.mu.Unlock()
	if id == p.panicOn {
		var m map[string]int
		m["boom"]++ // a nil-map write: a panic in a download goroutine
	}
	return p.files[id], nil
}

func (p *fakePACS) ImageHeader(context.Context, string) (*orthanc.ImageHeader, error) {
	h := p.header
	return &h, nil
}

// Store answers with a series named after what the file starts with: "sr"
// files go to sr-series, "preview" ones to preview-series, the rest (the
// SEG) to seg-series.
func (p *fakePACS) Store(_ context.Context, b []byte) (*orthanc.Stored, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stored++
	p.storedFiles = append(p.storedFiles, b)
	switch {
	case bytes.HasPrefix(b, []byte("sr")):
		return &orthanc.Stored{ID: "sr-instance", ParentSeries: "sr-series"}, nil
	case bytes.HasPrefix(b, []byte("preview")):
		return &orthanc.Stored{ID: string(b), ParentSeries: "preview-series"}, nil
	}
	return &orthanc.Stored{ID: "seg-instance", ParentSeries: "seg-series"}, nil
}

func (p *fakePACS) SupportsLabels(context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hasLabels, nil
}

func (p *fakePACS) SetLabel(_ context.Context, level, id, label string, on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	op := "-"
	if on {
		op = "+"
	}
	p.labels = append(p.labels, op+level+"/"+id+"/"+label)
	return nil
}

func (p *fakePACS) SetMetadata(context.Context, string, string, string, string) error { return nil }

func (p *fakePACS) FindSEG(context.Context, string, string, string) (*orthanc.SEGRef, error) {
	return p.seg, nil
}

// fakeRunner stands for the pipeline; run decides what a run does.
type fakeRunner struct {
	run     func(ctx context.Context, in pipeline.Input) (*pipeline.Output, error)
	started chan struct{}
}

func (r *fakeRunner) Run(ctx context.Context, in pipeline.Input, t *pipeline.Timer) (*pipeline.Output, error) {
	select {
	case r.started <- struct{}{}:
	default:
	}
	done := t.Stage("volume")
	defer done()
	return r.run(ctx, in)
}

func (r *fakeRunner) Limits() volume.Limits { return volume.Limits{}.WithDefaults() }

type testBundle struct {
	jobs   *fakeJobs
	pacs   *fakePACS
	runner *fakeRunner
	clock  *clockwork.FakeClock
	model  *model.Model
}

const seriesID = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"

// setup builds a worker with fakes around it, started; it is stopped when
// the test ends.
func setup(t *testing.T) (*Worker, *testBundle) {
	t.Helper()
	b := &testBundle{
		jobs:   newFakeJobs(),
		pacs:   &fakePACS{series: map[string]*orthanc.Series{}, files: map[string][]byte{}},
		runner: &fakeRunner{started: make(chan struct{}, 1)},
		clock:  clockwork.NewFakeClock(),
		model:  testModel(t),
	}
	b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) {
		return &pipeline.Output{SEG: []byte("seg")}, nil
	}
	ser := &orthanc.Series{ID: seriesID, MainDicomTags: map[string]string{"Modality": "MR"}}
	for k := 0; k < 3; k++ {
		id := fmt.Sprintf("inst-%d", k)
		ser.Instances = append(ser.Instances, id)
		b.pacs.files[id] = synthInstance(t, k)
	}
	b.pacs.series[seriesID] = ser
	b.pacs.header = orthanc.ImageHeader{Rows: 3, Columns: 4, NumberOfFrames: 1, BitsAllocated: 16, SamplesPerPixel: 1}
	w, err := New(zerolog.Nop(), b.jobs, b.pacs, b.runner, []*model.Model{b.model}, Config{
		Name: "test", Heartbeat: 20 * time.Second, RetryDelay: 5 * time.Second, Clock: b.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return w, b
}

func (b *testBundle) deliver(attempt int) *queue.Delivery {
	job := queue.Job{SeriesID: seriesID, Model: b.model.Name, ModelVersion: b.model.Version, Generation: 1}
	job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	d := &queue.Delivery{Job: job, Attempt: attempt, Seq: 1}
	b.jobs.deliveries <- d
	return d
}

// waitEvent returns the next event of one of the ops (skipping others, such
// as progress), failing the test after a while without one.
func (b *testBundle) waitEvent(t *testing.T, ops ...string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-b.jobs.events:
			if slices.Contains(ops, e.op) {
				return e
			}
		case <-timeout:
			t.Fatalf("no %v event", ops)
		}
	}
}

func testModel(t *testing.T) *model.Model {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse([]byte(`
name: m
version: "1"
file: m.onnx
learned: false
applies_to: { modalities: [MR] }
output: { activation: sigmoid }
segments:
  - { label: 1, name: Head, category: {value: "123037004", scheme: SCT, meaning: "Anatomical Structure"}, type: {value: "69536005", scheme: SCT, meaning: "Head"}, rgb: [255, 200, 0] }
`), dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// synthInstance writes slice k of a small axial 4x3 16-bit MR series.
func synthInstance(t *testing.T, k int) []byte {
	t.Helper()
	ds := func(v ...float64) []string {
		out := make([]string, len(v))
		for i, x := range v {
			out[i] = strconv.FormatFloat(x, 'g', -1, 64)
		}
		return out
	}
	sop := fmt.Sprintf("1.2.826.0.1.3680043.8.498.300.%d", k)
	vals := map[tag.Tag]any{
		tag.MediaStorageSOPClassUID: []string{"1.2.840.10008.5.1.4.1.1.4"}, tag.MediaStorageSOPInstanceUID: []string{sop},
		tag.TransferSyntaxUID: []string{"1.2.840.10008.1.2.1"}, tag.SOPClassUID: []string{"1.2.840.10008.5.1.4.1.1.4"},
		tag.SOPInstanceUID: []string{sop}, tag.Modality: []string{"MR"}, tag.SeriesInstanceUID: []string{"1.2.826.0.1.3680043.8.498.301"},
		tag.FrameOfReferenceUID: []string{"1.2.826.0.1.3680043.8.498.302"}, tag.StudyInstanceUID: []string{"1.2.826.0.1.3680043.8.498.303"},
		tag.ImagePositionPatient: ds(0, 0, float64(2*k)), tag.ImageOrientationPatient: ds(1, 0, 0, 0, 1, 0),
		tag.PixelSpacing: ds(1, 1), tag.SamplesPerPixel: []int{1}, tag.PhotometricInterpretation: []string{"MONOCHROME2"},
		tag.Rows: []int{3}, tag.Columns: []int{4}, tag.BitsAllocated: []int{16}, tag.BitsStored: []int{16}, tag.HighBit: []int{15},
		tag.PixelRepresentation: []int{0},
		tag.PixelData:           dicom.PixelDataInfo{IntentionallyUnprocessed: true, UnprocessedValueData: make([]byte, 24)},
	}
	var d dicom.Dataset
	for tg, v := range vals {
		e, err := dicom.NewElement(tg, v)
		if err != nil {
			t.Fatal(err)
		}
		d.Elements = append(d.Elements, e)
	}
	slices.SortFunc(d.Elements, func(a, b *dicom.Element) int { return a.Tag.Compare(b.Tag) })
	var buf bytes.Buffer
	if err := dicom.Write(&buf, d, dicom.SkipVRVerification()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWorker_Success(t *testing.T) {
	w, b := setup(t)
	var got pipeline.Input
	b.runner.run = func(_ context.Context, in pipeline.Input) (*pipeline.Output, error) {
		got = in
		return &pipeline.Output{SEG: []byte("seg")}, nil
	}
	d := b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry", "handback")
	if e.op != "complete" || e.res.SEGSeriesID != "seg-series" || e.res.Found {
		t.Fatalf("event %+v", e)
	}
	if len(got.Instances) != 3 {
		t.Fatalf("pipeline input: %d instances", len(got.Instances))
	}
	// The outputs' UIDs are derived from the job: a second attempt of the
	// same job would store the same instances.
	if got.UIDSeed == "" || got.UIDSeed != uidSeed(d.Job) {
		t.Fatalf("UID seed %q, want the job's %q", got.UIDSeed, uidSeed(d.Job))
	}
	if id := waitEnded(t, w); id != d.Job.ID {
		t.Fatalf("ended %s", id)
	}
}

func TestWorker_FoundInOrthancRunsNoModel(t *testing.T) {
	_, b := setup(t)
	b.pacs.seg = &orthanc.SEGRef{SeriesID: "old-seg", InstanceID: "old"}
	b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) {
		t.Error("the model ran although Orthanc has the SEG")
		return nil, errors.New("no")
	}
	b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry")
	if e.op != "complete" || !e.res.Found || e.res.SEGSeriesID != "old-seg" || b.pacs.downloads != 0 {
		t.Fatalf("event %+v, downloads %d", e, b.pacs.downloads)
	}
}

func TestWorker_FailureKinds(t *testing.T) {
	tests := []struct {
		name      string
		attempt   int
		err       error
		wantOp    string
		wantDelay time.Duration
		wantIn    string
	}{
		{"bad series fails at once", 1, fmt.Errorf("x: %w", volume.ErrInvalidSeries), "fail", 0, "invalid series"},
		{"Orthanc 503 is retried", 1, &orthanc.HTTPError{StatusCode: 503, Method: "GET", Path: "/x"}, "retry", 5 * time.Second, "503"},
		{"backoff doubles", 3, errors.New("connection refused"), "retry", 20 * time.Second, "refused"},
		{"Orthanc 401 fails", 1, &orthanc.HTTPError{StatusCode: 401, Method: "GET", Path: "/x"}, "fail", 0, "ORTHANC_USER"},
		{"a model that does not apply skips", 1, fmt.Errorf("x: %w", &pipeline.NotApplicable{Reason: "slices are 5 mm apart"}), "skip", 0, "5 mm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t)
			b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) { return nil, tt.err }
			b.deliver(tt.attempt)
			e := b.waitEvent(t, "complete", "fail", "retry", "handback", "skip")
			if e.op != tt.wantOp || e.delay != tt.wantDelay || !strings.Contains(e.reason, tt.wantIn) {
				t.Fatalf("event %+v, want %s after %s containing %q", e, tt.wantOp, tt.wantDelay, tt.wantIn)
			}
		})
	}
}

// TestWorker_PanicsEndTheJobNotTheWorker: a panic in the pipeline and one in
// a download goroutine each fail their job with the reason, and the worker
// takes the next job.
func TestWorker_PanicsEndTheJobNotTheWorker(t *testing.T) {
	_, b := setup(t)
	b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) {
		var s []int
		_ = s[5]
		return nil, nil
	}
	b.deliver(1)
	if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "fail" || !strings.Contains(e.reason, "index out of range") {
		t.Fatalf("pipeline panic: %+v", e)
	}
	b.pacs.panicOn = "inst-1"
	b.deliver(1)
	if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "fail" || !strings.Contains(e.reason, "nil map") {
		t.Fatalf("download panic: %+v", e)
	}
	b.pacs.panicOn = ""
	b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) {
		return &pipeline.Output{SEG: []byte("seg")}, nil
	}
	b.deliver(1)
	if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "complete" {
		t.Fatalf("the job after two panics: %+v", e)
	}
}

// TestWorker_RefusesOversizedSeriesBeforeDownload: the reported series whose
// Rows and Columns are 2147483648 is refused from its header alone.
func TestWorker_RefusesOversizedSeriesBeforeDownload(t *testing.T) {
	_, b := setup(t)
	b.pacs.header = orthanc.ImageHeader{Rows: 2147483648, Columns: 2147483648, NumberOfFrames: 1, BitsAllocated: 32, SamplesPerPixel: 1}
	b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry")
	if e.op != "fail" || !strings.Contains(e.reason, "65535") || b.pacs.downloads != 0 {
		t.Fatalf("event %+v, downloads %d", e, b.pacs.downloads)
	}
	b.pacs.header = orthanc.ImageHeader{Rows: 512, Columns: 512, NumberOfFrames: 1, BitsAllocated: 16, SamplesPerPixel: 1}
	b.pacs.series[seriesID].Instances = make([]string, 5000) // 512x512x5000 > 512x512x2048
	b.deliver(1)
	e = b.waitEvent(t, "complete", "fail", "retry")
	if e.op != "fail" || !strings.Contains(e.reason, "SEGBRIDGE_MAX_VOXELS") || b.pacs.downloads != 0 {
		t.Fatalf("event %+v, downloads %d", e, b.pacs.downloads)
	}
}

// TestWorker_SkipsASeriesOfNonImages: a series whose first instance has no
// Rows or Columns (reports, a vendor's non-image objects filed as MR) ends
// skipped with what it holds, not failed, and nothing is downloaded.
func TestWorker_SkipsASeriesOfNonImages(t *testing.T) {
	_, b := setup(t)
	b.pacs.header = orthanc.ImageHeader{NumberOfFrames: 1, SamplesPerPixel: 1, SOPClassUID: "1.2.840.10008.5.1.4.1.1.88.33"}
	b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry", "skip")
	if e.op != "skip" || !strings.Contains(e.reason, "holds no images") || !strings.Contains(e.reason, "Comprehensive SR Storage") || b.pacs.downloads != 0 {
		t.Fatalf("event %+v, downloads %d", e, b.pacs.downloads)
	}
}

// TestWorker_HeartbeatsAndCancel drives the heartbeat with the fake clock: a
// heartbeat that learns of a cancel stops the running job, which then gets
// no other transition.
func TestWorker_HeartbeatsAndCancel(t *testing.T) {
	w, b := setup(t)
	stopped := make(chan error, 1)
	b.runner.run = func(ctx context.Context, _ pipeline.Input) (*pipeline.Output, error) {
		<-ctx.Done()
		stopped <- ctx.Err()
		return nil, ctx.Err()
	}
	d := b.deliver(1)
	<-b.runner.started
	// The heartbeat ticker and nothing else waits on the clock now.
	if err := b.clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(20 * time.Second)
	for e := b.waitEvent(t, "progress"); e.reason != ""; e = b.waitEvent(t, "progress") {
		// stage reports; the heartbeat has no stage
	}
	b.jobs.mu.Lock()
	b.jobs.progressErr = queue.ErrCancelled
	b.jobs.mu.Unlock()
	b.clock.Advance(20 * time.Second)
	if err := <-stopped; err == nil {
		t.Fatal("the job's context was not cancelled")
	}
	// The job ends without a transition of its own; waiting on Ended is the
	// positive signal before checking that none was sent.
	if id := waitEnded(t, w); id != d.Job.ID {
		t.Fatalf("ended %s", id)
	}
	for len(b.jobs.events) > 0 {
		if e := <-b.jobs.events; e.op != "progress" {
			t.Fatalf("a cancelled job got %+v", e)
		}
	}
}

// TestWorker_StopHandsTheJobBack: stopping the worker mid-job hands it back.
func TestWorker_StopHandsTheJobBack(t *testing.T) {
	w, b := setup(t)
	b.runner.run = func(ctx context.Context, _ pipeline.Input) (*pipeline.Output, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("inference: %w", ctx.Err())
	}
	b.deliver(1)
	<-b.runner.started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if e := b.waitEvent(t, "complete", "fail", "retry", "handback"); e.op != "handback" {
		t.Fatalf("event %+v", e)
	}
}

func TestWorker_StaleAndLeasedMessagesAreSkipped(t *testing.T) {
	w, b := setup(t)
	for _, err := range []error{queue.ErrStale, queue.ErrLeased} {
		b.jobs.mu.Lock()
		b.jobs.takeErr = err
		b.jobs.mu.Unlock()
		b.deliver(1)
		if e := b.waitEvent(t, "take"); e.op != "take" {
			t.Fatal(e)
		}
		waitEnded(t, w)
	}
	if b.pacs.downloads != 0 || len(b.runner.started) != 0 {
		t.Fatal("a skipped message ran")
	}
}

func TestRetryDelay(t *testing.T) {
	w := &Worker{cfg: Config{RetryDelay: 5 * time.Second, MaxRetryDelay: 5 * time.Minute}}
	for attempt, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 7: 5 * time.Minute, 100: 5 * time.Minute, 0: 5 * time.Second} {
		if got := w.retryDelay(attempt); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
}

// waitEnded waits for the worker to finish handling a job.
func waitEnded(t *testing.T, w *Worker) string {
	t.Helper()
	select {
	case id := <-w.Ended():
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no job ended")
		return ""
	}
}

// TestWorker_WarningsAndForce: the pipeline's plausibility warnings reach
// the job's result, and a forced job runs the pipeline with Force, so the
// manifest's rules do not skip what a person asked for.
func TestWorker_WarningsAndForce(t *testing.T) {
	_, b := setup(t)
	forced := make(chan bool, 2)
	b.runner.run = func(_ context.Context, in pipeline.Input) (*pipeline.Output, error) {
		forced <- in.Force
		return &pipeline.Output{SEG: []byte("seg"), Warnings: []string{"segment Brain (label 1) is 312.4 mL"}}, nil
	}
	b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry", "skip")
	if e.op != "complete" || len(e.res.Warnings) != 1 || !strings.Contains(e.res.Warnings[0], "312.4 mL") {
		t.Fatalf("event %+v, want complete with the warning", e)
	}
	if <-forced {
		t.Error("an ordinary job ran with Force")
	}
	job := queue.Job{SeriesID: seriesID, Model: b.model.Name, ModelVersion: b.model.Version, Generation: 2, Force: true}
	job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	b.jobs.deliveries <- &queue.Delivery{Job: job, Attempt: 1, Seq: 2}
	b.waitEvent(t, "complete", "fail", "retry", "skip")
	if !<-forced {
		t.Error("a forced job ran without Force")
	}
}

// outputsRun makes the fake pipeline return a SEG, an SR, three preview
// instances and the volumes of two segments.
func outputsRun(context.Context, pipeline.Input) (*pipeline.Output, error) {
	out := &pipeline.Output{SEG: []byte("seg"), SR: &dicomsr.Result{Bytes: []byte("sr")}, Preview: &preview.SeriesResult{}}
	for i := range 3 {
		out.Preview.Instances = append(out.Preview.Instances, preview.Instance{Bytes: []byte(fmt.Sprintf("preview-%d", i))})
	}
	out.Volumes = []dicomsr.Measurement{
		{SegmentNumber: 1, Segment: dicomseg.Segment{Name: "Brain"}, Voxels: 1000, VolumeML: 1},
		{SegmentNumber: 2, Segment: dicomseg.Segment{Name: "Tumour"}, Voxels: 10, VolumeML: 0.01},
	}
	return out, nil
}

func TestWorker_StoresOutputsSEGLast(t *testing.T) {
	_, b := setup(t)
	b.runner.run = outputsRun
	b.deliver(1)
	e := b.waitEvent(t, "complete", "fail", "retry", "handback")
	if e.op != "complete" {
		t.Fatalf("event %+v", e)
	}
	r := e.res
	if r.SEGSeriesID != "seg-series" || r.SRSeriesID != "sr-series" || r.PreviewSeriesID != "preview-series" {
		t.Errorf("result series: SEG %s, SR %s, preview %s", r.SEGSeriesID, r.SRSeriesID, r.PreviewSeriesID)
	}
	want := []queue.SegmentVolume{{Segment: 1, Name: "Brain", Voxels: 1000, ML: 1}, {Segment: 2, Name: "Tumour", Voxels: 10, ML: 0.01}}
	if !slices.Equal(r.Volumes, want) {
		t.Errorf("volumes %+v, want %+v", r.Volumes, want)
	}
	for _, stage := range []string{"upload", "upload_sr", "upload_preview"} {
		if _, ok := r.Timings[stage]; !ok {
			t.Errorf("no %s timing in %v", stage, r.Timings)
		}
	}
	b.pacs.mu.Lock()
	defer b.pacs.mu.Unlock()
	if n := len(b.pacs.storedFiles); n != 5 {
		t.Fatalf("%d files stored, want 5", n)
	}
	// The SEG, the record of a done job, goes in last; the SR just before.
	if last := string(b.pacs.storedFiles[4]); last != "seg" {
		t.Errorf("last stored %q, want the SEG", last)
	}
	if sr := string(b.pacs.storedFiles[3]); sr != "sr" {
		t.Errorf("fourth stored %q, want the SR", sr)
	}
}

func TestWorker_LabelsOutcome(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hasLabels bool
		fail      bool
		want      []string
	}{
		{"done, Orthanc with labels", true, false, []string{
			"+series/" + seriesID + "/ai-done", "-series/" + seriesID + "/ai-failed",
			"+studies/study-1/ai-done", "-studies/study-1/ai-failed"}},
		{"failed, Orthanc with labels", true, true, []string{"+series/" + seriesID + "/ai-failed", "+studies/study-1/ai-failed"}},
		{"done, Orthanc 1.10", false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b := setup(t)
			b.pacs.hasLabels = tc.hasLabels
			b.pacs.series[seriesID].ParentStudy = "study-1"
			if tc.fail {
				b.runner.run = func(context.Context, pipeline.Input) (*pipeline.Output, error) {
					return nil, fault.Permanent(errors.New("bad series"))
				}
			}
			b.deliver(1)
			waitEnded(t, w)
			b.pacs.mu.Lock()
			defer b.pacs.mu.Unlock()
			if !slices.Equal(b.pacs.labels, tc.want) {
				t.Errorf("labels %v, want %v", b.pacs.labels, tc.want)
			}
		})
	}
}
