package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/fixture"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
	"github.com/segbridge/segbridge/models"
)

// brainchopRules loads the mindgrab manifest segbridge installs (every
// brainchop manifest has the same applies_to) beside an empty model file.
func brainchopRules(t *testing.T) *model.Model {
	t.Helper()
	b, err := models.FS.ReadFile("brainchop/mindgrab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mindgrab.onnx"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse(b, dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// assemble reads the DICOM files of a folder (or the named ones) into a volume.
func assemble(t *testing.T, dir string, files []string) *volume.Volume {
	t.Helper()
	if files == nil {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			files = append(files, e.Name())
		}
	}
	var ins []*volume.Instance
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		in, err := volume.ParseInstance(b)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	v, err := volume.Assemble(ins, volume.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSeriesInfo_BrainchopRules: what the brainchop manifests' rules do to
// the kinds of series a PACS holds besides 3-D T1 — real DICOM series made
// from ch2, read the way the worker reads them (README, "Refusing what a
// model was not trained for", lists these results).
func TestSeriesInfo_BrainchopRules(t *testing.T) {
	m := brainchopRules(t)
	mk := func(args ...string) *fixture.Series { return fixture.MakeSeries(t, false, args...) }
	full := mk("--plane", "axial", "--seed", "71")
	var slab []string // 40 consecutive 1 mm slices from the middle of the head
	for _, s := range full.Truth.Slices[70:110] {
		slab = append(slab, s.File)
	}
	tests := []struct {
		name  string
		vol   func() *volume.Volume
		wants []string // every rule the series breaks; none: it runs
	}{
		{"3-D T1 at 1 mm", func() *volume.Volume { return assemble(t, full.Dir, nil) }, nil},
		{"2-D thick-slice T2", func() *volume.Volume {
			return assemble(t, mk("--step", "1,1,5", "--acquisition", "2D", "--description", "T2 TSE ax 5mm", "--seed", "72").Dir, nil)
		}, []string{"series description", "2D acquisition", "slices are 5 mm apart"}},
		{"2-D T1, thick slices", func() *volume.Volume {
			return assemble(t, mk("--plane", "coronal", "--step", "1,1,4", "--acquisition", "2D", "--description", "T1 SE cor", "--seed", "73").Dir, nil)
		}, []string{"2D acquisition", "slices are 4 mm apart"}},
		{"localizer", func() *volume.Volume {
			return assemble(t, mk("--plane", "sagittal", "--step", "2,2,60", "--acquisition", "2D", "--description", "localizer", "--seed", "74").Dir, nil)
		}, []string{"series description", "2D acquisition", "slices are 60 mm apart", "pixels are 2 x 2 mm", "it has 4 slices"}},
		{"3-D slab of 40 slices", func() *volume.Volume { return assemble(t, full.Dir, slab) },
			[]string{"it has 40 slices, the model needs at least 64", "it covers 181 x 217 x 40 mm"}},
		{"3-D FLAIR at 1 mm", func() *volume.Volume {
			return assemble(t, mk("--plane", "sagittal", "--description", "3D FLAIR sag", "--seed", "75").Dir, nil)
		}, []string{`series description "3D FLAIR sag" does not match`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := SeriesInfo(tt.vol())
			ok, why := m.Matches(info)
			t.Logf("%+v: %v %s", info, ok, why)
			if len(tt.wants) == 0 {
				if !ok {
					t.Fatalf("refused: %s", why)
				}
				return
			}
			if ok {
				t.Fatal("accepted")
			}
			for _, w := range tt.wants {
				if !strings.Contains(why, w) {
					t.Errorf("reason %q lacks %q", why, w)
				}
			}
		})
	}
}
