package tfjs

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/segbridge/segbridge/internal/onnx"
)

// Opset is the ONNX operator set Convert writes: 17, the newest before Gelu
// became an operator (20), so ONNX Runtime 1.12 and newer run the result.
const Opset = 17

// InstanceNormSuffix marks the layers after which MeshNet models exported
// from PyTorch (brainchop's "PyTorch_to_TF_JS" exporter, e.g. mindgrab)
// apply a parameter-free instance normalisation. TensorFlow.js has no such
// layer, so the exporter keeps it out of the topology and names the
// convolution instead; brainchop's runtime applies it by that name, and so
// does Convert.
const InstanceNormSuffix = "_gn"

// instanceNormEpsilon is PyTorch's GroupNorm and InstanceNorm default, which
// the exported models were trained with.
const instanceNormEpsilon = 1e-5

// Options are what Convert writes beside the network.
type Options struct {
	// GraphName names the ONNX graph. Default "model".
	GraphName string
	// InputName and OutputName name the graph's input and output. Defaults
	// "input" and "logits".
	InputName, OutputName string
	// ProducerVersion is written as the producer's version (the producer is
	// "segbridge").
	ProducerVersion string
	// Metadata are added to the model's metadata_props, after those Convert
	// writes itself (num_classes, layout, source_generatedBy).
	Metadata []onnx.Property
}

// Convert turns a fully convolutional 3-D Keras network into an ONNX model
// with input [1, C, D, H, W] and output [1, K, D, H, W] (float32; D, H and
// W free), the spatial axes in the order of the Keras input [N, D, H, W, C].
//
// It converts the layers of the MeshNet family: Conv3D (any kernel and
// dilation, stride 1, "same" padding as TensorFlow pads — the odd voxel
// after — or "valid" with a 1-voxel kernel, optional bias, groups, its own
// activation), Activation (linear, relu, relu6, elu, selu, gelu, sigmoid,
// tanh, softplus, swish/silu, softmax), BatchNormalization (folded into the
// convolution before it when that convolution feeds nothing else, otherwise
// an ONNX BatchNormalization), Dropout (nothing at inference) and the
// instance normalisation of layers named *_gn (InstanceNormSuffix). Any
// other layer, or a setting that would change the volume's size, is an
// error naming the layer, so a network is converted whole or not at all.
func Convert(m *Model, w Weights, opts Options) (*onnx.Model, error) {
	if opts.GraphName == "" {
		opts.GraphName = "model"
	}
	if opts.InputName == "" {
		opts.InputName = "input"
	}
	if opts.OutputName == "" {
		opts.OutputName = "logits"
	}
	c := &converter{m: m, w: w, opts: opts, values: map[string]value{}, consumers: map[string]int{}, used: map[string]bool{}}
	for _, l := range m.Layers {
		if l.Input != "" {
			c.consumers[l.Input]++
		}
	}
	for _, l := range m.Layers {
		if err := c.layer(l); err != nil {
			return nil, fmt.Errorf("%w: layer %s (%s): %v", ErrFormat, l.Name, l.ClassName, err)
		}
	}
	for layer, vars := range w {
		for v := range vars {
			if !c.used[layer+"/"+v] {
				return nil, fmt.Errorf("%w: weight %s/%s is not used by any layer", ErrFormat, layer, v)
			}
		}
	}
	out := c.values[m.OutputLayer]
	if out.name == c.opts.InputName {
		return nil, fmt.Errorf("%w: the output layer %s is the input", ErrFormat, m.OutputLayer)
	}
	c.rename(out.name, opts.OutputName)

	spatial := []onnx.Dim{onnx.Free("D"), onnx.Free("H"), onnx.Free("W")}
	g := onnx.Graph{
		Name:         opts.GraphName,
		Nodes:        c.nodes,
		Initializers: c.inits,
		Inputs:       []onnx.ValueInfo{onnx.TensorValue(opts.InputName, onnx.Float, append([]onnx.Dim{onnx.Fixed(1), onnx.Fixed(int64(c.inChannels))}, spatial...)...)},
		Outputs:      []onnx.ValueInfo{onnx.TensorValue(opts.OutputName, onnx.Float, append([]onnx.Dim{onnx.Fixed(1), onnx.Fixed(int64(out.channels))}, spatial...)...)},
	}
	meta := []onnx.Property{
		{Key: "num_classes", Value: strconv.Itoa(out.channels)},
		{Key: "layout", Value: "NCDHW; spatial axes = the Keras input's axes 1..3, in order"},
		{Key: "source_generatedBy", Value: m.GeneratedBy},
	}
	return &onnx.Model{
		Opsets:          []onnx.Opset{{Domain: "", Version: Opset}},
		ProducerName:    "segbridge",
		ProducerVersion: opts.ProducerVersion,
		Graph:           g,
		Metadata:        append(meta, opts.Metadata...),
	}, nil
}

