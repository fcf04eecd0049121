// Package tfjs reads models published in the TensorFlow.js layers format —
// a model.json (Keras topology and a manifest of weights) and binary weight
// files — and converts the fully convolutional 3-D networks of the MeshNet
// family, as brainchop publishes them, to ONNX (see Convert).
package tfjs

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/segbridge/segbridge/internal/checked"
)

// MaxModelJSON bounds the model.json that ParseModel reads: brainchop's are
// at most 70 KB.
const MaxModelJSON = 16 << 20

// maxWeights bounds the float32 values of all weights together (1 GiB), so
// a manifest cannot ask for more memory than a model could need.
const maxWeights = 1 << 28

// ErrFormat is wrapped by every error that refuses a model.json or its
// weights as malformed or as outside what this package converts.
var ErrFormat = errors.New("tfjs model")

// Model is a parsed model.json.
type Model struct {
	// Format is "layers-model".
	Format string
	// GeneratedBy and ConvertedBy say which tools wrote the file.
	GeneratedBy, ConvertedBy string
	// ClassName is the Keras model class: Functional, Model or Sequential.
	ClassName string
	// Layers in the file's order, which Keras writes topologically sorted.
	Layers []Layer
	// OutputLayer names the layer whose output is the model's.
	OutputLayer string
	// Groups are the weight groups of the manifest, in order.
	Groups []WeightGroup
}

// Layer is one Keras layer.
type Layer struct {
	ClassName string
	Name      string
	Config    LayerConfig
	// Input names the layer whose output this one reads; empty for an
	// InputLayer.
	Input string
}

// LayerConfig holds the Keras layer settings the converter reads. Settings
// it does not read are ignored; those it reads are checked by Convert.
type LayerConfig struct {
	Filters         int      `json:"filters"`
	KernelSize      intList  `json:"kernel_size"`
	Strides         intList  `json:"strides"`
	Padding         string   `json:"padding"`
	DilationRate    intList  `json:"dilation_rate"`
	Activation      string   `json:"activation"`
	UseBias         *bool    `json:"use_bias"`
	DataFormat      string   `json:"data_format"`
	Groups          int      `json:"groups"`
	BatchInputShape []*int   `json:"batch_input_shape"`
	Axis            intList  `json:"axis"`
	Epsilon         *float64 `json:"epsilon"`
	Center          *bool    `json:"center"`
	Scale           *bool    `json:"scale"`
	Dtype           string   `json:"dtype"`
}

// intList is a Keras setting written as one number or a list of numbers.
type intList []int

func (l *intList) UnmarshalJSON(b []byte) error {
	var one int
	if err := json.Unmarshal(b, &one); err == nil {
		*l = intList{one}
		return nil
	}
	var many []int
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("%s is not a number or a list of numbers", b)
	}
	*l = many
	return nil
}

// WeightGroup is one group of the weights manifest: weight files (shards)
// whose concatenation holds its weights one after the other.
type WeightGroup struct {
	Paths   []string     `json:"paths"`
	Weights []WeightSpec `json:"weights"`
}

// WeightSpec describes one weight tensor.
type WeightSpec struct {
	Name         string          `json:"name"`
	Shape        []int           `json:"shape"`
	DType        string          `json:"dtype"`
	Quantization json.RawMessage `json:"quantization,omitempty"`
}

// Files returns the weight files the manifest names, in order.
func (m *Model) Files() []string {
	var out []string
	for _, g := range m.Groups {
		out = append(out, g.Paths...)
	}
	return out
}

