package onnx

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// python is the interpreter with Debian's python3-onnx.
const python = "/usr/bin/python3"

// sample is a small model using every kind of field Marshal writes.
func sample() *Model {
	return &Model{
		Opsets:          []Opset{{"", 17}},
		ProducerName:    "segbridge-test",
		ProducerVersion: "1",
		DocString:       "a test model",
		Graph: Graph{
			Name: "g",
			Nodes: []Node{
				{Name: "conv", OpType: "Conv", Inputs: []string{"x", "w", "b"}, Outputs: []string{"y"},
					Attributes: []Attribute{
						Ints("dilations", 2, 2, 2), Ints("kernel_shape", 3, 3, 3),
						Ints("pads", 2, 2, 2, 2, 2, 2), Ints("strides", 1, 1, 1),
					}},
				{Name: "norm", OpType: "InstanceNormalization", Inputs: []string{"y", "s", "b"}, Outputs: []string{"z"},
					Attributes: []Attribute{FloatAttr("epsilon", 1e-5)}},
				{Name: "elu", OpType: "Elu", Inputs: []string{"z"}, Outputs: []string{"out"},
					Attributes: []Attribute{FloatAttr("alpha", 1)}},
			},
			Initializers: []Tensor{
				FloatTensor("w", []int64{2, 1, 3, 3, 3}, make([]float32, 54)),
				FloatTensor("b", []int64{2}, []float32{0.5, -0.25}),
				FloatTensor("s", []int64{2}, []float32{1, 1}),
			},
			Inputs:  []ValueInfo{TensorValue("x", Float, Fixed(1), Fixed(1), Free("D"), Free("H"), Free("W"))},
			Outputs: []ValueInfo{TensorValue("out", Float, Fixed(1), Fixed(2), Free("D"), Free("H"), Free("W"))},
		},
		Metadata: []Property{{"num_classes", "2"}, {"labels", `["a", "b"]`}},
	}
}

func TestModel_MarshalDecode(t *testing.T) {
	m := sample()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.IRVersion = IRVersion
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded model differs:\n got %+v\nwant %+v", got, want)
	}
	if v, _ := got.Meta("num_classes"); v != "2" {
		t.Errorf("Meta(num_classes) = %q", v)
	}
	if got.Opset() != 17 {
		t.Errorf("Opset() = %d", got.Opset())
	}
	// Writing what was read gives the same bytes.
	again, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Error("re-encoding a decoded model changed its bytes")
	}
}

func TestModel_Marshal_Refuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Model)
		want string
	}{
		{"no output", func(m *Model) { m.Graph.Outputs = nil }, "no output"},
		{"node without operator", func(m *Model) { m.Graph.Nodes[1].OpType = "" }, `node 1 ("norm") has no operator`},
		{"unnamed initializer", func(m *Model) { m.Graph.Initializers[2].Name = "" }, "initializer 2 has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := sample()
			tc.edit(m)
			_, err := m.Marshal()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Marshal error = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestModel_Marshal_ONNXChecker has the ONNX project's own checker and shape
// inference read what Marshal writes: an independent reader of the format.
func TestModel_Marshal_ONNXChecker(t *testing.T) {
	b, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
out = onnx.shape_inference.infer_shapes(m, strict_mode=True).graph.output[0]
dims = [d.dim_param or str(d.dim_value) for d in out.type.tensor_type.shape.dim]
attrs = {a.name: onnx.helper.get_attribute_value(a) for a in m.graph.node[0].attribute}
print(m.ir_version, m.opset_import[0].version, ",".join(dims), attrs["dilations"], m.metadata_props[1].value)
`
	out, err := exec.Command(python, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker refused the model (run make deps for python3-onnx): %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), `8 17 1,2,D,H,W [2, 2, 2] ["a", "b"]`; got != want {
		t.Errorf("python onnx read %q, want %q", got, want)
	}
}

// TestDecode_PythonModel reads a model that python3-onnx writes, with fields
// Marshal never writes (value_info, doc strings, float_data, unpacked lists,
// a dynamic batch axis, an initializer listed as an input).
func TestDecode_PythonModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "py.onnx")
	script := `
import sys, onnx
from onnx import helper, TensorProto
w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [0.1, 0.2, 0.3])
node = helper.make_node("Conv", ["image", "w"], ["conv"], name="c", kernel_shape=[1, 1])
sig = helper.make_node("Sigmoid", ["conv"], ["prob"], doc_string="probabilities")
g = helper.make_graph([node, sig], "unet2d",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 256, 256]),
     helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 3, 1, 1])],
    [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, 256, None])],
    initializer=[w], value_info=[helper.make_tensor_value_info("conv", TensorProto.FLOAT, None)])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="pytorch", producer_version="2.1")
