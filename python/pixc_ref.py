#!/usr/bin/env python3
"""Plain eager PyTorch reference implementation of any pixc model.

Built from the JSON that `pixc check SPEC --json` prints; follows docs/semantics.md to the
letter. Parameters carry pixc's names (`n{node}.{param}`, see `src/ir/mod.rs::params_of`),
so one safetensors file runs both in pixc and here.

This is also the baseline pixc's benchmark compares against, so it is written the way a
competent PyTorch user would write the paper's models in eager mode: masked convolutions as
`weight * mask`, a Python loop over rows for the Row LSTM, skew/unskew by pad + reshape and
one grouped conv1d recurrence for both directions of the Diagonal BiLSTM. No torch.compile,
no TorchScript.

Conditional models too (docs/semantics.md): a class-conditional model (`classes: K`) takes
each image's label (`labels`, ints in 0..K-1) and adds `class_weight[:, y]` to every LSTM's
input-to-state map and every gated conv's pre-activation; a low-res model (`low_res: f`,
the conditional part of a multi-scale spec, the JSON's top level) upsamples the image's
subsample `x[::f, ::f]` (its `low_res` node) and adds a 1x1 conv of it there as well, and
does not score the subsample's pixels. A multi-scale spec's small model is the JSON's
`small`, an ordinary unconditional model (`--small` in the commands).

Usage (see `--help` of each command):
  python python/pixc_ref.py logits    --ir IR.json --weights W.safetensors --images IMG.npy --out OUT.npy [--labels Y.npy]
  python python/pixc_ref.py nll       --ir IR.json --weights W.safetensors --images IMG.npy --out OUT.npy [--labels Y.npy]
  python python/pixc_ref.py bench     --ir IR.json --batch 16 --steps 5 --threads 2 [--weights W] [--json]
  python python/pixc_ref.py causality --ir IR.json --out deps.npy
`--ir` takes the JSON of `pixc check SPEC --json`, or a spec (.yaml / .pixc), which is
compiled with `target/debug/pixc check --json` (or $PIXC).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------
# safetensors (f32 only), pure python
# ---------------------------------------------------------------------------------------

_DTYPES = {"F32": np.dtype("<f4")}


def load_safetensors(path, with_metadata: bool = False):
    """Reads a safetensors file of f32 tensors: `{name: np.ndarray}` (and its metadata)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = memoryview(data)[8 + n :]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise ValueError(f"{path}: tensor `{name}` is {dt}; only F32 is supported")
        begin, end = info["data_offsets"]
        shape = [int(s) for s in info["shape"]]
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * 4 or end > len(body):
            raise ValueError(f"{path}: tensor `{name}` has inconsistent offsets {begin}..{end} for shape {shape}")
        out[name] = np.frombuffer(body[begin:end], dtype=_DTYPES[dt]).reshape(shape).astype(np.float32)
    return (out, meta) if with_metadata else out


def save_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes `{name: array}` as f32 safetensors (names sorted, header padded to 8 bytes)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = tensors[name]
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------
# masks: a port of src/ir/mask.rs
# ---------------------------------------------------------------------------------------


