#!/usr/bin/env bash
# GPU check of a CUDA build of wrnc, run on a GPU machine (H100/H200, driver 580+) where
# PyTorch (cu13 wheels) is installed. Needs no Rust: it uses what tools/build-cuda.sh put in
# dist-cuda/ (the wrnc binary, the test executables, specs/, this script, the PyTorch bench).
#
#   1. run-time libraries: CUDA 13 cudart/cublas/cublasLt/curand/nvrtc and cuDNN 9 from the
#      PyTorch venv's nvidia wheels (LD_LIBRARY_PATH), checked with ldd
#   2. the cuDNN custom-op and mixed-precision tests (WRNC_REQUIRE_GPU=1: no silent skip)
#   3. `wrnc bench` WRN-28-10 and WRN-16-4, batch 128: f32, bf16 (and f32 with TF32), with
#      the cuDNN algorithm of every plan (deterministic by default)
#   4. PyTorch eager WRN-28-10 and WRN-16-4 on the same GPU (tools/torch_wrn_bench.py): f32
#      strict, bf16 autocast (and PyTorch's defaults: TF32 convolutions); wrnc/PyTorch ratios
#   5. reproducibility: two identical short CUDA trainings (quickstart, 2 epochs) whose
#      steps.csv and final weights must be bit-identical
#   6. CPU vs CUDA: the CUDA runs' validation accuracy (f32, bf16) must lie in the prediction
#      interval of CPU runs of the same spec under several seeds (seed-to-seed spread, t
#      quantile at alpha = 0.001), not within a fixed tolerance that chance can break
#   7. GPU peak memory (nvidia-smi, sampled every 200 ms) of every step
#
# Everything runs in a working folder of its own ($WRNC_CHECK_WORK, default a fresh
# temporary folder); only four files are copied into $OUT (default ./gpu-check-out):
# summary.txt, summary.json, failures.txt (empty when all passed) and logs.tgz (every log,
# the benches' JSON, the runs' csv/json files; no weights). The summary is printed last.
# Fits in 8 minutes (each step has a timeout; a global budget skips what would overrun).
# Exit status: 0 when every correctness check passed (throughput is reported, not enforced).
#
# Usage: tools/gpu-check.sh [DIST]   (DIST: the dist-cuda folder; by default the folder this
#        script was copied into by build-cuda.sh, or ./dist-cuda, or a dist-cuda.tar.gz here)
# Environment: PYTHON (a python with torch), OUT, WRNC_CHECK_WORK, WRNC_CHECK_BUDGET_S
#   (default 450), BENCH_STEPS (default 20), CPU_SEEDS (CPU runs for the accuracy check,
#   default 6).
set -uo pipefail

