#!/usr/bin/env bash
# GPU check of a CUDA build of wrnc, run on a GPU machine (H100/H200, driver 580+) where
# PyTorch (cu13 wheels) is installed. Needs no Rust: it uses what tools/build-cuda.sh put in
# dist-cuda/ (the wrnc binary, the test executables, specs/, this script, the PyTorch bench).
#
#   1. run-time libraries: CUDA 13 cudart/cublas/cublasLt/curand/nvrtc and cuDNN 9 from the
#      PyTorch venv's nvidia wheels (LD_LIBRARY_PATH), checked with ldd
#   2. the cuDNN custom-op and mixed-precision tests (WRNC_REQUIRE_GPU=1: no silent skip)
#   3. `wrnc bench` WRN-28-10, batch 128: f32, bf16 (and f32 with TF32)
#   4. PyTorch eager WRN-28-10 on the same GPU (tools/torch_wrn_bench.py): f32 strict, bf16
#      autocast (and PyTorch's defaults: TF32 convolutions); the wrnc/PyTorch ratios
#   5. quickstart for 2 epochs on CUDA (f32 and bf16) and on the CPU: accuracies compared
#
# Results go to $OUT (default ./gpu-check-out): summary.json, summary.txt and one log per step.
# Fits in 8 minutes (each step has a timeout; a global budget skips what would overrun).
# Exit status: 0 when every correctness check passed (throughput is reported, not enforced).
#
# Usage: tools/gpu-check.sh [DIST]   (DIST: the dist-cuda folder; by default the folder this
#        script was copied into by build-cuda.sh, or ./dist-cuda, or a dist-cuda.tar.gz here)
# Environment: PYTHON (a python with torch), OUT, WRNC_CHECK_BUDGET_S (default 450),
#   BENCH_STEPS (default 20), QS_TOL (accuracy tolerance CPU vs CUDA, default 0.05).
set -uo pipefail

