package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/segbridge/segbridge/internal/fixture"
)

// trainedFor is the reference model with a manifest that says what it was
// "trained" on, as the brainchop manifests do (3-D, fine slices, a whole
// head), and a head volume it can never reach, so every result it stores is
// implausible.
func trainedFor(t *testing.T) string {
	t.Helper()
	root := fixture.Root(t)
	b, err := os.ReadFile(filepath.Join(root, "testdata/models/head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(b), "  modalities: [MR]\n", `  modalities: [MR]
  acquisition: 3D
  max_slice_spacing: 2.5
  max_pixel_spacing: 2.5
  min_slices: 30
  min_field_of_view: 120
`, 1)
	m = strings.Replace(m, "file: head-threshold.onnx", "file: "+filepath.Join(root, "testdata/models/head-threshold.onnx"), 1)
	m += "plausibility:\n  volume_ml: { 1: [100, 200] }\n"
	path := filepath.Join(t.TempDir(), "trained-for.yaml")
	if err := os.WriteFile(path, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ruleJob is a job as GET /v1/series shows it, with its warnings.
type ruleJob struct {
	State       string   `json:"state"`
	Error       string   `json:"error"`
	Warnings    []string `json:"warnings"`
	SEGSeriesID string   `json:"seg_series_id"`
}

func (s *system) ruleJob(t *testing.T, id string) ruleJob {
	t.Helper()
	var v struct{ Jobs []ruleJob }
	if code := s.call(t, http.MethodGet, "/v1/series/"+id, "", nil, &v); code != http.StatusOK || len(v.Jobs) != 1 {
		return ruleJob{}
	}
	return v.Jobs[0]
}

// waitEnded waits until the series' job has ended (done, failed, skipped).
func (s *system) waitEnded(t *testing.T, id string) ruleJob {
	t.Helper()
	var j ruleJob
	waitFor(t, 60*time.Second, "the job of series "+id+" to end", func() bool {
		j = s.ruleJob(t, id)
		return j.State == "done" || j.State == "failed" || j.State == "skipped"
	})
	return j
}

// TestRules_SkipWhatTheModelWasNotTrainedFor: through the webhook, a 2-D
// thick-slice series and a localizer are admitted (the webhook knows only
// the main tags), then skipped by the worker once it has their volumes, with
// the reason in the API; a manual trigger answers 422 naming the rules from
// the first instance's header, and force=true runs the model anyway. A 3-D
// series runs, and its result — outside the manifest's expected volume — is
// stored with a warning in the API and in the SEG's series description.
func TestRules_SkipWhatTheModelWasNotTrainedFor(t *testing.T) {
	s := setupSystem(t, map[string]string{"MODEL_PATH": trainedFor(t)})
	t2 := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2,2,5", "--acquisition", "2D",
		"--description", "T2 TSE ax 5mm", "--patient-id", "RULES-T2", "--seed", "61")
	localizer := fixture.MakeSeries(t, false, "--plane", "sagittal", "--step", "3,3,60", "--acquisition", "2D",
		"--description", "localizer", "--patient-id", "RULES-LOC", "--seed", "62")
	t1 := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "2", "--patient-id", "RULES-T1", "--seed", "63")

	tests := []struct {
		name string
		dir  string
		want []string // in the skip reason
	}{
		{"2-D thick-slice T2", t2.Dir, []string{"it is a 2D acquisition (MRAcquisitionType), the model was trained on 3D",
			"its slices are 5 mm apart (between slice centres), the model was trained on at most 2.5 mm"}},
		{"localizer", localizer.Dir, []string{"2D acquisition", "it has 4 slices, the model needs at least 30"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := s.upload(t, tt.dir)
			j := s.waitEnded(t, id)
			if j.State != "skipped" {
				t.Fatalf("job %+v, want skipped", j)
			}
			for _, w := range tt.want {
				if !strings.Contains(j.Error, w) {
					t.Errorf("skip reason %q lacks %q", j.Error, w)
				}
			}
			if segs := s.segSeriesOf(t, id); len(segs) != 0 {
				t.Errorf("a skipped series has SEG series %v", segs)
			}
			var e struct{ Error string }
			code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment", "", nil, &e)
			if code != http.StatusUnprocessableEntity || !strings.Contains(e.Error, "2D acquisition") || !strings.Contains(e.Error, "force=true") {
				t.Fatalf("manual trigger: %d %q, want 422 naming the rule and force", code, e.Error)
			}
		})
	}

	t.Run("force=true runs the 2-D series anyway", func(t *testing.T) {
		id := s.upload(t, t2.Dir) // already stored: the same series
		var v jobView
		if code := s.call(t, http.MethodPost, "/v1/series/"+id+"/segment?force=true", "", nil, &v); code != http.StatusAccepted {
			t.Fatalf("forced trigger: %d %+v", code, v)
		}
		if j := s.waitEnded(t, id); j.State != "done" {
			t.Fatalf("forced job %+v, want done", j)
		}
	})

	t.Run("a 3-D series runs, its implausible result is stored with a warning", func(t *testing.T) {
		id := s.upload(t, t1.Dir)
		j := s.waitEnded(t, id)
		if j.State != "done" || len(j.Warnings) != 1 || !strings.Contains(j.Warnings[0], "segment Head (label 1) is ") ||
			!strings.Contains(j.Warnings[0], "outside the 100-200 mL") {
			t.Fatalf("job %+v, want done with the volume warning", j)
		}
		t.Logf("warning: %s", j.Warnings[0])
		ds, err := dicom.ParseFile(s.segFile(t, j.SEGSeriesID), nil, dicom.SkipPixelData())
		if err != nil {
			t.Fatal(err)
		}
		el, err := ds.FindElementByTag(tag.SeriesDescription)
		if err != nil {
			t.Fatal(err)
		}
		if d := dicom.MustGetStrings(el.Value)[0]; d != "AI segmentation: head-threshold (CHECK: implausible volume)" {
			t.Errorf("SEG series description %q", d)
		}
	})
}
