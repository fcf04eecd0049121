package intake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// fakeQueue keeps statuses in a map, with the queue's rules for Enqueue.
type fakeQueue struct {
	st       map[string]*queue.Status
	enqueued []queue.Job
}

func (f *fakeQueue) Enqueue(_ context.Context, job queue.Job, force bool) (*queue.Status, bool, error) {
	if job.ID == "" {
		job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
	}
	cur := f.st[job.ID]
	if cur != nil && (cur.State == queue.StateQueued || cur.State == queue.StateRunning || cur.State == queue.StateDone && !force && !job.Changed) {
		return cur, false, nil
	}
	job.Generation = 1
	if cur != nil {
		job.Generation = cur.Generation + 1
	}
	st := &queue.Status{Job: job, State: queue.StateQueued}
	f.st[job.ID] = st
	f.enqueued = append(f.enqueued, job)
	return st, true, nil
}

func (f *fakeQueue) Status(_ context.Context, id string) (*queue.Status, error) {
	if st, ok := f.st[id]; ok {
		return st, nil
	}
	return nil, queue.ErrNotFound
}

func (f *fakeQueue) FoundInOrthanc(_ context.Context, job queue.Job, res queue.Result) (*queue.Status, error) {
	if cur := f.st[job.ID]; cur != nil && (cur.State == queue.StateQueued || cur.State == queue.StateRunning) {
		return cur, queue.ErrLive
	}
	st := &queue.Status{Job: job, State: queue.StateDone, Source: "orthanc", SEGSeriesID: res.SEGSeriesID}
	f.st[job.ID] = st
	return st, nil
}

type fakeFinder struct {
	refs  map[string]*orthanc.SEGRef // by source series
	calls int
}

func (f *fakeFinder) FindSEG(_ context.Context, src, _, _ string) (*orthanc.SEGRef, error) {
	f.calls++
	return f.refs[src], nil
}

type counts struct {
	queued  map[Trigger]int
	skipped map[SkipReason]int
}

func (c *counts) Queued(t Trigger)                { c.queued[t]++ }
func (c *counts) Skipped(_ Trigger, r SkipReason) { c.skipped[r]++ }

type testBundle struct {
	queue  *fakeQueue
	finder *fakeFinder
	counts *counts
}

const (
	seriesA = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
	seriesB = "1a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
)

