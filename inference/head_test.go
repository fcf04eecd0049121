package inference

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/segbridge/segbridge/internal/model"
	"github.com/segbridge/segbridge/internal/volume"
)

// wideHeadModel is testdata/models/wide-head.onnx (4 hidden channels, a
// 1x1x1 output layer to 12 classes) with a softmax manifest of 11 labels.
func wideHeadModel(t testing.TB) *model.Model {
	t.Helper()
	m := *referenceModel(t)
	m.ONNXPath = filepath.Join("..", "testdata", "models", "wide-head.onnx")
	m.Name = "wide-head"
	m.Output.Name = "logits"
	m.Output.Activation, m.Output.Threshold = model.ActivationSoftmax, nil
	m.Manifest.Segments = nil
	for l := 1; l <= 11; l++ {
		s := referenceModel(t).Manifest.Segments[0]
		s.Label = l
		s.Name = "Class " + string(rune('A'+l-1))
		m.Manifest.Segments = append(m.Manifest.Segments, s)
	}
	return &m
}

func TestSplitHead(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "models", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name, file, output string
		wantOK             bool
		wantK, wantC       int64
	}{
		{"1x1x1 output layer", "wide-head.onnx", "logits", true, 4, 12},
		{"sigmoid output", "head-threshold.onnx", "output", false, 0, 0},
		{"identity", "threshold.onnx", "output", false, 0, 0},
		{"not the output's name", "wide-head.onnx", "hr", false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cut, ok, err := splitHead(read(tt.file), tt.output)
			if err != nil || ok != tt.wantOK {
				t.Fatalf("splitHead = %v, %v; want ok %v", ok, err, tt.wantOK)
			}
			if ok && (cut.hiddenChannels != tt.wantK || cut.classes != tt.wantC || cut.hidden != "hr") {
				t.Errorf("cut at %q, %d -> %d channels; want hr, %d -> %d", cut.hidden, cut.hiddenChannels, cut.classes, tt.wantK, tt.wantC)
			}
		})
	}
	if _, _, err := splitHead([]byte{0x3a, 0xff}, "logits"); err == nil {
		t.Error("no error for a truncated model")
	}
}

// TestRuntime_Segment_CutHead: a model whose output layer is run slab by
// slab gives the labels the whole graph gives.
func TestRuntime_Segment_CutHead(t *testing.T) {
	m := wideHeadModel(t)
	whole := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	whole.wholeGraph = true
	cut := newTestRuntime(t, RuntimeConfig{IntraOpThreads: 1})
	cut.slabBytes = 12 * 4 * 40 * 30 * 3 // three slices of the first volume
	rng := rand.New(rand.NewPCG(4, 2))
	for _, dims := range [][3]int{{40, 30, 20}, {7, 5, 300}, {3, 1, 1}} {
		v := &volume.Volume{Geometry: volume.Geometry{Cols: dims[0], Rows: dims[1], Depth: dims[2], Spacing: [3]float64{1, 1, 1}},
			Data: make([]float32, dims[0]*dims[1]*dims[2])}
		for i := range v.Data {
			v.Data[i] = float32(rng.NormFloat64())
		}
		want, err := whole.Segment(context.Background(), m, v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cut.Segment(context.Background(), m, v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Labels, want.Labels) {
			t.Errorf("%v: the cut model's labels differ from the whole graph's", dims)
		}
		if distinct := countDistinct(got.Labels); len(got.Labels) > 100 && distinct < 4 {
			t.Errorf("%v: only %d distinct labels; the test shows little", dims, distinct)
		}
	}
	s, err := cut.session(m)
	if err != nil {
		t.Fatal(err)
	}
	if s.cut == nil {
		t.Error("the wide-head model was run whole")
	}
}

func countDistinct(labels []uint8) int {
	var seen [256]bool
	n := 0
	for _, l := range labels {
		if !seen[l] {
			seen[l] = true
			n++
		}
	}
	return n
}
