#!/usr/bin/python3
"""Independent forward pass of a TensorFlow.js layers model, in numpy (float64).

The converter tests (internal/tfjs) compare ONNX Runtime's output of a
converted model with this: Keras' own semantics written out directly, not
through ONNX. It reads model.json and its weight files, runs the layers the
MeshNet family uses, and writes the output.

    tfjs_forward.py MODEL_DIR INPUT.f32 D H W C OUTPUT.f32

INPUT.f32 holds float32 [D, H, W, C] (channels last, as Keras); OUTPUT.f32
gets float32 [D, H, W, K].
"""
import json
import os
import sys

import numpy as np
from scipy.special import erf


def load_weights(model_dir, manifest):
    weights = {}
    for group in manifest:
        buf = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            weights[w["name"].split(":")[0]] = np.frombuffer(buf, "<f4", n, off).reshape(w["shape"]).astype(np.float64)
            off += 4 * n
    return weights


def conv3d(x, kernel, bias, dil, padding, groups):
    kd, kh, kw, cig, co = kernel.shape
    D, H, W, _ = x.shape
    pads = []
    for k, d in zip((kd, kh, kw), dil):
        total = (k - 1) * d if padding == "same" else 0
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, pads + [(0, 0)])
    cog = co // groups
    out = np.zeros((D, H, W, co))
    for a in range(kd):
        for b in range(kh):
            for c in range(kw):
                patch = xp[a * dil[0]:a * dil[0] + D, b * dil[1]:b * dil[1] + H, c * dil[2]:c * dil[2] + W, :]
                for g in range(groups):
                    out[..., g * cog:(g + 1) * cog] += patch[..., g * cig:(g + 1) * cig] @ kernel[a, b, c, :, g * cog:(g + 1) * cog]
    if bias is not None:
        out += bias
    return out


def activation(name, x):
    if name in (None, "", "linear"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "relu6":
        return np.clip(x, 0, 6)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(x))
    if name == "selu":
        return 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))
    if name == "gelu":
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "softplus":
        return np.log1p(np.exp(x))
    if name in ("swish", "silu"):
        return x / (1 + np.exp(-x))
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise SystemExit("activation %s" % name)


def triple(v, default=1):
    if v is None:
        return [default] * 3
    if isinstance(v, int):
        return [v] * 3
    return list(v) if len(v) == 3 else [v[0]] * 3


def main():
    model_dir, inp, D, H, W, C, outp = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7]
    mj = json.load(open(os.path.join(model_dir, "model.json")))
    weights = load_weights(model_dir, mj["weightsManifest"])
    cfg = mj["modelTopology"]["model_config"]
    layers = cfg["config"]["layers"] if isinstance(cfg["config"], dict) else cfg["config"]
    x = np.fromfile(inp, "<f4").reshape(D, H, W, C).astype(np.float64)
    values = {}
    prev = None
    for layer in layers:
        cls, c = layer["class_name"], layer["config"]
        name = layer.get("name") or c["name"]
        if layer.get("inbound_nodes"):
            src = values[layer["inbound_nodes"][0][0][0]]
        elif cls == "InputLayer":
            src = x
        else:
            src = values[prev] if prev else x
        if cls == "InputLayer":
            y = src
        elif cls == "Conv3D":
            y = conv3d(src, weights[name + "/kernel"], weights.get(name + "/bias"), triple(c.get("dilation_rate")),
                       c["padding"], c.get("groups", 1))
            if name.endswith("_gn"):
                mean = y.mean(axis=(0, 1, 2))
                var = y.var(axis=(0, 1, 2))
                y = (y - mean) / np.sqrt(var + 1e-5)
            y = activation(c.get("activation"), y)
        elif cls == "Activation":
            y = activation(c["activation"], src)
        elif cls == "BatchNormalization":
            n = src.shape[-1]
            gamma = weights.get(name + "/gamma", np.ones(n))
            beta = weights.get(name + "/beta", np.zeros(n))
            y = (src - weights[name + "/moving_mean"]) / np.sqrt(weights[name + "/moving_variance"] + c.get("epsilon", 1e-3)) * gamma + beta
        elif cls in ("Dropout", "SpatialDropout3D"):
            y = src
        else:
            raise SystemExit("layer class %s" % cls)
        values[name] = y
        prev = name
    out_name = cfg["config"]["output_layers"][0][0] if isinstance(cfg["config"], dict) and "output_layers" in cfg["config"] else prev
    values[out_name].astype("<f4").tofile(outp)


if __name__ == "__main__":
    main()
