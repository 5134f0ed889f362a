#!/usr/bin/env bash
# Runs wrnc's cargo-fuzz targets (fuzz/) for a bounded time each.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s; spec cifar weights onnx idx)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the nightly features
# cargo-fuzz uses are enabled with RUSTC_BOOTSTRAP=1. Seeds: specs/ and
# tests/fixtures/regressions/TARGET/; new corpus entries go to fuzz/corpus/TARGET (not
# committed); a crash is saved in fuzz/artifacts/TARGET/ and fails the script. Commit each
# crashing input to tests/fixtures/regressions/TARGET/ once fixed: tests/reliability_fuzz.rs
# replays that directory in every `cargo test`.
#
# Environment: FUZZ_SANITIZER (default address; `none` builds faster), FUZZ_JOBS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(spec cifar weights onnx idx)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "tools/fuzz.sh: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
  exit 2
fi
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
sanitizer="${FUZZ_SANITIZER:-address}"
jobs="${FUZZ_JOBS:-1}"

status=0
for t in "${targets[@]}"; do
  case "$t" in
    spec) seeds=(tests/fixtures/regressions/spec specs) ;;
    cifar | weights | onnx | idx) seeds=("tests/fixtures/regressions/$t") ;;
    *) echo "tools/fuzz.sh: unknown target $t (spec, cifar, weights, onnx, idx)" >&2; exit 2 ;;
  esac
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for ${secs}s"
  # -rss_limit_mb/-malloc_limit_mb: unbounded allocation is a finding; -timeout: so is a slow
  # input (the specs' 1 MiB limit and 128-level nesting keep every legal input far below it).
  flags=(-max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10
    -print_final_stats=1)
  if [ "$jobs" -gt 1 ]; then
    flags+=(-jobs="$jobs" -workers="$jobs")
  fi
  if ! cargo fuzz run --debug-assertions --sanitizer "$sanitizer" "$t" \
    "fuzz/corpus/$t" "${seeds[@]}" -- "${flags[@]}"; then
    echo "tools/fuzz.sh: target $t FAILED; the input is in fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit $status
