package inference

import (
	"encoding/binary"
	"math"
)

// A segmentation network's output layer is often a 1x1x1 convolution from a
// few hidden channels to one channel per class. With many classes that
// output dwarfs everything else: brainchop's 104-class parcellation has 21
// hidden channels and 104 output channels, 2.8 GB of float32 over a head's
// crop where the hidden layer takes 0.6 GB. A 1x1x1 convolution works on
// each voxel alone, so segbridge cuts such a layer off the graph: ONNX
// Runtime runs the body (input to hidden layer) on the whole volume, then
// the output layer alone on slabs of the hidden layer, and each slab's
// labels are decided before the next slab is run. The labels are those of
// the whole graph; the whole output never exists.
//
// The cut is made on the model's bytes (onnxproto.go).

// headSplit is a model cut before its 1x1x1 output convolution.
type headSplit struct {
	// hidden is the name of the output layer's input, of hiddenChannels
	// (K) channels; the output has classes (C) channels.
	hidden         string
	hiddenChannels int64
	classes        int64
	body, head     []byte // the two models, ONNX bytes
}

// splitHead cuts the model in data before its output named output, when
// that output is made by a 1x1x1 Conv (no padding, stride 1, one group)
// from one hidden tensor with float weights held as initializers. ok is
// false, with no error, when the graph is not of that shape.
func splitHead(data []byte, output string) (*headSplit, bool, error) {
	model, err := pbFields(data)
	if err != nil {
		return nil, false, err
	}
	var graph []pbField
	var modelRest []pbField // ModelProto fields but the graph
	var irVersion, opsets []pbField
	for _, f := range model {
		switch {
		case f.num == modelGraph && f.wire == wireBytes:
			if graph, err = pbFields(f.b); err != nil {
				return nil, false, err
			}
		default:
			modelRest = append(modelRest, f)
			if f.num == modelIRVersion {
				irVersion = append(irVersion, f)
			}
			if f.num == modelOpsetImport {
				opsets = append(opsets, f)
			}
		}
	}
	if graph == nil {
		return nil, false, nil
	}
	inits := map[string][]pbField{}
	initRaw := map[string][]byte{}
	var producer []pbField
	producerIdx := -1
	consumers := map[string]int{}
	for i, f := range graph {
		switch {
		case f.num == graphInitializer && f.wire == wireBytes:
			t, err := pbFields(f.b)
			if err != nil {
				return nil, false, err
			}
			name := pbString(t, tensorName)
			inits[name], initRaw[name] = t, f.raw
		case f.num == graphNode && f.wire == wireBytes:
			n, err := pbFields(f.b)
			if err != nil {
				return nil, false, err
			}
			for _, in := range pbStrings(n, nodeInput) {
				consumers[in]++
			}
			if outs := pbStrings(n, nodeOutput); len(outs) == 1 && outs[0] == output {
				producer, producerIdx = n, i
			}
		}
	}
	if producer == nil || pbString(producer, nodeOpType) != "Conv" {
		return nil, false, nil
	}
	if d := pbString(producer, nodeDomain); d != "" && d != "ai.onnx" {
		return nil, false, nil
	}
	ins := pbStrings(producer, nodeInput)
	if len(ins) < 2 || len(ins) > 3 || inits[ins[0]] != nil || inits[ins[1]] == nil || (len(ins) == 3 && inits[ins[2]] == nil) {
		return nil, false, nil
	}
	hidden := ins[0]
	w := inits[ins[1]]
	dims, err := pbInts(w, tensorDims)
	if err != nil {
		return nil, false, err
	}
	if dt, _ := pbInts(w, tensorDataType); len(dt) != 1 || dt[0] != tensorFloat {
		return nil, false, nil
	}
	if len(dims) != 5 || dims[2] != 1 || dims[3] != 1 || dims[4] != 1 || dims[0] < 1 || dims[1] < 1 {
		return nil, false, nil
	}
	if !pointwise(producer) {
		return nil, false, nil
	}
	if consumers[output] > 0 {
		return nil, false, nil // the output feeds another node
	}
	for _, f := range graph {
		if f.num == graphOutput && f.wire == wireBytes {
			vi, err := pbFields(f.b)
			if err != nil {
				return nil, false, err
			}
			if pbString(vi, valueInfoName) == hidden {
				return nil, false, nil // already an output: keep it simple
			}
		}
	}

	// The body: the graph without the output layer, giving hidden.
	floatInfo := func(name string) []byte {
		var tt []byte
		tt = binary.AppendUvarint(tt, typeTensorElem<<3|wireVarint)
		tt = binary.AppendUvarint(tt, tensorFloat)
		var tp []byte
		tp = appendBytesField(tp, typeTensor, tt)
		var vi []byte
		vi = appendBytesField(vi, valueInfoName, []byte(name))
		return appendBytesField(vi, valueInfoType, tp)
	}
	var body, outInfo []byte
	for i, f := range graph {
		switch {
		case i == producerIdx:
		case f.num == graphOutput && f.wire == wireBytes:
			vi, _ := pbFields(f.b)
			if pbString(vi, valueInfoName) == output {
				outInfo = f.raw
				body = appendBytesField(body, graphOutput, floatInfo(hidden))
				continue
			}
			body = append(body, f.raw...)
		default:
			body = append(body, f.raw...)
		}
	}
	if outInfo == nil {
		return nil, false, nil
	}
	var bodyModel []byte
	for _, f := range modelRest {
		bodyModel = append(bodyModel, f.raw...)
	}
	bodyModel = appendBytesField(bodyModel, modelGraph, body)

	// The head: the output layer alone, from hidden.
	var head []byte
	head = append(head, graph[producerIdx].raw...)
	head = appendBytesField(head, graphName, []byte("output layer"))
	for _, name := range ins[1:] {
		head = append(head, initRaw[name]...)
	}
	head = appendBytesField(head, graphInput, floatInfo(hidden))
	head = append(head, outInfo...)
	var headModel []byte
	for _, f := range irVersion {
		headModel = append(headModel, f.raw...)
	}
	for _, f := range opsets {
		headModel = append(headModel, f.raw...)
	}
	headModel = appendBytesField(headModel, modelGraph, head)
	return &headSplit{
		hidden: hidden, hiddenChannels: dims[1], classes: dims[0],
		body: bodyModel, head: headModel,
	}, true, nil
}

