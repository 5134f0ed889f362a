#!/usr/bin/env bash
# Build wrnc with CUDA + cuDNN on a machine that has no GPU, no driver and no CUDA install.
#
# 1. Makes a build-only CUDA 13.0 toolkit from NVIDIA's PyPI wheels in $WRNC_CUDA_DIR
#    (default: <repo>/.cuda, git-ignored): nvcc, headers, link libraries, cuDNN, and a
#    link-time libcuda.so stub generated from cuda.h (the wheels ship none). ~1.7 GB.
# 2. Builds `wrnc` (and, unless --no-tests, the test executables) with --features cuda,cudnn.
# 3. Copies what must travel to a GPU machine into dist-cuda/ (or $WRNC_DIST): the wrnc binary,
#    the GPU test executable, tools/gpu-check.sh, tools/torch_wrn_bench.py, specs/ (stripped),
#    and packs it as dist-cuda.tar.gz.
#
# Versions are pinned exactly: CUDA 13.0 (the GPU machines' driver 580 rejects PTX from
# nvcc 13.1+), cuDNN 9.19 -- the versions PyTorch 2.11+cu130 pins, so the PyTorch venv on
# the GPU machine supplies matching run-time libraries.
#
# Usage: tools/build-cuda.sh [--no-tests] [--toolkit-only]
# Environment: CUDA_COMPUTE_CAP (default 90: sm_90a, H100/H200), CARGO_TARGET_DIR (default
#   <repo>/target-cuda), WRNC_CUDA_DIR, WRNC_DIST, PYTHON (python3), JOBS (nproc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTS=1
TOOLKIT_ONLY=0
for a in "$@"; do
  case $a in
    --no-tests) TESTS=0 ;;
    --toolkit-only) TOOLKIT_ONLY=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-cuda.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

CUDA_VERSION_PIN=13.0.2          # cuda-toolkit meta wheel: nvcc/nvrtc 13.0.88, cudart 13.0.96
CUDNN_VERSION_PIN=9.19.0.56      # nvidia-cudnn-cu13
KIT=${WRNC_CUDA_DIR:-$ROOT/.cuda}
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-cuda}
DIST=${WRNC_DIST:-$ROOT/dist-cuda}