T0=$(date +%s)
BUDGET=${WRNC_CHECK_BUDGET_S:-450}
BENCH_STEPS=${BENCH_STEPS:-20}
CPU_SEEDS=${CPU_SEEDS:-6}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WRNC_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/wrnc-gpu-check.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
: > "$WORK/failures.txt"
FAIL=0
FINISHED=0
log() { printf '[gpu-check %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$WORK/check.log" >&2; }
fail() { log "FAIL: $*"; FAIL=1; echo "$*" >> "$WORK/failures.txt"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

# GPU memory sampler: the peak of nvidia-smi's memory.used (MiB) while a step runs.
SAMPLER=""
mem_start() {
  : > "$WORK/mem-now.txt"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
      > "$WORK/mem-now.txt" 2>/dev/null &
    SAMPLER=$!
  fi
}
mem_stop() { # NAME: appends "NAME<TAB>peak MiB" to mem.tsv
  if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=""; fi
  local peak
  peak=$(awk 'BEGIN{m=""} $1+0==$1 {if (m=="" || $1>m) m=$1} END{print m}' "$WORK/mem-now.txt")
  printf '%s\t%s\n' "$1" "${peak:-}" >> "$WORK/mem.tsv"
}

# run_step NAME TIMEOUT CMD...: stdout to $WORK/NAME.out, stderr to $WORK/NAME.err
run_step() {
  local name=$1 t=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 15 ]; then log "skip $name: out of time budget"; echo skipped > "$WORK/$name.err"; return 124; fi
  [ "$t" -gt "$l" ] && t=$l
  log "$name (timeout ${t}s): $*"
  local s rc
  s=$(date +%s)
  mem_start
  timeout -k 5 "$t" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
  rc=$?
  mem_stop "$name"
  log "$name: exit $rc after $(( $(date +%s) - s ))s"
  return $rc
}

# Copies the four result files into $OUT and prints the summary last; also on an early exit
# or a kill, so that whatever was learnt comes back.
finish() {
  [ "$FINISHED" = 1 ] && return
  FINISHED=1
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  [ -f "$WORK/summary.txt" ] || echo "gpu-check stopped before its summary (see logs.tgz: check.log)" > "$WORK/summary.txt"
  [ -f "$WORK/summary.json" ] || echo '{"complete": false}' > "$WORK/summary.json"
  ( cd "$WORK" && find . -type f \( -name '*.out' -o -name '*.err' -o -name '*.log' -o -name '*.txt' \
      -o -name '*.tsv' -o -name '*.csv' -o -name '*.json' -o -name 'BUILD-INFO' \) -size -20M -print0 \
      | tar -czf "$OUT/logs.tgz" --null -T - ) 2>/dev/null || true
  cp "$WORK/summary.txt" "$WORK/summary.json" "$WORK/failures.txt" "$OUT/" 2>/dev/null
  echo
  echo "==================== gpu-check summary ($OUT) ===================="
  cat "$WORK/summary.txt"
  if [ -s "$WORK/failures.txt" ]; then echo "FAILED:"; sed 's/^/  /' "$WORK/failures.txt"; else echo "PASSED"; fi
}
trap finish EXIT
trap 'log "interrupted"; fail "interrupted by a signal"; exit 130' INT TERM

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
[ -f "$DIST/BUILD-INFO" ] && cp "$DIST/BUILD-INFO" "$WORK/" && sed 's/^/  /' "$DIST/BUILD-INFO" | tee -a "$WORK/check.log" >&2

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
nvidia-smi > "$WORK/nvidia-smi.txt" 2>&1 || true
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
log "GPU: ${GPU:-unknown}"
if ldd "$WRNC" 2>/dev/null | grep -q 'libcuda.so.1 => not found'; then
  # The driver's libcuda.so.1 outside the loader's path (e.g. a /usr/local/nvidia mount).
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 \
           /usr/local/cuda/compat /usr/local/cuda/lib64; do
    if [ -e "$d/libcuda.so.1" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; log "libcuda.so.1 from $d"; break; fi
  done
fi
ldd "$WRNC" > "$WORK/ldd.txt" 2>&1
if grep -q "not found" "$WORK/ldd.txt"; then
  fail "ldd: missing libraries: $(grep 'not found' "$WORK/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
  cat "$WORK/ldd.txt" >&2
  exit 1
fi
grep -E 'libcuda|cudart|cublas|curand|nvrtc|cudnn' "$WORK/ldd.txt" | sed 's/^/  /' | tee -a "$WORK/check.log" >&2

# ------------------------------------------------------------------ 1. tests
for t in "$DIST"/tests/*; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  # The GPU tests: cuda_ops (cuDNN op, plan cache, bf16 model step); others are skipped
  # here (they are the CPU suite, run by CI).
  case $n in cuda_ops) ;; *) continue ;; esac
  if WRNC_REQUIRE_GPU=1 run_step "test-$n" 180 "$t" --test-threads=1; then
    log "test $n: $(grep -E '^test result' "$WORK/test-$n.out" | tail -1)"
  else
    fail "test $n (see $WORK/test-$n.out)"
    grep -E '^(test .*FAILED|---- |thread .* panicked)' -A3 "$WORK/test-$n.out" | head -40 >&2
  fi
done
ls "$DIST"/tests/cuda_ops >/dev/null 2>&1 || fail "no tests/cuda_ops executable in $DIST"

# ------------------------------------------------------------------ 2. benches and trainings
# Most important first, so that a slow step only costs the extras at the end.
bench() { # NAME SPEC ARGS...
  local name=$1 spec=$2; shift 2
  run_step "bench-wrnc-$name" 120 "$WRNC" bench "$SPECS/$spec.yaml" --batch 128 \
    --steps "$BENCH_STEPS" --device cuda --no-tract --json "$@" || fail "wrnc bench $name"
}
torch_bench() { # NAME ARGS...
  local name=$1; shift
  [ -n "$PY" ] || return 0
  run_step "bench-torch-$name" 90 "$PY" "$BENCH_PY" --batch 128 "$@" || fail "PyTorch bench $name"
}
qs() { # NAME DEVICE ARGS...: quickstart for 2 epochs into $WORK/qs-NAME
  local name=$1 dev=$2; shift 2
  rm -rf "$WORK/qs-$name"
  run_step "quickstart-$name" 120 "$WRNC" train "$SPECS/quickstart.yaml" --set train.epochs=2 \
    --device "$dev" --out "$WORK/qs-$name" --quiet "$@" || fail "quickstart $name"
}
bench 28-10-f32 wrn-28-10 --set train.precision=f32 --set train.tf32=false
bench 28-10-bf16 wrn-28-10 --set train.precision=bf16
torch_bench 28-10-f32 --depth 28 --width 10 --precision f32 --tf32 off
torch_bench 28-10-bf16 --depth 28 --width 10 --precision bf16
qs cuda cuda
qs cuda-again cuda
qs cuda-bf16 cuda --set train.precision=bf16
for i in $(seq 0 $(( CPU_SEEDS - 1 ))); do
  # seed 0 is the spec's own (the CUDA runs'); the others measure the seed-to-seed spread
  qs "cpu-$i" cpu --set "train.seed=$i"
done
bench 16-4-f32 wrn-16-4 --set train.precision=f32 --set train.tf32=false
bench 16-4-bf16 wrn-16-4 --set train.precision=bf16
torch_bench 16-4-f32 --depth 16 --width 4 --precision f32 --tf32 off
torch_bench 16-4-bf16 --depth 16 --width 4 --precision bf16
# Extras: TF32 (PyTorch's default for convolutions).
bench 28-10-f32-tf32 wrn-28-10 --set train.precision=f32 --set train.tf32=true
torch_bench 28-10-f32-default --depth 28 --width 10 --precision f32 --tf32 torch-default

# ------------------------------------------------------------------ summary
SUMPY=${PY:-python3}
"$SUMPY" - "$WORK" "${GPU:-unknown}" "$CPU_SEEDS" > "$WORK/summary.txt" 2> "$WORK/summary.err" <<'EOF'
import csv, json, math, os, statistics, struct, sys
work, gpu, cpu_seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
ALPHA = 0.001  # false-alarm rate of the accuracy check

def last_json(path):
    """The JSON object a bench printed (pretty-printed or on one line)."""
    try:
        text = open(path).read()
    except OSError:
        return None
    start = text.find("{")
    while start >= 0:
        try:
            return json.loads(text[start:])
        except ValueError:
            pass
        start = text.find("{", start + 1)
    return None

def ips(obj):
    """Training images/s of a bench's JSON (wrnc: {"train": {"images_per_sec"}}; torch: flat)."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("train"), dict):
        return obj["train"].get("images_per_sec")
    for k in ("images_per_sec", "images_per_second", "img_per_sec", "throughput"):
        if isinstance(obj.get(k), (int, float)):
            return float(obj[k])
    return None

def val_acc(name):
    try:
        rows = list(csv.DictReader(open(os.path.join(work, f"qs-{name}", "metrics.csv"))))
        return float(rows[-1]["val_acc"]) if rows else None
    except (OSError, KeyError, ValueError):
        return None

def tensors(path):
    """{name: (dtype, shape, bytes)} of a safetensors file, metadata left out."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}

def same_run(a, b):
    """(steps.csv identical, final weights bit-identical, detail)."""
    pa, pb = os.path.join(work, f"qs-{a}"), os.path.join(work, f"qs-{b}")
    try:
        sa, sb = open(os.path.join(pa, "steps.csv")).read(), open(os.path.join(pb, "steps.csv")).read()
    except OSError as e:
        return None, None, f"missing steps.csv ({e})"
    steps_equal = sa == sb and len(sa.splitlines()) > 1
    detail = "" if steps_equal else next(
        (f"first difference at line {i + 1}: {x!r} vs {y!r}"
         for i, (x, y) in enumerate(zip(sa.splitlines(), sb.splitlines())) if x != y),
        "different length")
    try:
        ta, tb = tensors(os.path.join(pa, "last.safetensors")), tensors(os.path.join(pb, "last.safetensors"))
        diff = sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))
        weights_equal = not diff
        if diff:
            detail += f"; {len(diff)} tensors differ, e.g. {diff[0]}"
    except (OSError, ValueError, KeyError) as e:
        weights_equal = None
        detail += f"; weights not compared ({e})"
    return steps_equal, weights_equal, detail

def t_quantile(p, dof):
    """Student t quantile by bisection on the regularised incomplete beta (no scipy)."""
    def cdf(t):
        x = dof / (dof + t * t)
        # I_x(dof/2, 1/2) by continued fraction (Numerical Recipes' betacf)
        a, b = dof / 2.0, 0.5
        lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        front = math.exp(lbeta + a * math.log(x) + b * math.log(1 - x)) / a
        f, c, d = 1.0, 1.0, 0.0
        for i in range(200):
            m = i // 2
            if i == 0:
                num = 1.0
            elif i % 2 == 0:
                num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            else:
                num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > 1e-30 else 1e-30)
            c = 1.0 + num / c if abs(c) > 1e-30 else 1e-30
            f *= c * d
            if abs(1.0 - c * d) < 1e-12:
                break
        tail = front * (f - 1.0) / 2.0
        return 1.0 - tail if t > 0 else tail
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2

s = {"complete": True, "gpu": gpu, "wrnc": {}, "pytorch": {}, "ratios": {}, "peak_gpu_mib": {}}
for k in ("28-10-f32", "28-10-bf16", "28-10-f32-tf32", "16-4-f32", "16-4-bf16"):
    j = last_json(os.path.join(work, f"bench-wrnc-{k}.out"))
    s["wrnc"][k] = {"images_per_sec": ips(j),
                    "deterministic": (j or {}).get("deterministic"),
                    "cudnn_plans": len((j or {}).get("cudnn_plans") or [])}
for k in ("28-10-f32", "28-10-bf16", "28-10-f32-default", "16-4-f32", "16-4-bf16"):
    s["pytorch"][k] = {"images_per_sec": ips(last_json(os.path.join(work, f"bench-torch-{k}.out")))}
pairs = {"WRN-28-10 f32 (strict)": ("28-10-f32", "28-10-f32"),
         "WRN-28-10 bf16": ("28-10-bf16", "28-10-bf16"),
         "WRN-28-10 f32+TF32 vs torch defaults": ("28-10-f32-tf32", "28-10-f32-default"),
         "WRN-16-4 f32 (strict)": ("16-4-f32", "16-4-f32"),
         "WRN-16-4 bf16": ("16-4-bf16", "16-4-bf16")}
for label, (w, t) in pairs.items():
    a, b = s["wrnc"][w]["images_per_sec"], s["pytorch"][t]["images_per_sec"]
    s["ratios"][label] = (a / b) if a and b else None
try:
    for line in open(os.path.join(work, "mem.tsv")):
        name, _, peak = line.rstrip("\n").partition("\t")
        s["peak_gpu_mib"][name] = int(float(peak)) if peak else None
except OSError:
    pass

# Reproducibility: two identical CUDA runs.
steps_eq, weights_eq, detail = same_run("cuda", "cuda-again")
s["reproducible"] = {"steps_csv_identical": steps_eq, "weights_identical": weights_eq, "detail": detail}
ok_repro = bool(steps_eq) and bool(weights_eq)

# CPU vs CUDA: prediction interval of a new run from the CPU runs' seed-to-seed spread.
cpu = [a for a in (val_acc(f"cpu-{i}") for i in range(cpu_seeds)) if a is not None]
acc = {"cpu": cpu, "cuda": val_acc("cuda"), "cuda-bf16": val_acc("cuda-bf16")}
check = {"val_acc": acc, "alpha": ALPHA}
ok_acc = {}
if len(cpu) >= 3:
    mean, sd = statistics.mean(cpu), statistics.stdev(cpu)
    # floor: one validation image's worth of spread when the CPU runs happen to agree
    sd = max(sd, 0.005)
    t = t_quantile(1 - ALPHA / 2, len(cpu) - 1)
    half = t * sd * math.sqrt(1 + 1 / len(cpu))
    check.update({"cpu_mean": mean, "cpu_sd": sd, "t": t, "interval": [mean - half, mean + half]})
    for k in ("cuda", "cuda-bf16"):
        ok_acc[k] = acc[k] is not None and abs(acc[k] - mean) <= half
else:
    check["error"] = f"only {len(cpu)} CPU runs finished (need 3)"
    ok_acc = {"cuda": False, "cuda-bf16": False}
check["pass"] = ok_acc
s["cpu_vs_cuda"] = check
json.dump(s, open(os.path.join(work, "summary.json"), "w"), indent=2)

f = lambda v: "n/a" if v is None else f"{v:,.0f}"
r = lambda v: "n/a" if v is None else f"{v:.2f}"
print(f"GPU: {gpu}")
print("training images/s, batch 128 (wrnc | PyTorch eager | ratio)")
for label, (w, t) in pairs.items():
    print(f"  {label:<38} {f(s['wrnc'][w]['images_per_sec']):>8} | {f(s['pytorch'][t]['images_per_sec']):>8} | {r(s['ratios'][label])}")
print("cuDNN plans per bench (deterministic): " + ", ".join(
    f"{k} {v['cudnn_plans']} ({v['deterministic']})" for k, v in s["wrnc"].items()))
print("GPU peak memory (MiB): " + ", ".join(
    f"{k} {v}" for k, v in s["peak_gpu_mib"].items() if k.startswith(("bench", "quickstart-cuda", "test"))))
print(f"reproducible (2 identical CUDA runs): steps.csv {steps_eq}, weights {weights_eq} {detail}")
if "interval" in check:
    lo, hi = check["interval"]
    print(f"quickstart 2 epochs val_acc: CPU seeds {', '.join(f'{a:.4f}' for a in cpu)} -> "
          f"interval [{lo:.4f}, {hi:.4f}] (alpha {ALPHA})")
print(f"  CUDA f32 {acc['cuda']} in interval: {ok_acc.get('cuda')}   "
      f"bf16 {acc['cuda-bf16']} in interval: {ok_acc.get('cuda-bf16')}")
bad = [k for k, v in ok_acc.items() if not v] + ([] if ok_repro else ["reproducible"])
sys.exit(0 if not bad else 3)
EOF
rc=$?
[ $rc -eq 0 ] || fail "summary checks (reproducibility / CPU vs CUDA accuracy; exit $rc, see summary.txt)"
log "done in $(( $(date +%s) - T0 ))s"
[ $FAIL -ne 0 ] && exit 1
exit 0
