package volume

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The generator runs under Debian's interpreter, which has pydicom, numpy,
// nibabel and scipy (the first python3 on PATH may not), on the ch2 template
// of Debian's mricron-data.
const (
	systemPython  = "/usr/bin/python3"
	makeseriesPy  = "../../testdata/tools/makeseries.py"
	ch2NIfTI      = "/usr/share/mricron/templates/ch2.nii.gz"
	geomTolerance = 1e-4 // mm, and per direction cosine
)

// truthFile is truth.json as makeseries.py writes it.
type truthFile struct {
	Cols      int           `json:"cols"`
	Rows      int           `json:"rows"`
	Depth     int           `json:"depth"`
	Spacing   [3]float64    `json:"spacing"`
	Origin    [3]float64    `json:"origin"`
	Direction [3][3]float64 `json:"direction"`
	SeriesUID string        `json:"series_instance_uid"`
	FrameUID  string        `json:"frame_of_reference_uid"`
	Slices    []struct {
		SOPInstanceUID string     `json:"sop_instance_uid"`
		InstanceNumber int        `json:"instance_number"`
		Frame          int        `json:"frame"`
		Position       [3]float64 `json:"position"`
	} `json:"slices"`
}

// requireGenerator fails (never skips) the test when makeseries.py cannot run.
func requireGenerator(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ch2NIfTI); err != nil {
		t.Fatalf("%s is missing (Debian package mricron-data): run make deps", ch2NIfTI)
	}
	out, err := exec.Command(systemPython, "-c", "import pydicom, numpy, nibabel, scipy").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import pydicom, numpy, nibabel and scipy: run make deps\n%s", systemPython, out)
	}
}