// value is what a layer's output became in the ONNX graph.
type value struct {
	name     string
	channels int
	// conv is the index of the Conv node that produced it, when nothing
	// was applied after the convolution (a batch norm may fold into it).
	conv int
	// convW and convB are that node's weight and bias initializers.
	convW, convB int
}

type converter struct {
	m    *Model
	w    Weights
	opts Options

	nodes      []onnx.Node
	inits      []onnx.Tensor
	values     map[string]value // by Keras layer name
	consumers  map[string]int   // layers reading each layer
	used       map[string]bool  // weights read, "layer/variable"
	names      int
	consts     map[float32]string
	inChannels int
}

// fresh returns a new value name derived from a layer's name.
func (c *converter) fresh(layer, what string) string {
	c.names++
	return fmt.Sprintf("%s_%s_%d", layer, what, c.names)
}

func (c *converter) node(op, layer string, inputs []string, attrs ...onnx.Attribute) string {
	out := c.fresh(layer, strings.ToLower(op))
	c.nodes = append(c.nodes, onnx.Node{Name: out, OpType: op, Inputs: inputs, Outputs: []string{out}, Attributes: attrs})
	return out
}

func (c *converter) init(t onnx.Tensor) int {
	c.inits = append(c.inits, t)
	return len(c.inits) - 1
}

// constant returns the name of a one-value float initializer, shared by
// every node that needs the same value.
func (c *converter) constant(v float32) string {
	if c.consts == nil {
		c.consts = map[float32]string{}
	}
	if name, ok := c.consts[v]; ok {
		return name
	}
	name := c.fresh("const", strconv.FormatFloat(float64(v), 'g', -1, 32))
	c.init(onnx.FloatTensor(name, []int64{1}, []float32{v}))
	c.consts[v] = name
	return name
}

// weight returns a layer's weight and marks it used.
func (c *converter) weight(layer, variable string) (Tensor, bool) {
	t, ok := c.w[layer][variable]
	if ok {
		c.used[layer+"/"+variable] = true
	}
	return t, ok
}

// rename gives a value another name everywhere.
func (c *converter) rename(from, to string) {
	for i := range c.nodes {
		for j, s := range c.nodes[i].Inputs {
			if s == from {
				c.nodes[i].Inputs[j] = to
			}
		}
		for j, s := range c.nodes[i].Outputs {
			if s == from {
				c.nodes[i].Outputs[j] = to
			}
		}
	}
}

func (c *converter) layer(l Layer) error {
	cfg := l.Config
	if cfg.DataFormat != "" && cfg.DataFormat != "channels_last" {
		return fmt.Errorf("data_format %s: only channels_last is converted", cfg.DataFormat)
	}
	if cfg.Dtype != "" && cfg.Dtype != "float32" {
		return fmt.Errorf("dtype %s: only float32 is converted", cfg.Dtype)
	}
	in := c.values[l.Input]
	switch l.ClassName {
	case "InputLayer":
		s := cfg.BatchInputShape
		if len(s) != 5 {
			return fmt.Errorf("input shape %s: a 3-D network needs [batch, D, H, W, channels]", shapeText(s))
		}
		if s[4] == nil || *s[4] < 1 {
			return fmt.Errorf("input shape %s: the channel count must be fixed", shapeText(s))
		}
		c.inChannels = *s[4]
		c.values[l.Name] = value{name: c.opts.InputName, channels: c.inChannels, conv: -1}
	case "Conv3D":
		v, err := c.conv3D(l, in)
		if err != nil {
			return err
		}
		c.values[l.Name] = v
	case "Activation":
		out, err := c.activation(l.Name, cfg.Activation, in.name)
		if err != nil {
			return err
		}
		c.values[l.Name] = value{name: out, channels: in.channels, conv: -1}
	case "BatchNormalization":
		v, err := c.batchNorm(l, in)
		if err != nil {
			return err
		}
		c.values[l.Name] = v
	case "Dropout", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout":
		// Active only in training.
		in.conv = -1
		c.values[l.Name] = in
	default:
		return fmt.Errorf("this layer class is not converted (MeshNet networks use InputLayer, Conv3D, Activation, BatchNormalization, Dropout)")
	}
	return nil
}

