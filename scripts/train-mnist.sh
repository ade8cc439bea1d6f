#!/usr/bin/env bash
#! The main job: set up, build, train the default spec (MNIST Diagonal BiLSTM, 7 layers,
#! h = 16) on statically binarized MNIST for a few minutes, then score it on the test set.
#! Usage: scripts/train-mnist.sh [MINUTES] [extra `pixc train` flags...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
minutes="${1:-5}"
shift || true
bash scripts/setup.sh
cargo build --release --quiet
run="runs/diag_bilstm_7_mnist-$(date +%Y%m%d-%H%M%S)"
./target/release/pixc check specs/diag_bilstm_7_mnist.yaml | grep -E "^(parameters|causality|receptive field):"
./target/release/pixc train specs/diag_bilstm_7_mnist.yaml --minutes "$minutes" --out "$run" --valid-every 500 "$@"
./target/release/pixc eval "$run" --split test
echo "run folder: $run (pixc plot $run, pixc sample $run, pixc export --onnx $run)"