// makeSeries runs makeseries.py with args and returns the series directory,
// its truth and truth values.
func makeSeries(t testing.TB, args ...string) (string, truthFile, []float32) {
	t.Helper()
	requireGenerator(t)
	tmp := t.TempDir()
	dir, truthDir := filepath.Join(tmp, "series"), filepath.Join(tmp, "truth")
	cmd := exec.Command(systemPython, append([]string{makeseriesPy, "--nifti", ch2NIfTI,
		"--out", dir, "--truth", truthDir, "--seed", "7"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("makeseries.py %v: %v\n%s", args, err, out)
	}
	var truth truthFile
	b, err := os.ReadFile(filepath.Join(truthDir, "truth.json"))
	if err != nil {
		t.Fatalf("read truth: %v", err)
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		t.Fatalf("decode truth.json: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(truthDir, "truth.f32"))
	if err != nil {
		t.Fatalf("read truth values: %v", err)
	}
	vals := make([]float32, len(raw)/4)
	for i := range vals {
		vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if len(vals) != truth.Cols*truth.Rows*truth.Depth {
		t.Fatalf("truth.f32 holds %d values, truth.json says %dx%dx%d", len(vals), truth.Cols, truth.Rows, truth.Depth)
	}
	return dir, truth, vals
}

// parseDir parses every file of dir.
func parseDir(t testing.TB, dir string) []*Instance {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read series dir: %v", err)
	}
	insts := make([]*Instance, 0, len(entries))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		in, err := ParseInstance(b)
		if err != nil {
			t.Fatalf("ParseInstance(%s): %v", e.Name(), err)
		}
		insts = append(insts, in)
	}
	return insts
}

func TestAssemble_MakeSeries(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "axial", args: []string{"--plane", "axial", "--step", "2"}},
		{name: "sagittal", args: []string{"--plane", "sagittal", "--step", "2"}},
		{name: "coronal anisotropic steps", args: []string{"--plane", "coronal", "--step", "2,3,4"}},
		{name: "oblique 15 deg", args: []string{"--plane", "oblique", "--tilt-deg", "15", "--step", "2,3,2"}},
		{name: "oblique -25 deg implicit", args: []string{"--plane", "oblique", "--tilt-deg", "-25", "--step", "3",
			"--transfer-syntax", "implicit"}},
		{name: "axial shuffled rescaled", args: []string{"--plane", "axial", "--step", "2", "--shuffle",
			"--slope", "0.5", "--intercept", "-100"}},
		{name: "sagittal 8-bit signed implicit", args: []string{"--plane", "sagittal", "--step", "3", "--shuffle",
			"--bits", "8", "--signed", "--intercept", "128", "--transfer-syntax", "implicit"}},
		{name: "coronal 16-bit signed full range", args: []string{"--plane", "coronal", "--step", "3",
			"--signed", "--bits-stored", "16", "--slope", "0.25", "--intercept", "40"}},
		{name: "enhanced axial shuffled frames shared groups", args: []string{"--plane", "axial", "--step", "2",
			"--enhanced", "--shuffle", "--slope", "0.5", "--intercept", "-100"}},
		{name: "enhanced oblique per-frame groups implicit", args: []string{"--plane", "oblique", "--step", "3",
			"--enhanced", "--enhanced-groups", "perframe", "--shuffle", "--transfer-syntax", "implicit", "--slope", "2"}},
		{name: "enhanced sagittal 8-bit", args: []string{"--plane", "sagittal", "--step", "3", "--enhanced",
			"--bits", "8", "--signed", "--intercept", "128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, truth, want := makeSeries(t, tt.args...)
			insts := parseDir(t, dir)
			v, err := Assemble(insts, Limits{})
			if err != nil {
				t.Fatalf("Assemble: %v", err)
			}
			if v.Cols != truth.Cols || v.Rows != truth.Rows || v.Depth != truth.Depth {
				t.Fatalf("size = %dx%dx%d, want %dx%dx%d", v.Cols, v.Rows, v.Depth, truth.Cols, truth.Rows, truth.Depth)
			}
			for a := range 3 {
				if d := math.Abs(v.Spacing[a] - truth.Spacing[a]); d > geomTolerance {
					t.Errorf("Spacing = %v, want %v", v.Spacing, truth.Spacing)
				}
				if d := math.Abs(v.Origin[a] - truth.Origin[a]); d > geomTolerance {
					t.Errorf("Origin = %v, want %v", v.Origin, truth.Origin)
				}
				for c := range 3 {
					if d := math.Abs(v.Direction[a][c] - truth.Direction[a][c]); d > geomTolerance {
						t.Errorf("Direction[%d] = %v, want %v", a, v.Direction[a], truth.Direction[a])
					}
				}
			}
			if v.SeriesInstanceUID != truth.SeriesUID || v.FrameOfReferenceUID != truth.FrameUID || v.Modality != "MR" {
				t.Errorf("identifiers = %q %q %q", v.SeriesInstanceUID, v.FrameOfReferenceUID, v.Modality)
			}
			numbers := make([]int, v.Depth)
			for k, s := range v.Slices {
				ts := truth.Slices[k]
				if s.SOPInstanceUID != ts.SOPInstanceUID || s.Frame != ts.Frame {
					t.Fatalf("Slices[%d] = %s frame %d, want %s frame %d", k, s.SOPInstanceUID, s.Frame, ts.SOPInstanceUID, ts.Frame)
				}
				for c := range 3 {
					if math.Abs(s.Position[c]-ts.Position[c]) > geomTolerance {
						t.Errorf("Slices[%d].Position = %v, want %v", k, s.Position, ts.Position)
					}
				}
				numbers[k] = ts.InstanceNumber
			}
			if slices.Contains(tt.args, "--shuffle") && slices.IsSorted(numbers) {
				t.Errorf("--shuffle left InstanceNumber in spatial order: the test proves nothing")
			}
			bad := 0
			for i, w := range want {
				if v.Data[i] != w {
					if bad < 5 {
						k, rem := i/(v.Cols*v.Rows), i%(v.Cols*v.Rows)
						t.Errorf("voxel (%d,%d,%d) = %g, want %g", rem%v.Cols, rem/v.Cols, k, v.Data[i], w)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d voxels differ", bad, len(want))
			}
		})
	}
}

// BenchmarkAssemble_CH2 assembles the full-resolution ch2 axial series
// (181x217x181, 16-bit).
func BenchmarkAssemble_CH2(b *testing.B) {
	dir, _, _ := makeSeries(b, "--plane", "axial")
	start := time.Now()
	insts := parseDir(b, dir)
	b.Logf("parsed %d files in %v", len(insts), time.Since(start))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Assemble(insts, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAssemble_512 assembles a synthetic 512x512x200 16-bit series.
func BenchmarkAssemble_512(b *testing.B) {
	insts := make([]*Instance, 200)
	for k := range insts {
		s := axialSynth(k)
		s.rows, s.cols = 512, 512
		s.raw = make([]byte, 512*512*2)
		for i := range s.raw {
			s.raw[i] = byte(i * k)
		}
		s.slope, s.intercept = "1.5", "-1024"
		insts[k] = s.parse(b)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Assemble(insts, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseInstance parses one 512x512 16-bit instance.
func BenchmarkParseInstance(b *testing.B) {
	s := axialSynth(0)
	s.rows, s.cols = 512, 512
	s.raw = make([]byte, 512*512*2)
	data := s.encode(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseInstance(data); err != nil {
			b.Fatal(err)
		}
	}
}
