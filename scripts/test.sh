#!/usr/bin/env bash
#! The whole test suite, from a clean clone: set-up, format and lint checks, Rust tests,
#! the PyTorch reference's self-tests. Safe to re-run; quiet when set-up is already done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --quiet -- --test-threads=2
if [ -f python/test_pixc_ref.py ]; then
  echo "== python/test_pixc_ref.py (PyTorch reference)"
  .venv/bin/python python/test_pixc_ref.py
fi
