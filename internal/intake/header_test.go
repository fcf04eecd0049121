package intake

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/orthanc"
	"github.com/segbridge/segbridge/internal/queue"
)

// headerFinder is a fakeFinder that also reads instance headers, as the
// Orthanc client does.
type headerFinder struct {
	fakeFinder
	tags  map[string]map[string]string // by instance
	reads int
}

func (f *headerFinder) InstanceTags(_ context.Context, id string) (map[string]string, error) {
	f.reads++
	return f.tags[id], nil
}

// TestIntake_Admit_HeaderRules: the manual trigger reads the first
// instance's header for the rules that need it and refuses what the model
// was not trained for, unless forced; automatic triggers never read it.
func TestIntake_Admit_HeaderRules(t *testing.T) {
	brain := newModel(t, "brain3d", `{ modalities: [MR], acquisition: 3D, max_slice_spacing: 1.5, max_pixel_spacing: 1.5, min_slices: 64, min_field_of_view: 120 }`)
	t1 := map[string]string{tagMRAcquisitionType: "3D", tagPixelSpacing: `1\1`, tagSliceThickness: "1", tagRows: "256", tagColumns: "256"}
	t2 := map[string]string{tagMRAcquisitionType: "2D", tagPixelSpacing: `0.45\0.45`, tagSliceThickness: "4.8", tagSpacingBetweenSlices: "5.76", tagRows: "512", tagColumns: "512"}
	noType := map[string]string{tagPixelSpacing: `0.9\0.9`, tagSpacingBetweenSlices: "5", tagRows: "256", tagColumns: "256"}
	enhanced := map[string]string{tagMRAcquisitionType: "3D", tagNumberOfFrames: "176"}
	finder := &headerFinder{fakeFinder: fakeFinder{refs: map[string]*orthanc.SEGRef{}},
		tags: map[string]map[string]string{"t1-0": t1, "t2-0": t2, "nt-0": noType, "en-0": enhanced}}
	q := &fakeQueue{st: map[string]*queue.Status{}}
	in, err := New(zerolog.Nop(), q, finder, nil, Config{Models: []*model.Model{brain}})
	if err != nil {
		t.Fatal(err)
	}
	series := func(id, prefix string, n int) Series {
		s := Series{ID: id, Tags: map[string]string{"Modality": "MR"}}
		for i := range n {
			s.Instances = append(s.Instances, prefix+"-"+string(rune('0'+i%10)))
		}
		s.Instances[0] = prefix + "-0"
		return s
	}
	tests := []struct {
		name    string
		req     Request
		wantRun bool
		want    string
	}{
		{"1 mm 3-D T1", Request{Series: series(seriesA, "t1", 176), Trigger: TriggerManual}, true, ""},
		{"2-D thick-slice T2", Request{Series: series(seriesB, "t2", 25), Trigger: TriggerManual}, false,
			"it is a 2D acquisition (MRAcquisitionType), the model was trained on 3D"},
		{"forced", Request{Series: series(seriesB, "t2", 25), Trigger: TriggerManual, Force: true}, true, ""},
		{"thick slices without MRAcquisitionType", Request{Series: series("2a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d", "nt", 30), Trigger: TriggerManual}, false,
			"its slices are 5 mm apart (SpacingBetweenSlices)"},
		{"enhanced MR (one instance of 176 frames)", Request{Series: series("3a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d", "en", 1), Trigger: TriggerManual}, true, ""},
		{"webhook: tags only", Request{Series: Series{ID: "4a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d", Tags: map[string]string{"Modality": "MR"}}, Trigger: TriggerWebhook}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := finder.reads
			out, err := in.Admit(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantRun && (out.Skip != nil || len(out.Jobs) != 1):
				t.Fatalf("outcome %+v, want a job", out)
			case !tt.wantRun && (out.Skip == nil || out.Skip.Reason != SkipModelRules || !strings.Contains(out.Skip.Detail, tt.want)):
				t.Fatalf("outcome %+v, want skipped with %q", out.Skip, tt.want)
			}
			wantReads := 1
			if tt.req.Trigger != TriggerManual || tt.req.Force {
				wantReads = 0
			}
			if got := finder.reads - reads; got != wantReads {
				t.Errorf("read %d headers, want %d", got, wantReads)
			}
		})
	}
}
