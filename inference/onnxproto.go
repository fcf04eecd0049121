package inference

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// segbridge rewrites a few shapes of ONNX graph before ONNX Runtime loads
// them (head.go, gelu.go). ONNX is protocol buffers; only the few fields of
// ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto and
// ValueInfoProto named below are read or written here, and everything else
// is copied as it is.

// ONNX field numbers (onnx.proto3).
const (
	modelIRVersion   = 1
	modelOpsetImport = 8
	modelGraph       = 7
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	nodeInput        = 1
	nodeOutput       = 2
	nodeOpType       = 4
	nodeAttribute    = 5
	nodeDomain       = 7
	attrName         = 1
	attrI            = 3
	attrInts         = 8
	tensorDims       = 1
	tensorDataType   = 2
	tensorName       = 8
	tensorFloatData  = 4
	tensorRawData    = 9
	nodeName         = 3
	opsetDomain      = 1
	opsetVersion     = 2
	valueInfoName    = 1
	valueInfoType    = 2
	typeTensor       = 1
	typeTensorElem   = 1
	tensorFloat      = 1 // TensorProto.FLOAT
	wireVarint       = 0
	wireFixed64      = 1
	wireBytes        = 2
	wireFixed32      = 5
)

// pbField is one field of a protocol buffer message.
type pbField struct {
	num  int
	wire int
	v    uint64 // varint and fixed values
	b    []byte // length-delimited value
	raw  []byte // the whole field, tag included, to copy it as it is
}

var errProto = errors.New("malformed ONNX protocol buffer")

func readVarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, errProto
	}
	return v, n, nil
}

// pbFields splits a message into its fields.
func pbFields(b []byte) ([]pbField, error) {
	var out []pbField
	for pos := 0; pos < len(b); {
		start := pos
		tag, n, err := readVarint(b[pos:])
		if err != nil {
			return nil, err
		}
		pos += n
		f := pbField{num: int(tag >> 3), wire: int(tag & 7)}
		switch f.wire {
		case wireVarint:
			if f.v, n, err = readVarint(b[pos:]); err != nil {
				return nil, err
			}
			pos += n
		case wireFixed64:
			if len(b)-pos < 8 {
				return nil, errProto
			}
			f.v = binary.LittleEndian.Uint64(b[pos:])
			pos += 8
		case wireFixed32:
			if len(b)-pos < 4 {
				return nil, errProto
			}
			f.v = uint64(binary.LittleEndian.Uint32(b[pos:]))
			pos += 4
		case wireBytes:
			l, n, err := readVarint(b[pos:])
			if err != nil {
				return nil, err
			}
			pos += n
			if l > uint64(len(b)-pos) {
				return nil, errProto
			}
			f.b = b[pos : pos+int(l)]
			pos += int(l)
		default:
			return nil, fmt.Errorf("%w: wire type %d", errProto, f.wire)
		}
		f.raw = b[start:pos]
		out = append(out, f)
	}
	return out, nil
}

// appendBytesField appends field num with a length-delimited value.
func appendBytesField(dst []byte, num int, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(num)<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func pbString(fs []pbField, num int) string {
	for _, f := range fs {
		if f.num == num && f.wire == wireBytes {
			return string(f.b)
		}
	}
	return ""
}

func pbStrings(fs []pbField, num int) []string {
	var out []string
	for _, f := range fs {
		if f.num == num && f.wire == wireBytes {
			out = append(out, string(f.b))
		}
	}
	return out
}

// pbInts reads a repeated int64 field, packed or not.
func pbInts(fs []pbField, num int) ([]int64, error) {
	var out []int64
	for _, f := range fs {
		if f.num != num {
			continue
		}
		switch f.wire {
		case wireVarint:
			out = append(out, int64(f.v))
		case wireBytes:
			for b := f.b; len(b) > 0; {
				v, n, err := readVarint(b)
				if err != nil {
					return nil, err
				}
				out = append(out, int64(v))
				b = b[n:]
			}
		}
	}
	return out, nil
}

// pbFloat32 reads a TensorProto holding one float32 (dims [] or [1]), from
// raw_data or float_data.
func pbFloat32(t []pbField) (float32, bool) {
	dims, err := pbInts(t, tensorDims)
	if err != nil || len(dims) > 1 || (len(dims) == 1 && dims[0] != 1) {
		return 0, false
	}
	if dt, _ := pbInts(t, tensorDataType); len(dt) != 1 || dt[0] != tensorFloat {
		return 0, false
	}
	var vals []float32
	for _, f := range t {
		switch {
		case f.num == tensorRawData && f.wire == wireBytes:
			for b := f.b; len(b) >= 4; b = b[4:] {
				vals = append(vals, math.Float32frombits(binary.LittleEndian.Uint32(b)))
			}
			if len(f.b)%4 != 0 {
				return 0, false
			}
		case f.num == tensorFloatData && f.wire == wireFixed32:
			vals = append(vals, math.Float32frombits(uint32(f.v)))
		case f.num == tensorFloatData && f.wire == wireBytes:
			if len(f.b)%4 != 0 {
				return 0, false
			}
			for b := f.b; len(b) >= 4; b = b[4:] {
				vals = append(vals, math.Float32frombits(binary.LittleEndian.Uint32(b)))
			}
		}
	}
	if len(vals) != 1 {
		return 0, false
	}
	return vals[0], true
}