// ParseModel parses and checks a model.json of the layers format: a Keras
// Functional or Sequential model whose layers each read one other layer,
// and a manifest of float32 weights whose sizes add up.
func ParseModel(data []byte) (*Model, error) {
	m, err := parseModel(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return m, nil
}

func parseModel(data []byte) (*Model, error) {
	if len(data) > MaxModelJSON {
		return nil, fmt.Errorf("model.json is larger than %d bytes", MaxModelJSON)
	}
	var raw struct {
		Format        string `json:"format"`
		GeneratedBy   string `json:"generatedBy"`
		ConvertedBy   string `json:"convertedBy"`
		ModelTopology struct {
			ModelConfig struct {
				ClassName string          `json:"class_name"`
				Config    json.RawMessage `json:"config"`
			} `json:"model_config"`
		} `json:"modelTopology"`
		WeightsManifest []WeightGroup `json:"weightsManifest"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("parse model.json: %v", err)
	}
	if raw.Format != "layers-model" {
		return nil, fmt.Errorf("format is %q, not layers-model (graph models are not converted)", raw.Format)
	}
	m := &Model{Format: raw.Format, GeneratedBy: raw.GeneratedBy, ConvertedBy: raw.ConvertedBy,
		ClassName: raw.ModelTopology.ModelConfig.ClassName, Groups: raw.WeightsManifest}
	cfg := raw.ModelTopology.ModelConfig.Config
	var err error
	switch m.ClassName {
	case "Functional", "Model":
		err = m.parseFunctional(cfg)
	case "Sequential":
		err = m.parseSequential(cfg)
	default:
		err = fmt.Errorf("model class %q is not Functional or Sequential", m.ClassName)
	}
	if err != nil {
		return nil, err
	}
	if err := m.checkWeights(); err != nil {
		return nil, err
	}
	return m, nil
}

type rawLayer struct {
	ClassName    string            `json:"class_name"`
	Name         string            `json:"name"`
	Config       json.RawMessage   `json:"config"`
	InboundNodes []json.RawMessage `json:"inbound_nodes"`
}

func (m *Model) parseFunctional(cfg json.RawMessage) error {
	var c struct {
		Layers       []rawLayer          `json:"layers"`
		OutputLayers [][]json.RawMessage `json:"output_layers"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return fmt.Errorf("model config: %v", err)
	}
	if len(c.OutputLayers) != 1 || len(c.OutputLayers[0]) == 0 {
		return fmt.Errorf("the model has %d outputs; one is converted", len(c.OutputLayers))
	}
	if err := json.Unmarshal(c.OutputLayers[0][0], &m.OutputLayer); err != nil {
		return fmt.Errorf("output_layers: %v", err)
	}
	for i, rl := range c.Layers {
		l, err := newLayer(rl)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %v", i, rl.Name, err)
		}
		if l.Input, err = inbound(rl.InboundNodes); err != nil {
			return fmt.Errorf("layer %d (%s): %v", i, rl.Name, err)
		}
		m.Layers = append(m.Layers, l)
	}
	return m.checkLayers()
}

// parseSequential reads a Sequential model, whose layers each read the one
// before; its config is a list of layers or {"layers": [...]}.
func (m *Model) parseSequential(cfg json.RawMessage) error {
	var layers []rawLayer
	if err := json.Unmarshal(cfg, &layers); err != nil {
		var c struct {
			Layers []rawLayer `json:"layers"`
		}
		if err := json.Unmarshal(cfg, &c); err != nil {
			return fmt.Errorf("model config: %v", err)
		}
		layers = c.Layers
	}
	prev := ""
	for i, rl := range layers {
		l, err := newLayer(rl)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %v", i, rl.Name, err)
		}
		if i == 0 && l.ClassName != "InputLayer" {
			// A Sequential model may start without an InputLayer: its first
			// layer then carries batch_input_shape.
			in := Layer{ClassName: "InputLayer", Name: "input", Config: LayerConfig{BatchInputShape: l.Config.BatchInputShape}}
			m.Layers = append(m.Layers, in)
			prev = in.Name
		}
		l.Input = prev
		if l.ClassName == "InputLayer" {
			l.Input = ""
		}
		m.Layers = append(m.Layers, l)
		prev = l.Name
	}
	m.OutputLayer = prev
	return m.checkLayers()
}

func newLayer(rl rawLayer) (Layer, error) {
	l := Layer{ClassName: rl.ClassName, Name: rl.Name}
	if len(rl.Config) > 0 {
		if err := json.Unmarshal(rl.Config, &l.Config); err != nil {
			return l, fmt.Errorf("config: %v", err)
		}
	}
	if l.Name == "" {
		var named struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(rl.Config, &named)
		l.Name = named.Name
	}
	if l.Name == "" {
		return l, errors.New("no name")
	}
	return l, nil
}

// inbound reads a Keras 2 inbound_nodes list, [[["name", 0, 0, {}]]], and
// returns the one layer it names ("" for none).
func inbound(nodes []json.RawMessage) (string, error) {
	switch len(nodes) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("the layer is applied %d times (shared layers are not converted)", len(nodes))
	}
	var entries [][]json.RawMessage
	if err := json.Unmarshal(nodes[0], &entries); err != nil {
		return "", fmt.Errorf("inbound_nodes is not in the Keras 2 format: %v", err)
	}
	if len(entries) != 1 || len(entries[0]) == 0 {
		return "", fmt.Errorf("the layer reads %d tensors; only layers that read one are converted", len(entries))
	}
	var name string
	if err := json.Unmarshal(entries[0][0], &name); err != nil {
		return "", fmt.Errorf("inbound_nodes: %v", err)
	}
	return name, nil
}

