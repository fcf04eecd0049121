package onnx

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of onnx.proto (ONNX 1.12) for the messages this package
// writes and reads.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14

	opsetDomain  = 1
	opsetVersion = 2

	propKey   = 1
	propValue = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphDocString   = 10
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName    = 1
	attrF       = 2
	attrI       = 3
	attrS       = 4
	attrFloats  = 7
	attrInts    = 8
	attrStrings = 9
	attrType    = 20

	tensorDims      = 1
	tensorDataType  = 2
	tensorFloatData = 4
	tensorName      = 8
	tensorRawData   = 9

	valueName = 1
	valueType = 2

	typeTensor       = 1
	typeSequence     = 4
	typeMap          = 5
	typeSparseTensor = 8
	typeOptional     = 9

	tensorTypeElem  = 1
	tensorTypeShape = 2

	shapeDim = 1

	dimValue = 1
	dimParam = 2
)

// Marshal encodes the model as an ONNX file. It refuses a model without a
// graph output or with nodes or initializers whose names are empty, which
// ONNX Runtime would reject with a less helpful message.
func (m *Model) Marshal() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	var b []byte
	ir := m.IRVersion
	if ir == 0 {
		ir = IRVersion
	}
	b = appendVarint(b, modelIRVersion, uint64(ir))
	b = appendString(b, modelProducerName, m.ProducerName)
	b = appendString(b, modelProducerVersion, m.ProducerVersion)
	b = appendString(b, modelDocString, m.DocString)
	b = appendMessage(b, modelGraph, m.Graph.encode(nil))
	for _, o := range m.Opsets {
		var ob []byte
		ob = appendString(ob, opsetDomain, o.Domain)
		ob = appendVarint(ob, opsetVersion, uint64(o.Version))
		b = appendMessage(b, modelOpsetImport, ob)
	}
	for _, p := range m.Metadata {
		var pb []byte
		pb = appendString(pb, propKey, p.Key)
		pb = appendString(pb, propValue, p.Value)
		b = appendMessage(b, modelMetadataProps, pb)
	}
	return b, nil
}

func (m *Model) check() error {
	g := &m.Graph
	if len(g.Outputs) == 0 {
		return errors.New("onnx: the graph has no output")
	}
	for i, n := range g.Nodes {
		if n.OpType == "" {
			return fmt.Errorf("onnx: node %d (%q) has no operator", i, n.Name)
		}
	}
	for i, t := range g.Initializers {
		if t.Name == "" {
			return fmt.Errorf("onnx: initializer %d has no name", i)
		}
	}
	return nil
}

func (g *Graph) encode(b []byte) []byte {
	for _, n := range g.Nodes {
		b = appendMessage(b, graphNode, n.encode(nil))
	}
	b = appendString(b, graphName, g.Name)
	for _, t := range g.Initializers {
		b = appendMessage(b, graphInitializer, t.encode(nil))
	}
	b = appendString(b, graphDocString, g.DocString)
	for _, v := range g.Inputs {
		b = appendMessage(b, graphInput, v.encode(nil))
	}
	for _, v := range g.Outputs {
		b = appendMessage(b, graphOutput, v.encode(nil))
	}
	return b
}

func (n *Node) encode(b []byte) []byte {
	// Repeated strings are written even when empty: an empty input name
	// is how ONNX marks an optional input left out.
	for _, s := range n.Inputs {
		b = protowire.AppendTag(b, nodeInput, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	for _, s := range n.Outputs {
		b = protowire.AppendTag(b, nodeOutput, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	b = appendString(b, nodeName, n.Name)
	b = appendString(b, nodeOpType, n.OpType)
	for _, a := range n.Attributes {
		b = appendMessage(b, nodeAttribute, a.encode(nil))
	}
	b = appendString(b, nodeDomain, n.Domain)
	return b
}

func (a *Attribute) encode(b []byte) []byte {
	b = appendString(b, attrName, a.Name)
	switch a.Type {
	case AttrFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = protowire.AppendTag(b, attrI, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.I))
	case AttrString:
		b = protowire.AppendTag(b, attrS, protowire.BytesType)
		b = protowire.AppendString(b, a.S)
	case AttrFloats:
		if len(a.Floats) > 0 {
			var p []byte
			for _, f := range a.Floats {
				p = protowire.AppendFixed32(p, math.Float32bits(f))
			}
			b = appendMessage(b, attrFloats, p)
		}
	case AttrInts:
		if len(a.Ints) > 0 {
			var p []byte
			for _, v := range a.Ints {
				p = protowire.AppendVarint(p, uint64(v))
			}
			b = appendMessage(b, attrInts, p)
		}
	case AttrStrings:
		for _, s := range a.Strings {
			b = protowire.AppendTag(b, attrStrings, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	if a.Type != 0 {
		b = appendVarint(b, attrType, uint64(a.Type))
	}
	return b
}

func (t *Tensor) encode(b []byte) []byte {
	if len(t.Dims) > 0 {
		var p []byte
		for _, d := range t.Dims {
			p = protowire.AppendVarint(p, uint64(d))
		}
		b = appendMessage(b, tensorDims, p)
	}
	b = appendVarint(b, tensorDataType, uint64(t.DataType))
	if len(t.Floats) > 0 {
		var p []byte
		for _, f := range t.Floats {
			p = protowire.AppendFixed32(p, math.Float32bits(f))
		}
		b = appendMessage(b, tensorFloatData, p)
	}
	b = appendString(b, tensorName, t.Name)
	if len(t.Raw) > 0 {
		b = protowire.AppendTag(b, tensorRawData, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Raw)
	}
	return b
}

func (v *ValueInfo) encode(b []byte) []byte {
	b = appendString(b, valueName, v.Name)
	if v.Kind != "tensor" {
		// Only tensors are written with a type; other kinds are never
		// produced by this package.
		return b
	}
	var tt []byte
	tt = appendVarint(tt, tensorTypeElem, uint64(v.ElemType))
	if v.HasShape || len(v.Shape) > 0 {
		var sh []byte
		for _, d := range v.Shape {
			var db []byte
			if d.Param != "" {
				db = appendString(db, dimParam, d.Param)
			} else if d.Value > 0 {
				db = appendVarint(db, dimValue, uint64(d.Value))
			}
			sh = appendMessage(sh, shapeDim, db)
		}
		tt = appendMessage(tt, tensorTypeShape, sh)
	}
	var ty []byte
	ty = appendMessage(ty, typeTensor, tt)
	return appendMessage(b, valueType, ty)
}

// appendString writes a string field, leaving an empty one out as proto3
// and proto2 readers alike read a missing string as empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage writes an embedded message (or packed list), even an empty
// one: an empty Dimension still counts as one dimension.
func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}
