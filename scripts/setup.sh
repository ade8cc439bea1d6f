#!/usr/bin/env bash
#! Idempotent set-up: a .venv with the pinned PyPI packages (libtorch via torch, ONNX Runtime, onnx checker)
#! and a link .venv/libtorch that .cargo/config.toml points tch at. Quiet when everything is present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TORCH_VERSION=2.11.0
ORT_VERSION=1.31.1
ONNX_VERSION=1.23.2
NUMPY_VERSION=2.4.6
stamp=".venv/.pixc-setup-$TORCH_VERSION-$ORT_VERSION-$ONNX_VERSION-$NUMPY_VERSION"

say() { echo "pixc setup: $*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install a Rust toolchain (>= 1.92) first, e.g. from rustup"
  exit 1
fi
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
  say "python3 not found: install Python 3.10-3.12 with venv and pip"
  exit 1
fi

# Free space in KiB on the filesystem holding $1.
free_kib() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'; }
need_kib=$((7 * 1024 * 1024))

if [ ! -f "$stamp" ]; then
  # The wheels (torch pulls the CUDA runtime) unpack to about 5 GB, and pip stages them in TMPDIR first:
  # refuse early with the reason instead of letting pip fail half-way with a stack trace.
  tmp="${TMPDIR:-/tmp}"
  for dir in "$root" "$tmp"; do
    free="$(free_kib "$dir")"
    if [ -n "$free" ] && [ "$free" -lt "$need_kib" ]; then
      say "only $((free / 1024)) MiB free on the filesystem of $dir; installing torch and ONNX Runtime needs about 7 GiB"
      say "free some space (old build folders: 'cargo clean'; old clones) or point TMPDIR elsewhere, then rerun"
      exit 1
    fi
  done
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv
  fi
  say "installing torch==$TORCH_VERSION, onnxruntime-gpu==$ORT_VERSION, onnx==$ONNX_VERSION into .venv (about 5 GB, a minute or two)"
  log=".venv/pip-install.log"
  # --no-cache-dir: pip's HTTP cache would keep a second copy of every wheel (gigabytes) in ~/.cache.
  if ! .venv/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check \
      "torch==$TORCH_VERSION" "onnxruntime-gpu==$ORT_VERSION" "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION" \
      >"$log" 2>&1; then
    if grep -q "No space left on device" "$log"; then
      say "pip ran out of disk space (free: $(( $(free_kib "$root") / 1024 )) MiB here, $(( $(free_kib "$tmp") / 1024 )) MiB in $tmp); the install needs about 7 GiB: free some and rerun"
    else
      tail -n 15 "$log" >&2
      say "pip could not install the pinned packages (full log: $log): is the PyPI registry reachable from this machine?"
    fi
    exit 1
  fi
  touch "$stamp"
fi

torch_dir="$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
if [ "$(readlink .venv/libtorch 2>/dev/null || true)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .venv/libtorch
fi
ort_lib="$(ls "$(dirname "$torch_dir")"/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
if [ -z "$ort_lib" ]; then
  say "libonnxruntime.so not found in .venv: reinstall with 'rm -rf .venv && scripts/setup.sh'"
  exit 1
fi
if [ "$(readlink .venv/libonnxruntime.so 2>/dev/null || true)" != "$ort_lib" ]; then
  ln -sfn "$ort_lib" .venv/libonnxruntime.so
fi

# Fashion-MNIST (the `fashion-mnist-256` / `-binarized` data sets), without root: the Debian
# package's .deb, checked by its pinned SHA-256 and unpacked into data-cache/. Optional: on a
# machine without apt the rest of pixc works, and what needs the data says it is missing.
FASHION_DEB=dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb
FASHION_SHA256=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
fashion_dir=data-cache/fashion-mnist
if [ ! -f "$fashion_dir/.complete" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    say "fetching Fashion-MNIST (Debian package dataset-fashion-mnist, 31 MB) into $fashion_dir"
    tmp_deb="$(mktemp -d)"
    if (cd "$tmp_deb" && apt-get download -q "dataset-fashion-mnist=0.0~git20200523.55506a9-1" >/dev/null 2>&1) &&
       echo "$FASHION_SHA256  $tmp_deb/$FASHION_DEB" | sha256sum -c --quiet - >/dev/null 2>&1; then
      rm -rf "$tmp_deb/x" && dpkg-deb -x "$tmp_deb/$FASHION_DEB" "$tmp_deb/x"
      mkdir -p "$fashion_dir"
      cp "$tmp_deb"/x/usr/share/datasets/fashion-mnist/*.gz "$fashion_dir"/
      touch "$fashion_dir/.complete"
    else
      say "could not fetch $FASHION_DEB (or its checksum differs); Fashion-MNIST stays unavailable"
    fi
    rm -rf "$tmp_deb"
  else
    say "no apt-get here: Fashion-MNIST is optional; set PIXC_FASHION_DIR to a folder with its four .gz files to use it"
  fi
fi
