#!/usr/bin/python3
"""Build testdata/models/wide-head.onnx, a test model shaped like brainchop's
104-class parcellation: a few hidden channels, then a 1x1x1 convolution to
many more classes.

The network is NOT learned: fixed pseudo-random weights (seed 104) make
labels that vary from voxel to voxel. It has the shape segbridge's runtime
treats specially: an output layer that is a 1x1x1 Conv from 4 hidden
channels to 12 classes, whose output (three times the hidden layer) is
never made whole; the tests check that the labels are those of the whole
graph.

    input [1, 1, D, H, W] -> Conv 3x3x3 (4 channels, zero padding 1) -> Relu
          -> Conv 1x1x1 (12 channels, bias) -> logits [1, 12, D, H, W]

Run with Debian's interpreter, which has python3-onnx and python3-numpy:

    /usr/bin/python3 testdata/models/make_wide_head.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAME = "wide-head"
VERSION = "1.0.0"
OPSET = 13
IR_VERSION = 7  # ONNX Runtime 1.24 reads up to 11; opset 13 needs 7
HIDDEN, CLASSES = 4, 12
HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    rng = np.random.default_rng(104)
    w1 = rng.normal(0, 0.5, (HIDDEN, 1, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (HIDDEN,)).astype(np.float32)
    w2 = rng.normal(0, 1, (CLASSES, HIDDEN, 1, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, 0.2, (CLASSES,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["h"], name="conv1", kernel_shape=[3, 3, 3], pads=[1] * 6),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("Conv", ["hr", "w2", "b2"], ["logits"], name="output", kernel_shape=[1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "wide-head",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES, "D", "H", "W"])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(
        graph,
        producer_name="segbridge testdata/models/make_wide_head.py",
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="Fixed pseudo-random weights, NOT learned: a test of the 1x1x1 output layer.",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(model, {"name": NAME, "version": VERSION, "learned": "false",
                                   "source": "testdata/models/make_wide_head.py (segbridge)"})
    onnx.checker.check_model(model)
    return model


def main():
    path = os.path.join(HERE, "wide-head.onnx")
    onnx.save(build(), path)
    print("wrote", path)


if __name__ == "__main__":
    main()