func (c *converter) conv3D(l Layer, in value) (value, error) {
	cfg := l.Config
	kernel, ok := c.weight(l.Name, "kernel")
	if !ok {
		return value{}, fmt.Errorf("no kernel weight")
	}
	ks := kernel.Shape
	groups := max(cfg.Groups, 1)
	if len(ks) != 5 || ks[4] != cfg.Filters || ks[3]*groups != in.channels || cfg.Filters%groups != 0 {
		return value{}, fmt.Errorf("kernel shape %v does not fit %d input channels, %d filters and %d groups", ks, in.channels, cfg.Filters, groups)
	}
	if len(cfg.KernelSize) == 3 && (cfg.KernelSize[0] != ks[0] || cfg.KernelSize[1] != ks[1] || cfg.KernelSize[2] != ks[2]) {
		return value{}, fmt.Errorf("kernel_size %v differs from the kernel's shape %v", cfg.KernelSize, ks)
	}
	strides, err := triple("strides", cfg.Strides)
	if err != nil {
		return value{}, err
	}
	if strides != [3]int{1, 1, 1} {
		return value{}, fmt.Errorf("strides %v: only stride 1 keeps the volume's size", cfg.Strides)
	}
	dil, err := triple("dilation_rate", cfg.DilationRate)
	if err != nil {
		return value{}, err
	}
	var pads [6]int64
	for a := range 3 {
		total := (ks[a] - 1) * dil[a] // the effective kernel's size, minus one
		switch cfg.Padding {
		case "same":
			// TensorFlow puts the odd voxel of padding after.
			pads[a], pads[a+3] = int64(total/2), int64(total-total/2)
		case "valid":
			if total != 0 {
				return value{}, fmt.Errorf("padding valid with a %v kernel shrinks the volume; only same padding is converted", ks[:3])
			}
		default:
			return value{}, fmt.Errorf("padding %q is not same or valid", cfg.Padding)
		}
	}
	if strings.HasSuffix(l.Name, InstanceNormSuffix) && cfg.Activation != "" && cfg.Activation != "linear" {
		return value{}, fmt.Errorf("a %s convolution with its own activation (%s): the normalisation's place is ambiguous", InstanceNormSuffix, cfg.Activation)
	}

	// Keras [kd, kh, kw, in, out] to ONNX [out, in, kd, kh, kw].
	cin := ks[3]
	wv := make([]float32, len(kernel.Values))
	for d := range ks[0] {
		for h := range ks[1] {
			for x := range ks[2] {
				for i := range cin {
					for o := range cfg.Filters {
						src := (((d*ks[1]+h)*ks[2]+x)*cin+i)*cfg.Filters + o
						dst := (((o*cin+i)*ks[0]+d)*ks[1]+h)*ks[2] + x
						wv[dst] = kernel.Values[src]
					}
				}
			}
		}
	}
	wName := c.fresh(l.Name, "W")
	v := value{channels: cfg.Filters, convB: -1}
	v.convW = c.init(onnx.FloatTensor(wName, []int64{int64(cfg.Filters), int64(cin), int64(ks[0]), int64(ks[1]), int64(ks[2])}, wv))
	inputs := []string{in.name, wName}
	useBias := cfg.UseBias == nil || *cfg.UseBias
	bias, hasBias := c.weight(l.Name, "bias")
	switch {
	case useBias && !hasBias:
		return value{}, fmt.Errorf("use_bias is true but the weights have no %s/bias", l.Name)
	case !useBias && hasBias:
		return value{}, fmt.Errorf("use_bias is false but the weights have %s/bias", l.Name)
	case hasBias:
		if len(bias.Values) != cfg.Filters {
			return value{}, fmt.Errorf("bias has %d values for %d filters", len(bias.Values), cfg.Filters)
		}
		bName := c.fresh(l.Name, "B")
		v.convB = c.init(onnx.FloatTensor(bName, []int64{int64(cfg.Filters)}, bias.Values))
		inputs = append(inputs, bName)
	}
	attrs := []onnx.Attribute{
		onnx.Ints("dilations", int64(dil[0]), int64(dil[1]), int64(dil[2])),
		onnx.Ints("kernel_shape", int64(ks[0]), int64(ks[1]), int64(ks[2])),
		onnx.Ints("pads", pads[:]...),
		onnx.Ints("strides", 1, 1, 1),
	}
	if groups > 1 {
		attrs = append(attrs, onnx.Int("group", int64(groups)))
	}
	v.name = c.node("Conv", l.Name, inputs, attrs...)
	v.conv = len(c.nodes) - 1

	if strings.HasSuffix(l.Name, InstanceNormSuffix) {
		ones, zeros := make([]float32, cfg.Filters), make([]float32, cfg.Filters)
		for i := range ones {
			ones[i] = 1
		}
		s, b := c.fresh(l.Name, "in_scale"), c.fresh(l.Name, "in_bias")
		c.init(onnx.FloatTensor(s, []int64{int64(cfg.Filters)}, ones))
		c.init(onnx.FloatTensor(b, []int64{int64(cfg.Filters)}, zeros))
		v.name = c.node("InstanceNormalization", l.Name, []string{v.name, s, b}, onnx.FloatAttr("epsilon", instanceNormEpsilon))
		v.conv = -1
	}
	if a := cfg.Activation; a != "" && a != "linear" {
		if v.name, err = c.activation(l.Name, a, v.name); err != nil {
			return value{}, err
		}
		v.conv = -1
	}
	return v, nil
}

