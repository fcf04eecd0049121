package worker

import (
	"context"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/queue"
)

func TestWorker_SetModels(t *testing.T) {
	w, b := setup(t)
	ran := make(chan string, 4)
	b.runner.run = func(_ context.Context, in pipeline.Input) (*pipeline.Output, error) {
		ran <- in.Model.Version
		return &pipeline.Output{SEG: []byte("seg")}, nil
	}
	v2 := *b.model
	v2.Version = "2"
	if err := w.SetModels([]*model.Model{&v2}); err != nil {
		t.Fatal(err)
	}
	deliver := func(version string) {
		job := queue.Job{SeriesID: seriesID, Model: b.model.Name, ModelVersion: version, Generation: 1}
		job.ID = queue.JobID(job.SeriesID, job.Model, job.ModelVersion)
		b.jobs.deliveries <- &queue.Delivery{Job: job, Attempt: 1, Seq: 1}
	}

	t.Run("a job queued for the version loaded before still runs with it", func(t *testing.T) {
		deliver("1")
		if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "complete" {
			t.Fatalf("event %+v", e)
		}
		if v := <-ran; v != "1" {
			t.Fatalf("ran version %s, want 1", v)
		}
	})
	t.Run("a new job runs the new version", func(t *testing.T) {
		deliver("2")
		if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "complete" {
			t.Fatalf("event %+v", e)
		}
		if v := <-ran; v != "2" {
			t.Fatalf("ran version %s, want 2", v)
		}
	})
	t.Run("a version this worker never loaded is left for another worker", func(t *testing.T) {
		deliver("3")
		e := b.waitEvent(t, "complete", "fail", "retry")
		if e.op != "retry" || !strings.Contains(e.reason, "version 3") {
			t.Fatalf("event %+v, want a retry naming the version", e)
		}
	})
	t.Run("no models is refused and changes nothing", func(t *testing.T) {
		if err := w.SetModels(nil); err == nil {
			t.Fatal("SetModels(nil) accepted")
		}
		deliver("2")
		if e := b.waitEvent(t, "complete", "fail", "retry"); e.op != "complete" {
			t.Fatalf("event %+v", e)
		}
	})
}
