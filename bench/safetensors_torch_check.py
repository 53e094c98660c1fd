#!/usr/bin/python3
"""Check a MedFed safetensors file against PyTorch.

Reads a model written by model.Save with a small hand-written safetensors reader, rebuilds it
in PyTorch from the "spec" metadata (dense, conv2d, maxpool2d, flatten, dropout and
activation layers), runs the inputs of a JSON file written next to it and prints the largest
absolute difference from the outputs MedFed computed:

    /usr/bin/python3 bench/safetensors_torch_check.py model.safetensors io.json [--tol 1e-4]

io.json is {"n": samples, "x": [n * prod(input) floats, NHWC], "y": [n * outputs floats]}.
Exit status 0 when the difference is below --tol, 1 otherwise.

Layouts: MedFed stores Keras layouts, so the weights are permuted to PyTorch's: a conv2d
kernel [kh, kw, cin, out] becomes [out, cin, kh, kw], a dense kernel [in, out] becomes
[out, in]. PyTorch convolves NCHW images, so flattening an [h, w, c] activation yields (c, h, w)
order where MedFed yields (h, w, c); the rows of the first dense kernel after such a flatten are
permuted from (h, w, c) to (c, h, w) order to compensate.
"""

import argparse
import json
import struct
import sys

import torch
import torch.nn.functional as F


def read_safetensors(path):
    """Returns ({name: float32 tensor}, metadata) from a safetensors file of F32 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"tensor {name} has dtype {info['dtype']}, want F32")
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32)
        if sys.byteorder != "little":
            t = t.byteswap()
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def same_padding(size, k, s):
    """TensorFlow's "same" padding: (leading, trailing), the extra one at the end."""
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1),
    "linear": lambda x: x,
    "": lambda x: x,
}


def build(spec, tensors):
    """Returns a function from an NCHW (or [n, features]) batch to the model's output.

    Layer indices follow MedFed's: a layer spec's fused activation is a layer of its own.
    """
    steps = []
    shape = list(spec["input"])  # MedFed's per-sample shape, HWC for images
    flattened_from = None  # the [h, w, c] shape a flatten turned into a vector, until a dense
    i = 0
    for ls in spec["layers"]:
        typ = ls["type"]
        if typ == "conv2d":
            w = tensors[f"layers.{i}.kernel"].permute(3, 2, 0, 1).contiguous()
            b = tensors[f"layers.{i}.bias"]
            kh, kw = ls["kernel"]
            sh, sw = ls.get("strides", [1, 1])
            if ls.get("padding", "valid") == "same":
                top, bottom = same_padding(shape[0], kh, sh)
                left, right = same_padding(shape[1], kw, sw)
                pad = (left, right, top, bottom)
                oh, ow = (shape[0] + sh - 1) // sh, (shape[1] + sw - 1) // sw
            else:
                pad = (0, 0, 0, 0)
                oh, ow = (shape[0] - kh) // sh + 1, (shape[1] - kw) // sw + 1
            steps.append(lambda x, w=w, b=b, s=(sh, sw), pad=pad: F.conv2d(F.pad(x, pad), w, b, stride=s))
            shape = [oh, ow, ls["filters"]]
        elif typ == "maxpool2d":
            ph, pw = ls.get("pool", [2, 2])
            sh, sw = ls.get("strides", [ph, pw])
            steps.append(lambda x, k=(ph, pw), s=(sh, sw): F.max_pool2d(x, k, s))
            shape = [(shape[0] - ph) // sh + 1, (shape[1] - pw) // sw + 1, shape[2]]
        elif typ == "flatten":
            if len(shape) == 3:
                flattened_from = shape
            steps.append(lambda x: x.reshape(x.shape[0], -1))
            n = 1
            for d in shape:
                n *= d
            shape = [n]
        elif typ == "dense":
            w = tensors[f"layers.{i}.kernel"]  # [in, out], rows in MedFed's (h, w, c) order
            if flattened_from is not None:
                h, wd, c = flattened_from
                w = w.reshape(h, wd, c, -1).permute(2, 0, 1, 3).reshape(h * wd * c, -1)
                flattened_from = None
            w = w.t().contiguous()
            b = tensors[f"layers.{i}.bias"]
            steps.append(lambda x, w=w, b=b: F.linear(x, w, b))
            shape = [ls["units"]]
        elif typ in ("dropout",):
            pass  # the identity at inference
        elif typ in ACTIVATIONS:
            steps.append(ACTIVATIONS[typ])
        else:
            raise ValueError(f"layer type {typ} is not supported by this check")
        i += 1
        act = ls.get("activation", "")
        if typ in ("dense", "conv2d") and act not in ("", "linear"):
            steps.append(ACTIVATIONS[act])
            i += 1
    known = {f"layers.{j}" for j in range(i)}
    for name in tensors:
        if name.rsplit(".", 1)[0] not in known:
            raise ValueError(f"tensor {name} does not belong to any layer of the spec")

    def forward(x):
        for step in steps:
            x = step(x)
        return x

    return forward


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("io")
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()

    tensors, meta = read_safetensors(args.model)
    spec = json.loads(meta["spec"])
    forward = build(spec, tensors)
    with open(args.io) as f:
        io = json.load(f)
    n = io["n"]
    x = torch.tensor(io["x"], dtype=torch.float32).reshape([n] + spec["input"])
    if x.dim() == 4:
        x = x.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    want = torch.tensor(io["y"], dtype=torch.float32).reshape(n, -1)
    with torch.no_grad():
        got = forward(x).reshape(n, -1)
    diff = (got - want).abs().max().item()
    print(f"max_abs_diff {diff:.3g} over {n} samples x {want.shape[1]} outputs (torch {torch.__version__})")
    return 0 if diff < args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