// batchNorm folds a batch normalisation into the convolution before it when
// that convolution's output goes nowhere else (the usual Conv → BN pair),
// and writes an ONNX BatchNormalization otherwise.
func (c *converter) batchNorm(l Layer, in value) (value, error) {
	cfg := l.Config
	if len(cfg.Axis) > 0 && !(len(cfg.Axis) == 1 && (cfg.Axis[0] == -1 || cfg.Axis[0] == 4)) {
		return value{}, fmt.Errorf("axis %v: only the channel axis (-1) is converted", cfg.Axis)
	}
	eps := 1e-3 // Keras' default
	if cfg.Epsilon != nil {
		eps = *cfg.Epsilon
	}
	n := in.channels
	param := func(variable string, fallback float32, want bool) ([]float64, error) {
		t, ok := c.weight(l.Name, variable)
		switch {
		case want && !ok:
			return nil, fmt.Errorf("the weights have no %s/%s", l.Name, variable)
		case !want && ok:
			return nil, fmt.Errorf("the weights have %s/%s, which center or scale false leaves out", l.Name, variable)
		}
		out := make([]float64, n)
		if !ok {
			for i := range out {
				out[i] = float64(fallback)
			}
			return out, nil
		}
		if len(t.Values) != n {
			return nil, fmt.Errorf("%s has %d values for %d channels", variable, len(t.Values), n)
		}
		for i, v := range t.Values {
			out[i] = float64(v)
		}
		return out, nil
	}
	gamma, err := param("gamma", 1, cfg.Scale == nil || *cfg.Scale)
	if err != nil {
		return value{}, err
	}
	beta, err := param("beta", 0, cfg.Center == nil || *cfg.Center)
	if err != nil {
		return value{}, err
	}
	mean, err := param("moving_mean", 0, true)
	if err != nil {
		return value{}, err
	}
	variance, err := param("moving_variance", 1, true)
	if err != nil {
		return value{}, err
	}
	scale := make([]float64, n)
	shift := make([]float64, n)
	for i := range n {
		scale[i] = gamma[i] / math.Sqrt(variance[i]+eps)
		shift[i] = beta[i] - mean[i]*scale[i]
	}

	if in.conv >= 0 && c.consumers[l.Input] == 1 {
		conv := &c.nodes[in.conv]
		wt := &c.inits[in.convW]
		wv, err := wt.FloatValues()
		if err != nil {
			return value{}, err
		}
		per := len(wv) / n
		for o := range n {
			for i := range per {
				wv[o*per+i] = float32(float64(wv[o*per+i]) * scale[o])
			}
		}
		*wt = onnx.FloatTensor(wt.Name, wt.Dims, wv)
		bias := make([]float32, n)
		if in.convB >= 0 {
			bv, err := c.inits[in.convB].FloatValues()
			if err != nil {
				return value{}, err
			}
			for o := range n {
				bias[o] = float32(float64(bv[o])*scale[o] + shift[o])
			}
			c.inits[in.convB] = onnx.FloatTensor(c.inits[in.convB].Name, []int64{int64(n)}, bias)
		} else {
			for o := range n {
				bias[o] = float32(shift[o])
			}
			bName := c.fresh(l.Name, "folded_B")
			in.convB = c.init(onnx.FloatTensor(bName, []int64{int64(n)}, bias))
			conv.Inputs = append(conv.Inputs, bName)
		}
		return in, nil
	}

	f32 := func(x []float64) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = float32(v)
		}
		return out
	}
	names := make([]string, 4)
	for i, p := range []struct {
		what string
		vals []float64
	}{{"scale", gamma}, {"B", beta}, {"mean", mean}, {"var", variance}} {
		names[i] = c.fresh(l.Name, p.what)
		c.init(onnx.FloatTensor(names[i], []int64{int64(n)}, f32(p.vals)))
	}
	out := c.node("BatchNormalization", l.Name, append([]string{in.name}, names...), onnx.FloatAttr("epsilon", float32(eps)))
	return value{name: out, channels: n, conv: -1}, nil
}

