#!/usr/bin/python3
"""Build testdata/models/gelu-chain.onnx, a test model with GELU written as
five elementwise nodes, the way brainchop's mindgrab (exported from
TensorFlow.js) writes it:

    t1 = Mul(x, 1/sqrt 2); t2 = Erf(t1); t3 = Add(t2, 1); t4 = Mul(t3, 0.5); y = Mul(x, t4)

The network is NOT learned: fixed pseudo-random weights (seed 5). Its
second chain writes every Mul and Add with the operands the other way round.
segbridge fuses such chains into ONNX Runtime's Gelu (inference/gelu.go); the
tests check that the outputs are the same bit for bit.

    input [1, 1, D, H, W] -> Conv 3x3x3 (3 channels) -> GELU chain
          -> Conv 3x3x3 (3 channels) -> GELU chain, operands swapped
          -> Conv 1x1x1 (2 channels) -> logits [1, 2, D, H, W]

Run with Debian's interpreter, which has python3-onnx and python3-numpy:

    /usr/bin/python3 testdata/models/make_gelu_chain.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAME = "gelu-chain"
VERSION = "1.0.0"
OPSET = 13
IR_VERSION = 7  # ONNX Runtime 1.24 reads up to 11; opset 13 needs 7
HERE = os.path.dirname(os.path.abspath(__file__))


def gelu(x, y, p, swapped):
    def two(a, b):
        return [b, a] if swapped else [a, b]
    return [
        helper.make_node("Mul", two(x, "inv_sqrt2"), [p + "scale"]),
        helper.make_node("Erf", [p + "scale"], [p + "erf"]),
        helper.make_node("Add", two(p + "erf", "one"), [p + "add"]),
        helper.make_node("Mul", two(p + "add", "half"), [p + "half"]),
        helper.make_node("Mul", two(x, p + "half"), [y]),
    ]


def build():
    rng = np.random.default_rng(5)
    w1 = rng.normal(0, 0.6, (3, 1, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.4, (3, 3, 3, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 1, (2, 3, 1, 1, 1)).astype(np.float32)
    consts = {
        "inv_sqrt2": np.array([0.70710677], np.float32),
        "one": np.array([1], np.float32),
        "half": np.array([0.5], np.float32),
        "w1": w1, "w2": w2, "w3": w3,
    }
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], kernel_shape=[3, 3, 3], pads=[1] * 6)]
    nodes += gelu("c1", "g1", "a_", False)
    nodes += [helper.make_node("Conv", ["g1", "w2"], ["c2"], kernel_shape=[3, 3, 3], pads=[1] * 6)]
    nodes += gelu("c2", "g2", "b_", True)
    nodes += [helper.make_node("Conv", ["g2", "w3"], ["logits"], kernel_shape=[1, 1, 1])]
    graph = helper.make_graph(
        nodes,
        "gelu-chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, "D", "H", "W"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(
        graph,
        producer_name="segbridge testdata/models/make_gelu_chain.py",
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="Fixed pseudo-random weights, NOT learned: a test of GELU fusion.",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(model, {"name": NAME, "version": VERSION, "learned": "false",
                                   "source": "testdata/models/make_gelu_chain.py (segbridge)"})
    onnx.checker.check_model(model)
    return model


def main():
    path = os.path.join(HERE, "gelu-chain.onnx")
    onnx.save(build(), path)
    print("wrote", path)


if __name__ == "__main__":
    main()
