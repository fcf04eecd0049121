package intake

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

func TestReloadable_Reload(t *testing.T) {
	q := &fakeQueue{st: map[string]*queue.Status{}}
	v1 := newModel(t, "brain", `{ modalities: [MR] }`)
	r, err := NewReloadable(zerolog.Nop(), q, &fakeFinder{refs: map[string]*orthanc.SEGRef{}}, nil,
		Config{Models: []*model.Model{v1}, DefaultModel: "brain"})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(id string) *queue.Status {
		t.Helper()
		out, err := r.Admit(context.Background(), Request{Series: t1Head(id), Trigger: TriggerWebhook})
		if err != nil || len(out.Jobs) != 1 {
			t.Fatalf("admit: %v %+v", err, out)
		}
		return out.Jobs[0].Status
	}
	if st := admit(seriesA); st.ModelVersion != "1.0.0" {
		t.Fatalf("queued version %s", st.ModelVersion)
	}

	v2 := *v1
	v2.Version = "2.0.0"
	if err := r.Reload([]*model.Model{&v2}); err != nil {
		t.Fatal(err)
	}
	if st := admit(seriesB); st.ModelVersion != "2.0.0" {
		t.Fatalf("after the reload a new series got version %s, want 2.0.0", st.ModelVersion)
	}
	if _, ok := q.st[queue.JobID(seriesA, "brain", "1.0.0")]; !ok {
		t.Fatal("the job queued before the reload is gone")
	}

	t.Run("a set the configuration cannot use is refused and the old one stays", func(t *testing.T) {
		other := newModel(t, "other", `{ modalities: [MR] }`)
		if err := r.Reload([]*model.Model{other}); err == nil {
			t.Fatal("a set without the default model was accepted")
		}
		if err := r.Reload(nil); err == nil {
			t.Fatal("an empty set was accepted")
		}
		if m := r.DefaultModel(); m == nil || m.Version != "2.0.0" {
			t.Fatalf("default model after refused reloads: %+v", m)
		}
	})
}