m.ir_version = 7
onnx.save(m, sys.argv[1])
`
	if out, err := exec.Command(python, "-c", script, path).CombinedOutput(); err != nil {
		t.Fatalf("python3-onnx (run make deps): %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.IRVersion != 7 || m.Opset() != 13 || m.ProducerName != "pytorch" || m.Graph.Name != "unet2d" {
		t.Errorf("model = ir %d opset %d producer %q graph %q", m.IRVersion, m.Opset(), m.ProducerName, m.Graph.Name)
	}
	ins := m.Graph.DataInputs()
	if len(ins) != 1 || ins[0].Name != "image" {
		t.Fatalf("DataInputs = %+v, want only image", ins)
	}
	if got := ShapeString(ins[0].Shape); got != "[batch, 3, 256, 256]" || ins[0].ElemType != Float || ins[0].Kind != "tensor" {
		t.Errorf("input = %s %s %s", ins[0].Kind, ins[0].ElemType, got)
	}
	if got := ShapeString(m.Graph.Outputs[0].Shape); got != "[batch, 1, 256, ?]" {
		t.Errorf("output shape = %s", got)
	}
	vals, err := m.Graph.Initializers[0].FloatValues()
	if err != nil || len(vals) != 3 || vals[2] != float32(0.3) {
		t.Errorf("initializer values = %v, %v", vals, err)
	}
	if got := m.Graph.Nodes[0].Attributes[0]; got.Name != "kernel_shape" || got.Type != AttrInts || !reflect.DeepEqual(got.Ints, []int64{1, 1}) {
		t.Errorf("attribute = %+v", got)
	}
}

func TestDecode_Malformed(t *testing.T) {
	valid, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"text", []byte("name: not a model\n")},
		{"truncated", valid[:len(valid)-3]},
		{"wrong wire type for the graph", []byte{0x08, 0x08, 0x38, 0x01}},
		{"group wire type", []byte{0x08, 0x08, 0x0b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestDecode_Brainchop reads the converted brainchop models kept beside the
// project on development machines.
func TestDecode_Brainchop(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "models", "brainchop")
	b, err := os.ReadFile(filepath.Join(dir, "model5_gw_ae.onnx"))
	if err != nil {
		t.Skip("../shared/models/brainchop is not here:", err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	in, out := m.Graph.DataInputs(), m.Graph.Outputs
	if len(in) != 1 || ShapeString(in[0].Shape) != "[1, 1, D, H, W]" || ShapeString(out[0].Shape) != "[1, 3, D, H, W]" {
		t.Errorf("inputs %+v outputs %+v", in, out)
	}
	if v, _ := m.Meta("num_classes"); v != "3" {
		t.Errorf("num_classes = %q", v)
	}
}

// FuzzDecode: no bytes make Decode panic, and what it reads writes back to
// bytes that read the same.
func FuzzDecode(f *testing.F) {
	valid, err := sample().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte{0x08, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		if len(m.Graph.Outputs) == 0 {
			return // Marshal refuses it, by design
		}
		for _, n := range m.Graph.Nodes {
			if n.OpType == "" {
				return
			}
		}
		for _, in := range m.Graph.Initializers {
			if in.Name == "" {
				return
			}
		}
		b1, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a decoded model: %v", err)
		}
		m2, err := Decode(b1)
		if err != nil {
			t.Fatalf("Decode of a re-encoded model: %v", err)
		}
		b2, err := m2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatal("encode(decode(encode(decode(x)))) differs from encode(decode(x))")
		}
	})
}