// checkLayers checks that layer names are unique, every layer reads one
// that comes before it, and the output layer exists.
func (m *Model) checkLayers() error {
	seen := map[string]bool{}
	inputs := 0
	for _, l := range m.Layers {
		if seen[l.Name] {
			return fmt.Errorf("two layers are named %q", l.Name)
		}
		switch {
		case l.ClassName == "InputLayer":
			inputs++
			if l.Input != "" {
				return fmt.Errorf("input layer %s reads layer %s", l.Name, l.Input)
			}
		case l.Input == "":
			return fmt.Errorf("layer %s (%s) reads no layer", l.Name, l.ClassName)
		case !seen[l.Input]:
			return fmt.Errorf("layer %s reads %s, which does not come before it", l.Name, l.Input)
		}
		seen[l.Name] = true
	}
	if inputs != 1 {
		return fmt.Errorf("the model has %d input layers; one is converted", inputs)
	}
	if !seen[m.OutputLayer] {
		return fmt.Errorf("output layer %q is not a layer of the model", m.OutputLayer)
	}
	return nil
}

// checkWeights checks the manifest: float32 weights of positive sizes, each
// belonging to a layer, their total within maxWeights.
func (m *Model) checkWeights() error {
	layers := map[string]bool{}
	for _, l := range m.Layers {
		layers[l.Name] = true
	}
	total := 0
	for gi, g := range m.Groups {
		if len(g.Paths) == 0 && len(g.Weights) > 0 {
			return fmt.Errorf("weight group %d names no file", gi)
		}
		for _, p := range g.Paths {
			if !safeName(p) {
				return fmt.Errorf("weight file %q is not a plain file name", p)
			}
		}
		for _, w := range g.Weights {
			if len(w.Quantization) > 0 && string(w.Quantization) != "null" {
				return fmt.Errorf("weight %s is quantized; only float32 weights are converted", w.Name)
			}
			if w.DType != "float32" {
				return fmt.Errorf("weight %s is %s; only float32 weights are converted", w.Name, w.DType)
			}
			n, ok := checked.Mul(w.Shape...)
			if !ok || n <= 0 || slices.ContainsFunc(w.Shape, func(d int) bool { return d <= 0 }) {
				return fmt.Errorf("weight %s has shape %v", w.Name, w.Shape)
			}
			if total += n; total > maxWeights {
				return fmt.Errorf("the weights hold more than %d values", maxWeights)
			}
			layer, _ := splitWeightName(w.Name)
			if !layers[layer] {
				return fmt.Errorf("weight %s belongs to no layer of the model", w.Name)
			}
		}
	}
	return nil
}

// safeName reports whether a weight file name stays in its model's folder.
func safeName(p string) bool {
	return p != "" && p != "." && p != ".." && !strings.ContainsAny(p, `/\`) && !strings.HasPrefix(p, ".")
}

// splitWeightName splits "conv3d_0/kernel" (or "conv3d_0/kernel:0") into
// the layer and the variable.
func splitWeightName(name string) (layer, variable string) {
	name, _, _ = strings.Cut(name, ":")
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}

// Weights are a model's weight tensors by layer and variable name
// ("conv3d_0" → "kernel").
type Weights map[string]map[string]Tensor

// Tensor is one weight: its Keras shape and values in row-major order.
type Tensor struct {
	Shape  []int
	Values []float32
}

// LoadWeights reads the weights the manifest describes from the files read
// returns (by file name). Every group's files must hold exactly its
// weights: a short or long file is an error naming it.
func (m *Model) LoadWeights(read func(name string) ([]byte, error)) (Weights, error) {
	w := Weights{}
	for _, g := range m.Groups {
		var buf []byte
		for _, p := range g.Paths {
			b, err := read(p)
			if err != nil {
				return nil, fmt.Errorf("weight file %s: %w", p, err)
			}
			buf = append(buf, b...)
		}
		need := 0
		for _, s := range g.Weights {
			n, _ := checked.Mul(s.Shape...) // checked by ParseModel
			need += 4 * n
		}
		if len(buf) != need {
			return nil, fmt.Errorf("%w: weight files %s hold %d bytes, but their weights need %d",
				ErrFormat, strings.Join(g.Paths, ", "), len(buf), need)
		}
		off := 0
		for _, s := range g.Weights {
			n, _ := checked.Mul(s.Shape...)
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[off+4*i:]))
			}
			off += 4 * n
			layer, variable := splitWeightName(s.Name)
			if w[layer] == nil {
				w[layer] = map[string]Tensor{}
			}
			if _, dup := w[layer][variable]; dup {
				return nil, fmt.Errorf("%w: weight %s is listed twice", ErrFormat, s.Name)
			}
			w[layer][variable] = Tensor{Shape: s.Shape, Values: vals}
		}
	}
	return w, nil
}
