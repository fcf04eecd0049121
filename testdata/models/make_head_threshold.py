#!/usr/bin/python3
"""Build testdata/models/head-threshold.onnx, segbridge's reference model.

The network is hand-built, not learned: a 3x3x3 mean filter (a Conv with all
weights 1/27, zero padding 1) followed by an affine map and a Sigmoid, so that

    output = sigmoid(SCALE * (mean3x3x3(input) - LEVEL))

is >= 0.5 exactly where the local mean of the min-max normalised intensity is
at least LEVEL. On a T1 head scan with an air background of ~0 that is "head
(scalp, skull, brain) versus air". LEVEL was chosen on Colin27 (ch2); run
`--check` to see how it does there.

Run with Debian's interpreter, which has python3-onnx and python3-numpy:

    /usr/bin/python3 testdata/models/make_head_threshold.py           # write the model
    /usr/bin/python3 testdata/models/make_head_threshold.py --check   # and verify it on ch2

--check also needs python3-nibabel and python3-scipy and the mricron-data
template /usr/share/mricron/templates/ch2.nii.gz.
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAME = "head-threshold"
VERSION = "1.0.0"
# LEVEL is the local-mean intensity (on the [0,1] min-max scale) above which a
# voxel is head. ch2's air is exactly 0 and its skull is dark but not 0; 0.025
# (about 6/254 of ch2's range) keeps the skull and scalp and drops the air.
LEVEL = 0.025
# SCALE makes the sigmoid steep: air (mean 0) gets sigmoid(-10) ~ 5e-5.
SCALE = 400.0
OPSET = 13
# ONNX Runtime 1.24 reads IR versions up to 11; 7 is what opset 13 needs.
IR_VERSION = 7

HERE = os.path.dirname(os.path.abspath(__file__))
CH2 = "/usr/share/mricron/templates/ch2.nii.gz"


def build():
    """Return the ModelProto."""
    weights = np.full((1, 1, 3, 3, 3), 1.0 / 27.0, dtype=np.float32)
    inits = [
        numpy_helper.from_array(weights, "mean_kernel"),
        numpy_helper.from_array(np.array(SCALE, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(-SCALE * LEVEL, dtype=np.float32), "bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "mean_kernel"], ["local_mean"],
            name="mean3x3x3", kernel_shape=[3, 3, 3], pads=[1, 1, 1, 1, 1, 1],
        ),
        helper.make_node("Mul", ["local_mean", "scale"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "bias"], ["logit"], name="shift"),
        helper.make_node("Sigmoid", ["logit"], ["output"], name="probability"),
    ]
    dims = [1, 1, "D", "H", "W"]
    graph = helper.make_graph(
        nodes, "head_threshold",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="segbridge testdata/models/make_head_threshold.py",
        producer_version=VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=(
            "Hand-built reference network, NOT learned: 3x3x3 mean filter, then "
            "sigmoid(%g * (mean - %g)). Input: min-max normalised volume [1,1,D,H,W]; "
            "output: probability that a voxel is head rather than air." % (SCALE, LEVEL)
        ),
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    helper.set_model_props(model, {
        "name": NAME,
        "version": VERSION,
        "learned": "false",
        "description": "hand-built 3x3x3 mean filter + affine + sigmoid; head vs air; not trained",
        "source": "testdata/models/make_head_threshold.py (segbridge)",
        "level": repr(LEVEL),
        "scale": repr(SCALE),
        "input_normalisation": "minmax to [0,1]",
        "threshold": "0.5",
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def forward(x):
    """The model's forward pass in numpy/scipy, for the check."""
    from scipy import ndimage
    mean = ndimage.uniform_filter(x.astype(np.float32), size=3, mode="constant", cval=0.0)
    return 1.0 / (1.0 + np.exp(-(SCALE * mean - SCALE * LEVEL)))


def check():
    import nibabel as nib
    from scipy import ndimage

    img = nib.load(CH2)
    a = np.asarray(img.get_fdata(dtype=np.float32))
    x = (a - a.min()) / (a.max() - a.min())
    prob = forward(x)
    mask = prob >= 0.5
    # Reference head: ch2 is already masked to the head (air is exactly 0), so
    # "head" is a > 0, with holes filled and smoothed by the same 3x3x3 mean.
    ref = ndimage.binary_fill_holes(a > 0)
    ref_smooth = ndimage.uniform_filter(ref.astype(np.float32), 3, mode="constant") >= 0.5
    dice = lambda p, q: 2.0 * np.logical_and(p, q).sum() / (p.sum() + q.sum())
    dist = ndimage.distance_transform_edt(~ref)
    _, ncomp = ndimage.label(mask)
    print("ch2 %s voxels, %d total" % ("x".join(map(str, a.shape)), a.size))
    print("head fraction (prob >= 0.5):      %.4f (%d voxels)" % (mask.mean(), mask.sum()))
    print("reference fraction (ch2 > 0):     %.4f" % ref.mean())
    print("Dice vs ch2 > 0:                  %.4f" % dice(mask, ref))
    print("Dice vs ch2 > 0, 3x3x3 smoothed:  %.4f" % dice(mask, ref_smooth))
    print("missed head voxels:               %d" % np.logical_and(ref, ~mask).sum())
    print("labelled voxels outside the head: %d, farthest %.1f mm" % (
        np.logical_and(mask, ~ref).sum(), dist[mask].max()))
    print("voxels >2 mm from the head with prob >= 0.01: %d" % ((prob >= 0.01) & (dist > 2)).sum())
    print("max prob in air >2 mm from the head:          %.2e" % prob[dist > 2].max())
    print("connected components of the mask: %d" % ncomp)
    ok = dice(mask, ref) > 0.98 and ncomp == 1
    print("OK" if ok else "FAIL")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, NAME + ".onnx"))
    ap.add_argument("--check", action="store_true", help="verify the model on ch2")
    args = ap.parse_args()
    model = build()
    onnx.save(model, args.out)
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))
    if args.check and not check():
        sys.exit(1)


if __name__ == "__main__":
    main()
