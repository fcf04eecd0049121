package tfjs

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/rs/zerolog"

	"github.com/segbridge/segbridge/inference"
	"github.com/segbridge/segbridge/internal/fixture"
)

func newRuntime(t *testing.T) *inference.Runtime {
	t.Helper()
	rt, err := inference.NewRuntime(zerolog.Nop(), inference.RuntimeConfig{LibraryPath: fixture.ORTLibrary(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// convertFile converts the model in dir and writes model.onnx beside it.
func convertFile(t *testing.T, dir string) string {
	t.Helper()
	m, w, err := load(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	om, err := Convert(m, w, Options{GraphName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := om.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, b)
	return path
}

// TestConvert_MatchesKeras converts small networks that use every layer,
// activation and padding case the converter handles, and compares ONNX
// Runtime's output with an independent numpy forward pass of the original
// model.json (testdata/tools/tfjs_forward.py: Keras' semantics written out,
// float64).
func TestConvert_MatchesKeras(t *testing.T) {
	rt := newRuntime(t)
	functional := func() *synth {
		s := newSynth("Functional", 11, 9, 8, 2)
		s.conv("c1_gn", 4, 3, 2, "same", false, "linear", 1) // instance norm
		s.act("a1", "gelu")
		s.conv("c2", 4, 2, 1, "same", true, "relu", 1) // even kernel: TensorFlow pads after
		s.conv("c3", 4, 3, 1, "same", true, "linear", 1)
		s.bn("bn3") // folded into c3
		s.act("a3", "elu")
		s.add("Dropout", "drop", map[string]any{"rate": 0.5})
		s.conv("c4", 4, 3, 3, "same", false, "linear", 2) // groups, no bias
		s.bn("bn4")                                       // folded, adding a bias
		s.act("a4", "selu")
		s.bn("bn5") // after an activation: an ONNX BatchNormalization
		s.conv("c5", 3, 3, 4, "same", true, "tanh", 1)
		s.act("a5", "sigmoid")
		s.conv("c6", 3, 3, 1, "same", true, "softplus", 1)
		s.act("a6", "swish")
		s.conv("c7", 3, 3, 1, "same", true, "relu6", 1)
		s.act("a7", "softmax")
		s.conv("out", 5, 1, 1, "valid", true, "linear", 1) // logits, as MeshNet's output
		return s
	}
	sequential := func() *synth {
		s := newSynth("Sequential", 7, 8, 9, 1)
		s.conv("c1", 3, 3, 1, "same", true, "relu", 1)
		s.conv("c2", 3, 3, 2, "same", true, "elu", 1)
		s.conv("out", 2, 1, 1, "same", true, "linear", 1)
		return s
	}
	for _, tc := range []struct {
		name  string
		build func() *synth
	}{{"functional", functional}, {"sequential", sequential}} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.build()
			dir := s.write(t)
			shape := s.layers[0]["config"].(map[string]any)["batch_input_shape"].([]any)
			d, h, w, c := shape[1].(int), shape[2].(int), shape[3].(int), shape[4].(int)
			rng := rand.New(rand.NewPCG(3, 4))
			in := make([]float32, d*h*w*c) // [D, H, W, C], Keras' layout
			for i := range in {
				in[i] = float32(rng.Float64()*2 - 0.5)
			}
			writeFile(t, filepath.Join(dir, "in.f32"), floatBytes(in))
			args := []string{filepath.Join(fixture.Root(t), "testdata/tools/tfjs_forward.py"), dir, filepath.Join(dir, "in.f32")}
			for _, n := range []int{d, h, w, c} {
				args = append(args, strconv.Itoa(n))
			}
			args = append(args, filepath.Join(dir, "want.f32"))
			if out, err := exec.Command(fixture.Python, args...).CombinedOutput(); err != nil {
				t.Fatalf("tfjs_forward.py (run make deps): %v\n%s", err, out)
			}
			want := readFloats(t, filepath.Join(dir, "want.f32")) // [D, H, W, K]
			k := len(want) / (d * h * w)

			path := convertFile(t, dir)
			nc := make([]float32, len(in)) // [1, C, D, H, W]
			for v := range d * h * w {
				for ch := range c {
					nc[ch*d*h*w+v] = in[v*c+ch]
				}
			}
			got, err := rt.RunFile(context.Background(), path, "input", "logits",
				inference.Tensor{Shape: []int64{1, int64(c), int64(d), int64(h), int64(w)}, Data: nc})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Shape) != fmt.Sprint([]int64{1, int64(k), int64(d), int64(h), int64(w)}) {
				t.Fatalf("output shape %v, want [1 %d %d %d %d]", got.Shape, k, d, h, w)
			}
			var worst, scale float64
			for v := range d * h * w {
				for ch := range k {
					ref := float64(want[v*k+ch])
					scale = max(scale, math.Abs(ref))
					worst = max(worst, math.Abs(float64(got.Data[ch*d*h*w+v])-ref))
				}
			}
			t.Logf("largest difference from the numpy forward pass: %.3g (outputs up to %.3g)", worst, scale)
			if worst > 1e-5*max(1, scale) {
				t.Errorf("converted model differs from Keras' semantics by %g", worst)
			}
		})
	}
}

func readFloats(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// brainchopModels are the six published brainchop models the project
// installs.
var brainchopModels = []string{"model5_gw_ae", "model11_gw_ae", "model20chan3cls", "mindgrab", "model18cls", "model21_104class"}

// TestConvert_Brainchop converts each brainchop model from its published
// TensorFlow.js files and runs it beside the reference ONNX conversion
// (../shared/models/brainchop, checked by its authors against an
// independent forward pass) on the same 96³ crop of a real T1 brain (ch2, in
// the conformed LIA orientation the models expect): the logits must agree
// to 1e-5 and the labels (argmax) everywhere. Needs ../shared.
func TestConvert_Brainchop(t *testing.T) {
	published := fixture.Shared(t, "models", "brainchop-tfjs")
	reference := fixture.Shared(t, "models", "brainchop")
	rt := newRuntime(t)
	const n = 96
	in := ch2Crop(t, n)
	for _, name := range brainchopModels {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"model.json", "model.bin", "group1-shard1of1.bin"} {
				if b, err := os.ReadFile(filepath.Join(published, name, f)); err == nil {
					writeFile(t, filepath.Join(dir, f), b)
				}
			}
			ours := convertFile(t, dir)
			data := in
			if name == "model20chan3cls" {
				data = quantileScaled(in, 0.05, 0.95) // how it was trained (MODELS.md)
			}
			tensor := inference.Tensor{Shape: []int64{1, 1, n, n, n}, Data: data}
			got, err := rt.RunFile(context.Background(), ours, "input", "logits", tensor)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rt.RunFile(context.Background(), filepath.Join(reference, name+".onnx"), "input", "logits", tensor)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
				t.Fatalf("output shape %v, reference %v", got.Shape, want.Shape)
			}
			var worst, scale float64
			for i := range got.Data {
				worst = max(worst, math.Abs(float64(got.Data[i]-want.Data[i])))
				scale = max(scale, math.Abs(float64(want.Data[i])))
			}
			k, voxels := int(got.Shape[1]), n*n*n
			differ, counts := 0, map[int]int{}
			for v := range voxels {
				a, b := argmax(got.Data, v, k, voxels), argmax(want.Data, v, k, voxels)
				if a != b {
					differ++
				}
				counts[b]++
			}
			t.Logf("%s: largest difference %.3g (logits up to %.3g), %d of %d labels differ, %d classes present",
				name, worst, scale, differ, voxels, len(counts))
			if worst > 1e-5 {
				t.Errorf("converted logits differ from the reference by %g", worst)
			}
			if differ > 0 {
				t.Errorf("%d labels differ from the reference", differ)
			}
			if len(counts) < 2 {
				t.Errorf("the reference gives one class everywhere: the input does not test the model")
			}
		})
	}
}

