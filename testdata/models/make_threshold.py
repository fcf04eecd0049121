#!/usr/bin/python3
"""Build testdata/models/threshold.onnx, the geometry tests' threshold model.

The network is a single Identity node: output = input. Its manifest
(threshold.yaml) asks for no intensity preprocessing, no activation and a
threshold, so the pipeline labels a voxel 1 exactly where its modality value
(stored value * RescaleSlope + RescaleIntercept) reaches THRESHOLD. A test can
then compute the expected mask from the source voxels alone and compare a SEG
with it voxel for voxel: any slice swap, flip or shift shows.

Run with Debian's interpreter, which has python3-onnx:

    /usr/bin/python3 testdata/models/make_threshold.py
"""

import os

import onnx
from onnx import TensorProto, helper

NAME = "threshold"
VERSION = "1.0.0"
OPSET = 13
IR_VERSION = 7  # ONNX Runtime 1.24 reads up to 11; opset 13 needs 7
HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    dims = [1, 1, "D", "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"], name="identity")],
        "threshold",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(
        graph,
        producer_name="segbridge testdata/models/make_threshold.py",
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="Identity, NOT learned: the manifest thresholds raw modality values.",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(model, {"name": NAME, "version": VERSION, "learned": "false",
                                   "source": "testdata/models/make_threshold.py (segbridge)"})
    onnx.checker.check_model(model)
    return model


def main():
    path = os.path.join(HERE, "threshold.onnx")
    onnx.save(build(), path)
    print("wrote", path)


if __name__ == "__main__":
    main()
