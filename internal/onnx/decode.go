package onnx

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every error Decode returns for bytes that are
// not a well-formed ONNX model.
var ErrMalformed = errors.New("not a well-formed ONNX model")

// Decode reads a model: its IR version, operator sets, producer, metadata,
// and its graph's nodes, initializers, inputs and outputs. Fields this
// package does not know are skipped. The returned model's byte slices (raw
// tensor data) share memory with data.
func Decode(data []byte) (*Model, error) {
	m := &Model{}
	err := eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case modelIRVersion:
			n, err := v.varint(typ)
			m.IRVersion = int64(n)
			return err
		case modelProducerName:
			return v.str(typ, &m.ProducerName)
		case modelProducerVersion:
			return v.str(typ, &m.ProducerVersion)
		case modelDocString:
			return v.str(typ, &m.DocString)
		case modelGraph:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			return m.Graph.decode(b)
		case modelOpsetImport:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var o Opset
			err = eachField(b, func(num protowire.Number, typ protowire.Type, v field) error {
				switch num {
				case opsetDomain:
					return v.str(typ, &o.Domain)
				case opsetVersion:
					n, err := v.varint(typ)
					o.Version = int64(n)
					return err
				}
				return nil
			})
			m.Opsets = append(m.Opsets, o)
			return err
		case modelMetadataProps:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var p Property
			err = eachField(b, func(num protowire.Number, typ protowire.Type, v field) error {
				switch num {
				case propKey:
					return v.str(typ, &p.Key)
				case propValue:
					return v.str(typ, &p.Value)
				}
				return nil
			})
			m.Metadata = append(m.Metadata, p)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.IRVersion <= 0 {
		return nil, fmt.Errorf("%w: no IR version (is this an ONNX file?)", ErrMalformed)
	}
	return m, nil
}

func (g *Graph) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case graphName:
			return v.str(typ, &g.Name)
		case graphDocString:
			return v.str(typ, &g.DocString)
		case graphNode:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var n Node
			if err := n.decode(b); err != nil {
				return fmt.Errorf("node %d: %w", len(g.Nodes), err)
			}
			g.Nodes = append(g.Nodes, n)
		case graphInitializer:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var t Tensor
			if err := t.decode(b); err != nil {
				return fmt.Errorf("initializer %d: %w", len(g.Initializers), err)
			}
			g.Initializers = append(g.Initializers, t)
		case graphInput, graphOutput:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var vi ValueInfo
			if err := vi.decode(b); err != nil {
				return fmt.Errorf("graph input or output: %w", err)
			}
			if num == graphInput {
				g.Inputs = append(g.Inputs, vi)
			} else {
				g.Outputs = append(g.Outputs, vi)
			}
		}
		return nil
	})
}

func (n *Node) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case nodeInput, nodeOutput:
			var s string
			if err := v.str(typ, &s); err != nil {
				return err
			}
			if num == nodeInput {
				n.Inputs = append(n.Inputs, s)
			} else {
				n.Outputs = append(n.Outputs, s)
			}
		case nodeName:
			return v.str(typ, &n.Name)
		case nodeOpType:
			return v.str(typ, &n.OpType)
		case nodeDomain:
			return v.str(typ, &n.Domain)
		case nodeAttribute:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			var a Attribute
			if err := a.decode(b); err != nil {
				return fmt.Errorf("attribute %d: %w", len(n.Attributes), err)
			}
			n.Attributes = append(n.Attributes, a)
		}
		return nil
	})
}

func (a *Attribute) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case attrName:
			return v.str(typ, &a.Name)
		case attrType:
			t, err := v.varint(typ)
			a.Type = AttrType(int32(t))
			return err
		case attrF:
			f, err := v.fixed32(typ)
			a.F = math.Float32frombits(f)
			return err
		case attrI:
			n, err := v.varint(typ)
			a.I = int64(n)
			return err
		case attrS:
			return v.str(typ, &a.S)
		case attrStrings:
			var s string
			if err := v.str(typ, &s); err != nil {
				return err
			}
			a.Strings = append(a.Strings, s)
		case attrFloats:
			return v.fixed32s(typ, func(u uint32) { a.Floats = append(a.Floats, math.Float32frombits(u)) })
		case attrInts:
			return v.varints(typ, func(u uint64) { a.Ints = append(a.Ints, int64(u)) })
		}
		return nil
	})
}

