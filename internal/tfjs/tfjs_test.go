package tfjs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synth builds a small model.json and its weight file for tests, with
// deterministic random weights, layer by layer.
type synth struct {
	class    string
	layers   []map[string]any
	weights  []map[string]any
	values   []float32
	prev     string
	channels int
	rng      *rand.Rand
}

func newSynth(class string, d, h, w, c int) *synth {
	s := &synth{class: class, rng: rand.New(rand.NewPCG(1, 2))}
	s.add("InputLayer", "input", map[string]any{"batch_input_shape": []any{nil, d, h, w, c}, "dtype": "float32"})
	s.channels = c
	return s
}

func (s *synth) add(class, name string, cfg map[string]any) {
	cfg["name"] = name
	l := map[string]any{"class_name": class, "name": name, "config": cfg, "inbound_nodes": []any{}}
	if s.prev != "" {
		l["inbound_nodes"] = []any{[]any{[]any{s.prev, 0, 0, map[string]any{}}}}
	}
	s.layers = append(s.layers, l)
	s.prev = name
}

func (s *synth) weight(name string, shape []int, gen func() float32) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	for range n {
		s.values = append(s.values, gen())
	}
	s.weights = append(s.weights, map[string]any{"name": name, "shape": shape, "dtype": "float32"})
}

func (s *synth) uniform(lo, hi float64) func() float32 {
	return func() float32 { return float32(lo + (hi-lo)*s.rng.Float64()) }
}

func (s *synth) conv(name string, filters, k, dil int, padding string, bias bool, act string, groups int) {
	s.add("Conv3D", name, map[string]any{"filters": filters, "kernel_size": []int{k, k, k}, "strides": []int{1, 1, 1},
		"padding": padding, "dilation_rate": []int{dil, dil, dil}, "activation": act, "use_bias": bias,
		"data_format": "channels_last", "groups": groups})
	scale := 1 / math.Sqrt(float64(k*k*k*s.channels/groups))
	s.weight(name+"/kernel", []int{k, k, k, s.channels / groups, filters}, s.uniform(-scale, scale))
	if bias {
		s.weight(name+"/bias", []int{filters}, s.uniform(-0.1, 0.1))
	}
	s.channels = filters
}

func (s *synth) act(name, a string) { s.add("Activation", name, map[string]any{"activation": a}) }

func (s *synth) bn(name string) {
	s.add("BatchNormalization", name, map[string]any{"axis": -1, "epsilon": 0.001, "center": true, "scale": true})
	n := []int{s.channels}
	s.weight(name+"/gamma", n, s.uniform(0.5, 1.5))
	s.weight(name+"/beta", n, s.uniform(-0.2, 0.2))
	s.weight(name+"/moving_mean", n, s.uniform(-0.3, 0.3))
	s.weight(name+"/moving_variance", n, s.uniform(0.5, 2))
}

// write writes model.json and weights.bin into a new folder.
func (s *synth) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"name": "m", "layers": s.layers,
		"input_layers": []any{[]any{"input", 0, 0}}, "output_layers": []any{[]any{s.prev, 0, 0}}}
	mj := map[string]any{
		"format": "layers-model", "generatedBy": "segbridge test", "convertedBy": "hand",
		"modelTopology":   map[string]any{"model_config": map[string]any{"class_name": s.class, "config": cfg}},
		"weightsManifest": []any{map[string]any{"paths": []string{"weights.bin"}, "weights": s.weights}},
	}
	if s.class == "Sequential" {
		mj["modelTopology"].(map[string]any)["model_config"].(map[string]any)["config"] = map[string]any{"name": "m", "layers": s.layers[1:]}
		first := s.layers[1]["config"].(map[string]any)
		first["batch_input_shape"] = s.layers[0]["config"].(map[string]any)["batch_input_shape"]
		for _, l := range s.layers {
			delete(l, "inbound_nodes") // a Sequential model's layers read the one before
		}
	}
	b, err := json.Marshal(mj)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "model.json"), b)
	writeFile(t, filepath.Join(dir, "weights.bin"), floatBytes(s.values))
	return dir
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// load parses and converts the model in dir.
func load(t *testing.T, dir string) (*Model, Weights, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseModel(b)
	if err != nil {
		return nil, nil, err
	}
	w, err := m.LoadWeights(func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) })
	return m, w, err
}

