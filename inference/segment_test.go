package inference

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/segbridge/segbridge/internal/dicomseg"
	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

const (
	testCols, testRows, testDepth = 40, 30, 20
)

// ellipsoid returns a 40x30x20 volume with value fg inside an ellipsoid and bg
// outside, and the labels head-threshold must give it: its local 3x3x3 mean
// after min-max scaling is at least 1/27 > 0.025 wherever an ellipsoid voxel is
// in the neighbourhood and 0 elsewhere, so the expected mask is the ellipsoid
// dilated by one voxel.
func ellipsoid(bg, fg float32) (*volume.Volume, []uint8) {
	n := testCols * testRows * testDepth
	v := &volume.Volume{
		Geometry: volume.Geometry{Cols: testCols, Rows: testRows, Depth: testDepth, Spacing: [3]float64{1, 1, 1}},
		Data:     make([]float32, n),
		Modality: "MR",
	}
	inside := make([]bool, n)
	idx := func(i, j, k int) int { return i + testCols*(j+testRows*k) }
	for k := range testDepth {
		for j := range testRows {
			for i := range testCols {
				x, y, z := (float64(i)-19.5)/14, (float64(j)-14.5)/10, (float64(k)-9.5)/6
				inside[idx(i, j, k)] = x*x+y*y+z*z <= 1
				v.Data[idx(i, j, k)] = bg
				if inside[idx(i, j, k)] {
					v.Data[idx(i, j, k)] = fg
				}
			}
		}
	}
	want := make([]uint8, n)
	for k := range testDepth {
		for j := range testRows {
			for i := range testCols {
			near:
				for dk := -1; dk <= 1; dk++ {
					for dj := -1; dj <= 1; dj++ {
						for di := -1; di <= 1; di++ {
							ii, jj, kk := i+di, j+dj, k+dk
							if ii >= 0 && ii < testCols && jj >= 0 && jj < testRows && kk >= 0 && kk < testDepth && inside[idx(ii, jj, kk)] {
								want[idx(i, j, k)] = 1
								break near
							}
						}
					}
				}
			}
		}
	}
	return v, want
}

func compareLabels(t *testing.T, got, want []uint8) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d labels, want %d", len(got), len(want))
	}
	wrong, ones := 0, 0
	for i := range want {
		if got[i] != want[i] {
			wrong++
		}
		if want[i] != 0 {
			ones++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d labels differ from the expected (%d voxels of label 1)", wrong, len(want), ones)
	}
}

// withManifest returns a copy of the reference model changed by edit, as if
// loaded from a manifest that says so.
func withManifest(t *testing.T, edit func(m *model.Manifest)) *model.Model {
	t.Helper()
	m := *referenceModel(t)
	edit(&m.Manifest)
	return &m
}

func ptr[T any](v T) *T { return &v }

func TestRuntime_Segment(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	_, mask := ellipsoid(0, 100)
	if n := countNonZero(mask); n == 0 || n > len(mask)/2 {
		t.Fatalf("the test ellipsoid covers %d of %d voxels", n, len(mask))
	}
	all := make([]uint8, len(mask))
	for i := range all {
		all[i] = 1
	}
	tests := []struct {
		name   string
		bg, fg float32
		edit   func(m *model.Manifest)
		want   []uint8
	}{
		{"minmax", 0, 100, nil, mask},
		{"minmax is offset and scale free", 1000, 1500, nil, mask},
		{"minmax dark object", 100, 0, nil, notMask(mask)},
		{
			name: "fixed window", bg: 1000, fg: 1500,
			edit: func(m *model.Manifest) {
				m.Preprocess.Intensity = model.Intensity{Method: model.IntensityFixed, Min: ptr(1000.0), Max: ptr(1200.0)}
			},
			want: mask,
		},
		{
			name: "fixed window clips", bg: -50, fg: 5000,
			edit: func(m *model.Manifest) {
				m.Preprocess.Intensity = model.Intensity{Method: model.IntensityFixed, Min: ptr(0.0), Max: ptr(1.0)}
			},
			want: mask,
		},
		{
			name: "none feeds raw values", bg: 1000, fg: 1500,
			edit: func(m *model.Manifest) { m.Preprocess.Intensity = model.Intensity{Method: model.IntensityNone} },
			want: all,
		},
		{
			name: "threshold 0.999999 keeps only voxels well inside", bg: 0, fg: 1,
			edit: func(m *model.Manifest) { m.Output.Threshold = ptr(0.9999999) },
			want: nil, // checked below: a strict subset of the mask
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := referenceModel(t)
			if tt.edit != nil {
				m = withManifest(t, tt.edit)
			}
			v, _ := ellipsoid(tt.bg, tt.fg)
			orig := append([]float32(nil), v.Data...)
			res, err := r.Segment(context.Background(), m, v)
			if err != nil {
				t.Fatal(err)
			}
			for i := range orig {
				if v.Data[i] != orig[i] {
					t.Fatal("Segment modified the volume")
				}
			}
			if tt.want == nil {
				fewer := 0
				for i := range mask {
					if res.Labels[i] > mask[i] {
						t.Fatalf("voxel %d labelled outside the mask", i)
					}
					if res.Labels[i] < mask[i] {
						fewer++
					}
				}
				if fewer == 0 {
					t.Error("threshold had no effect")
				}
				return
			}
			compareLabels(t, res.Labels, tt.want)
			if res.Inference <= 0 {
				t.Errorf("Inference = %v", res.Inference)
			}
		})
	}
}