func (t *Tensor) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case tensorDims:
			return v.varints(typ, func(u uint64) { t.Dims = append(t.Dims, int64(u)) })
		case tensorDataType:
			n, err := v.varint(typ)
			t.DataType = DataType(int32(n))
			return err
		case tensorFloatData:
			return v.fixed32s(typ, func(u uint32) { t.Floats = append(t.Floats, math.Float32frombits(u)) })
		case tensorName:
			return v.str(typ, &t.Name)
		case tensorRawData:
			b, err := v.msg(typ)
			t.Raw = b
			return err
		}
		return nil
	})
}

func (vi *ValueInfo) decode(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case valueName:
			return v.str(typ, &vi.Name)
		case valueType:
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			return vi.decodeType(b)
		}
		return nil
	})
}

func (vi *ValueInfo) decodeType(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v field) error {
		switch num {
		case typeSequence:
			vi.Kind = "sequence"
		case typeMap:
			vi.Kind = "map"
		case typeOptional:
			vi.Kind = "optional"
		case typeSparseTensor:
			vi.Kind = "sparse_tensor"
		case typeTensor:
			vi.Kind = "tensor"
			b, err := v.msg(typ)
			if err != nil {
				return err
			}
			return eachField(b, func(num protowire.Number, typ protowire.Type, v field) error {
				switch num {
				case tensorTypeElem:
					n, err := v.varint(typ)
					vi.ElemType = DataType(int32(n))
					return err
				case tensorTypeShape:
					b, err := v.msg(typ)
					if err != nil {
						return err
					}
					vi.HasShape = true
					return eachField(b, func(num protowire.Number, typ protowire.Type, v field) error {
						if num != shapeDim {
							return nil
						}
						b, err := v.msg(typ)
						if err != nil {
							return err
						}
						var d Dim
						err = eachField(b, func(num protowire.Number, typ protowire.Type, v field) error {
							switch num {
							case dimValue:
								n, err := v.varint(typ)
								d.Value = int64(n)
								return err
							case dimParam:
								return v.str(typ, &d.Param)
							}
							return nil
						})
						vi.Shape = append(vi.Shape, d)
						return err
					})
				}
				return nil
			})
		}
		return nil
	})
}

// field is the raw value of one field, with the wire type it came with.
type field struct {
	b []byte // the bytes of a BytesType field
	u uint64 // the value of a varint or fixed field
}

func (f field) varint(typ protowire.Type) (uint64, error) {
	if typ != protowire.VarintType {
		return 0, fmt.Errorf("wire type %d where a varint belongs", typ)
	}
	return f.u, nil
}

func (f field) fixed32(typ protowire.Type) (uint32, error) {
	if typ != protowire.Fixed32Type {
		return 0, fmt.Errorf("wire type %d where a 32-bit value belongs", typ)
	}
	return uint32(f.u), nil
}

func (f field) msg(typ protowire.Type) ([]byte, error) {
	if typ != protowire.BytesType {
		return nil, fmt.Errorf("wire type %d where a message or bytes belong", typ)
	}
	return f.b, nil
}

func (f field) str(typ protowire.Type, dst *string) error {
	b, err := f.msg(typ)
	*dst = string(b)
	return err
}

// varints reads a repeated varint field, packed (one BytesType field) or
// not (one varint per field), as protobuf readers must accept both.
func (f field) varints(typ protowire.Type, add func(uint64)) error {
	switch typ {
	case protowire.VarintType:
		add(f.u)
		return nil
	case protowire.BytesType:
		b := f.b
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			add(v)
			b = b[n:]
		}
		return nil
	}
	return fmt.Errorf("wire type %d where repeated varints belong", typ)
}

// fixed32s reads a repeated float field, packed or not.
func (f field) fixed32s(typ protowire.Type, add func(uint32)) error {
	switch typ {
	case protowire.Fixed32Type:
		add(uint32(f.u))
		return nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return fmt.Errorf("packed 32-bit values of %d bytes", len(f.b))
		}
		b := f.b
		for len(b) > 0 {
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			add(v)
			b = b[n:]
		}
		return nil
	}
	return fmt.Errorf("wire type %d where repeated 32-bit values belong", typ)
}

// eachField calls fn for every field of a message, in order. Groups (a
// wire type ONNX never uses) and truncated fields are errors.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var f field
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var u uint32
			u, n = protowire.ConsumeFixed32(b)
			f.u = uint64(u)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("field %d: wire type %d is not used by ONNX", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, f); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	return nil
}
