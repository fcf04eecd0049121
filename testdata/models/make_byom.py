#!/usr/bin/python3
"""make_byom.py writes two small ONNX models shaped like what users bring
from PyTorch, for the tests of `segbridge models init` and `models check`.
They are hand-built, not learned; the tests build them at run time (nothing
is committed).

- unet2d.onnx: what torch.onnx.export writes for a 2-D U-Net with a sigmoid
  head and dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}:
  input float32 [batch, 1, H, W] (batch, H, W free), output [batch, 1, H, W] =
  sigmoid(8 * (mean3x3(input) - 0.5)).
- net3d.onnx: a 3-D network trained on fixed 32^3 patches, used with sliding
  windows: input float32 [1, 1, 32, 32, 32], output [1, 2, 32, 32, 32] logits
  whose argmax is 1 where the input is above 0.5.

Run with Debian's interpreter (python3-onnx, python3-numpy):

    /usr/bin/python3 testdata/models/make_byom.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def unet2d():
    dims_in = ["batch", 1, "height", "width"]
    inits = [
        numpy_helper.from_array(np.full((1, 1, 3, 3), 1.0 / 9.0, dtype=np.float32), "enc.weight"),
        numpy_helper.from_array(np.array([-4.0], dtype=np.float32), "enc.bias"),
        numpy_helper.from_array(np.array(8.0, dtype=np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "enc.weight"], ["conv"], name="/enc/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["conv", "scale"], ["scaled"], name="/head/Mul"),
        helper.make_node("Add", ["scaled", "enc.bias"], ["logits"], name="/head/Add"),
        helper.make_node("Sigmoid", ["logits"], ["output"], name="/head/Sigmoid"),
    ]
    g = helper.make_graph(nodes, "main_graph",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims_in)],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims_in)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch", producer_version="2.1.0")
    m.ir_version = 8
    return m


def net3d():
    w = np.array([-10.0, 10.0], dtype=np.float32).reshape(2, 1, 1, 1, 1)
    b = np.array([5.0, -5.0], dtype=np.float32)
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["logits"], name="/out/Conv", kernel_shape=[1, 1, 1])]
    g = helper.make_graph(nodes, "main_graph",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 32, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 32, 32, 32])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch", producer_version="2.1.0")
    m.ir_version = 8
    return m


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, m in (("unet2d", unet2d()), ("net3d", net3d())):
        onnx.checker.check_model(m)
        onnx.save(m, os.path.join(out, name + ".onnx"))
