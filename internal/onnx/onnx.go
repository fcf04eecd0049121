// Package onnx writes and reads the few messages of the ONNX file format
// (onnx.proto, protobuf) that segbridge needs: a model with its operator
// sets and metadata, one graph of nodes, float initializers, and the
// declared inputs and outputs. The converter of published models writes
// models with it, and `segbridge models init` reads a user's graph inputs
// and outputs with it, without ONNX Runtime.
//
// It is written on google.golang.org/protobuf/encoding/protowire, the
// protobuf module's own wire-format layer, rather than on code generated
// from onnx.proto: the dozen messages used here fit in one file, and
// generated code would pull the whole of onnx.proto (training info,
// functions, sparse tensors) into the binary for nothing.
package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// IRVersion is the ONNX IR version written by default: 8, the one that goes
// with opset 17 (ONNX 1.12), which ONNX Runtime 1.12 and newer read.
const IRVersion = 8

// DataType is an ONNX tensor element type (TensorProto.DataType).
type DataType int32

// The element types segbridge names; others are read and shown by number.
const (
	Undefined DataType = 0
	Float     DataType = 1
	Uint8     DataType = 2
	Int8      DataType = 3
	Uint16    DataType = 4
	Int16     DataType = 5
	Int32     DataType = 6
	Int64     DataType = 7
	String    DataType = 8
	Bool      DataType = 9
	Float16   DataType = 10
	Double    DataType = 11
	BFloat16  DataType = 16
)

func (t DataType) String() string {
	switch t {
	case Undefined:
		return "undefined"
	case Float:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Uint16:
		return "uint16"
	case Int16:
		return "int16"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case String:
		return "string"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case Double:
		return "float64"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("type %d", int32(t))
}

// Model is an ONNX ModelProto, reduced to what segbridge writes and reads.
type Model struct {
	// IRVersion of the file; 0 writes IRVersion.
	IRVersion int64
	// Opsets are the operator sets the graph uses, e.g. {"", 17}.
	Opsets []Opset
	// ProducerName and ProducerVersion say what wrote the file.
	ProducerName, ProducerVersion string
	// DocString is free text.
	DocString string
	// Graph is the model's computation.
	Graph Graph
	// Metadata are key-value pairs (metadata_props), in order.
	Metadata []Property
}

// Opset is an OperatorSetIdProto: a domain ("" is the default ONNX domain)
// and its version.
type Opset struct {
	Domain  string
	Version int64
}

// Property is one StringStringEntryProto.
type Property struct {
	Key, Value string
}

// Meta returns the metadata value of key, and whether it is present.
func (m *Model) Meta(key string) (string, bool) {
	for _, p := range m.Metadata {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// Opset returns the version of the default domain's operator set, 0 when
// the model does not import it.
func (m *Model) Opset() int64 {
	for _, o := range m.Opsets {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			return o.Version
		}
	}
	return 0
}

// Graph is a GraphProto: nodes in topological order, initializers (weights)
// and the declared inputs and outputs.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
	DocString    string
}

// DataInputs returns the graph inputs that are not initializers: what a
// caller feeds. Files of IR version 3 and older list every initializer as
// an input too.
func (g *Graph) DataInputs() []ValueInfo {
	inits := make(map[string]bool, len(g.Initializers))
	for _, t := range g.Initializers {
		inits[t.Name] = true
	}
	var out []ValueInfo
	for _, in := range g.Inputs {
		if !inits[in.Name] {
			out = append(out, in)
		}
	}
	return out
}

// Node is a NodeProto: one operator applied to named values.
type Node struct {
	Name       string
	OpType     string
	Domain     string
	Inputs     []string
	Outputs    []string
	Attributes []Attribute
}

// AttrType is an AttributeProto.AttributeType.
type AttrType int32

// The attribute types this package writes; others are read as their type
// number with no value.
const (
	AttrFloat   AttrType = 1
	AttrInt     AttrType = 2
	AttrString  AttrType = 3
	AttrFloats  AttrType = 6
	AttrInts    AttrType = 7
	AttrStrings AttrType = 8
)

// Attribute is an AttributeProto of one of the scalar or list types.
type Attribute struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       string
	Floats  []float32
	Ints    []int64
	Strings []string
}

// Ints is an INTS attribute.
func Ints(name string, v ...int64) Attribute { return Attribute{Name: name, Type: AttrInts, Ints: v} }

// Int is an INT attribute.
func Int(name string, v int64) Attribute { return Attribute{Name: name, Type: AttrInt, I: v} }

// FloatAttr is a FLOAT attribute.
func FloatAttr(name string, v float32) Attribute {
	return Attribute{Name: name, Type: AttrFloat, F: v}
}

// StringAttr is a STRING attribute.
func StringAttr(name, v string) Attribute { return Attribute{Name: name, Type: AttrString, S: v} }

// Tensor is a TensorProto: a named constant, its shape and its bytes.
type Tensor struct {
	Name     string
	Dims     []int64
	DataType DataType
	// Raw holds the values little-endian (raw_data).
	Raw []byte
	// Floats holds float values written in float_data instead of raw_data
	// (files written by other tools); empty when Raw is used.
	Floats []float32
}

// FloatTensor is a float32 tensor of the given shape, stored as raw data.
func FloatTensor(name string, dims []int64, values []float32) Tensor {
	raw := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, Dims: dims, DataType: Float, Raw: raw}
}

// FloatValues returns a float tensor's values from Raw or Floats.
func (t *Tensor) FloatValues() ([]float32, error) {
	if t.DataType != Float {
		return nil, fmt.Errorf("tensor %q is %s, not float32", t.Name, t.DataType)
	}
	if len(t.Floats) > 0 || len(t.Raw) == 0 {
		return t.Floats, nil
	}
	if len(t.Raw)%4 != 0 {
		return nil, fmt.Errorf("tensor %q has %d raw bytes, not a multiple of 4", t.Name, len(t.Raw))
	}
	out := make([]float32, len(t.Raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Raw[4*i:]))
	}
	return out, nil
}

// ValueInfo is a ValueInfoProto: a graph input's or output's name and type.
type ValueInfo struct {
	Name string
	// Kind is "tensor", or what else the value is (sequence, map, optional,
	// sparse_tensor), or "" when the file gives no type.
	Kind string
	// ElemType is a tensor's element type.
	ElemType DataType
	// Shape is a tensor's dimensions; nil when the file gives no shape
	// (any rank).
	Shape []Dim
	// HasShape tells a tensor of rank 0 (a scalar) from one of unknown rank.
	HasShape bool
}

// TensorValue is a float32 (or other) tensor input or output with a shape.
func TensorValue(name string, elem DataType, shape ...Dim) ValueInfo {
	return ValueInfo{Name: name, Kind: "tensor", ElemType: elem, Shape: shape, HasShape: true}
}

// Dim is one dimension: a fixed size, a named free size (Param), or
// unknown (neither).
type Dim struct {
	Value int64
	Param string
}

// Fixed is a dimension of size n.
func Fixed(n int64) Dim { return Dim{Value: n} }

// Free is a named free dimension, e.g. "batch".
func Free(name string) Dim { return Dim{Param: name} }

// IsFixed reports whether the dimension has a fixed size.
func (d Dim) IsFixed() bool { return d.Param == "" && d.Value > 0 }

func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Value > 0:
		return fmt.Sprint(d.Value)
	}
	return "?"
}

// ShapeString writes a shape as [1, C, D, H, W] with free dimensions named.
func ShapeString(shape []Dim) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = d.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}
