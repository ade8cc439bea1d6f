#!/usr/bin/env python3
"""Prints the README's results table from the shipped models' cards (models/*/card.json),
which scripts/ship-model.py wrote from `pixc eval` runs on the shipped folders.

Usage: scripts/results-table.py [MODEL_DIR...]   (default: every folder in models/)
"""

import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The paper's Table 4 (binarized MNIST, test NLL in nats).
PAPER = {
    "diag_bilstm_7_mnist": ("Diagonal BiLSTM (7 layers, h = 16)", 79.20),
    # The same network with full_context: true, against the paper's layer's number.
    "diag_bilstm_7_mnist_full": ("Diagonal BiLSTM, full context (7 layers, h = 16)", 79.20),
    "row_lstm_7_mnist": ("Row LSTM (7 layers, h = 16)", 80.54),
    "pixelcnn_7_mnist": ("PixelCNN (7 blocks, h = 16)", 81.30),
    # The paper does not give its MNIST PixelCNN's size: both of ours stand against it.
    "pixelcnn_12_mnist": ("PixelCNN (12 blocks of 5x5 convs, skips, h = 16)", 81.30),
    "pixelcnn_12_h24_mnist": ("PixelCNN (12 blocks of 5x5 convs, skips, h = 24)", 81.30),
}


# Shipped models the paper's table has no row for.
OTHER = {
    "diag_bilstm_7_mnist_classes": "Diagonal BiLSTM, class-conditional (NLL given the digit)",
    "gated_pixelcnn_mnist": "Gated PixelCNN (10 layers, h = 16)",
    "diag_bilstm_7_mnist_multiscale": "Multi-scale Diagonal BiLSTM (14x14, then 28x28 given it)",
}


def human(seconds):
    # Whole minutes, cut as the model cards (scripts/ship-model.py) cut them.
    m = int(round(seconds)) // 60
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def main():
    dirs = sys.argv[1:] or sorted(glob.glob(os.path.join(ROOT, "models", "*")))
    cards = []
    for d in dirs:
        p = os.path.join(d, "card.json")
        if os.path.isfile(p):
            cards.append(json.load(open(p)))
    print("| model | paper, test NLL | pixc, test NLL | dynamic binarization | epochs | wall time | reached 85 / 82 / 80 (valid) | commit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    order = list(PAPER)
    binary = sorted(
        (c for c in cards if c["unit"] == "nats/image"),
        key=lambda c: order.index(c["model"]) if c["model"] in order else len(order),
    )
    for c in binary:
        name, paper = PAPER.get(c["model"], (OTHER.get(c["model"], c["model"]), None))
        reach = " / ".join(
            "-" if c["reach_valid"].get(t) is None else human(c["reach_valid"][t]["wall_seconds"])
            for t in ("85.0", "82.0", "80.0")
        )
        dyn = c.get("test_nll_dynamic_binarization")
        print(
            f"| {name} (`models/{c['model']}`) | {f'{paper:.2f}' if paper else '-'} | **{c['test_nll']:.2f}** ± {c['test_std_error']:.2f} "
            f"| {dyn:.2f} | {c['epochs']:.1f} | {human(c['wall_seconds'])} | {reach} | `{c['commit']}` |"
            if dyn is not None else
            f"| {name} (`models/{c['model']}`) | {f'{paper:.2f}' if paper else '-'} | **{c['test_nll']:.2f}** ± {c['test_std_error']:.2f} | - | {c['epochs']:.1f} | {human(c['wall_seconds'])} | {reach} | `{c['commit']}` |"
        )
    other = [c for c in cards if c["unit"] != "nats/image"]
    if other:
        print()
        print("| model | data | test NLL | epochs | wall time | commit |")
        print("| --- | --- | --- | --- | --- | --- |")
        for c in other:
            print(
                f"| `models/{c['model']}` | Fashion-MNIST, 256 levels | **{c['test_nll']:.4f} {c['unit']}** ± {c['test_std_error']:.4f} "
                f"| {c['epochs']:.1f} | {human(c['wall_seconds'])} | `{c['commit']}` |"
            )


if __name__ == "__main__":
    main()