// pointwise reports whether a Conv node's attributes make it a 1x1x1
// convolution of each voxel alone: kernel 1, stride 1, no padding, one
// group. An attribute it does not know means no.
func pointwise(node []pbField) bool {
	for _, f := range node {
		if f.num != nodeAttribute || f.wire != wireBytes {
			continue
		}
		a, err := pbFields(f.b)
		if err != nil {
			return false
		}
		ints, err := pbInts(a, attrInts)
		if err != nil {
			return false
		}
		all := func(want int64) bool {
			for _, v := range ints {
				if v != want {
					return false
				}
			}
			return true
		}
		switch pbString(a, attrName) {
		case "kernel_shape", "strides":
			if !all(1) {
				return false
			}
		case "pads":
			if !all(0) {
				return false
			}
		case "dilations":
			// Irrelevant to a kernel of one voxel.
		case "group":
			is, _ := pbInts(a, attrI)
			if len(is) != 1 || is[0] != 1 {
				return false
			}
		case "auto_pad":
			// With a kernel and stride of 1, every auto_pad pads nothing.
		default:
			return false
		}
	}
	return true
}

// defaultSlabBytes is the size of the output layer's output for one slab.
const defaultSlabBytes = 64 << 20

// slabDepth is how many slices of D the output layer is run on at once:
// enough that each run is a sizeable piece of work for ONNX Runtime, and
// few enough that its output stays near slabBytes.
func slabDepth(slabBytes int, classes int64, d, h, w int) int {
	perSlice := float64(classes) * float64(h) * float64(w) * 4
	return int(max(1, min(float64(d), math.Floor(float64(slabBytes)/perSlice))))
}