log() { printf '[build-cuda %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------- toolkit from wheels
H=$KIT/cuda
STAMP=$KIT/.stamp-$CUDA_VERSION_PIN-$CUDNN_VERSION_PIN
if [ ! -e "$STAMP" ]; then
  log "installing CUDA $CUDA_VERSION_PIN + cuDNN $CUDNN_VERSION_PIN wheels into $KIT"
  mkdir -p "$KIT"
  [ -x "$KIT/venv/bin/python" ] || "$PY" -m venv "$KIT/venv"
  "$KIT/venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
    "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart,cublas,curand,nvrtc]==$CUDA_VERSION_PIN" \
    "nvidia-cudnn-cu13==$CUDNN_VERSION_PIN"
  SP=$("$KIT/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia
  CU=$SP/cu13   # every CUDA 13 wheel unpacks into this one tree: bin include lib nvvm
  [ -x "$CU/bin/nvcc" ] || { echo "nvcc not found under $CU/bin" >&2; exit 1; }

  # A CUDA_HOME layout: bin/ include/ nvvm/ from the wheel, lib64/ with the unversioned
  # .so names the linker wants (wheels ship only .so.13 etc.).
  rm -rf "$H"; mkdir -p "$H/lib64/stubs"
  for d in bin include nvvm; do ln -s "$CU/$d" "$H/$d"; done
  for f in "$CU"/lib/*.so* "$CU"/lib/*.a "$SP"/cudnn/lib/*.so*; do
    [ -e "$f" ] && ln -sf "$f" "$H/lib64/$(basename "$f")"
  done
  # cuDNN headers (cudnn.h) for completeness; cudarc loads cudnn symbols itself.
  [ -d "$SP/cudnn/include" ] && ln -s "$SP/cudnn/include" "$H/cudnn-include"
  ( cd "$H/lib64"
    for f in *.so.*; do b=${f%%.so.*}; [ -e "$b.so" ] || ln -s "$f" "$b.so"; done )

  # Link-time libcuda.so stub (soname libcuda.so.1): one function per driver entry point that
  # cuda.h declares or #defines to a versioned name. Every one returns 100
  # (CUDA_ERROR_NO_DEVICE). The real libcuda.so.1 comes from the driver at run time: the
  # stub lives under lib64/stubs only and is never copied into dist-cuda.
  {
    grep -oE 'CUresult CUDAAPI cu[A-Za-z0-9_]+' "$CU/include/cuda.h" | awk '{print $3}'
    grep -oE '#define cu[A-Za-z0-9_]+ +cu[A-Za-z0-9_]+' "$CU/include/cuda.h" | awk '{print $3}'
  } | sort -u | awk '{print "int " $1 "(void) { return 100; }"}' > "$H/lib64/stubs/libcuda_stub.c"
  gcc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 \
    -o "$H/lib64/stubs/libcuda.so" "$H/lib64/stubs/libcuda_stub.c"
  touch "$STAMP"
fi
"$H/bin/nvcc" --version | tail -1
log "toolkit ready: CUDA_HOME=$H"
[ "$TOOLKIT_ONLY" = 1 ] && exit 0

# ---------------------------------------------------------------- cargo build
export CUDA_HOME=$H CUDA_PATH=$H
export PATH=$H/bin:$PATH
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$JOBS}
export LIBRARY_PATH=$H/lib64:$H/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
# The stub satisfies the linker; the binary records only the soname libcuda.so.1.
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$H/lib64 -L native=$H/lib64/stubs"
cd "$ROOT"
# One cargo invocation for the binary and the GPU test executable: with two, the second
# (which adds dev-dependencies to the feature resolution) would compile Candle's CUDA kernels
# a second time. crates/train/tests/cuda_ops.rs holds the cuDNN op and bf16 tests.
TARGETS=(--bin wrnc)
[ "$TESTS" = 1 ] && TARGETS+=(--test cuda_ops)
log "cargo build --release --features cuda,cudnn ${TARGETS[*]} (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target $CARGO_TARGET_DIR)"
start=$(date +%s)
MSGS=$(mktemp)
trap 'rm -f "$MSGS"' EXIT
cargo build --release --features cuda,cudnn -p wrnc -p wrnc-train -j "$JOBS" "${TARGETS[@]}" \
  --message-format=json-render-diagnostics > "$MSGS"
mapfile -t TEST_BINS < <("$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("profile",{}).get("test") and m.get("executable"):
        print(m["executable"])' "$MSGS")
if [ "$TESTS" = 1 ] && [ "${#TEST_BINS[@]}" -eq 0 ]; then echo "the build failed (no test executable)" >&2; exit 1; fi
log "built in $(( $(date +%s) - start )) s: wrnc and ${#TEST_BINS[@]} test executable(s)"

# ---------------------------------------------------------------- dist folder
rm -rf "$DIST"; mkdir -p "$DIST/tests" "$DIST/tools"
cp "$CARGO_TARGET_DIR/release/wrnc" "$DIST/wrnc"
for t in "${TEST_BINS[@]}"; do
  n=$(basename "$t"); cp "$t" "$DIST/tests/${n%-*}"   # drop cargo's hash suffix
done
cp tools/gpu-check.sh tools/torch_wrn_bench.py "$DIST/tools/"
cp -r specs "$DIST/specs"
# Symbols are not needed to run; stripping keeps the folder small enough to carry around.
strip "$DIST/wrnc" "$DIST"/tests/* 2>/dev/null || true
{
  echo "built: $(date -u +%FT%TZ)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "features: cuda,cudnn  CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
  echo "toolkit: CUDA $CUDA_VERSION_PIN wheels, cuDNN $CUDNN_VERSION_PIN"
  "$H/bin/nvcc" --version | tail -1
} > "$DIST/BUILD-INFO"
log "needs at run time (ldd):"
ldd "$DIST/wrnc" | grep -E 'cuda|cublas|curand|nvrtc|cudnn' || true
tar -czf "$DIST.tar.gz" -C "$(dirname "$DIST")" "$(basename "$DIST")"
log "done: $DIST ($(du -sh "$DIST" | cut -f1)), $DIST.tar.gz ($(du -sh "$DIST.tar.gz" | cut -f1))"
log "on the GPU machine: tar -xzf $(basename "$DIST").tar.gz && $(basename "$DIST")/tools/gpu-check.sh"
