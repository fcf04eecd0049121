package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/pipeline"
	"github.com/segbridge/segbridge/internal/volume"
)

// thresholdModel stands for the model runtime: the head (values above 0) is
// label 1, or nothing when empty.
type thresholdModel struct{ empty bool }

func (f thresholdModel) SegmentWith(_ context.Context, _ *model.Model, v *volume.Volume, _ inference.SegmentOptions) (*inference.Result, error) {
	labels := make([]uint8, len(v.Data))
	for i, x := range v.Data {
		if x > 0 && !f.empty {
			labels[i] = 1
		}
	}
	return &inference.Result{Labels: labels}, nil
}

func instances(t *testing.T) []*volume.Instance {
	t.Helper()
	s := fixture.MakeSeries(t, false, "--plane", "axial", "--step", "6")
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*volume.Instance
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := volume.ParseInstance(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, in)
	}
	return out
}

func TestParseOutputs(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    pipeline.Outputs
		wantErr bool
	}{
		{[]string{"seg", "sr"}, pipeline.Outputs{SR: true}, false},
		{[]string{"seg", "sr", "preview"}, pipeline.Outputs{SR: true, Preview: true}, false},
		{[]string{"SEG", " preview "}, pipeline.Outputs{Preview: true}, false},
		{[]string{"seg"}, pipeline.Outputs{}, false},
		{[]string{"sr"}, pipeline.Outputs{}, true},
		{[]string{"seg", "png"}, pipeline.Outputs{}, true},
	} {
		got, err := pipeline.ParseOutputs(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("ParseOutputs(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPipeline_Outputs(t *testing.T) {
	m, err := model.Load(filepath.Join(fixture.Root(t), "testdata/models/head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	insts := instances(t)
	run := func(t *testing.T, outs pipeline.Outputs, seed string, f thresholdModel) *pipeline.Output {
		t.Helper()
		p, err := pipeline.New(f, pipeline.Config{Outputs: outs})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(context.Background(), pipeline.Input{Model: m, Instances: insts, UIDSeed: seed}, pipeline.NewTimer(nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("SEG, SR and preview from one seed", func(t *testing.T) {
		out := run(t, pipeline.Outputs{SR: true, Preview: true}, "job-1", thresholdModel{})
		if out.SR == nil || out.Preview == nil || len(out.Preview.Instances) == 0 {
			t.Fatalf("outputs: SR %v, preview %v", out.SR != nil, out.Preview != nil)
		}
		// The SEG keeps the UIDs it had before there were other outputs.
		if want := dicomseg.DerivedUIDs("job-1")(); out.SEGInfo.SeriesInstanceUID != want {
			t.Errorf("SEG series %s, want %s", out.SEGInfo.SeriesInstanceUID, want)
		}
		uids := map[string]bool{out.SEGInfo.SeriesInstanceUID: true, out.SEGInfo.SOPInstanceUID: true}
		for _, u := range []string{out.SR.SeriesInstanceUID, out.SR.SOPInstanceUID, out.Preview.SeriesInstanceUID, out.Preview.Instances[0].SOPInstanceUID} {
			if uids[u] {
				t.Errorf("UID %s used twice across the outputs", u)
			}
			uids[u] = true
		}
		if !bytes.Contains(out.SR.Bytes, []byte(out.SEGInfo.SOPInstanceUID)) {
			t.Error("the SR does not name the SEG instance")
		}
		if len(out.Volumes) != 1 || out.Volumes[0].Voxels == 0 || out.Volumes[0].Segment.Name != "Head" {
			t.Errorf("volumes %+v", out.Volumes)
		}
		again := run(t, pipeline.Outputs{SR: true, Preview: true}, "job-1", thresholdModel{})
		if again.SR.SOPInstanceUID != out.SR.SOPInstanceUID || again.Preview.Instances[0].SOPInstanceUID != out.Preview.Instances[0].SOPInstanceUID {
			t.Error("a second run of the same job made new UIDs")
		}
	})
	t.Run("the SEG alone", func(t *testing.T) {
		out := run(t, pipeline.Outputs{}, "", thresholdModel{})
		if out.SR != nil || out.Preview != nil {
			t.Errorf("outputs: SR %v, preview %v", out.SR != nil, out.Preview != nil)
		}
	})
	t.Run("empty mask: no preview, SR of zero", func(t *testing.T) {
		out := run(t, pipeline.Outputs{SR: true, Preview: true}, "", thresholdModel{empty: true})
		if out.Preview != nil || out.SR == nil || out.Volumes[0].VolumeML != 0 {
			t.Errorf("outputs: SR %v, preview %v, volumes %+v", out.SR != nil, out.Preview != nil, out.Volumes)
		}
	})
}

// countingModel counts its runs.
type countingModel struct{ runs *int }

func (c countingModel) SegmentWith(ctx context.Context, m *model.Model, v *volume.Volume, o inference.SegmentOptions) (*inference.Result, error) {
	*c.runs++
	return thresholdModel{}.SegmentWith(ctx, m, v, o)
}

// TestPipeline_NoFrameOfReference: a series stripped of its
// FrameOfReferenceUID fails with that reason before the model runs.
func TestPipeline_NoFrameOfReference(t *testing.T) {
	m, err := model.Load(filepath.Join(fixture.Root(t), "testdata/models/head-threshold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	insts := instances(t)
	for _, in := range insts {
		in.FrameOfReferenceUID = ""
	}
	runs := 0
	p, err := pipeline.New(countingModel{&runs}, pipeline.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Run(context.Background(), pipeline.Input{Model: m, Instances: insts}, pipeline.NewTimer(nil, nil))
	if !errors.Is(err, volume.ErrInvalidSeries) || !strings.Contains(err.Error(), "has no FrameOfReferenceUID") || runs != 0 {
		t.Fatalf("error %v after %d model runs, want the reason and none", err, runs)
	}
}