func TestConvert_Refuses(t *testing.T) {
	base := func() *synth { return newSynth("Functional", 6, 6, 6, 1) }
	for _, tc := range []struct {
		name  string
		build func() *synth
		edit  func(t *testing.T, dir string)
		want  string
	}{
		{"stride 2", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			s.layers[1]["config"].(map[string]any)["strides"] = []int{2, 2, 2}
			return s
		}, nil, "layer c (Conv3D): strides [2 2 2]: only stride 1 keeps the volume's size"},
		{"valid padding", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "valid", true, "linear", 1)
			return s
		}, nil, "padding valid with a [3 3 3] kernel shrinks the volume"},
		{"unknown layer", func() *synth {
			s := base()
			s.add("MaxPooling3D", "pool", map[string]any{})
			return s
		}, nil, "layer pool (MaxPooling3D): this layer class is not converted"},
		{"unknown activation", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			s.act("a", "mish")
			return s
		}, nil, `layer a (Activation): activation "mish" is not converted`},
		{"instance norm after an activation", func() *synth {
			s := base()
			s.conv("c_gn", 2, 3, 1, "same", false, "relu", 1)
			return s
		}, nil, "a _gn convolution with its own activation (relu)"},
		{"short weight file", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			return s
		}, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "weights.bin")
			b, _ := os.ReadFile(p)
			writeFile(t, p, b[:len(b)-4])
		}, "weight files weights.bin hold 220 bytes, but their weights need 224"},
		{"quantized weights", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			s.weights[0]["quantization"] = map[string]any{"dtype": "uint8", "min": 0, "scale": 1}
			return s
		}, nil, "weight c/kernel is quantized"},
		{"weight of no layer", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			s.weights[1]["name"] = "other/bias"
			return s
		}, nil, "weight other/bias belongs to no layer"},
		{"bias missing", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", false, "linear", 1)
			s.layers[1]["config"].(map[string]any)["use_bias"] = true
			return s
		}, nil, "use_bias is true but the weights have no c/bias"},
		{"unsafe weight path", func() *synth {
			s := base()
			s.conv("c", 2, 3, 1, "same", true, "linear", 1)
			return s
		}, func(t *testing.T, dir string) {
			p := filepath.Join(dir, "model.json")
			b, _ := os.ReadFile(p)
			writeFile(t, p, []byte(strings.Replace(string(b), `"weights.bin"`, `"../weights.bin"`, 1)))
		}, `weight file "../weights.bin" is not a plain file name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.build().write(t)
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			m, w, err := load(t, dir)
			if err == nil {
				_, err = Convert(m, w, Options{})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

func TestParseModel_Malformed(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", "{", "parse model.json"},
		{"graph model", `{"format":"graph-model"}`, "not layers-model"},
		{"no layers", `{"format":"layers-model","modelTopology":{"model_config":{"class_name":"Functional","config":{"layers":[],"output_layers":[["x",0,0]]}}}}`, "0 input layers"},
		{"two inputs", `{"format":"layers-model","modelTopology":{"model_config":{"class_name":"Functional","config":{"layers":[
			{"class_name":"InputLayer","name":"a","config":{"batch_input_shape":[null,1,1,1,1]},"inbound_nodes":[]},
			{"class_name":"InputLayer","name":"b","config":{"batch_input_shape":[null,1,1,1,1]},"inbound_nodes":[]},
			{"class_name":"Add","name":"s","config":{},"inbound_nodes":[[["a",0,0,{}],["b",0,0,{}]]]}],"output_layers":[["s",0,0]]}}}}`,
			"layer 2 (s): the layer reads 2 tensors"},
		{"forward reference", `{"format":"layers-model","modelTopology":{"model_config":{"class_name":"Functional","config":{"layers":[
			{"class_name":"InputLayer","name":"a","config":{"batch_input_shape":[null,1,1,1,1]},"inbound_nodes":[]},
			{"class_name":"Activation","name":"x","config":{"activation":"relu"},"inbound_nodes":[[["y",0,0,{}]]]},
			{"class_name":"Activation","name":"y","config":{"activation":"relu"},"inbound_nodes":[[["a",0,0,{}]]]}],"output_layers":[["y",0,0]]}}}}`,
			"layer x reads y, which does not come before it"},
		{"huge weight", `{"format":"layers-model","modelTopology":{"model_config":{"class_name":"Sequential","config":[
			{"class_name":"Activation","config":{"name":"x","activation":"relu","batch_input_shape":[null,1,1,1,1]}}]}},
			"weightsManifest":[{"paths":["w.bin"],"weights":[{"name":"x/k","shape":[65536,65536,65536,65536],"dtype":"float32"}]}]}`,
			"weight x/k has shape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseModel([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrFormat) {
				t.Fatalf("ParseModel error = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParseModel: no model.json makes the parser or the converter panic, and
// a model that parses has a sane manifest.
func FuzzParseModel(f *testing.F) {
	s := newSynth("Functional", 4, 4, 4, 1)
	s.conv("c_gn", 2, 3, 2, "same", false, "linear", 1)
	s.act("a", "gelu")
	s.bn("bn")
	mj := map[string]any{"format": "layers-model", "modelTopology": map[string]any{"model_config": map[string]any{"class_name": "Functional",
		"config": map[string]any{"layers": s.layers, "output_layers": []any{[]any{s.prev, 0, 0}}}}},
		"weightsManifest": []any{map[string]any{"paths": []string{"w.bin"}, "weights": s.weights}}}
	seed, _ := json.Marshal(mj)
	f.Add(seed)
	f.Add([]byte(`{"format":"layers-model","modelTopology":{"model_config":{"class_name":"Sequential","config":[]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModel(data)
		if err != nil {
			return
		}
		if len(m.Layers) == 0 || m.OutputLayer == "" {
			t.Fatal("a parsed model has no layers or no output")
		}
		// Weights of zeros, of the sizes the manifest gives.
		w, err := m.LoadWeights(func(name string) ([]byte, error) {
			for _, g := range m.Groups {
				if len(g.Paths) > 0 && g.Paths[0] == name {
					n := 0
					for _, s := range g.Weights {
						k := 1
						for _, d := range s.Shape {
							k *= d
						}
						n += 4 * k
					}
					if n > 1<<20 {
						return nil, errors.New("too large for the fuzzer")
					}
					return make([]byte, n), nil
				}
			}
			return nil, nil
		})
		if err != nil {
			return
		}
		_, _ = Convert(m, w, Options{})
	})
}
