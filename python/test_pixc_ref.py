#!/usr/bin/env python3
"""Self-tests for python/pixc_ref.py. A plain script (pytest is not installed):

    .venv/bin/python python/test_pixc_ref.py

Prints one line per test and `N passed, M failed`; exits non-zero on any failure.
Needs the pixc binary (target/debug/pixc, or $PIXC) to compile the small specs.
"""

from __future__ import annotations

import atexit
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import pixc_ref as P  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
TMP = Path(tempfile.mkdtemp(prefix="pixc_ref_test_"))
# Removed at exit, pass or fail: each run used to leave its specs, weights and exports in /tmp.
atexit.register(shutil.rmtree, TMP, ignore_errors=True)

# ---------------------------------------------------------------------------------------
# small specs
# ---------------------------------------------------------------------------------------

BINARY_TAIL = """
  - skip_sum
  - relu
  - conv: {out: 8, kernel: 1, mask: B}
  - relu
  - head: bernoulli
"""


def _binary(name, body, h=4, size=8, count=2):
    return f"""model: {name}
params:
  h: {h}
input: {{channels: 1, height: {size}, width: {size}, levels: 2}}
layers:
  - conv: {{out: 2*h, kernel: 7, mask: A}}
  - repeat:
      count: {count}
      body:
{body}""" + BINARY_TAIL


RESIDUAL = """        - residual:
            skip: true
            body:
              - {layer}
              - conv: {{out: 2*h, kernel: 1, mask: B}}
"""

SPECS = {
    "diag_small": _binary("diag_small", RESIDUAL.format(layer="diag_bilstm: {hidden: h}")),
    "row_small": _binary("row_small", RESIDUAL.format(layer="row_lstm: {hidden: h, kernel: 3}")),
    "pixelcnn_small": _binary("pixelcnn_small", "        - pixelcnn_block: {hidden: h, skip: true}\n"),
    "rgb_small": """model: rgb_small
params:
  h: 6
input: {channels: 3, height: 8, width: 8, levels: 256}
layers:
  - conv: {out: 2*h, kernel: 7, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: h}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - residual:
      skip: true
      body:
        - row_lstm: {hidden: h, kernel: 3}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - pixelcnn_block: {hidden: h}
  - skip_sum
  - relu
  - conv: {out: 12, kernel: 1, mask: B}
  - relu
  - head: softmax
""",
    # The paper's setting for the "not quite full context" measurement: 10x10, 7x7 mask A.
    "diag10_1": _binary("diag10_1", RESIDUAL.format(layer="diag_bilstm: {hidden: h}"), h=8, size=10, count=1),
    "diag10_2": _binary("diag10_2", RESIDUAL.format(layer="diag_bilstm: {hidden: h}"), h=8, size=10, count=2),
    "diag10_full": _binary(
        "diag10_full", RESIDUAL.format(layer="diag_bilstm: {hidden: h, full_context: true}"), h=8, size=10, count=1
    ),
    # Class-conditional: every layer kind that takes class vectors (the gated ones with and
    # without a link).
    "classes_small": """model: classes_small
params:
  h: 4
input: {channels: 1, height: 8, width: 8, levels: 2, classes: 3}
layers:
  - conv: {out: 2*h, kernel: 7, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: h}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - residual:
      skip: true
      body:
        - row_lstm: {hidden: h, kernel: 3}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - gated_pixelcnn: {hidden: 2*h, kernel: 3, skip: true}
  - skip_sum
  - relu
  - head: bernoulli
""",
    # Multi-scale: an unconditional small model of the 4x4 subsample, and the conditional
    # part (softmax over 4 levels, so its scored NLL takes the softmax path) with every
    # layer kind that reads the low-res map, the full-context Diagonal BiLSTM included.
    "low_res_small": """model: low_res_small
params:
  h: 4
input: {channels: 1, height: 8, width: 8, levels: 4, low_res: 2, low_res_maps: 3}
small:
  - conv: {out: 2*h, kernel: 3, mask: A}
  - row_lstm: {hidden: h, kernel: 3}
  - relu
  - head: softmax
layers:
  - conv: {out: 2*h, kernel: 7, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: h, full_context: true}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - residual:
      skip: true
      body:
        - row_lstm: {hidden: h, kernel: 3}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - gated_pixelcnn: {hidden: 2*h, kernel: 3, skip: true}
  - skip_sum
  - relu
  - head: softmax
""",
}

