#!/usr/bin/python3
"""make_slice_mean2d.py writes slice-mean2d.onnx, a tiny hand-built 2-D model.

It stands in for the seed's 2-D PyTorch model (exported with torch.onnx.export,
run on slices in batches with threshold 0.5) in the tests of slice mode. It is
not learned: output = sigmoid(50 * (mean3x3(input) - 0.5)), a 3x3 in-plane mean
filter with zero padding, so on a 0/1 image a pixel reaches 0.5 exactly where
at least 5 of the 9 pixels of its in-plane neighbourhood are 1.

Graph: input float32 [N, 1, H, W] (N, H, W free) -> Conv 3x3 (weights 1/9,
pads 1) -> Mul 50 -> Add -25 -> Sigmoid -> output float32 [N, 1, H, W].
Opset 13, IR version 7. Deterministic: regenerating leaves the file unchanged.

Run with Debian's interpreter, which has python3-onnx and python3-numpy:

    /usr/bin/python3 testdata/models/make_slice_mean2d.py
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7
SCALE = 50.0
LEVEL = 0.5


def build():
    dims = ["N", 1, "H", "W"]
    inits = [
        numpy_helper.from_array(np.full((1, 1, 3, 3), 1.0 / 9.0, dtype=np.float32), "mean_kernel"),
        numpy_helper.from_array(np.array(SCALE, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(-SCALE * LEVEL, dtype=np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "mean_kernel"], ["local_mean"], name="mean3x3",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["local_mean", "scale"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "bias"], ["logit"], name="shift"),
        helper.make_node("Sigmoid", ["logit"], ["output"], name="probability"),
    ]
    graph = helper.make_graph(
        nodes, "slice_mean2d",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        inits,
    )
    model = helper.make_model(graph, producer_name="segbridge make_slice_mean2d.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {
        "learned": "false",
        "source": "testdata/models/make_slice_mean2d.py",
        "formula": "sigmoid(50 * (mean3x3(input) - 0.5))",
    })
    onnx.checker.check_model(model)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "slice-mean2d.onnx"))
    args = p.parse_args()
    onnx.save(build(), args.out)


if __name__ == "__main__":
    main()
