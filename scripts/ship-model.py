#!/usr/bin/env python3
"""Ships a finished training run as models/<name>/: the run's files (so `pixc train --resume`
can go on from it), its scores, curves, samples and a model card.

Usage: scripts/ship-model.py RUN [--name NAME] [--command "pixc train ..."] [--hardware TEXT]

Everything the card states comes from `pixc` commands run here, on the shipped folder:
  pixc fsck, pixc eval --split valid / test (whole splits), pixc eval --split test
  --stride 20 (the slice tests/shipped_models.rs checks), pixc eval --binarization dynamic
  (binary models), pixc plot, pixc sample.
The raw `pixc eval --json` reports are kept in evals.json (--reuse remakes the card from
them); the card's numbers are also written to card.json, which the test reads.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIXC = os.path.join(ROOT, "target", "release", "pixc")
# The files of a run folder that a shipped model keeps; samples/ and exports are remade.
RUN_FILES = [
    "spec.yaml", "state.json", "best.safetensors", "last.safetensors",
    "last.optim.safetensors", "metrics.jsonl", "history.jsonl",
]
# The stride of the test slice that tests/shipped_models.rs scores (500 of 10,000 images).
SLICE_STRIDE = 20


def pixc(*args, json_out=True):
    cmd = [PIXC, *args] + (["--json"] if json_out else [])
    print("+ pixc " + " ".join(args), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out) if json_out else out


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()


def human(seconds):
    seconds = int(round(seconds))
    h, m = divmod(seconds // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {seconds % 60:02d} s"


def reach_times(metrics, thresholds):
    """Wall time at the first validation at or below each threshold (None if never)."""
    out = {}
    for t in thresholds:
        hit = next((m for m in metrics if m.get("valid_nll") is not None and m["valid_nll"] <= t), None)
        out[t] = None if hit is None else (hit["wall_seconds"], hit["step"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--name")
    ap.add_argument("--command", required=True, help="the exact `pixc train` command(s) that made the run")
    ap.add_argument("--commit", help="the commit it was trained at (default: HEAD)")
    ap.add_argument("--hardware", default="2 CPU cores (x86-64, AVX2 + FMA), no GPU")
    ap.add_argument("--notes", default="", help="a paragraph for the card: what else ran, what limits it")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the scores in evals.json when the best checkpoint is the same (remake the card only)")
    a = ap.parse_args()

    with open(os.path.join(a.run, "spec.yaml")) as f:
        name = a.name or next(l.split(":", 1)[1].strip() for l in f if l.startswith("model:"))
    dest = os.path.join(ROOT, "models", name)
    os.makedirs(dest, exist_ok=True)
    if os.path.realpath(a.run) != os.path.realpath(dest):
        # A multi-scale run keeps its small model's run in small/.
        for sub in ["", "small"]:
            if sub and not os.path.isdir(os.path.join(a.run, sub)):
                continue
            os.makedirs(os.path.join(dest, sub), exist_ok=True)
            for f in RUN_FILES:
                src = os.path.join(a.run, sub, f)
                if os.path.exists(src):
                    shutil.copy2(src, os.path.join(dest, sub, f))
    multiscale = os.path.isdir(os.path.join(dest, "small"))
    rel = os.path.relpath(dest, ROOT)
    os.chdir(ROOT)

    pixc("fsck", rel)
    state = json.load(open(os.path.join(dest, "state.json")))
    metrics = [json.loads(l) for l in open(os.path.join(dest, "metrics.jsonl")) if l.strip()]
    evals = os.path.join(dest, "evals.json")
    old = json.load(open(evals)) if os.path.exists(evals) else None
    if a.reuse and old and old["test"]["step"] == state["best_step"]:
        # The same best checkpoint: its scores stand (only the card's text is remade).
        valid, test, piece, dynamic = old["valid"], old["test"], old["slice"], old["dynamic"]
        binary = test["unit"] == "nats/image"
    else:
        valid = pixc("eval", rel, "--split", "valid")
        test = pixc("eval", rel, "--split", "test")
        piece = pixc("eval", rel, "--split", "test", "--stride", str(SLICE_STRIDE))
        binary = test["unit"] == "nats/image"
        # (A multi-scale run is scored on the data set's own images only.)
        dynamic = (pixc("eval", rel, "--split", "test", "--binarization", "dynamic", "--seed", "0")
                   if binary and not multiscale else None)
        with open(evals, "w") as f:
            json.dump({"valid": valid, "test": test, "slice": piece, "dynamic": dynamic}, f, indent=2)
            f.write("\n")
        pixc("plot", rel, "-o", os.path.join(rel, "curves.png"), json_out=False)
        pixc("sample", rel, "-n", "64", "--seed", "0", "-o", os.path.join(rel, "samples.png"))

    unit = test["unit"]
    steps = state["step"]
    spec_text = open(os.path.join(dest, "spec.yaml")).read()
    batch = int(next(l.split(":", 1)[1] for l in spec_text.splitlines() if l.strip().startswith("batch:")))
    epochs = steps * batch / 50_000
    commit = a.commit or git("rev-parse", "--short", "HEAD")
    # A multi-scale model: its small model's run (small/) adds its steps and wall time; the
    # validation curve is the conditional part's alone, so no whole-image times to reach.
    small_state = json.load(open(os.path.join(dest, "small", "state.json"))) if multiscale else None
    wall = state["wall_seconds"] + (small_state["wall_seconds"] if small_state else 0.0)
    thresholds = [85.0, 82.0, 80.0] if binary and not multiscale else []
    reach = reach_times(metrics, thresholds)

    card = {
        "model": name,
        "unit": unit,
        "test_nll": test["nll"],
        "test_std_error": test["std_error"],
        "test_images": test["images"],
        "valid_nll": valid["nll"],
        "slice": {"stride": SLICE_STRIDE, "images": piece["images"], "nll": piece["nll"],
                  "std_error": piece["std_error"]},
        "test_nll_dynamic_binarization": dynamic["nll"] if dynamic else None,
        "best_step": test["step"],
        "parts": [{"nll": p["nll"], "std_error": p["std_error"], "step": p["step"]}
                  for p in test.get("parts", [])],
        "steps": steps,
        "batch": batch,
        "epochs": round(epochs, 2),
        "wall_seconds": wall,
        "hardware": a.hardware,
        "command": a.command,
        "commit": commit,
        "reach_valid": {str(t): (None if v is None else {"wall_seconds": v[0], "step": v[1]})
                        for t, v in reach.items()},
    }
    with open(os.path.join(dest, "card.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")

    fmt = (lambda x: f"{x:.2f}") if binary else (lambda x: f"{x:.4f}")
    lines = [
        f"# {name}",
        "",
        f"Trained with pixc at commit `{commit}` on {a.hardware}.",
        "",
        "| | |",
        "| --- | --- |",
        f"| test NLL (all {test['images']:,} test images) | **{fmt(test['nll'])} {unit}** ± {fmt(test['std_error'])} (standard error) |",
        f"| validation NLL (all {valid['images']:,}) | {fmt(valid['nll'])} {unit} |",
    ]
    parts = ["the small model (the low-res subsample)", "the conditional model (the rest, given it)"]
    for p, what in zip(test.get("parts", []), parts):
        lines.append(f"| test NLL, {what} | {fmt(p['nll'])} ± {fmt(p['std_error'])} {unit} (best step {p['step']:,}) |")
    if dynamic:
        lines.append(f"| test NLL, dynamically binarized test images (seed 0) | {fmt(dynamic['nll'])} {unit} (not comparable with the paper: see below) |")
    lines += [
        f"| every {SLICE_STRIDE}th test image ({piece['images']}) | {fmt(piece['nll'])} ± {fmt(piece['std_error'])} {unit} (what `tests/shipped_models.rs` checks) |",
        f"| best checkpoint | step {test['step']:,} (selected on validation) |",
        (f"| training | {small_state['step']:,} steps (small model) + {steps:,} steps (conditional model) of batch {batch}, {human(wall)} wall time in all |"
         if small_state else
         f"| training | {steps:,} steps of batch {batch} = {epochs:.1f} epochs, {human(wall)} wall time |"),
    ]
    for t, v in reach.items():
        lines.append(f"| validation NLL <= {t:g} reached | " + ("not reached" if v is None else f"after {human(v[0])} (step {v[1]:,})") + " |")
    lines += [
        "",
        "Validation figures during training (the curves, the times to reach) are on the first "
        "1,000 validation images; the table's are on whole splits.",
        "",
        "## Reproduce",
        "",
        "```sh",
        a.command,
        f"pixc eval {rel} --split test",
        "```",
        "",
        "## Use",
        "",
        "```sh",
        f"pixc sample {rel} -n 16 -o samples.png",
        f"pixc eval {rel} --split test",
        f"pixc export --onnx {rel} -o {name}.onnx",
        "```",
        "",
        "![training curves](curves.png)",
        "",
        "![64 samples, seed 0](samples.png)",
        "",
    ]
    if dynamic:
        lines += [
            "Protocol: static binarization as in the paper (each pixel drawn once as "
            "Bernoulli(v/255); 50,000 train / 10,000 validation / 10,000 test). The draw is "
            "pixc's own, from a fixed seed: the paper's (Salakhutdinov & Murray's) file is not "
            "available here, so the protocol is the same but not the exact bits. "
            "The dynamically binarized figure is not comparable with the paper's: it scores a "
            "different test set (a fresh Bernoulli draw of the gray images), while the static "
            "protocol scores the one fixed draw that the paper and this model were evaluated on.",
            "",
        ]
    if a.notes:
        lines += [a.notes, ""]
    with open(os.path.join(dest, "README.md"), "w") as f:
        f.write("\n".join(lines))
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