func notMask(mask []uint8) []uint8 {
	// A dark ellipsoid in a bright background: after min-max the background
	// is 1 and the ellipsoid 0, so only ellipsoid voxels whose whole 3x3x3
	// neighbourhood is ellipsoid (the eroded ellipsoid) stay background.
	v, _ := ellipsoid(1, 0)
	out := make([]uint8, len(mask))
	idx := func(i, j, k int) int { return i + testCols*(j+testRows*k) }
	for k := range testDepth {
		for j := range testRows {
			for i := range testCols {
				out[idx(i, j, k)] = 0
				for dk := -1; dk <= 1; dk++ {
					for dj := -1; dj <= 1; dj++ {
						for di := -1; di <= 1; di++ {
							ii, jj, kk := i+di, j+dj, k+dk
							if ii >= 0 && ii < testCols && jj >= 0 && jj < testRows && kk >= 0 && kk < testDepth && v.Data[idx(ii, jj, kk)] == 1 {
								out[idx(i, j, k)] = 1
							}
						}
					}
				}
			}
		}
	}
	return out
}

func TestRuntime_Segment_Mismatch(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	seg := func(label int) func(*model.Manifest) {
		return func(m *model.Manifest) {
			s := m.Segments[0]
			s.Label, s.Name = label, fmt.Sprintf("Segment %d", label)
			m.Segments = append(m.Segments, s)
		}
	}
	tests := []struct {
		name    string
		edits   []func(*model.Manifest)
		wantErr string
	}{
		{
			name: "softmax with 3 segments, model gives 1 channel",
			edits: []func(*model.Manifest){seg(2), seg(3), func(m *model.Manifest) {
				m.Output.Activation, m.Output.Threshold = model.ActivationSoftmax, nil
			}},
			wantErr: `model head-threshold: output "output" has shape [1,1,20,30,40] but the manifest's softmax activation needs 4 channels (background and labels 1..3)`,
		},
		{
			name:    "sigmoid with 2 segments",
			edits:   []func(*model.Manifest){seg(2)},
			wantErr: `has shape [1,1,20,30,40] but the manifest's sigmoid activation needs 2 channels`,
		},
		{
			name:    "none with one channel and label 2",
			edits:   []func(*model.Manifest){seg(2), func(m *model.Manifest) { m.Output.Activation = model.ActivationNone }},
			wantErr: "one channel gives label 1 only",
		},
		{
			name:    "wrong output name",
			edits:   []func(*model.Manifest){func(m *model.Manifest) { m.Output.Name = "logits" }},
			wantErr: `model head-threshold: the graph has no output "logits" (it has "output")`,
		},
		{
			name:    "wrong input name",
			edits:   []func(*model.Manifest){func(m *model.Manifest) { m.Input.Name = "image" }},
			wantErr: `the manifest's input "image" must be the graph's only input, but the graph has inputs "input"`,
		},
		{
			// Resampling 40x30x20 mm to 1e-9 mm voxels is a grid of 2.4e31
			// voxels, which wraps an int: refused before allocating.
			name: "spacing far below the series'",
			edits: []func(*model.Manifest){func(m *model.Manifest) {
				m.Preprocess.Geometry.Spacing = []float64{1e-9, 1e-9, 1e-9}
			}},
			wantErr: "more than the 2147483647 a grid may hold",
		},
		{
			name:    "unsupported mode",
			edits:   []func(*model.Manifest){func(m *model.Manifest) { m.Input.Mode = "slices" }},
			wantErr: `input "input" has shape [1 1 -1 -1 -1], but slices mode needs 4 dimensions [N, C, H, W]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := withManifest(t, func(m *model.Manifest) {
				m.Segments = append([]dicomseg.Segment(nil), m.Segments...)
				for _, e := range tt.edits {
					e(m)
				}
			})
			v, _ := ellipsoid(0, 1)
			_, err := r.Segment(context.Background(), m, v)
			if !errors.Is(err, ErrModelMismatch) {
				t.Fatalf("error = %v, want ErrModelMismatch", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRuntime_Segment_BadInput(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	m := referenceModel(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	good, _ := ellipsoid(0, 1)
	short := *good
	short.Data = short.Data[:10]
	flat := *good
	flat.Depth = 0
	// 2^32 x 2^32 x 1 voxels wraps to 0, the length of its Data.
	wraps := *good
	wraps.Cols, wraps.Rows, wraps.Depth, wraps.Data = 1<<32, 1<<32, 1, nil
	tests := []struct {
		name    string
		ctx     context.Context
		v       *volume.Volume
		wantErr string
		is      error
	}{
		{"cancelled", cancelled, good, "context canceled", context.Canceled},
		{"nil volume", context.Background(), nil, "no volume", nil},
		{"short data", context.Background(), &short, "volume of 40x30x20 voxels has 10 values", nil},
		{"empty", context.Background(), &flat, "volume has size 40x30x0", nil},
		{"size that wraps", context.Background(), &wraps, "volume of 4294967296x4294967296x1 voxels has 0 values", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Segment(tt.ctx, m, tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if errors.Is(err, ErrModelMismatch) {
				t.Errorf("bad input reported as a model mismatch: %v", err)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	tests := []struct {
		name string
		in   model.Intensity
		data []float32
		want []float32
	}{
		{"minmax", model.Intensity{Method: model.IntensityMinMax}, []float32{-10, 0, 10}, []float32{0, 0.5, 1}},
		{"minmax constant", model.Intensity{Method: model.IntensityMinMax}, []float32{7, 7}, []float32{0, 0}},
		{"fixed clips", model.Intensity{Method: model.IntensityFixed, Min: ptr(0.0), Max: ptr(100.0)}, []float32{-5, 25, 250}, []float32{0, 0.25, 1}},
		{"none", model.Intensity{Method: model.IntensityNone}, []float32{-5, 3}, []float32{-5, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := append([]float32(nil), tt.data...)
			normalise(got, tt.in)
			for i := range tt.want {
				if math.Abs(float64(got[i]-tt.want[i])) > 1e-6 {
					t.Fatalf("normalise(%v) = %v, want %v", tt.data, got, tt.want)
				}
			}
		})
	}
}

// TestLabels covers the activations the reference model does not have, on
// hand-made output tensors of 4 voxels (2x2x1).
func TestLabels(t *testing.T) {
	newTestRuntime(t, RuntimeConfig{}) // the environment, for tensors
	v := &volume.Volume{Geometry: volume.Geometry{Cols: 2, Rows: 2, Depth: 1}}
	tests := []struct {
		name      string
		act       model.Activation
		threshold *float64
		labels    []int // segment labels in the manifest
		channels  int
		data      []float32 // channel-major
		want      []uint8
	}{
		{"sigmoid one channel", model.ActivationSigmoid, ptr(0.5), []int{1}, 1,
			[]float32{0.1, 0.5, 0.9, float32(math.NaN())}, []uint8{0, 1, 1, 0}},
		{"sigmoid per channel, most probable wins", model.ActivationSigmoid, ptr(0.5), []int{1, 2}, 2,
			[]float32{0.6, 0.2, 0.9, 0.4, 0.7, 0.3, 0.8, 0.45}, []uint8{2, 0, 1, 0}},
		{"softmax argmax", model.ActivationSoftmax, nil, []int{1, 2}, 3,
			[]float32{5, 0, 0, 1, 1, 9, 0, 1, 0, 0, 3, 1}, []uint8{0, 1, 2, 0}},
		{"softmax undescribed label is background", model.ActivationSoftmax, nil, []int{2}, 3,
			[]float32{0, 0, 5, 0, 1, 0, 0, 0, 0, 1, 0, 0}, []uint8{0, 2, 0, 0}},
		{"none single channel threshold", model.ActivationNone, ptr(-1.0), []int{1}, 1,
			[]float32{-2, -1, 0, 3}, []uint8{0, 1, 1, 1}},
		{"none multi channel argmax", model.ActivationNone, ptr(0.5), []int{1}, 2,
			[]float32{3, -1, 0, 0, -3, 1, 0, 2}, []uint8{0, 1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &model.Model{Manifest: model.Manifest{Name: "t", Output: model.Output{Name: "out", Activation: tt.act, Threshold: tt.threshold}}}
			for _, l := range tt.labels {
				m.Manifest.Segments = append(m.Manifest.Segments, dicomseg.Segment{Label: l})
			}
			shape := ort.NewShape(1, int64(tt.channels), 1, 2, 2)
			got, err := volumeLabels(m, tt.data, shape, shapeMismatch(m, shape), [3]int{v.Cols, v.Rows, v.Depth})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.want) {
				t.Errorf("labels = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRuntime_Segment_Ch2 runs the reference model on the Colin27 T1 template
// (Debian package mricron-data) and compares with the figures that
// testdata/models/make_head_threshold.py --check reports.
func TestRuntime_Segment_Ch2(t *testing.T) {
	const path = "/usr/share/mricron/templates/ch2.nii.gz"
	if testing.Short() {
		t.Skip("short mode")
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no ch2 template (install mricron-data): %v", err)
	}
	v := readNIfTI(t, path)
	r := newTestRuntime(t, RuntimeConfig{})
	res, err := r.Segment(context.Background(), referenceModel(t), v)
	if err != nil {
		t.Fatal(err)
	}
	head, dice := 0, 0.0
	inter, ref := 0, 0
	for i, l := range res.Labels {
		if l == 1 {
			head++
		}
		if v.Data[i] > 0 {
			ref++
			if l == 1 {
				inter++
			}
		}
	}
	dice = 2 * float64(inter) / float64(head+ref)
	frac := float64(head) / float64(len(res.Labels))
	t.Logf("ch2 %dx%dx%d: head fraction %.4f (%d voxels), Dice vs ch2>0 %.4f; preprocess %v, inference %v, postprocess %v (%s)",
		v.Cols, v.Rows, v.Depth, frac, head, dice, res.Preprocess, res.Inference, res.Postprocess, r.Device())
	// make_head_threshold.py --check: 4213711 voxels, Dice 0.9925.
	if math.Abs(float64(head-4213711)) > 2000 || dice < 0.99 {
		t.Errorf("head voxels %d (want about 4213711), Dice %.4f (want about 0.9925)", head, dice)
	}
}

// readNIfTI reads a gzipped NIfTI-1 file of uint8, int16 or float32 voxels
// (enough for the mricron templates) into a volume; NIfTI's first index runs
// fastest, as a volume's i does.
func readNIfTI(t *testing.T, path string) *volume.Volume {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(data) < 352 || le.Uint32(data) != 348 {
		t.Fatalf("%s: not a little-endian NIfTI-1 file", filepath.Base(path))
	}
	dim := func(i int) int { return int(int16(le.Uint16(data[40+2*i:]))) }
	cols, rows, depth := dim(1), dim(2), dim(3)
	offset := int(math.Float32frombits(le.Uint32(data[108:])))
	n := cols * rows * depth
	v := &volume.Volume{
		Geometry: volume.Geometry{Cols: cols, Rows: rows, Depth: depth, Spacing: [3]float64{1, 1, 1}},
		Data:     make([]float32, n),
		Modality: "MR",
	}
	raw := data[offset:]
	switch dt := le.Uint16(data[70:]); dt {
	case 2: // uint8
		for i := range n {
			v.Data[i] = float32(raw[i])
		}
	case 4: // int16
		for i := range n {
			v.Data[i] = float32(int16(le.Uint16(raw[2*i:])))
		}
	case 16: // float32
		for i := range n {
			v.Data[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	default:
		t.Fatalf("%s: NIfTI datatype %d not supported", filepath.Base(path), dt)
	}
	return v
}

func countNonZero(labels []uint8) int {
	n := 0
	for _, l := range labels {
		if l != 0 {
			n++
		}
	}
	return n
}

func TestRuntime_Segment_CancelledDuringRun(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	m := referenceModel(t)
	if _, err := r.Segment(context.Background(), m, func() *volume.Volume { v, _ := ellipsoid(0, 1); return v }()); err != nil {
		t.Fatal(err) // loads the session, so the deadline below falls in preprocessing or the run
	}
	v := &volume.Volume{Geometry: volume.Geometry{Cols: 181, Rows: 217, Depth: 181}, Data: make([]float32, 181*217*181)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	t.Cleanup(cancel)
	start := time.Now()
	_, err := r.Segment(ctx, m, v)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want context.DeadlineExceeded", err)
	}
	t.Logf("Segment returned %v after its start: %v", time.Since(start), err)
}

// TestRuntime_Segment_OutputSize: a network whose output is not the input's
// size, with a fixed channel count, so that its output is allocated before
// the run and ONNX Runtime refuses it: the job fails saying so in
// segbridge's words, with both shapes.
func TestRuntime_Segment_OutputSize(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	m := withManifest(t, func(m *model.Manifest) {})
	m.ONNXPath = filepath.Join("..", "testdata", "models", "halves.onnx")
	v, _ := ellipsoid(0, 1)
	_, err := r.Segment(context.Background(), m, v)
	if !errors.Is(err, ErrModelMismatch) {
		t.Fatalf("error = %v, want ErrModelMismatch", err)
	}
	if want := `output "output" has shape [1,1,10,15,20] but the input was [1,1,20,30,40]`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
