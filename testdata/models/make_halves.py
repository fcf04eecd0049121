#!/usr/bin/python3
"""Build testdata/models/halves.onnx, a test model whose output is not the
input's size: a 2x2x2 max pool with stride 2, so [1, 1, D, H, W] becomes
[1, 1, D/2, H/2, W/2]. Its channel count is fixed, so segbridge allocates
the output before the run, which ONNX Runtime then refuses; the tests check
that the job still fails with segbridge's own words about the shapes.

Run with Debian's interpreter, which has python3-onnx:

    /usr/bin/python3 testdata/models/make_halves.py
"""

import os

import onnx
from onnx import TensorProto, helper

NAME = "halves"
VERSION = "1.0.0"
OPSET = 13
IR_VERSION = 7  # ONNX Runtime 1.24 reads up to 11; opset 13 needs 7
HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    graph = helper.make_graph(
        [helper.make_node("MaxPool", ["input"], ["output"], name="pool", kernel_shape=[2, 2, 2], strides=[2, 2, 2])],
        "halves",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "d", "h", "w"])],
    )
    model = helper.make_model(
        graph,
        producer_name="segbridge testdata/models/make_halves.py",
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="MaxPool 2x2x2, NOT learned: a test of outputs that do not fit the input.",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(model, {"name": NAME, "version": VERSION, "learned": "false",
                                   "source": "testdata/models/make_halves.py (segbridge)"})
    onnx.checker.check_model(model)
    return model


def main():
    path = os.path.join(HERE, "halves.onnx")
    onnx.save(build(), path)
    print("wrote", path)


if __name__ == "__main__":
    main()