_IR_CACHE: dict = {}


def ir(name: str) -> dict:
    if name not in _IR_CACHE:
        path = TMP / f"{name}.yaml"
        path.write_text(SPECS[name])
        _IR_CACHE[name] = P.compile_spec(path)
    return copy.deepcopy(_IR_CACHE[name])


def model(name: str, seed: int = 0) -> P.PixcRef:
    m = P.PixcRef(ir(name))
    m.init_weights(seed)
    return m


def randomize(m: P.PixcRef, seed: int, scale: float = 0.5) -> P.PixcRef:
    """Random values in every parameter, initial states included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * scale)
    return m


# ---------------------------------------------------------------------------------------
# literal implementations of docs/semantics.md, for comparison
# ---------------------------------------------------------------------------------------


def literal_row_lstm(mod: P.RowLSTM, x: torch.Tensor) -> torch.Tensor:
    n, _, H, W = x.shape
    h = mod.hidden
    s = F.conv2d(x, mod.is_weight * mod.mask, mod.is_bias, padding=(0, mod.k // 2))
    hp = mod.h0.expand(n, h, W)
    cp = mod.c0.expand(n, h, W)
    out = torch.zeros(n, h, H, W, dtype=x.dtype)
    for r in range(H):
        gates = s[:, :, r, :] + F.conv1d(F.pad(hp, (1, 1)), mod.ss_weight)
        o = torch.sigmoid(gates[:, 0:h])
        f = torch.sigmoid(gates[:, h : 2 * h])
        i = torch.sigmoid(gates[:, 2 * h : 3 * h])
        g = torch.tanh(gates[:, 3 * h : 4 * h])
        cp = f * cp + i * g
        hp = o * torch.tanh(cp)
        out[:, :, r, :] = hp
    return out


def literal_diag_bilstm(mod: P.DiagBiLSTM, x: torch.Tensor) -> torch.Tensor:
    n, _, H, W = x.shape
    h = mod.hidden
    s = F.conv2d(x, mod.is_weight * mod.mask, mod.is_bias)
    outs = []
    for d in range(2):
        m = s[:, d * 4 * h : (d + 1) * 4 * h]
        if d == 1:
            m = torch.stack([m[..., W - 1 - c] for c in range(W)], dim=-1)
        K = W + H - 1
        sk = torch.zeros(n, 4 * h, H, K, dtype=x.dtype)
        for r in range(H):
            for c in range(W):
                sk[:, :, r, r + c] = m[:, :, r, c]
        hp = mod.h0[d * h : (d + 1) * h].expand(n, h, H)
        cp = mod.c0[d * h : (d + 1) * h].expand(n, h, H)
        w = mod.ss_weight[d * 4 * h : (d + 1) * 4 * h]
        osk = torch.zeros(n, h, H, K, dtype=x.dtype)
        for k in range(K):
            prev = torch.cat([torch.zeros(n, h, 1, dtype=x.dtype), hp[:, :, :-1]], dim=2)  # row r-1
            gates = sk[:, :, :, k] + torch.einsum("oi,nir->nor", w[:, :, 0], prev) + torch.einsum("oi,nir->nor", w[:, :, 1], hp)
            o = torch.sigmoid(gates[:, 0:h])
            f = torch.sigmoid(gates[:, h : 2 * h])
            i = torch.sigmoid(gates[:, 2 * h : 3 * h])
            g = torch.tanh(gates[:, 3 * h :])
            cp = f * cp + i * g
            hp = o * torch.tanh(cp)
            osk[:, :, :, k] = hp
        out = torch.zeros(n, h, H, W, dtype=x.dtype)
        for r in range(H):
            for c in range(W):
                out[:, :, r, c] = osk[:, :, r, r + c]
        outs.append(out)
    left, right = outs
    right = torch.stack([right[..., W - 1 - c] for c in range(W)], dim=-1)
    if mod.shift:
        shifted = torch.zeros_like(right)
        shifted[:, :, 1:] = right[:, :, :-1]
        right = shifted
    return left + right


# ---------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def masks_match_the_rust_unit_tests():
    assert P.conv_mask(1, 1, 3, 3, "A", 1, 1).ravel().tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert P.conv_mask(1, 1, 3, 3, "B", 1, 1).ravel().tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert P.conv_mask(3, 3, 1, 1, "A", 3, 1).ravel().tolist() == [0, 0, 0, 1, 0, 0, 1, 1, 0]
    assert P.conv_mask(3, 3, 1, 1, "B", 3, 1).ravel().tolist() == [1, 0, 0, 1, 1, 0, 1, 1, 1]
    assert [P.group_of(c, 12, 4, 3) for c in range(12)] == [0, 1, 2] * 4
    # Softmax head: logits of colour c are channels c*levels .. (c+1)*levels.
    assert [P.group_of(o, 768, 1, 3) for o in (0, 255, 256, 511, 512, 767)] == [0, 0, 1, 1, 2, 2]


@test
def safetensors_round_trip():
    rng = np.random.default_rng(0)
    t = {"n1.weight": rng.standard_normal((4, 1, 7, 7)).astype(np.float32), "n2.h0": np.zeros((3, 5), np.float32),
         "n9.bias": np.arange(3, dtype=np.float32)}
    p = TMP / "rt.safetensors"
    P.save_safetensors(p, t, {"spec": "x"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and json.loads(raw[8 : 8 + n])["__metadata__"] == {"spec": "x"}
    back, meta = P.load_safetensors(p, with_metadata=True)
    assert meta == {"spec": "x"} and sorted(back) == sorted(t)
    for k in t:
        assert back[k].dtype == np.float32 and np.array_equal(back[k], t[k])
    p.write_bytes(raw[:-3])
    try:
        P.load_safetensors(p)
        raise AssertionError("a truncated file loaded")
    except ValueError:
        pass


@test
def weights_by_pixc_name_round_trip():
    m = randomize(model("rgb_small"), 1)
    w = m.pixc_weights()
    names = [l["node"] + "." + k for l in ir("rgb_small")["layers"] for k in l["param_shapes"]]
    assert sorted(w) == sorted(names), "pixc_weights() names differ from the IR's n{node}.{param}"
    for l in ir("rgb_small")["layers"]:
        for k, s in l["param_shapes"].items():
            assert list(w[l["node"] + "." + k].shape) == s
    p = TMP / "rgb.safetensors"
    P.save_safetensors(p, w)
    m2 = model("rgb_small", seed=5)
    m2.load_pixc_weights(P.load_safetensors(p))
    x = torch.randint(0, 256, (2, 3, 8, 8))
    assert torch.equal(m(x), m2(x))
    bad = dict(w)
    bad.pop("n1.bias")
    for wrong in (bad, {**w, "n99.weight": np.zeros(1, np.float32)}, {**w, "n1.bias": np.zeros(5, np.float32)}):
        try:
            m2.load_pixc_weights(wrong)
            raise AssertionError("mismatched weights loaded")
        except ValueError:
            pass


@test
def parameter_counts_equal_the_irs():
    def check(j, what):
        got = P.PixcRef(j).num_parameters()
        assert got == j["parameters"], f"{what}: {got} != {j['parameters']}"
        # A multi-scale spec: the JSON's top level is the conditional part, `small` the
        # small model.
        if "small" in j:
            check(j["small"], f"{what} (small)")

    for name in SPECS:
        check(ir(name), name)
    root = HERE.parent
    for spec in sorted((root / "specs").glob("*.yaml")):
        check(P.compile_spec(spec), spec.name)


@test
def init_follows_pixcs_scheme():
    m = model("diag_small")
    w = m.pixc_weights()
    h = 4
    assert np.all(w["n2.h0"] == 0) and np.all(w["n2.c0"] == 0)
    b = w["n2.is_bias"]
    f = np.array([(k // h) % 4 == 1 for k in range(8 * h)])
    bound = 1 / math.sqrt(2 * h)  # fan_in of is_weight [8h, 2h, 1, 1]
    assert np.all(np.abs(b[~f]) <= bound) and np.all(np.abs(b[f] - 1) <= bound)
    assert np.all(np.abs(w["n1.weight"]) <= 1 / 7)
    # Class vectors start at zero; the low-res node's fan-in is 3 x 3 taps per input
    # channel, a low-res weight's the map count.
    w = model("classes_small").pixc_weights()
    cw = [k for k in w if k.endswith(".class_weight")]
    assert len(cw) == 4 and all(np.all(w[k] == 0) for k in cw)
    w = model("low_res_small").pixc_weights()
    assert np.all(np.abs(w["n1.weight"]) <= 1 / 3) and np.abs(w["n1.weight"]).max() > 1 / math.sqrt(1 * 3 * 6 * 6)
    lw = [k for k in w if k.endswith(".low_res_weight")]
    assert len(lw) == 4 and all(np.all(np.abs(w[k]) <= 1 / math.sqrt(3)) for k in lw)


@test
def skew_and_unskew_are_the_documented_maps():
    x = torch.randn(2, 3, 4, 5)
    sk = P.skew(x)
    assert sk.shape == (2, 3, 4, 8)
    ref = torch.zeros(2, 3, 4, 8)
    for r in range(4):
        ref[:, :, r, r : r + 5] = x[:, :, r]
    assert torch.equal(sk, ref)
    assert torch.equal(P.unskew(sk, 5), x)


@test
def lstm_layers_match_literal_semantics():
    torch.manual_seed(0)
    for name in ("rgb_small", "diag_small", "row_small"):
        m = randomize(model(name), 3).double()
        for node, kind, ins in m.order:
            if kind not in ("row_lstm", "diag_bilstm"):
                continue
            mod = m.nodes[node]
            x = torch.randn(3, mod.is_weight.shape[1], m.height, m.width, dtype=torch.float64)
            fast = mod(x)
            lit = literal_row_lstm(mod, x) if kind == "row_lstm" else literal_diag_bilstm(mod, x)
            err = (fast - lit).abs().max().item()
            assert err < 1e-12, f"{name} {node} {kind}: max error {err}"
            if kind == "diag_bilstm":
                mod.shift = False
                err = (mod(x) - literal_diag_bilstm(mod, x)).abs().max().item()
                mod.shift = True
                assert err < 1e-12, f"{name} {node} unshifted: max error {err}"


@test
def nll_and_bits_per_dim():
    for name, levels in (("rgb_small", 256), ("diag_small", 2)):
        m = model(name)
        with torch.no_grad():
            for p in m.parameters():
                p.zero_()
        x = torch.randint(0, levels, (3, m.channels, 8, 8), dtype=torch.uint8)
        nll = m.nll(x)
        assert nll.shape == (3,)
        want = m.dims() * math.log(levels)
        assert torch.allclose(nll, torch.full((3,), want), rtol=1e-5), (nll, want)
        assert abs(float(m.bits_per_dim(nll[0].item())) - math.log2(levels)) < 1e-5
    # Softmax NLL is the cross entropy of the right channel block.
    m = randomize(model("rgb_small"), 2)
    x = torch.randint(0, 256, (2, 3, 8, 8))
    lg = m(x)
    assert lg.shape == (2, 768, 8, 8)
    manual = torch.zeros(2)
    for c in range(3):
        ls = torch.log_softmax(lg[:, c * 256 : (c + 1) * 256], dim=1)
        manual -= ls.gather(1, x[:, c : c + 1]).sum((1, 2, 3))
    assert torch.allclose(m.nll(x), manual, rtol=1e-5)
    # Bernoulli: BCE with the image as target; input scaled by 1/(levels-1).
    m = randomize(model("diag_small"), 2)
    xb = torch.randint(0, 2, (2, 1, 8, 8))
    lg = m(xb)
    manual = F.binary_cross_entropy_with_logits(lg, xb.float(), reduction="none").sum((1, 2, 3))
    assert torch.allclose(m.nll(xb), manual)
    assert torch.equal(m(xb.float()), m(xb.to(torch.uint8)))


@test
def class_vectors_are_a_per_label_bias():
    # docs/semantics.md: column y of class_weight is added to the input-to-state map (gated:
    # the pre-activation) at every position, after the conv and its bias. So image i with
    # label y_i gives the logits of the same model with that column folded into the biases
    # and no labels.
    m = randomize(model("classes_small"), 5).double()
    x = torch.randint(0, 2, (3, 1, 8, 8))
    y = torch.tensor([2, 0, 1])
    with torch.no_grad():
        got = m(x, y)
        for i, k in enumerate(y.tolist()):
            folded = copy.deepcopy(m)
            for mod in folded.nodes.values():
                if isinstance(mod, P._Conditioned):
                    bias = mod.is_bias if hasattr(mod, "is_bias") else mod.bias
                    bias += mod.class_weight[:, k]
            want = folded(x[i : i + 1])
            err = (got[i : i + 1] - want).abs().max().item()
            assert err < 1e-12, f"image {i}, label {k}: max error {err}"
        assert (got - m(x)).abs().max() > 1e-3, "the labels change nothing"
    for bad in (torch.tensor([0, 1]), torch.tensor([0, 1, 3]), torch.tensor([0.0, 1.0, 2.0])):
        try:
            m(x, bad)
            raise AssertionError(f"labels {bad} accepted")
        except ValueError:
            pass
    try:
        model("diag_small")(x, y)
        raise AssertionError("an unconditional model took labels")
    except ValueError:
        pass


@test
def low_res_map_and_scored_nll():
    m = randomize(model("low_res_small"), 6).double()
    f, L = 2, 4
    assert m.low_res == {"factor": f, "maps": 3} and m.scored_dims() == 64 - 16
    x = torch.randint(0, L, (2, 1, 8, 8))
    xs = m.scale(x)
    # The low-res node, literally: output pixel (r, c) reads the 3 x 3 low-res pixels
    # around its own f x f block, low-res pixel (i, j) through tap (r - f(i-1), c - f(j-1))
    # of the transposed conv's weight [C, maps, 3f, 3f].
    lr = m.nodes["n1"]
    assert isinstance(lr, P.LowResMap)
    s = xs[:, :, ::f, ::f]
    want = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    for r in range(8):
        for c in range(8):
            want[:, :, r, c] = lr.bias
            for i in range(r // f - 1, r // f + 2):
                for j in range(c // f - 1, c // f + 2):
                    if 0 <= i < 8 // f and 0 <= j < 8 // f:
                        tap = lr.weight[:, :, r - f * (i - 1), c - f * (j - 1)]  # C x maps
                        want[:, :, r, c] += s[:, :, i, j] @ tap
    with torch.no_grad():
        err = (lr(xs) - want).abs().max().item()
        assert err < 1e-12, f"low-res map: max error {err}"
        # The NLL leaves out the given pixels (rows and columns divisible by f).
        lg = m(x)
        ce = F.cross_entropy(lg.reshape(2, L, 8, 8), x[:, 0], reduction="none")
        keep = torch.tensor([[not (r % f == 0 and c % f == 0) for c in range(8)] for r in range(8)])
        assert torch.allclose(m.nll(x), ce[:, keep].sum(1), rtol=1e-12)
        assert abs(float(m.bits_per_dim(48 * math.log(2))) - 1) < 1e-12


def _check_causal(name, n_images=4):
    j = ir(name)
    m = P.PixcRef(j)
    m.init_weights(0)
    # A class-conditional model: class vectors made nonzero (their init is zero), so the
    # labels causality() draws really reach every layer.
    with torch.no_grad():
        for k, p in m.nodes.named_parameters():
            if k.endswith(".class_weight"):
                p.uniform_(-1, 1)
    deps = P.causality(m, n_images=n_images, seed=0)
    C, H, W = m.channels, m.height, m.width
    allowed = P.allowed_mask(C, H, W)
    leaks = deps & ~allowed
    assert not leaks.any(), f"{name}: {int(leaks.sum())} dependencies on future sub-pixels"
    # Spelled out: no future pixel, and at the same pixel no channel >= the logit's colour.
    for h in range(H):
        for w in range(W):
            for c in range(C):
                d = deps[h, w, c].reshape(H * W, C)
                assert not d[h * W + w + 1 :].any()
                assert not d[h * W + w, c:].any()
    rf = j.get("receptive_field")
    seen = int((deps & allowed).sum())
    if rf is not None:
        assert rf["allowed"] == int(allowed.sum()), (name, rf["allowed"], int(allowed.sum()))
        assert rf["seen"] == seen, f"{name}: gradients see {seen} (out, in) pairs, pixc's static pass says {rf['seen']}"
    return deps, seen, int(allowed.sum())


@test
def causal_diag_bilstm():
    _, s, a = _check_causal("diag_small")
    print(f"    diag_small: seen {s}/{a} (= pixc's receptive_field)")


@test
def causal_row_lstm():
    _, s, a = _check_causal("row_small")
    print(f"    row_small: seen {s}/{a} (= pixc's receptive_field)")


@test
def causal_pixelcnn():
    _, s, a = _check_causal("pixelcnn_small")
    print(f"    pixelcnn_small: seen {s}/{a} (= pixc's receptive_field)")


@test
def causal_rgb_softmax():
    _, s, a = _check_causal("rgb_small")
    print(f"    rgb_small: seen {s}/{a} (= pixc's receptive_field)")


@test
def causal_class_conditional():
    _, s, a = _check_causal("classes_small")
    print(f"    classes_small (random labels): seen {s}/{a} (= pixc's receptive_field)")


@test
def causal_low_res():
    # The low-res pixels are context: left out through the map (as pixc's static pass
    # does), the rest is causal and equals pixc's count.
    _, s, a = _check_causal("low_res_small")
    print(f"    low_res_small: seen {s}/{a} (= pixc's receptive_field)")
    # Through the map, outputs see later pixels, but only low-res ones: the first sees its
    # 3 x 3 low-res neighbourhood, (0, 0) to (2, 2), so the conditioning is wired in.
    m = model("low_res_small")
    deps = P.causality(m, n_images=2, seed=0, through_low_res=True)
    future = deps & ~P.allowed_mask(1, 8, 8)
    at = np.argwhere(future.any((0, 1, 2, 5)))
    assert len(at) and all(r % 2 == 0 and c % 2 == 0 for r, c in at), at.tolist()
    assert np.argwhere(deps[0, 0, 0, :, :, 0]).tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]
    print(f"    low_res_small through the map: {int(future.sum())} dependencies on later low-res pixels")


@test
def unshifted_diag_bilstm_leaks():
    j = ir("diag_small")
    n = 0
    for layer in j["layers"]:
        if layer["kind"] == "diag_bilstm":
            layer["attrs"]["shift"] = False
            n += 1
    assert n == 2
    m = P.PixcRef(j)
    m.init_weights(0)
    deps = P.causality(m, n_images=4, seed=0)
    leaks = deps & ~P.allowed_mask(1, 8, 8)
    assert leaks.any(), "shift: false should see future pixels"
    # E.g. (r, c) sees (r, c+1) through the right-to-left direction reading row r.
    assert leaks[3, 2, 0].reshape(8, 8)[3, 3], "expected (3,2) to see (3,3)"
    print(f"    shift=false: {int(leaks.sum())} future dependencies")


@test
def diag_bilstm_10x10_misses_exactly_one_pixel():
    for name in ("diag10_1", "diag10_2"):
        deps, _, _ = _check_causal(name, n_images=8)
        H = W = 10
        allowed = P.allowed_mask(1, H, W)
        missing = allowed & ~deps
        count = 0
        for r in range(H):
            for c in range(W):
                miss = np.argwhere(missing[r, c, 0, :, :, 0])
                if r >= 1 and c < W - 4:
                    assert miss.tolist() == [[r - 1, W - 1]], f"{name} ({r},{c}) misses {miss.tolist()}"
                    count += 1
                else:
                    assert len(miss) == 0, f"{name} ({r},{c}) misses {miss.tolist()}"
        assert count == 54
        print(f"    {name}: 54 of 100 positions miss exactly x(r-1, W-1), the rest see the full context")


@test
def full_context_diag_bilstm_10x10_sees_everything():
    # The same layer with `full_context` (the image into its right-to-left gates): by
    # gradients in this independent implementation, no position misses anything.
    deps, _, _ = _check_causal("diag10_full", n_images=8)
    missing = P.allowed_mask(1, 10, 10) & ~deps
    assert not missing.any(), f"{int(missing.sum())} allowed dependencies missed"
    print("    diag10_full: all 100 positions see the full context")


@test
def cli_logits_nll_causality_bench():
    j = ir("rgb_small")
    irp = TMP / "rgb.json"
    irp.write_text(json.dumps(j))
    m = randomize(model("rgb_small"), 4)
    wp = TMP / "rgb_cli.safetensors"
    P.save_safetensors(wp, m.pixc_weights())
    imgs = np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8)).astype(np.uint8)
    ip = TMP / "imgs.npy"
    np.save(ip, imgs)
    py, script = sys.executable, str(HERE / "pixc_ref.py")
    run = lambda *a: subprocess.run([py, script, *map(str, a)], capture_output=True, text=True, check=True).stdout
    run("logits", "--ir", irp, "--weights", wp, "--images", ip, "--out", TMP / "lg.npy", "--batch", 2, "--threads", 1)
    run("nll", "--ir", irp, "--weights", wp, "--images", ip, "--out", TMP / "nll.npy", "--threads", 1)
    lg, nll = np.load(TMP / "lg.npy"), np.load(TMP / "nll.npy")
    assert lg.dtype == np.float32 and lg.shape == (5, 768, 8, 8) and nll.shape == (5,)
    with torch.no_grad():
        assert np.allclose(lg, m(imgs).numpy(), atol=1e-5)
        assert np.allclose(nll, m.nll(imgs).numpy(), rtol=1e-5)
    out = run("causality", "--ir", TMP / "diag_small.yaml", "--out", TMP / "deps.npy", "--threads", 1)
    d = np.load(TMP / "deps.npy")
    assert d.shape == (8, 8, 1, 8, 8, 1) and d.dtype == bool and json.loads(out)["causal"] is True
    b = json.loads(run("bench", "--ir", irp, "--batch", 4, "--steps", 2, "--threads", 1, "--json"))
    assert b["images_per_s"] > 0 and b["peak_rss_mb"] > 0 and b["parameters"] == j["parameters"]
    assert b["steps"] == 2
    # Timed like pixc bench-one: until --seconds have passed, but never fewer than 3 steps.
    b = json.loads(run("bench", "--ir", irp, "--batch", 2, "--steps", 50, "--seconds", 1e-6, "--threads", 1, "--json"))
    assert b["steps"] == 3 and b["images_per_s"] > 0


@test
def cli_conditional_models():
    py, script = sys.executable, str(HERE / "pixc_ref.py")
    run = lambda *a: subprocess.run([py, script, *map(str, a)], capture_output=True, text=True)
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 2, (3, 1, 8, 8)).astype(np.uint8)
    ip, yp = TMP / "cond_imgs.npy", TMP / "cond_labels.npy"
    np.save(ip, imgs)
    np.save(yp, np.array([1, 2, 0]))
    # Class-conditional: labels from --labels, required.
    irp, wp = TMP / "classes.json", TMP / "classes.safetensors"
    irp.write_text(json.dumps(ir("classes_small")))
    m = randomize(model("classes_small"), 7)
    P.save_safetensors(wp, m.pixc_weights())
    common = ("--ir", irp, "--weights", wp, "--images", ip, "--threads", 1)
    r = run("logits", *common, "--labels", yp, "--out", TMP / "cond_lg.npy", "--batch", 2)
    assert r.returncode == 0, r.stderr
    r = run("nll", *common, "--labels", yp, "--out", TMP / "cond_nll.npy")
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        assert np.allclose(np.load(TMP / "cond_lg.npy"), m(imgs, [1, 2, 0]).numpy(), atol=1e-5)
        assert np.allclose(np.load(TMP / "cond_nll.npy"), m.nll(imgs, [1, 2, 0]).numpy(), rtol=1e-5)
    r = run("nll", *common, "--out", TMP / "cond_nll.npy")
    assert r.returncode != 0 and "class-conditional" in r.stderr and "--labels" in r.stderr, r.stderr
    np.save(TMP / "bad_labels.npy", np.array([1, 3, 0]))
    r = run("nll", *common, "--labels", TMP / "bad_labels.npy", "--out", TMP / "cond_nll.npy")
    assert r.returncode != 0 and "0..2" in r.stderr, r.stderr
    r = run("bench", "--ir", irp, "--batch", 2, "--steps", 1, "--threads", 1, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parameters"] == ir("classes_small")["parameters"]
    # Low-res: the conditional part from the IR's top level, the given pixels not scored;
    # --small picks the small model.
    j = ir("low_res_small")
    irp, wp = TMP / "low_res.json", TMP / "low_res.safetensors"
    irp.write_text(json.dumps(j))
    m = randomize(model("low_res_small"), 8)
    P.save_safetensors(wp, m.pixc_weights())
    imgs = rng.integers(0, 4, (3, 1, 8, 8)).astype(np.uint8)
    np.save(ip, imgs)
    r = run("nll", "--ir", irp, "--weights", wp, "--images", ip, "--out", TMP / "lr_nll.npy", "--threads", 1)
    assert r.returncode == 0, r.stderr
    nll = np.load(TMP / "lr_nll.npy")
    with torch.no_grad():
        assert np.allclose(nll, m.nll(imgs).numpy(), rtol=1e-5)
    bpd = json.loads(r.stdout)["bits_per_dim"]
    assert abs(bpd - nll.mean() / (48 * math.log(2))) < 1e-5
    r = run("bench", "--ir", irp, "--small", "--batch", 2, "--steps", 1, "--threads", 1, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parameters"] == j["small"]["parameters"]


class Skip(Exception):
    pass


@test
def same_logits_as_pixcs_onnx_export():
    """pixc's own seeded weights, exported as ONNX and run by ONNX Runtime, give the same
    logits and NLL here (the initializers carry the pixc names). Conditional models take
    their `label` / `low_res` inputs; a seeded init's class vectors are zero, so random
    ones replace them in the file and here."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper
    except ImportError as e:
        raise Skip(f"onnx / onnxruntime not importable: {e}")
    for name in ("rgb_small", "diag_small", "row_small", "pixelcnn_small", "classes_small", "low_res_small"):
        rng = np.random.default_rng(1)
        ir(name)  # writes the spec file
        out = TMP / f"{name}.onnx"
        r = subprocess.run([P._pixc_binary(), "export", "--onnx", str(TMP / f"{name}.yaml"), "-o", str(out), "--seed", "3"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if "unrecognized subcommand" in r.stderr:
                raise Skip("this pixc has no `export`")
            raise AssertionError(f"pixc export failed: {r.stderr}")
        proto = onnx.load(str(out))
        for init in proto.graph.initializer:
            if init.name.endswith(".class_weight"):
                v = rng.uniform(-1, 1, numpy_helper.to_array(init).shape).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(v, init.name))
        w = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        m = model(name)
        want = m.pixc_weights()
        loaded = {}
        for k, v in w.items():
            if k not in want:
                continue
            if v.ndim == 4 and v.shape != want[k].shape:
                # pixc stores a masked conv's kernel without its all-zero rows below the
                # centre: put them back.
                assert v.shape[2] == want[k].shape[2] // 2 + 1, (k, v.shape, want[k].shape)
                v = np.concatenate([v, np.zeros(want[k].shape[:2] + (want[k].shape[2] - v.shape[2], v.shape[3]), np.float32)], axis=2)
            loaded[k] = v
        # The export bakes a Diagonal BiLSTM's initial states into its padding-edge states
        # instead of storing them; a seeded init's are zero (pixc's `Init::Zeros`).
        for k, v in want.items():
            if k.endswith((".h0", ".c0")) and k not in loaded:
                loaded[k] = np.zeros_like(v)
        m.load_pixc_weights(loaded)
        imgs = rng.integers(0, m.levels, (3, m.channels, 8, 8)).astype(np.float32)
        feed = {"image": imgs}
        labels = None
        if m.classes:
            labels = feed["label"] = rng.integers(0, m.classes, 3)
        if m.low_res:
            f = m.low_res["factor"]
            feed["low_res"] = imgs[:, :, ::f, ::f]
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        lg, nll = sess.run(["logits", "nll"], feed)
        with torch.no_grad():
            mine = m(imgs, labels).numpy()
            mnll = m.nll(imgs, labels).numpy()
        assert np.abs(lg - mine).max() < 1e-5, (name, float(np.abs(lg - mine).max()))
        assert np.allclose(nll, mnll, rtol=1e-5), (name, nll, mnll)
        print(f"    {name}: max |logit difference| vs ONNX Runtime {float(np.abs(lg - mine).max()):.1e}")


def main() -> int:
    passed = failed = skipped = 0
    for fn in TESTS:
        t = time.perf_counter()
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__} ({time.perf_counter() - t:.1f}s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"skip {fn.__name__}: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
