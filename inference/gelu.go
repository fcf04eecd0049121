package inference

import (
	"encoding/binary"
	"fmt"
	"math"
)

// A network exported from TensorFlow.js (brainchop's mindgrab) writes each
// GELU as five elementwise nodes:
//
//	t1 = Mul(x, 1/√2); t2 = Erf(t1); t3 = Add(t2, 1); t4 = Mul(t3, 0.5); y = Mul(x, t4)
//
// ONNX Runtime does not fuse this order, and runs it as written: x and two
// temporaries of x's size are alive at once. For mindgrab on a head that is
// three buffers of 660 MB where two would do, and the chain is where its
// memory peaks. fuseGelu replaces each such chain with one Gelu node of
// ONNX Runtime's com.microsoft domain, which computes x·(1/√2), the same
// MlasComputeErf, then (x·0.5)·(erf+1): the same value bit for bit, as
// scaling by 0.5 is exact (a float32 x below 2^-125 in magnitude aside).
// The tests compare the outputs of both graphs bit for bit.

// geluDomain is ONNX Runtime's contrib operator domain, where Gelu is.
const geluDomain = "com.microsoft"

// fuseGelu returns the model in data with each GELU chain above made one
// Gelu node, and how many it fused (0: data is returned as it is).
func fuseGelu(data []byte) ([]byte, int, error) {
	model, err := pbFields(data)
	if err != nil {
		return nil, 0, err
	}
	gi := -1
	for i, f := range model {
		if f.num == modelGraph && f.wire == wireBytes {
			gi = i
		}
	}
	if gi < 0 {
		return data, 0, nil
	}
	graph, err := pbFields(model[gi].b)
	if err != nil {
		return nil, 0, err
	}

	// What the graph holds: scalar initializers, nodes, their producers
	// and consumers, and the graph's outputs.
	scalars := map[string]float32{}
	type node struct {
		field    int // index in graph
		op       string
		domain   string
		ins, out []string
	}
	var nodes []node
	producer := map[string]int{} // tensor -> node index
	consumers := map[string]int{}
	outputs := map[string]bool{}
	for i, f := range graph {
		if f.wire != wireBytes {
			continue
		}
		switch f.num {
		case graphInitializer:
			t, err := pbFields(f.b)
			if err != nil {
				return nil, 0, err
			}
			if v, ok := pbFloat32(t); ok {
				scalars[pbString(t, tensorName)] = v
			}
		case graphNode:
			n, err := pbFields(f.b)
			if err != nil {
				return nil, 0, err
			}
			nd := node{field: i, op: pbString(n, nodeOpType), domain: pbString(n, nodeDomain), ins: pbStrings(n, nodeInput), out: pbStrings(n, nodeOutput)}
			for _, in := range nd.ins {
				consumers[in]++
			}
			for _, o := range nd.out {
				producer[o] = len(nodes)
			}
			nodes = append(nodes, nd)
		case graphOutput:
			vi, err := pbFields(f.b)
			if err != nil {
				return nil, 0, err
			}
			outputs[pbString(vi, valueInfoName)] = true
		}
	}
	onnxOp := func(n node, op string, ins int) bool {
		return n.op == op && (n.domain == "" || n.domain == "ai.onnx") && len(n.ins) == ins && len(n.out) == 1
	}
	// inner: a tensor made by one node and used by exactly one, the next in
	// the chain, and not a graph output.
	inner := func(t string) (node, bool) {
		p, ok := producer[t]
		if !ok || consumers[t] != 1 || outputs[t] {
			return node{}, false
		}
		return nodes[p], true
	}
	// other returns the input of a two-input node that is not t.
	other := func(n node, t string) (string, bool) {
		switch t {
		case n.ins[0]:
			return n.ins[1], true
		case n.ins[1]:
			return n.ins[0], true
		}
		return "", false
	}
	isScalar := func(name string, want float32) bool {
		v, ok := scalars[name]
		return ok && math.Float32bits(v) == math.Float32bits(want)
	}
	invSqrt2 := float32(1 / math.Sqrt2)

	drop := map[int]bool{}      // graph field index -> removed
	replace := map[int][]byte{} // graph field index -> new node
	fused := 0
	for _, n5 := range nodes {
		// y = Mul(x, t4), in either order.
		if !onnxOp(n5, "Mul", 2) {
			continue
		}
		for _, t4 := range n5.ins {
			x, _ := other(n5, t4)
			n4, ok := inner(t4)
			if !ok || !onnxOp(n4, "Mul", 2) {
				continue
			}
			var t3 string
			if t3, ok = chainInput(n4.ins, func(s string) bool { return isScalar(s, 0.5) }); !ok {
				continue
			}
			n3, ok := inner(t3)
			if !ok || !onnxOp(n3, "Add", 2) {
				continue
			}
			var t2 string
			if t2, ok = chainInput(n3.ins, func(s string) bool { return isScalar(s, 1) }); !ok {
				continue
			}
			n2, ok := inner(t2)
			if !ok || !onnxOp(n2, "Erf", 1) {
				continue
			}
			n1, ok := inner(n2.ins[0])
			if !ok || !onnxOp(n1, "Mul", 2) {
				continue
			}
			if x1, ok := chainInput(n1.ins, func(s string) bool { return isScalar(s, invSqrt2) }); !ok || x1 != x || x == t4 {
				continue
			}
			for _, n := range []node{n1, n2, n3, n4} {
				drop[n.field] = true
			}
			var g []byte
			g = appendBytesField(g, nodeInput, []byte(x))
			g = appendBytesField(g, nodeOutput, []byte(n5.out[0]))
			g = appendBytesField(g, nodeName, []byte(fmt.Sprintf("segbridge_gelu_%d", fused)))
			g = appendBytesField(g, nodeOpType, []byte("Gelu"))
			g = appendBytesField(g, nodeDomain, []byte(geluDomain))
			replace[n5.field] = g
			fused++
			break
		}
	}
	if fused == 0 {
		return data, 0, nil
	}

	var ng []byte
	for i, f := range graph {
		switch {
		case drop[i]:
		case replace[i] != nil:
			ng = appendBytesField(ng, graphNode, replace[i])
		default:
			ng = append(ng, f.raw...)
		}
	}
	var out []byte
	hasDomain := false
	for i, f := range model {
		if i == gi {
			out = appendBytesField(out, modelGraph, ng)
			continue
		}
		if f.num == modelOpsetImport && f.wire == wireBytes {
			o, err := pbFields(f.b)
			if err != nil {
				return nil, 0, err
			}
			hasDomain = hasDomain || pbString(o, opsetDomain) == geluDomain
		}
		out = append(out, f.raw...)
	}
	if !hasDomain {
		var o []byte
		o = appendBytesField(o, opsetDomain, []byte(geluDomain))
		o = binary.AppendUvarint(o, opsetVersion<<3|wireVarint)
		o = binary.AppendUvarint(o, 1)
		out = appendBytesField(out, modelOpsetImport, o)
	}
	return out, fused, nil
}

// chainInput returns the input of a two-input node that is not the
// constant picked by isConst.
func chainInput(ins []string, isConst func(string) bool) (string, bool) {
	switch {
	case isConst(ins[1]) && !isConst(ins[0]):
		return ins[0], true
	case isConst(ins[0]) && !isConst(ins[1]):
		return ins[1], true
	}
	return "", false
}