// activation applies a Keras activation to x and returns the result's name.
func (c *converter) activation(layer, name, x string) (string, error) {
	switch name {
	case "", "linear":
		return x, nil
	case "relu":
		return c.node("Relu", layer, []string{x}), nil
	case "relu6":
		return c.node("Clip", layer, []string{x, c.constant(0), c.constant(6)}), nil
	case "elu":
		return c.node("Elu", layer, []string{x}, onnx.FloatAttr("alpha", 1)), nil
	case "selu":
		// Keras' constants, which differ from ONNX's defaults in the last digits.
		return c.node("Selu", layer, []string{x}, onnx.FloatAttr("alpha", 1.6732632423543772), onnx.FloatAttr("gamma", 1.0507009873554805)), nil
	case "gelu":
		// The exact (erf) form, x * 0.5 * (1 + erf(x / sqrt 2)), which Keras
		// and TensorFlow.js mean by "gelu"; ONNX has Gelu only from opset 20.
		s := c.node("Mul", layer, []string{x, c.constant(1 / math.Sqrt2)})
		e := c.node("Erf", layer, []string{s})
		a := c.node("Add", layer, []string{e, c.constant(1)})
		h := c.node("Mul", layer, []string{a, c.constant(0.5)})
		return c.node("Mul", layer, []string{x, h}), nil
	case "sigmoid":
		return c.node("Sigmoid", layer, []string{x}), nil
	case "tanh":
		return c.node("Tanh", layer, []string{x}), nil
	case "softplus":
		return c.node("Softplus", layer, []string{x}), nil
	case "swish", "silu":
		s := c.node("Sigmoid", layer, []string{x})
		return c.node("Mul", layer, []string{x, s}), nil
	case "softmax":
		// Keras' softmax runs over the last axis: the channels, axis 1 here.
		return c.node("Softmax", layer, []string{x}, onnx.Int("axis", 1)), nil
	}
	return "", fmt.Errorf("activation %q is not converted", name)
}

// triple reads a Keras setting of three values (or one for all three),
// defaulting to 1.
func triple(what string, l intList) ([3]int, error) {
	switch len(l) {
	case 0:
		return [3]int{1, 1, 1}, nil
	case 1:
		if l[0] < 1 {
			break
		}
		return [3]int{l[0], l[0], l[0]}, nil
	case 3:
		if l[0] < 1 || l[1] < 1 || l[2] < 1 {
			break
		}
		return [3]int{l[0], l[1], l[2]}, nil
	}
	return [3]int{}, fmt.Errorf("%s %v is not 1 or 3 positive numbers", what, []int(l))
}

func shapeText(s []*int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d == nil {
			parts[i] = "None"
		} else {
			parts[i] = strconv.Itoa(*d)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
