package inference

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// runBytes runs the ONNX model in data once on input of shape and returns
// its output.
func runBytes(t *testing.T, data []byte, output string, shape ort.Shape, input []float32) []float32 {
	t.Helper()
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"input"}, []string{output}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor(shape, input)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.Run([]ort.Value{in}, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	return append([]float32(nil), outs[0].(*ort.Tensor[float32]).GetData()...)
}

// sameOutput fuses the GELU chains of the model in path, checks how many,
// and runs both graphs on random input, which must give the same output
// bit for bit.
func sameOutput(t *testing.T, path, output string, wantFused int, dims [3]int) {
	t.Helper()
	newTestRuntime(t, RuntimeConfig{}) // the ONNX Runtime environment
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fused, n, err := fuseGelu(data)
	if err != nil || n != wantFused {
		t.Fatalf("fuseGelu fused %d chains (%v), want %d", n, err, wantFused)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	input := make([]float32, dims[0]*dims[1]*dims[2])
	for i := range input {
		input[i] = float32(rng.NormFloat64() * 3)
		if i%97 == 0 {
			input[i] = 0
		}
	}
	shape := ort.NewShape(1, 1, int64(dims[2]), int64(dims[1]), int64(dims[0]))
	want := runBytes(t, data, output, shape, input)
	got := runBytes(t, fused, output, shape, input)
	if len(got) != len(want) {
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
	diff := 0
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			diff++
		}
	}
	if diff > 0 {
		t.Errorf("%d of %d output values differ once the GELU chains are fused", diff, len(want))
	}
}

func TestFuseGelu(t *testing.T) {
	sameOutput(t, filepath.Join("..", "testdata", "models", "gelu-chain.onnx"), "logits", 2, [3]int{23, 17, 11})
	// Models without such a chain are left as they are.
	for _, name := range []string{"head-threshold.onnx", "wide-head.onnx"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "models", name))
		if err != nil {
			t.Fatal(err)
		}
		if out, n, err := fuseGelu(data); err != nil || n != 0 || string(out) != string(data) {
			t.Errorf("%s: fused %d chains (%v)", name, n, err)
		}
	}
}

// TestFuseGelu_Mindgrab: brainchop's mindgrab has 25 GELU chains; fused,
// its output is the same bit for bit.
func TestFuseGelu_Mindgrab(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	m := brainchopModel(t, "mindgrab")
	sameOutput(t, m.ONNXPath, "logits", 25, [3]int{40, 36, 33})
}
