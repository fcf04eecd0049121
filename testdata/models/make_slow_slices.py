#!/usr/bin/python3
"""make_slow_slices.py writes slow-slices.onnx, a hand-built 2-D model that is slow on purpose.

The shutdown tests need a job that is still running, at a known stage, when
the service is stopped, and that a stop can interrupt between slices. This
model marks the head like head-threshold, in 2-D: output =
sigmoid(400 * (mean3x3(input) - 0.025)) on min-max normalised slices, so its
SEG is a real head mask. Beside it runs a branch of DEPTH convolutions of
CHANNELS channels whose result is multiplied by zero weights and added: it
changes nothing in the output and costs about DEPTH * CHANNELS^2 * 9
multiply-adds per pixel (4.4 G for a 109x91 slice of ch2 at 2 mm: about 50 ms
on one core, some 4 s for the 91 slices). It is not learned and not for clinical
use.

Graph: input float32 [N, 1, H, W] (N, H, W free) -> Conv 3x3 (1/9) -> Mul 400
-> Add -10 = logit; input -> Conv 3x3 1->C -> DEPTH x Conv 3x3 C->C (one shared
weight) -> Conv 3x3 C->1 (zeros) = nothing; Sigmoid(logit + nothing) ->
output float32 [N, 1, H, W]. Opset 13, IR version 7. Deterministic:
regenerating leaves the file unchanged.

Run with Debian's interpreter, which has python3-onnx and python3-numpy:

    /usr/bin/python3 testdata/models/make_slow_slices.py
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 7
SCALE = 400.0
LEVEL = 0.025
CHANNELS = 32
DEPTH = 48


def build():
    dims = ["N", 1, "H", "W"]
    c = CHANNELS
    inits = [
        numpy_helper.from_array(np.full((1, 1, 3, 3), 1.0 / 9.0, dtype=np.float32), "mean_kernel"),
        numpy_helper.from_array(np.array(SCALE, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(-SCALE * LEVEL, dtype=np.float32), "bias"),
        # Means keep the busy branch's values in [0, 1]: never inf or NaN,
        # so multiplying it by zero gives exactly zero.
        numpy_helper.from_array(np.full((c, 1, 3, 3), 1.0 / 9.0, dtype=np.float32), "busy_in"),
        numpy_helper.from_array(np.full((c, c, 3, 3), 1.0 / (9.0 * c), dtype=np.float32), "busy_kernel"),
        numpy_helper.from_array(np.zeros((1, c, 3, 3), dtype=np.float32), "busy_out"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "mean_kernel"], ["local_mean"], name="mean3x3",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["local_mean", "scale"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "bias"], ["logit"], name="shift"),
        helper.make_node("Conv", ["input", "busy_in"], ["busy0"], name="busy_in",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    for i in range(DEPTH):
        nodes.append(helper.make_node("Conv", ["busy%d" % i, "busy_kernel"], ["busy%d" % (i + 1)], name="busy%d" % (i + 1),
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    nodes += [
        helper.make_node("Conv", ["busy%d" % DEPTH, "busy_out"], ["nothing"], name="busy_out",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["logit", "nothing"], ["logit_busy"], name="add_nothing"),
        helper.make_node("Sigmoid", ["logit_busy"], ["output"], name="probability"),
    ]
    graph = helper.make_graph(
        nodes, "slow_slices",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        inits,
    )
    model = helper.make_model(graph, producer_name="segbridge make_slow_slices.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {
        "learned": "false",
        "source": "testdata/models/make_slow_slices.py",
        "formula": "sigmoid(400 * (mean3x3(input) - 0.025)) + a zero-weighted busy branch",
    })
    onnx.checker.check_model(model)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow-slices.onnx"))
    args = p.parse_args()
    onnx.save(build(), args.out)


if __name__ == "__main__":
    main()