def group_of(ch: int, total: int, chunks: int, groups: int) -> int:
    """Colour group of channel `ch` among `total` channels made of `chunks` equal chunks."""
    chunk = max(total // max(chunks, 1), 1)
    return ((ch % chunk) * groups) // chunk


def conv_mask(out: int, cin: int, kh: int, kw: int, mask: str, groups: int, out_chunks: int) -> np.ndarray:
    """The 0/1 mask of a `[out, cin, kh, kw]` weight (exactly `ir::mask::conv_mask`)."""
    ch, cw = kh // 2, kw // 2
    go = np.array([group_of(o, out, out_chunks, groups) for o in range(out)])
    gi = np.array([group_of(i, cin, 1, groups) for i in range(cin)])
    m = np.zeros((out, cin, kh, kw), dtype=np.float32)
    # The gated PixelCNN's vertical stack: every tap of the rows above the centre
    # ("above"), or of those and the whole centre row ("above_row").
    if mask in ("above", "above_row"):
        m[:, :, : ch + (mask == "above_row"), :] = 1.0
        return m
    if mask == "A":
        centre_ok = gi[None, :] < go[:, None]
    elif mask == "B":
        centre_ok = gi[None, :] <= go[:, None]
    else:
        raise ValueError(f"unknown mask {mask!r}")
    for y in range(kh):
        for x in range(kw):
            if y < ch or (y == ch and x < cw):
                m[:, :, y, x] = 1.0
            elif y == ch and x == cw:
                m[:, :, y, x] = centre_ok
    return m


# ---------------------------------------------------------------------------------------
# parameters: a port of ir::params_of
# ---------------------------------------------------------------------------------------


def head_out_channels(kind: str, image: dict) -> int:
    return image["channels"] if kind == "bernoulli" else image["channels"] * image["levels"]


def params_of(kind: str, attrs: dict, inputs: list, image: dict) -> list:
    """`[(name, shape)]` in pixc's order (the order its seeded init draws in)."""
    cin = inputs[0] if inputs else 0
    classes, low_res = image.get("classes", 0), image.get("low_res")

    def conditioning(gates):
        # A conditional model's class vectors and 1x1 conv of the low-res map into the gates.
        return ([("class_weight", [gates, classes])] if classes else []) + (
            [("low_res_weight", [gates, low_res["maps"], 1, 1])] if low_res else []
        )

    if kind in ("input", "relu", "add"):
        return []
    if kind == "low_res":
        k = 3 * attrs["factor"]
        return [("weight", [cin, attrs["maps"], k, k]), ("bias", [attrs["maps"]])]
    if kind == "conv":
        return [("weight", [attrs["out"], cin, attrs["kh"], attrs["kw"]]), ("bias", [attrs["out"]])]
    if kind == "row_lstm":
        h, k = attrs["hidden"], attrs["k"]
        return [
            ("is_weight", [4 * h, cin, 1, k]),
            ("is_bias", [4 * h]),
            ("ss_weight", [4 * h, h, 3]),
            ("h0", [h, image["width"]]),
            ("c0", [h, image["width"]]),
        ] + conditioning(4 * h)
    if kind == "diag_bilstm":
        h = attrs["hidden"]
        return [
            ("is_weight", [8 * h, cin, 1, 1]),
            ("is_bias", [8 * h]),
            ("ss_weight", [8 * h, h, 2]),
            ("h0", [2 * h, image["height"]]),
            ("c0", [2 * h, image["height"]]),
        ] + conditioning(8 * h) + ([("ix_weight", [4 * h, image["channels"], 1, 1])] if attrs.get("full_context") else [])
    if kind == "gated_conv":
        h = attrs["hidden"]
        v = [("weight", [2 * h, cin, attrs["kh"], attrs["kw"]]), ("bias", [2 * h])]
        if attrs["link"]:
            v.append(("link_weight", [2 * h, inputs[1], 1, 1]))
        return v + conditioning(2 * h)
    if kind == "skip_sum":
        v = []
        for i, c in enumerate(inputs):
            if i == 0:
                continue
            v.append((f"proj{i}_weight", [cin, c, 1, 1]))
            v.append((f"proj{i}_bias", [cin]))
        return v
    if kind == "head":
        out = head_out_channels(attrs["kind"], image)
        return [("weight", [out, cin, 1, 1]), ("bias", [out])]
    raise ValueError(f"unknown layer kind {kind!r}")


# ---------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------


def _empty(*shape):
    return nn.Parameter(torch.zeros(*shape))


class MaskedConv(nn.Module):
    """conv / head: `conv2d(x, weight * mask, bias)`, zero padding keeping H x W."""

    def __init__(self, cin, out, kh, kw, mask, groups):
        super().__init__()
        self.weight = _empty(out, cin, kh, kw)
        self.bias = _empty(out)
        self.register_buffer("mask", torch.from_numpy(conv_mask(out, cin, kh, kw, mask, groups, 1)), persistent=False)
        self.padding = (kh // 2, kw // 2)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class LowResMap(nn.Module):
    """low_res: the image's strided subsample `x[:, :, ::f, ::f]`, upsampled by a transposed
    conv (kernel 3f, stride f, padding f) to `maps` channels at full size, so output pixel
    (r, c) reads the 3 x 3 low-res pixels around its own f x f block."""

    def __init__(self, cin, maps, factor):
        super().__init__()
        self.factor = factor
        self.weight = _empty(cin, maps, 3 * factor, 3 * factor)
        self.bias = _empty(maps)

    def forward(self, x):
        f = self.factor
        return F.conv_transpose2d(x[:, :, ::f, ::f], self.weight, self.bias, stride=f, padding=f)


class _Conditioned(nn.Module):
    """Base of the layers a conditional model conditions (Row LSTM, Diagonal BiLSTM, gated
    conv): a class-conditional model's `class_weight` (gates x classes) and a low-res
    model's `low_res_weight` (gates x maps x 1 x 1, unmasked), both added to the gate
    pre-activations at every position."""

    def _conditioning(self, gates, image):
        """Creates the conditioning parameters the image spec calls for (None otherwise)."""
        classes, low_res = image.get("classes", 0), image.get("low_res")
        self.class_weight = _empty(gates, classes) if classes else None
        self.low_res_weight = _empty(gates, low_res["maps"], 1, 1) if low_res else None

    def split_low_res(self, ins):
        """A node's inputs -> (its own inputs, the upsampled low-res map or None): a low-res
        model's layers take the map as their last input."""
        if self.low_res_weight is None:
            return ins, None
        return ins[:-1], ins[-1]

    def condition(self, pre, cond, u):
        """`pre` (N x gates x H x W) plus the class vectors of the one-hot labels `cond`
        (N x classes; None adds none, as pixc without labels) and the 1x1 conv of the
        low-res map `u`."""
        if self.class_weight is not None and cond is not None:
            pre = pre + (cond @ self.class_weight.t())[:, :, None, None]
        if u is not None:
            pre = pre + F.conv2d(u, self.low_res_weight)
        return pre


class RowLSTM(_Conditioned):
    def __init__(self, cin, hidden, k, image, groups):
        super().__init__()
        h, W = hidden, image["width"]
        self.hidden, self.k = h, k
        self.is_weight = _empty(4 * h, cin, 1, k)
        self.is_bias = _empty(4 * h)
        self.ss_weight = _empty(4 * h, h, 3)
        self.h0 = _empty(h, W)
        self.c0 = _empty(h, W)
        self._conditioning(4 * h, image)
        self.register_buffer("mask", torch.from_numpy(conv_mask(4 * h, cin, 1, k, "B", groups, 4)), persistent=False)

    def forward(self, *ins, cond=None):
        (x,), u = self.split_low_res(ins)
        n, _, H, W = x.shape
        h = self.hidden
        # Input-to-state for the whole image at once, then one row per step.
        s = F.conv2d(x, self.is_weight * self.mask, self.is_bias, padding=(0, self.k // 2))
        s = self.condition(s, cond, u)
        rows = s.permute(2, 0, 1, 3).unbind(0)  # H x [N, 4h, W]
        hp = self.h0.unsqueeze(0).expand(n, h, W)
        cp = self.c0.unsqueeze(0).expand(n, h, W)
        outs = []
        for r in range(H):
            gates = rows[r] + F.conv1d(hp, self.ss_weight, padding=1)
            sig = torch.sigmoid(gates[:, : 3 * h])
            o, f, i = sig[:, :h], sig[:, h : 2 * h], sig[:, 2 * h :]
            g = torch.tanh(gates[:, 3 * h :])
            cp = f * cp + i * g
            hp = o * torch.tanh(cp)
            outs.append(hp)
        return torch.stack(outs, dim=2)  # N x h x H x W


def skew(x):
    """N x C x H x W -> N x C x H x (W+H-1), row r shifted right by r (pad + reshape)."""
    n, c, H, W = x.shape
    x = F.pad(x, (0, H))  # N x C x H x (W+H)
    x = x.reshape(n, c, H * (W + H))[:, :, : H * (W + H - 1)]
    return x.reshape(n, c, H, W + H - 1)


def unskew(x, W):
    """Inverse of `skew`: `out[r, c] = x[r, r + c]`."""
    n, c, H, K = x.shape
    x = F.pad(x.reshape(n, c, H * K), (0, H))  # H * (K + 1) = H * (W + H)
    return x.reshape(n, c, H, K + 1)[:, :, :, :W]


class DiagBiLSTM(_Conditioned):
    def __init__(self, cin, hidden, shift, image, groups, full_context=False):
        super().__init__()
        h, H = hidden, image["height"]
        self.hidden, self.shift = h, bool(shift)
        self.is_weight = _empty(8 * h, cin, 1, 1)
        self.is_bias = _empty(8 * h)
        self.ss_weight = _empty(8 * h, h, 2)
        self.h0 = _empty(2 * h, H)
        self.c0 = _empty(2 * h, H)
        # full_context: the image (second input) into the right-to-left gates, unmasked.
        self.ix_weight = _empty(4 * h, image["channels"], 1, 1) if full_context else None
        self._conditioning(8 * h, image)
        self.register_buffer("mask", torch.from_numpy(conv_mask(8 * h, cin, 1, 1, "B", groups, 8)), persistent=False)

    def forward(self, *ins, cond=None):
        ins, u = self.split_low_res(ins)
        x = ins[0]
        n, _, H, W = x.shape
        h = self.hidden
        s = F.conv2d(x, self.is_weight * self.mask, self.is_bias)  # N x 8h x H x W
        # Class vectors and low-res map in both directions, before the mirror and skew.
        s = self.condition(s, cond, u)
        if self.ix_weight is not None:
            # full_context: the image is the second input.
            s = torch.cat([s[:, : 4 * h], s[:, 4 * h :] + F.conv2d(ins[1], self.ix_weight)], dim=1)
        # Right-to-left direction: mirror its columns; both directions then run together.
        s = torch.cat([s[:, : 4 * h], s[:, 4 * h :].flip(-1)], dim=1)
        sk = skew(s)  # N x 8h x H x K
        K = sk.shape[-1]
        cols = sk.permute(3, 0, 1, 2).unbind(0)  # K x [N, 8h, H]
        hp = self.h0.unsqueeze(0).expand(n, 2 * h, H)
        cp = self.c0.unsqueeze(0).expand(n, 2 * h, H).reshape(n, 2, h, H)
        outs = []
        for k in range(K):
            # 2-tap column conv reading rows r-1 (tap 0) and r (tap 1): zero pad on top only.
            gates = cols[k] + F.conv1d(F.pad(hp, (1, 0)), self.ss_weight, groups=2)
            gates = gates.view(n, 2, 4, h, H)
            sig = torch.sigmoid(gates[:, :, :3])
            o, f, i = sig.unbind(2)
            g = torch.tanh(gates[:, :, 3])
            cp = f * cp + i * g
            hp = (o * torch.tanh(cp)).reshape(n, 2 * h, H)
            outs.append(hp)
        out = unskew(torch.stack(outs, dim=-1), W)  # N x 2h x H x W
        left, right = out[:, :h], out[:, h:].flip(-1)
        if self.shift:
            right = F.pad(right, (0, 0, 1, 0))[:, :, :H, :]
        return left + right


class GatedConv(_Conditioned):
    """gated_conv: `a, b = conv2d(x, weight * mask, bias) [+ conditioning]
    [+ conv1x1(v, link_weight)]` split in two halves (the mask groups each half's channels
    separately), out `tanh(a) * sigmoid(b)`."""

    def __init__(self, in_ch, hidden, kh, kw, mask, link, image, groups):
        super().__init__()
        self.hidden = hidden
        self.weight = _empty(2 * hidden, in_ch[0], kh, kw)
        self.bias = _empty(2 * hidden)
        self.link_weight = _empty(2 * hidden, in_ch[1], 1, 1) if link else None
        self._conditioning(2 * hidden, image)
        m = conv_mask(2 * hidden, in_ch[0], kh, kw, mask, groups, 2)
        self.register_buffer("mask", torch.from_numpy(m), persistent=False)
        self.padding = (kh // 2, kw // 2)

    def forward(self, *ins, cond=None):
        ins, u = self.split_low_res(ins)
        pre = F.conv2d(ins[0], self.weight * self.mask, self.bias, padding=self.padding)
        pre = self.condition(pre, cond, u)
        if self.link_weight is not None:
            # The vertical stack is the second input.
            pre = pre + F.conv2d(ins[1], self.link_weight)
        a, b = pre.split(self.hidden, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)


class SkipSum(nn.Module):
    """`s + sum_i conv1x1(x_i, proj{i}_weight * mask, proj{i}_bias)`, done as one 1x1 conv
    over the concatenated skip sources."""

    def __init__(self, inputs, groups):
        super().__init__()
        c = inputs[0]
        self.n = len(inputs) - 1
        masks = []
        for i, ci in enumerate(inputs):
            if i == 0:
                continue
            self.register_parameter(f"proj{i}_weight", _empty(c, ci, 1, 1))
            self.register_parameter(f"proj{i}_bias", _empty(c))
            masks.append(torch.from_numpy(conv_mask(c, ci, 1, 1, "B", groups, 1)))
        if masks:
            self.register_buffer("mask", torch.cat(masks, dim=1), persistent=False)

    def forward(self, s, *xs):
        if not xs:
            return s
        w = torch.cat([getattr(self, f"proj{i}_weight") for i in range(1, self.n + 1)], dim=1)
        b = sum(getattr(self, f"proj{i}_bias") for i in range(1, self.n + 1))
        return s + F.conv2d(torch.cat(xs, dim=1), w * self.mask, b)


class _Relu(nn.Module):
    def forward(self, x):
        return F.relu(x)


class _Add(nn.Module):
    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------


class PixcRef(nn.Module):
    """Any pixc model, from the JSON of `pixc check SPEC --json` (a multi-scale spec's: its
    conditional part; `PixcRef(ir["small"])` is its small model)."""

    def __init__(self, ir_json: dict):
        super().__init__()
        self.ir = ir_json
        im = ir_json["image"]
        self.image = dict(im)
        self.channels, self.height, self.width, self.levels = im["channels"], im["height"], im["width"], im["levels"]
        self.groups = 3 if self.channels == 3 else 1
        self.classes, self.low_res = im.get("classes", 0), im.get("low_res")
        self.name = ir_json.get("model", "model")
        self.nodes = nn.ModuleDict()
        self.order = []  # (node, kind, inputs)
        self.param_order = []  # pixc names in pixc's init order
        chans = {}
        self.head = None
        self.head_kind = None
        for layer in ir_json["layers"]:
            node, kind, attrs, ins = layer["node"], layer["kind"], layer.get("attrs", {}), layer.get("inputs", [])
            in_ch = [chans[i] for i in ins]
            want = params_of(kind, attrs, in_ch, im)
            got = {k: list(v) for k, v in layer.get("param_shapes", {}).items()}
            if "param_shapes" in layer and {k: v for k, v in want} != got:
                raise ValueError(f"{node} ({kind}): parameter shapes {got} differ from params_of's {want}")
            G = self.groups
            if kind == "input":
                mod, c = None, self.channels
            elif kind == "low_res":
                mod, c = LowResMap(in_ch[0], attrs["maps"], attrs["factor"]), attrs["maps"]
            elif kind == "conv":
                mod = MaskedConv(in_ch[0], attrs["out"], attrs["kh"], attrs["kw"], attrs["mask"], G)
                c = attrs["out"]
            elif kind == "row_lstm":
                mod, c = RowLSTM(in_ch[0], attrs["hidden"], attrs["k"], im, G), attrs["hidden"]
            elif kind == "diag_bilstm":
                full = attrs.get("full_context", False)
                mod = DiagBiLSTM(in_ch[0], attrs["hidden"], attrs.get("shift", True), im, G, full)
                c = attrs["hidden"]
            elif kind == "gated_conv":
                h = attrs["hidden"]
                mod = GatedConv(in_ch, h, attrs["kh"], attrs["kw"], attrs["mask"], attrs["link"], im, G)
                c = h
            elif kind == "relu":
                mod, c = _Relu(), in_ch[0]
            elif kind == "add":
                if len(set(in_ch)) != 1:
                    raise ValueError(f"{node}: add of different channel counts {in_ch}")
                mod, c = _Add(), in_ch[0]
            elif kind == "skip_sum":
                mod, c = SkipSum(in_ch, G), in_ch[0]
            elif kind == "head":
                c = head_out_channels(attrs["kind"], im)
                mod = MaskedConv(in_ch[0], c, 1, 1, "B", G)
                self.head, self.head_kind = node, attrs["kind"]
            else:
                raise ValueError(f"{node}: unknown layer kind {kind!r}")
            if "output" in layer and layer["output"][0] != c:
                raise ValueError(f"{node}: {c} output channels, the IR says {layer['output'][0]}")
            chans[node] = c
            if mod is not None:
                self.nodes[node] = mod
            self.order.append((node, kind, list(ins)))
            self.param_order += [(f"{node}.{p}", s) for p, s in want]
        if self.head is None:
            raise ValueError("the model has no head")
        # A low-res model's NLL mask, 1 x 1 x H x W: 0 at the given low-res pixels (rows and
        # columns divisible by f), which are not scored.
        scored = None
        if self.low_res:
            f = self.low_res["factor"]
            given = (torch.arange(self.height) % f == 0)[:, None] & (torch.arange(self.width) % f == 0)[None, :]
            scored = (~given).float()[None, None]
        self.register_buffer("scored", scored, persistent=False)
        # Free each intermediate after its last use.
        last = {}
        for idx, (node, _, ins) in enumerate(self.order):
            for i in ins:
                last[i] = idx
        self._free_after = {}
        for n_, idx in last.items():
            self._free_after.setdefault(idx, []).append(n_)
        n = self.num_parameters()
        if "parameters" in ir_json and n != ir_json["parameters"]:
            raise ValueError(f"{n} parameters, the IR says {ir_json['parameters']}")
        self.init_weights(0)

    # ---- parameters, by pixc name ----

    def _params(self):
        out = {}
        for name, p in self.nodes.named_parameters():
            out[name] = p
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def pixc_weights(self) -> dict:
        """`{"n3.weight": np.ndarray(float32), ...}` with pixc's names."""
        return {k: p.detach().cpu().float().numpy().copy() for k, p in sorted(self._params().items())}

    def load_pixc_weights(self, weights: dict, strict: bool = True) -> None:
        params = self._params()
        missing = sorted(set(params) - set(weights))
        extra = sorted(set(weights) - set(params))
        if strict and (missing or extra):
            raise ValueError(f"weights do not match the model: missing {missing[:5]}, not in the model {extra[:5]}")
        with torch.no_grad():
            for k, p in params.items():
                if k not in weights:
                    continue
                a = torch.from_numpy(np.array(weights[k], dtype=np.float32))
                if list(a.shape) != list(p.shape):
                    raise ValueError(f"tensor `{k}` has shape {list(a.shape)}, the model needs {list(p.shape)}")
                p.copy_(a.to(p.dtype))

    def init_weights(self, seed: int = 0) -> None:
        """pixc's initialisation scheme (not its random stream): weights and biases uniform in
        +-1/sqrt(fan_in), LSTM initial states and class vectors zero, forget-gate biases +1."""
        gen = torch.Generator().manual_seed(seed)
        params = self._params()
        fan_in = 1
        cur_node = None
        with torch.no_grad():
            for name, shape in self.param_order:
                node, pname = name.split(".", 1)
                if node != cur_node:
                    cur_node, fan_in = node, 1
                    mod = self.nodes[node]
                    hidden = getattr(mod, "hidden", 0) if isinstance(mod, (RowLSTM, DiagBiLSTM)) else 0
                n = int(np.prod(shape))
                # Zero class vectors: an untrained conditional model is the unconditional one.
                if pname in ("h0", "c0", "class_weight"):
                    v = torch.zeros(n)
                else:
                    if len(shape) >= 2:
                        # The low-res node's transposed conv weight is [cin, out, kh, kw], and
                        # each output pixel sums 3 x 3 of its taps per input channel.
                        fan_in = 9 * shape[0] if isinstance(mod, LowResMap) else max(int(np.prod(shape[1:])), 1)
                    b = 1.0 / math.sqrt(fan_in)
                    v = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * b
                    if pname == "is_bias" and hidden > 0:
                        v[(torch.arange(n) // hidden) % 4 == 1] += 1.0
                params[name].copy_(v.reshape(shape).to(params[name].dtype))

    # ---- forward and loss ----

    def scale(self, images) -> torch.Tensor:
        """Images hold level values `0..levels-1` (any dtype) -> `x = image / (levels - 1)`."""
        p = next(self.parameters())
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(np.asarray(images))
        if images.dim() == 3 and self.channels == 1:
            images = images.unsqueeze(1)
        return images.to(device=p.device, dtype=p.dtype) / (self.levels - 1)

    def one_hot(self, labels, x: torch.Tensor) -> torch.Tensor | None:
        """A class-conditional model's labels (N ints in 0..classes-1) as the one-hot rows
        (N x classes, `x`'s dtype and device) the layers read; None without labels."""
        if labels is None:
            return None
        if not self.classes:
            raise ValueError(f"{self.name} is not class-conditional: it takes no labels")
        y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
        n = x.shape[0]
        if y.shape != (n,) or y.is_floating_point() or (n and (y.min() < 0 or y.max() >= self.classes)):
            raise ValueError(
                f"labels of shape {list(y.shape)} and dtype {y.dtype}: the model needs {n} ints in 0..{self.classes - 1}"
            )
        return F.one_hot(y.to(x.device).long(), self.classes).to(x.dtype)

    def forward_scaled(self, x: torch.Tensor, labels=None, low_res_image=None) -> torch.Tensor:
        """Logits from the already-scaled input `x` (N x C x H x W, values in [0, 1]) and a
        class-conditional model's `labels` (without them no class vector is added, as in
        pixc). `low_res_image`: what a low-res model's `low_res` node subsamples instead of
        `x` (`causality` passes `x` detached, the low-res pixels being context)."""
        cond = self.one_hot(labels, x)
        vals = {}
        for idx, (node, kind, ins) in enumerate(self.order):
            if kind == "input":
                y = x
            elif kind == "low_res" and low_res_image is not None:
                y = self.nodes[node](low_res_image)
            else:
                mod = self.nodes[node]
                args = [vals[i] for i in ins]
                y = mod(*args, cond=cond) if isinstance(mod, _Conditioned) else mod(*args)
            vals[node] = y
            for dead in self._free_after.get(idx, ()):
                if dead != self.head:
                    vals.pop(dead, None)
        return vals[self.head]

    def forward(self, images, labels=None) -> torch.Tensor:
        """Logits: N x C x H x W (Bernoulli) or N x (C*levels) x H x W (softmax, channel
        `c*levels + v` for colour c, level v); `labels`: a class-conditional model's (N ints)."""
        return self.forward_scaled(self.scale(images), labels)

    def nll_from_logits(self, logits: torch.Tensor, images) -> torch.Tensor:
        """Per-image negative log-likelihood in nats (tensor of N), over the scored
        sub-pixels (a low-res model's given pixels are not)."""
        n = logits.shape[0]
        if self.head_kind == "bernoulli":
            target = self.scale(images).to(logits.dtype)
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            if self.scored is not None:
                loss = loss * self.scored
            return loss.reshape(n, -1).sum(1)
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(np.asarray(images))
        if images.dim() == 3 and self.channels == 1:
            images = images.unsqueeze(1)
        C, L = self.channels, self.levels
        H, W = logits.shape[-2:]
        images = images.to(logits.device)
        target = (images.round() if images.is_floating_point() else images).long().reshape(n * C, H, W)
        lg = logits.reshape(n * C, L, H, W)
        loss = F.cross_entropy(lg, target, reduction="none")
        if self.scored is not None:
            loss = loss * self.scored[0]
        return loss.reshape(n, -1).sum(1)

    def nll(self, images, labels=None) -> torch.Tensor:
        """Per-image NLL in nats given a class-conditional model's `labels`."""
        return self.nll_from_logits(self.forward(images, labels), images)

    def dims(self) -> int:
        return self.channels * self.height * self.width

    def scored_dims(self) -> int:
        """Sub-pixels the NLL sums over: all, less a low-res model's given ones."""
        if not self.low_res:
            return self.dims()
        f = self.low_res["factor"]
        return self.dims() - self.channels * (-(-self.height // f)) * (-(-self.width // f))

    def bits_per_dim(self, nats) -> torch.Tensor | float:
        """nats per image -> bits per scored dimension (sub-pixel): nats / (scored_dims * ln 2)."""
        return nats / (self.scored_dims() * math.log(2.0))


# ---------------------------------------------------------------------------------------
# causality by gradients
# ---------------------------------------------------------------------------------------


def allowed_mask(C: int, H: int, W: int) -> np.ndarray:
    """`[H, W, C_out, H, W, C_in]`: True where the input sub-pixel precedes the output one
    (an earlier pixel in raster order, or the same pixel and an earlier colour)."""
    p = np.arange(H * W)
    before = p[None, :] < p[:, None]  # [P_out, P_in]
    same = p[None, :] == p[:, None]
    col = np.arange(C)
    cbefore = col[None, :] < col[:, None]  # [C_out, C_in]
    a = before[:, None, :, None] | (same[:, None, :, None] & cbefore[None, :, None, :])
    return a.reshape(H, W, C, H, W, C)


def causality(
    model: PixcRef,
    n_images: int = 4,
    seed: int = 0,
    chunk: int = 0,
    dtype=torch.float64,
    progress: bool = False,
    through_low_res: bool = False,
) -> np.ndarray:
    """`[H, W, C_out, H, W, C_in]` booleans: the gradient of the logits of colour c at pixel
    (h, w) w.r.t. input sub-pixel (h', w', c') is nonzero for some of `n_images` random
    images (with random labels, for a class-conditional model). Eval mode, float64. A
    softmax colour's `levels` logits are combined with fixed random coefficients (so no
    exact cancellation). Many output positions are handled per backward pass by replicating
    the images along the batch. A low-res model's low-res pixels are context, which every
    output may read: as in pixc's static pass, dependencies through the low-res map are left
    out unless `through_low_res`."""
    model = model.to(dtype).eval()
    C, H, W, L = model.channels, model.height, model.width, model.levels
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, L, (n_images, C, H, W), generator=gen).to(dtype)
    x0 = imgs / (L - 1)
    coef = torch.rand(L, generator=gen, dtype=dtype) + 0.5
    labels = torch.randint(0, model.classes, (n_images,), generator=gen) if model.classes else None
    positions = [(h, w, c) for h in range(H) for w in range(W) for c in range(C)]
    if chunk <= 0:
        # Keep each pass around 64 images.
        chunk = max(1, 64 // n_images)
    deps = np.zeros((H, W, C, H, W, C), dtype=bool)
    for s in range(0, len(positions), chunk):
        pos = positions[s : s + chunk]
        q = len(pos)
        x = x0.repeat(q, 1, 1, 1).clone().requires_grad_(True)  # (q * n) x C x H x W, position-major
        y = None if labels is None else labels.repeat(q)
        logits = model.forward_scaled(x, y, low_res_image=x if through_low_res else x.detach())
        if model.head_kind == "softmax":
            score = (logits.reshape(q * n_images, C, L, H, W) * coef.view(1, 1, L, 1, 1)).sum(2)
        else:
            score = logits
        score = score.reshape(q, n_images, C, H, W)
        hs = torch.tensor([p[0] for p in pos])
        ws = torch.tensor([p[1] for p in pos])
        cs = torch.tensor([p[2] for p in pos])
        sel = score[torch.arange(q), :, cs, hs, ws]  # q x n
        (g,) = torch.autograd.grad(sel.sum(), x)
        nz = (g.reshape(q, n_images, C, H, W) != 0).any(1).permute(0, 2, 3, 1).numpy()  # q x H x W x C
        for j, (h, w, c) in enumerate(pos):
            deps[h, w, c] = nz[j]
        if progress:
            print(f"causality: {s + q}/{len(positions)} output sub-pixels", file=sys.stderr, flush=True)
    return deps


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def _pixc_binary() -> str:
    env = os.environ.get("PIXC")
    if env:
        return env
    root = Path(__file__).resolve().parent.parent
    for p in (root / "target" / "debug" / "pixc", root / "target" / "release" / "pixc"):
        if p.exists():
            return str(p)
    return "pixc"


def compile_spec(spec_path) -> dict:
    """Runs `pixc check SPEC --json` and returns its JSON."""
    r = subprocess.run([_pixc_binary(), "check", str(spec_path), "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pixc check {spec_path} failed:\n{r.stderr}{r.stdout}")
    return json.loads(r.stdout)


def load_ir(path) -> dict:
    p = Path(path)
    if p.suffix == ".json":
        return json.loads(p.read_text())
    return compile_spec(p)


def build_model(args) -> PixcRef:
    """The model of `--ir` (`--small`: a multi-scale spec's small model), with `--weights`
    or pixc's initialisation scheme."""
    j = load_ir(args.ir)
    if args.small:
        if "small" not in j:
            raise SystemExit(f"{args.ir}: not a multi-scale model (no `small` part)")
        j = j["small"]
    model = PixcRef(j)
    if getattr(args, "weights", None):
        model.load_pixc_weights(load_safetensors(args.weights))
    else:
        model.init_weights(getattr(args, "seed", 0))
    return model


def _load_images(path, model: PixcRef) -> np.ndarray:
    a = np.load(path)
    if a.ndim == 3 and model.channels == 1:
        a = a[:, None]
    if a.ndim != 4 or list(a.shape[1:]) != [model.channels, model.height, model.width]:
        raise SystemExit(
            f"{path}: images of shape {list(a.shape)}, the model needs N x {model.channels} x {model.height} x {model.width}"
        )
    return a


def _load_labels(path, model: PixcRef, n: int) -> np.ndarray | None:
    """A class-conditional model's labels from `path` (.npy, one int per image); None for
    an unconditional model. Exits with a message when they are missing or do not fit."""
    if not model.classes:
        if path:
            raise SystemExit(f"{path}: {model.name} is not class-conditional; leave out --labels")
        return None
    if not path:
        raise SystemExit(
            f"{model.name} is class-conditional ({model.classes} classes): give each image's label "
            f"with --labels FILE.npy ({n} ints in 0..{model.classes - 1})"
        )
    y = np.load(path)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= model.classes)):
        raise SystemExit(
            f"{path}: labels of shape {list(y.shape)} and dtype {y.dtype}, the model needs {n} ints in 0..{model.classes - 1}"
        )
    return y


def cmd_eval(args, what: str) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(args).eval()
    imgs = _load_images(args.images, model)
    labels = _load_labels(args.labels, model, imgs.shape[0])
    outs = []
    with torch.no_grad():
        for s in range(0, imgs.shape[0], args.batch):
            b = imgs[s : s + args.batch]
            logits = model(b, None if labels is None else labels[s : s + args.batch])
            outs.append((logits if what == "logits" else model.nll_from_logits(logits, b)).numpy())
    out = np.concatenate(outs, 0).astype(np.float32)
    np.save(args.out, out)
    if what == "nll":
        print(
            json.dumps(
                {
                    "images": int(out.shape[0]),
                    "nll_nats": float(out.mean()),
                    "bits_per_dim": float(model.bits_per_dim(float(out.mean()))),
                }
            )
        )
    return 0


def cmd_bench(args) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = build_model(args).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, model.channels, model.height, model.width)

    def draw():
        # A class-conditional model is timed with labels, its class vectors included.
        b = torch.randint(0, model.levels, shape, generator=gen, dtype=torch.uint8)
        y = torch.randint(0, model.classes, (args.batch,), generator=gen) if model.classes else None
        return b, y

    # Drawn before the clock starts, so the loop times training steps only; at most 64
    # distinct timed batches, cycled.
    pool = min(args.steps, 64)
    batches = [draw() for _ in range(pool + 2)]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step(b, y):
        b = b.to(dev)
        opt.zero_grad(set_to_none=True)
        loss = model.nll(b, y).mean()
        loss.backward()
        opt.step()
        return loss

    # Warm-up as `pixc bench-one` does: two steps (allocator, oneDNN's kernel choice).
    for b, y in batches[:2]:
        loss = step(b, y)
    sync()
    # With --seconds, the same rule as pixc's own loop: steps until that many seconds
    # have passed, at least 3 and at most --steps (the batches cycle).
    times = []
    t0 = time.perf_counter()
    while len(times) < args.steps:
        b, y = batches[2 + len(times) % pool]
        t = time.perf_counter()
        loss = step(b, y)
        sync()
        times.append(time.perf_counter() - t)
        if args.seconds is not None and len(times) >= 3 and time.perf_counter() - t0 >= args.seconds:
            break
    total = time.perf_counter() - t0
    steps = len(times)
    res = {
        "impl": "pytorch-eager",
        "model": model.name,
        "device": str(dev),
        "batch": args.batch,
        "steps": steps,
        "threads": args.threads,
        "parameters": model.num_parameters(),
        "images_per_s": args.batch * steps / total,
        "seconds_per_step": total / steps,
        "min_seconds_per_step": min(times),
        "loss_nats": float(loss.detach()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        res["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.json:
        print(json.dumps(res))
    else:
        print(
            f"{res['model']}: {res['images_per_s']:.1f} images/s ({res['seconds_per_step'] * 1000:.0f} ms/step, "
            f"batch {args.batch}, {args.threads} threads, {res['device']}), peak RSS {res['peak_rss_mb']:.0f} MB"
        )
    return 0


def cmd_causality(args) -> int:
    torch.set_num_threads(args.threads)
    model = build_model(args)
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    deps = causality(model, n_images=args.images, seed=args.seed, chunk=args.chunk, dtype=dtype, progress=args.progress)
    np.save(args.out, deps)
    allowed = allowed_mask(model.channels, model.height, model.width)
    leaks = int((deps & ~allowed).sum())
    print(
        json.dumps(
            {
                "shape": list(deps.shape),
                "allowed": int(allowed.sum()),
                "seen": int((deps & allowed).sum()),
                "leaks": leaks,
                "causal": leaks == 0,
            }
        )
    )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, weights_required=False):
        p.add_argument("--ir", required=True, help="JSON of `pixc check SPEC --json`, or a spec file")
        p.add_argument("--weights", required=weights_required, help="safetensors with pixc names (n{node}.{param})")
        p.add_argument("--small", action="store_true", help="a multi-scale spec's small model, not its conditional part")
        p.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
        p.add_argument("--seed", type=int, default=0)

    for what in ("logits", "nll"):
        p = sub.add_parser(what, help=f"write {'logits' if what == 'logits' else 'per-image NLL (nats)'} as .npy")
        common(p)
        p.add_argument("--images", required=True, help=".npy, N x C x H x W (or N x H x W), level values")
        p.add_argument("--labels", help=".npy, N ints: each image's class (required for class-conditional models)")
        p.add_argument("--out", required=True)
        p.add_argument("--batch", type=int, default=64)
    p = sub.add_parser("bench", help="time training steps (forward + NLL + backward + Adam)")
    common(p)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps (with --seconds: at most this many)")
    p.add_argument("--seconds", type=float, default=None,
                   help="time steps until this many seconds have passed (at least 3 steps), as pixc bench-one does")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("causality", help="gradient dependency map [H, W, C_out, H, W, C_in] as .npy")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, default=4, help="random images to take the union over")
    p.add_argument("--chunk", type=int, default=0, help="output positions per backward pass (0: about 64 images a pass)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float64 (default) keeps tiny long-range gradients from underflowing to zero")
    p.add_argument("--progress", action="store_true", help="report progress on stderr")
    args = ap.parse_args(argv)
    if args.cmd in ("logits", "nll"):
        return cmd_eval(args, args.cmd)
    if args.cmd == "bench":
        return cmd_bench(args)
    return cmd_causality(args)


if __name__ == "__main__":
    sys.exit(main())