// quantileScaled maps the lo and hi quantiles of v to 0 and 1, unclipped.
func quantileScaled(v []float32, lo, hi float64) []float32 {
	sorted := slices.Clone(v)
	slices.Sort(sorted)
	a, b := sorted[int(lo*float64(len(v)-1))], sorted[int(hi*float64(len(v)-1))]
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = (x - a) / (b - a)
	}
	return out
}

func argmax(data []float32, v, k, stride int) int {
	best := 0
	for c := 1; c < k; c++ {
		if data[c*stride+v] > data[best*stride+v] {
			best = c
		}
	}
	return best
}

// ch2Crop reads mricron's ch2 T1 (1 mm, stored RAS), turns it to the
// conformed LIA orientation (D to the left, H inferior, W anterior), takes
// the central n³ voxels and scales them to [0, 1], as brainchop feeds its
// models.
func ch2Crop(t *testing.T, n int) []float32 {
	t.Helper()
	vol, dims := readNIfTI(t, fixture.CH2)
	out := make([]float32, n*n*n)
	lo := [3]int{(dims[0] - n) / 2, (dims[2] - n) / 2, (dims[1] - n) / 2} // offsets along L, I, A
	var hi float32
	for d := range n {
		for h := range n {
			for w := range n {
				x := dims[0] - 1 - (lo[0] + d) // left = decreasing x
				z := dims[2] - 1 - (lo[1] + h) // inferior = decreasing z
				y := lo[2] + w                 // anterior = increasing y
				v := vol[x+dims[0]*(y+dims[1]*z)]
				out[(d*n+h)*n+w] = v
				hi = max(hi, v)
			}
		}
	}
	for i := range out {
		out[i] /= hi
	}
	return out
}

// readNIfTI reads a gzipped NIfTI-1 volume of uint8 voxels (as ch2 is).
func readNIfTI(t *testing.T, path string) ([]float32, [3]int) {
	t.Helper()
	out, err := exec.Command("gzip", "-dc", path).Output()
	if err != nil {
		t.Fatalf("read %s (run make deps for mricron-data): %v", path, err)
	}
	le := binary.LittleEndian
	dims := [3]int{int(le.Uint16(out[42:])), int(le.Uint16(out[44:])), int(le.Uint16(out[46:]))}
	if dt := le.Uint16(out[70:]); dt != 2 {
		t.Fatalf("%s: datatype %d, want uint8 (2)", path, dt)
	}
	off := int(math.Float32frombits(le.Uint32(out[108:])))
	off = max(off, 352)
	voxels := out[off : off+dims[0]*dims[1]*dims[2]]
	vol := make([]float32, len(voxels))
	for i, v := range voxels {
		vol[i] = float32(v)
	}
	return vol, dims
}
