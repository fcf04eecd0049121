package inference

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// sliceModel loads testdata/models/slice-mean2d.yaml, the tiny 2-D model.
func sliceModel(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join("..", "testdata", "models", "slice-mean2d.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// blocks returns a 0/1 volume of 40x30x20 whose slices hold rectangles of
// different sizes and lone voxels, values bg and fg, and the mask the 2-D
// model must give: 1 where at least 5 of the 9 pixels of the in-plane 3x3
// neighbourhood (zero padded) are foreground.
func blocks(bg, fg float32) (*volume.Volume, []uint8) {
	n := testCols * testRows * testDepth
	v := &volume.Volume{
		Geometry: volume.Geometry{Cols: testCols, Rows: testRows, Depth: testDepth, Spacing: [3]float64{1, 1, 1},
			Direction: [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}},
		Data:     make([]float32, n),
		Modality: "MR",
	}
	on := make([]bool, n)
	idx := func(i, j, k int) int { return i + testCols*(j+testRows*k) }
	for k := range testDepth {
		for j := range testRows {
			for i := range testCols {
				// A rectangle that grows with k, touching the left edge on
				// odd slices, and lone voxels on a lattice.
				w, h := 2+k, 1+k/2
				x0 := 5
				if k%2 == 1 {
					x0 = 0
				}
				in := i >= x0 && i < x0+w && j >= 8 && j < 8+h
				lone := i%9 == 4 && j%7 == 3 && !in
				on[idx(i, j, k)] = in || lone
				v.Data[idx(i, j, k)] = bg
				if on[idx(i, j, k)] {
					v.Data[idx(i, j, k)] = fg
				}
			}
		}
	}
	want := make([]uint8, n)
	for k := range testDepth {
		for j := range testRows {
			for i := range testCols {
				count := 0
				for dj := -1; dj <= 1; dj++ {
					for di := -1; di <= 1; di++ {
						ii, jj := i+di, j+dj
						if ii >= 0 && ii < testCols && jj >= 0 && jj < testRows && on[idx(ii, jj, k)] {
							count++
						}
					}
				}
				if count >= 5 {
					want[idx(i, j, k)] = 1
				}
			}
		}
	}
	return v, want
}

// TestRuntime_Segment_Slices runs the tiny 2-D model in slice mode, in
// batches that do not divide the number of slices, with threshold 0.5.
func TestRuntime_Segment_Slices(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	tests := []struct {
		name  string
		batch int
	}{
		{"batch 8 (8+8+4 slices)", 8},
		{"batch 1", 1},
		{"one batch", 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := *sliceModel(t)
			m.Input.BatchSize = tt.batch
			v, want := blocks(100, 900)
			if countNonZero(want) == 0 {
				t.Fatal("the test volume gives an empty mask")
			}
			var runs []Progress
			res, err := r.SegmentWith(context.Background(), &m, v, SegmentOptions{Progress: func(p Progress) {
				if p.Stage == "inference" && p.Done > 0 {
					runs = append(runs, p)
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			compareLabels(t, res.Labels, want)
			if wantRuns := (testDepth + tt.batch - 1) / tt.batch; len(runs) != wantRuns || runs[len(runs)-1].Total != wantRuns {
				t.Errorf("progress reported %v, want %d runs", runs, wantRuns)
			}
		})
	}
}

// TestRuntime_Segment_SlicesNeighbours feeds 3 channels of neighbouring
// slices to a 1-channel model: the graph says 1, so it must fail naming
// the channels.
func TestRuntime_Segment_SlicesChannelMismatch(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	m := *sliceModel(t)
	m.Input.Channels, m.Input.ChannelMode = 3, model.ChannelsNeighbours
	v, _ := blocks(0, 1)
	_, err := r.Segment(context.Background(), &m, v)
	if !errors.Is(err, ErrModelMismatch) || !strings.Contains(err.Error(), `input "input" has 1 channels, but slices mode feeds 3`) {
		t.Fatalf("error = %v", err)
	}
}

// TestRuntime_Segment_OutputMismatch: a manifest that promises more classes
// than the network gives fails before labels are written, naming the shapes.
func TestRuntime_Segment_OutputMismatch(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	tests := []struct {
		name    string
		edit    func(m *model.Manifest)
		wantErr string
	}{
		{
			name: "softmax with 3 labels on a 1-channel slice model",
			edit: func(m *model.Manifest) {
				m.Output.Activation, m.Output.Threshold = model.ActivationSoftmax, nil
				m.Output.Remap = map[int]int{1: 1, 2: 1, 3: 1}
			},
			wantErr: `model slice-mean2d: output "output" has shape [8,1,30,40] but the manifest's softmax activation needs 4 channels (background and classes 1..3)`,
		},
		{
			name:    "explicit channels",
			edit:    func(m *model.Manifest) { m.Output.Channels = 2 },
			wantErr: `has shape [8,1,30,40] but the manifest's output.channels is 2`,
		},
		{
			name: "slice model run as a volume",
			edit: func(m *model.Manifest) {
				m.Input.Mode, m.Input.BatchSize, m.Input.Channels, m.Input.ChannelMode = model.InputVolume, 0, 0, ""
			},
			wantErr: `input "input" has shape [-1 1 -1 -1], but volume mode needs 5 dimensions [1, C, D, H, W]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := *sliceModel(t)
			tt.edit(&m.Manifest)
			v, _ := blocks(0, 1)
			_, err := r.Segment(context.Background(), &m, v)
			if !errors.Is(err, ErrModelMismatch) {
				t.Fatalf("error = %v, want ErrModelMismatch", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestRuntime_Segment_Window runs the 3-D reference model in window mode: a
// patch larger than the volume is the volume zero-padded, which the model's
// own zero padding makes identical to volume mode; overlapping patches blend
// to nearly the same mask.
func TestRuntime_Segment_Window(t *testing.T) {
	r := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	tests := []struct {
		name     string
		patch    []int
		overlap  float64
		blending model.Blending
		maxWrong float64 // fraction of voxels
	}{
		{"one patch larger than the volume", []int{24, 32, 48}, 0.5, model.BlendGaussian, 0},
		{"overlapping gaussian", []int{12, 16, 20}, 0.5, model.BlendGaussian, 0.01},
		{"overlapping constant", []int{12, 16, 20}, 0.25, model.BlendConstant, 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := withManifest(t, func(m *model.Manifest) {
				m.Input = model.Input{Name: "input", Mode: model.InputWindow, PatchSize: tt.patch, Overlap: &tt.overlap, Blending: tt.blending}
			})
			v, want := ellipsoid(0, 100)
			res, err := r.Segment(context.Background(), m, v)
			if err != nil {
				t.Fatal(err)
			}
			wrong := 0
			for i := range want {
				if res.Labels[i] != want[i] {
					wrong++
				}
			}
			if frac := float64(wrong) / float64(len(want)); frac > tt.maxWrong {
				t.Errorf("%d voxels (%.3f) differ from volume mode, want at most %.3f", wrong, frac, tt.maxWrong)
			}
		})
	}
}

func TestWindowStarts(t *testing.T) {
	tests := []struct {
		n, patch int
		overlap  float64
		want     []int
	}{
		{10, 20, 0.5, []int{0}},
		{20, 20, 0.5, []int{0}},
		{30, 20, 0.5, []int{0, 10}},
		{35, 20, 0.5, []int{0, 10, 15}},
		{40, 16, 0, []int{0, 16, 24}},
	}
	for _, tt := range tests {
		got := windowStarts(tt.n, tt.patch, tt.overlap)
		if len(got) != len(tt.want) {
			t.Errorf("windowStarts(%d, %d, %v) = %v, want %v", tt.n, tt.patch, tt.overlap, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("windowStarts(%d, %d, %v) = %v, want %v", tt.n, tt.patch, tt.overlap, got, tt.want)
				break
			}
		}
	}
}