T0=$(date +%s)
BUDGET=${WRNC_CHECK_BUDGET_S:-450}
BENCH_STEPS=${BENCH_STEPS:-20}
QS_TOL=${QS_TOL:-0.05}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FAIL=0
log() { printf '[gpu-check %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$OUT/check.log"; }
fail() { log "FAIL: $*"; FAIL=1; echo "$*" >> "$OUT/failures.txt"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# run_step NAME TIMEOUT CMD...: stdout to $OUT/NAME.out, stderr to $OUT/NAME.err
run_step() {
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 15 ]; then log "skip $name: out of time budget"; echo skipped > "$OUT/$name.err"; return 124; fi
  [ "$t" -gt "$l" ] && t=$l
  log "$name (timeout ${t}s): $*"
  local s=$(date +%s)
  timeout -k 5 "$t" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  local rc=$?
  log "$name: exit $rc after $(( $(date +%s) - s ))s"
  return $rc
}

# ------------------------------------------------------------------ locate the build
DIST=${1:-}
if [ -z "$DIST" ]; then
  for d in "$HERE/.." "$PWD/dist-cuda" "$HERE/../dist-cuda"; do
    [ -x "$d/wrnc" ] && { DIST=$d; break; }
  done
fi
if [ -z "$DIST" ]; then
  for tgz in "$PWD/dist-cuda.tar.gz" "$HERE/../dist-cuda.tar.gz"; do
    if [ -f "$tgz" ]; then
      # unpacked outside $OUT, so that the binaries do not travel back with the results
      X=$(mktemp -d "${TMPDIR:-/tmp}/wrnc-dist.XXXXXX")
      tar -xzf "$tgz" -C "$X" && DIST=$X/dist-cuda && break
    fi
  done
fi
[ -n "$DIST" ] && [ -x "$DIST/wrnc" ] || { echo "gpu-check: no dist-cuda with a wrnc binary found (run tools/build-cuda.sh, pass DIST)" >&2; exit 2; }
DIST=$(cd "$DIST" && pwd)
WRNC=$DIST/wrnc
SPECS=$DIST/specs
[ -d "$SPECS" ] || SPECS=$PWD/specs
BENCH_PY=$DIST/tools/torch_wrn_bench.py
[ -f "$BENCH_PY" ] || BENCH_PY=$HERE/torch_wrn_bench.py
log "dist: $DIST"
[ -f "$DIST/BUILD-INFO" ] && cp "$DIST/BUILD-INFO" "$OUT/" && sed 's/^/  /' "$DIST/BUILD-INFO" | tee -a "$OUT/check.log"

# ------------------------------------------------------------------ python with torch
PY=""
for p in ${PYTHON:-} python3 /opt/torch/.venv/bin/python3 python /opt/venv/bin/python /opt/*/bin/python3 "$HOME"/venv/bin/python \
         "$HOME"/.venv/bin/python "$HOME"/*/bin/python3 /venv/bin/python /workspace/*/bin/python3 \
         "$PWD"/.venv/bin/python "$PWD"/venv/bin/python; do
  [ -n "$p" ] || continue
  command -v "$p" >/dev/null 2>&1 || [ -x "$p" ] || continue
  if "$p" -c 'import torch' >/dev/null 2>&1; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
  # last resort: any python3 under /opt, /usr/local, $HOME, /workspace that imports torch
  while read -r p; do
    if "$p" -c 'import torch' >/dev/null 2>&1; then PY=$p; break; fi
  done < <(find /opt /usr/local "$HOME" /workspace -maxdepth 5 -path '*/bin/python3' 2>/dev/null | head -20)
fi
if [ -n "$PY" ]; then
  log "python with torch: $PY ($("$PY" -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null))"
else
  fail "no python that imports torch found (set PYTHON=...): no PyTorch comparison; run-time libraries must come from LD_LIBRARY_PATH"
fi

# ------------------------------------------------------------------ run-time libraries
if [ -n "$PY" ]; then
  SP=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  LIBDIRS=""
  for d in "$SP/nvidia/cu13/lib" "$SP/nvidia/cudnn/lib" "$SP"/nvidia/*/lib; do
    [ -d "$d" ] && case ":$LIBDIRS:" in *":$d:"*) ;; *) LIBDIRS=${LIBDIRS:+$LIBDIRS:}$d ;; esac
  done
  export LD_LIBRARY_PATH=$LIBDIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
log "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
log "GPU: ${GPU:-unknown}"
if ldd "$WRNC" 2>/dev/null | grep -q 'libcuda.so.1 => not found'; then
  # The driver's libcuda.so.1 outside the loader's path (e.g. a /usr/local/nvidia mount).
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 \
           /usr/local/cuda/compat /usr/local/cuda/lib64; do
    if [ -e "$d/libcuda.so.1" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; log "libcuda.so.1 from $d"; break; fi
  done
fi
ldd "$WRNC" > "$OUT/ldd.txt" 2>&1
if grep -q "not found" "$OUT/ldd.txt"; then
  fail "ldd: missing libraries: $(grep 'not found' "$OUT/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
  cat "$OUT/ldd.txt"
  exit 1
fi
grep -E 'libcuda|cudart|cublas|curand|nvrtc|cudnn' "$OUT/ldd.txt" | sed 's/^/  /' | tee -a "$OUT/check.log"

# ------------------------------------------------------------------ 1. tests
for t in "$DIST"/tests/*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  # The GPU tests: cuda_ops (cuDNN op, plan cache, bf16 model step); others are skipped
  # here (they are the CPU suite, run by CI).
  case $n in cuda_ops) ;; *) continue ;; esac
  if WRNC_REQUIRE_GPU=1 run_step "test-$n" 180 "$t" --test-threads=1; then
    log "test $n: $(grep -E '^test result' "$OUT/test-$n.out" | tail -1)"
  else
    fail "test $n (see $OUT/test-$n.out)"
    grep -E '^(test .*FAILED|---- |thread .* panicked)' -A3 "$OUT/test-$n.out" | head -40
  fi
done
ls "$DIST"/tests/cuda_ops >/dev/null 2>&1 || fail "no tests/cuda_ops executable in $DIST"

# ------------------------------------------------------------------ 2. benches and quickstart
# Most important first, so that a slow step only costs the extras at the end.
bench() { # NAME ARGS...
  local name=$1; shift
  run_step "bench-wrnc-$name" 120 "$WRNC" bench "$SPECS/wrn-28-10.yaml" --batch 128 \
    --steps "$BENCH_STEPS" --device cuda --no-tract --json "$@" || fail "wrnc bench $name"
}
torch_bench() { # NAME ARGS...
  local name=$1; shift
  [ -n "$PY" ] || return 0
  run_step "bench-torch-$name" 90 "$PY" "$BENCH_PY" "$@" || fail "PyTorch bench $name"
}
qs() { # NAME DEVICE ARGS...
  local name=$1 dev=$2; shift 2
  rm -rf "$OUT/qs-$name"
  run_step "quickstart-$name" 120 "$WRNC" train "$SPECS/quickstart.yaml" --set train.epochs=2 \
    --device "$dev" --out "$OUT/qs-$name" --quiet "$@" || fail "quickstart $name"
}
bench f32 --set train.precision=f32 --set train.tf32=false
bench bf16 --set train.precision=bf16
torch_bench f32 --precision f32 --tf32 off
torch_bench bf16 --precision bf16
qs cuda cuda
qs cpu cpu
qs cuda-bf16 cuda --set train.precision=bf16
# Extras: TF32 (PyTorch's default for convolutions).
bench f32-tf32 --set train.precision=f32 --set train.tf32=true
torch_bench f32-default --precision f32 --tf32 torch-default

# ------------------------------------------------------------------ summary
SUMPY=${PY:-python3}
"$SUMPY" - "$OUT" "$QS_TOL" "${GPU:-unknown}" > "$OUT/summary.txt" <<'EOF'
import csv, json, os, sys
out, tol, gpu = sys.argv[1], float(sys.argv[2]), sys.argv[3]

def last_json(path):
    """The last JSON object printed in a file (stdout of a bench)."""
    try:
        text = open(path).read()
    except OSError:
        return None
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    try:
        return json.loads(text)
    except ValueError:
        return None

def ips(obj):
    """Training images/s from a bench's JSON (`wrnc bench --json`: {"train": {...}, ...})."""
    if isinstance(obj, dict):
        for k in ("train", "training"):
            if isinstance(obj.get(k), dict):
                r = ips(obj[k])
                if r is not None:
                    return r
        for k in ("images_per_sec", "images_per_second", "img_per_sec", "imgs_per_sec",
                  "throughput"):
            if isinstance(obj.get(k), (int, float)):
                return float(obj[k])
        for v in obj.values():
            r = ips(v)
            if r is not None:
                return r
    if isinstance(obj, list):
        for v in obj:
            r = ips(v)
            if r is not None:
                return r
    return None

def acc(name):
    p = os.path.join(out, f"qs-{name}", "metrics.csv")
    try:
        rows = list(csv.DictReader(open(p)))
        return float(rows[-1]["val_acc"]) if rows else None
    except (OSError, KeyError, ValueError):
        return None

s = {"gpu": gpu, "wrnc": {}, "pytorch": {}, "ratios": {}, "quickstart": {}}
for k in ("f32", "bf16", "f32-tf32"):
    j = last_json(os.path.join(out, f"bench-wrnc-{k}.out"))
    s["wrnc"][k] = {"images_per_sec": ips(j), "raw": j}
for k in ("f32", "bf16", "f32-default"):
    j = last_json(os.path.join(out, f"bench-torch-{k}.out"))
    s["pytorch"][k] = {"images_per_sec": ips(j), "raw": j}
pairs = {"f32 (strict, no TF32)": ("f32", "f32"), "bf16": ("bf16", "bf16"),
         "f32+TF32 vs torch defaults": ("f32-tf32", "f32-default")}
for label, (w, t) in pairs.items():
    a, b = s["wrnc"][w]["images_per_sec"], s["pytorch"][t]["images_per_sec"]
    s["ratios"][label] = (a / b) if a and b else None
q = {n: acc(n) for n in ("cpu", "cuda", "cuda-bf16")}
s["quickstart"] = {"val_acc": q, "tolerance": tol}
ok_f32 = q["cpu"] is not None and q["cuda"] is not None and abs(q["cpu"] - q["cuda"]) <= tol
ok_bf16 = q["cpu"] is not None and q["cuda-bf16"] is not None and abs(q["cpu"] - q["cuda-bf16"]) <= 2 * tol
s["quickstart"]["cuda_matches_cpu"] = ok_f32
s["quickstart"]["bf16_matches_cpu"] = ok_bf16
best = [r for r in s["ratios"].values() if r]
s["goal_at_least_pytorch"] = bool(best) and max(best) >= 1.0
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=2)

f = lambda v: "n/a" if v is None else f"{v:,.0f}"
print(f"GPU: {gpu}")
print("WRN-28-10, batch 128, training images/s")
print(f"  wrnc    f32 {f(s['wrnc']['f32']['images_per_sec'])}   f32+TF32 {f(s['wrnc']['f32-tf32']['images_per_sec'])}   bf16 {f(s['wrnc']['bf16']['images_per_sec'])}")
print(f"  PyTorch f32 {f(s['pytorch']['f32']['images_per_sec'])}   defaults(TF32 conv) {f(s['pytorch']['f32-default']['images_per_sec'])}   bf16 {f(s['pytorch']['bf16']['images_per_sec'])}")
for k in ("f32", "bf16", "f32-tf32"):
    raw = s["wrnc"][k]["raw"]
    rep = None
    if isinstance(raw, dict):
        rep = raw.get("precision") or raw.get("compute_dtype") or (raw.get("train") or {}).get("precision")
    if rep is None:
        print(f"  note: wrnc bench {k}: the JSON does not report its precision (is --set train.precision honoured?)")
for label, r in s["ratios"].items():
    print(f"  ratio wrnc/PyTorch {label}: {'n/a' if r is None else f'{r:.2f}'}")
print(f"quickstart 2 epochs val_acc: cpu {q['cpu']}  cuda {q['cuda']}  cuda-bf16 {q['cuda-bf16']}  (tol {tol})")
print(f"  CUDA f32 matches CPU: {ok_f32}   bf16 matches CPU: {ok_bf16}")
sys.exit(0 if ok_f32 and ok_bf16 else 3)
EOF
rc=$?
cat "$OUT/summary.txt" | tee -a "$OUT/check.log"
[ $rc -eq 0 ] || fail "quickstart accuracy CPU vs CUDA (summary exit $rc)"
log "done in $(( $(date +%s) - T0 ))s; results in $OUT"
if [ $FAIL -ne 0 ]; then log "FAILED:"; sed 's/^/  /' "$OUT/failures.txt" | tee -a "$OUT/check.log"; exit 1; fi
log "PASSED"