// newModel parses a manifest with the given applies_to block.
func newModel(t *testing.T, name, appliesTo string) *model.Model {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.onnx"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse([]byte(`
name: `+name+`
version: 1.0.0
file: m.onnx
learned: false
applies_to: `+appliesTo+`
output: { activation: sigmoid }
segments:
  - { label: 1, name: Head, category: {value: "123037004", scheme: SCT, meaning: "Anatomical Structure"}, type: {value: "69536005", scheme: SCT, meaning: "Head"}, rgb: [255, 200, 0] }
`), dir)
	if err != nil {
		t.Fatalf("model %s: %v", name, err)
	}
	return m
}

func setup(t *testing.T, cfg Config) (*Intake, *testBundle) {
	t.Helper()
	b := &testBundle{
		queue:  &fakeQueue{st: map[string]*queue.Status{}},
		finder: &fakeFinder{refs: map[string]*orthanc.SEGRef{}},
		counts: &counts{queued: map[Trigger]int{}, skipped: map[SkipReason]int{}},
	}
	if cfg.Models == nil {
		cfg.Models = []*model.Model{newModel(t, "brain", `{ modalities: [MR], series_description: "(?i)t1", body_parts: [HEAD, BRAIN] }`)}
	}
	in, err := New(zerolog.Nop(), b.queue, b.finder, b.counts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in, b
}

func t1Head(id string) Series {
	return Series{ID: id, Tags: map[string]string{"Modality": "MR", "SeriesDescription": "T1 MPRAGE", "BodyPartExamined": "HEAD"}}
}

func TestIntake_Admit_Skips(t *testing.T) {
	tests := []struct {
		name    string
		trigger Trigger
		tags    map[string]string
		want    SkipReason
	}{
		{"our own output", TriggerWebhook, map[string]string{"Modality": "SEG"}, SkipSegmentation},
		{"SEG by hand too", TriggerManual, map[string]string{"Modality": "seg"}, SkipSegmentation},
		{"no modality", TriggerWebhook, map[string]string{}, SkipNoModality},
		{"CT not configured", TriggerReconciler, map[string]string{"Modality": "CT"}, SkipModality},
		// The rules the bridge used to drop: description and body part.
		{"description rule", TriggerWebhook, map[string]string{"Modality": "MR", "SeriesDescription": "T2 FLAIR", "BodyPartExamined": "HEAD"}, SkipModelRules},
		{"body part rule", TriggerWebhook, map[string]string{"Modality": "MR", "SeriesDescription": "T1", "BodyPartExamined": "KNEE"}, SkipModelRules},
		{"manual, rules refuse", TriggerManual, map[string]string{"Modality": "MR", "SeriesDescription": "T2"}, SkipModelRules},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, b := setup(t, Config{})
			out, err := in.Admit(context.Background(), Request{Series: Series{ID: seriesA, Tags: tt.tags}, Trigger: tt.trigger})
			if err != nil {
				t.Fatal(err)
			}
			if out.Skip == nil || out.Skip.Reason != tt.want || len(out.Jobs) != 0 {
				t.Fatalf("outcome %+v, want skip %s", out, tt.want)
			}
			if out.Skip.Detail == "" || b.counts.skipped[tt.want] != 1 || len(b.queue.enqueued) != 0 {
				t.Fatalf("detail %q, counts %+v, enqueued %d", out.Skip.Detail, b.counts.skipped, len(b.queue.enqueued))
			}
		})
	}
}

func TestIntake_Admit_WebhookQueuesOnceAndNeverAsksOrthanc(t *testing.T) {
	in, b := setup(t, Config{})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		out, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerWebhook})
		if err != nil || out.Skip != nil || len(out.Jobs) != 1 || out.Jobs[0].Created != (i == 0) {
			t.Fatalf("round %d: %+v %v", i, out, err)
		}
	}
	if len(b.queue.enqueued) != 1 || b.counts.queued[TriggerWebhook] != 1 || b.finder.calls != 0 {
		t.Fatalf("enqueued %d, counted %d, Orthanc asked %d times", len(b.queue.enqueued), b.counts.queued[TriggerWebhook], b.finder.calls)
	}
}

// TestIntake_Admit_SeriesThatChanged: a series done with 90 instances that
// Orthanc calls stable again with 181 (the rest arrived later) is queued
// again, marked changed, without asking Orthanc for the old SEG; the same
// count, or an unknown one, changes nothing.
func TestIntake_Admit_SeriesThatChanged(t *testing.T) {
	ctx := context.Background()
	id := queue.JobID(seriesA, "brain", "1.0.0")
	done := func(b *testBundle, instances int) {
		b.queue.st[id] = &queue.Status{Job: queue.Job{ID: id, SeriesID: seriesA, Generation: 1}, State: queue.StateDone, Instances: instances}
	}
	withCount := func(n int) Series {
		s := t1Head(seriesA)
		s.InstanceCount = n
		return s
	}
	for _, tt := range []struct {
		name      string
		then      int
		req       Request
		wantQueue bool
	}{
		{"webhook, 90 then 181", 90, Request{Series: withCount(181), Trigger: TriggerWebhook}, true},
		{"webhook, same count", 181, Request{Series: withCount(181), Trigger: TriggerWebhook}, false},
		{"webhook, count not sent", 90, Request{Series: t1Head(seriesA), Trigger: TriggerWebhook}, false},
		{"webhook, count of the done job not known", 0, Request{Series: withCount(181), Trigger: TriggerWebhook}, false},
		{"manual, instances read from Orthanc", 90, Request{Series: Series{ID: seriesA, Tags: t1Head(seriesA).Tags, Instances: make([]string, 181)}, Trigger: TriggerManual}, true},
		{"the reconciler never re-runs a known job", 90, Request{Series: withCount(181), Trigger: TriggerReconciler}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, b := setup(t, Config{})
			b.finder.refs[seriesA] = &orthanc.SEGRef{SeriesID: "old-seg", InstanceID: "i"}
			done(b, tt.then)
			out, err := in.Admit(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			queued := len(b.queue.enqueued) == 1
			if queued != tt.wantQueue {
				t.Fatalf("queued %v, want %v: %+v", queued, tt.wantQueue, out)
			}
			if !queued {
				return
			}
			j := b.queue.enqueued[0]
			if !j.Changed || j.Force || j.Generation != 2 || b.finder.calls != 0 {
				t.Fatalf("job %+v (Orthanc asked %d times), want generation 2 marked changed, not forced, Orthanc not asked", j, b.finder.calls)
			}
		})
	}
}

func TestIntake_Admit_ReconcilerQueuesOnlyTheUnknown(t *testing.T) {
	in, b := setup(t, Config{})
	ctx := context.Background()
	if _, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerWebhook}); err != nil {
		t.Fatal(err)
	}
	b.queue.st[queue.JobID(seriesA, "brain", "1.0.0")].State = queue.StateFailed
	out, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerReconciler})
	if err != nil || out.Skip == nil || out.Skip.Reason != SkipKnown {
		t.Fatalf("known series: %+v %v", out, err)
	}
	out, err = in.Admit(ctx, Request{Series: t1Head(seriesB), Trigger: TriggerReconciler})
	if err != nil || len(out.Jobs) != 1 || !out.Jobs[0].Created {
		t.Fatalf("new series: %+v %v", out, err)
	}
}

func TestIntake_Admit_Manual(t *testing.T) {
	ctx := context.Background()
	t.Run("answers from Orthanc when it has the SEG", func(t *testing.T) {
		in, b := setup(t, Config{})
		b.finder.refs[seriesA] = &orthanc.SEGRef{SeriesID: "seg", InstanceID: "i"}
		out, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerManual})
		if err != nil || len(out.Jobs) != 1 || out.Jobs[0].Status.State != queue.StateDone || out.Jobs[0].Status.Source != "orthanc" {
			t.Fatalf("%+v %v", out, err)
		}
		if len(b.queue.enqueued) != 0 {
			t.Fatal("queued although Orthanc has the result")
		}
	})
	t.Run("force runs again and overrides the rules", func(t *testing.T) {
		in, b := setup(t, Config{})
		b.finder.refs[seriesA] = &orthanc.SEGRef{SeriesID: "seg"}
		sr := Series{ID: seriesA, Tags: map[string]string{"Modality": "MR", "SeriesDescription": "T2"}}
		out, err := in.Admit(ctx, Request{Series: sr, Trigger: TriggerManual, Force: true})
		if err != nil || len(out.Jobs) != 1 || !out.Jobs[0].Created || b.finder.calls != 0 {
			t.Fatalf("%+v %v (finder %d)", out, err, b.finder.calls)
		}
	})
	t.Run("force does not override the rules of automatic triggers", func(t *testing.T) {
		in, _ := setup(t, Config{})
		sr := Series{ID: seriesA, Tags: map[string]string{"Modality": "MR", "SeriesDescription": "T2"}}
		out, _ := in.Admit(ctx, Request{Series: sr, Trigger: TriggerWebhook, Force: true})
		if out.Skip == nil {
			t.Fatal("a forced webhook event bypassed the rules")
		}
	})
	t.Run("unknown model", func(t *testing.T) {
		in, _ := setup(t, Config{})
		_, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerManual, Model: "nope"})
		if !errors.Is(err, ErrUnknownModel) || !strings.Contains(err.Error(), "brain") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestIntake_Admit_SeveralModels(t *testing.T) {
	ctx := context.Background()
	models := []*model.Model{
		newModel(t, "brain", `{ modalities: [MR] }`),
		newModel(t, "mask", `{ modalities: [MR] }`),
		newModel(t, "knee", `{ modalities: [MR], body_parts: [KNEE] }`),
	}
	t.Run("automatic triggers queue every model that applies", func(t *testing.T) {
		in, _ := setup(t, Config{Models: models})
		out, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerWebhook})
		if err != nil || len(out.Jobs) != 2 {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("a default model is the only one", func(t *testing.T) {
		in, _ := setup(t, Config{Models: models, DefaultModel: "mask"})
		out, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerWebhook})
		if err != nil || len(out.Jobs) != 1 || out.Jobs[0].Model.Name != "mask" {
			t.Fatalf("%+v %v", out, err)
		}
	})
	t.Run("a manual request must choose", func(t *testing.T) {
		in, _ := setup(t, Config{Models: models})
		if _, err := in.Admit(ctx, Request{Series: t1Head(seriesA), Trigger: TriggerManual}); !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("got %v", err)
		}
		knee := Series{ID: seriesA, Tags: map[string]string{"Modality": "MR", "BodyPartExamined": "KNEE"}}
		if _, err := in.Admit(ctx, Request{Series: knee, Trigger: TriggerManual, Model: "knee"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("default model must exist", func(t *testing.T) {
		if _, err := New(zerolog.Nop(), &fakeQueue{}, nil, nil, Config{Models: models, DefaultModel: "x"}); err == nil {
			t.Fatal("accepted an unknown default model")
		}
	})
}
