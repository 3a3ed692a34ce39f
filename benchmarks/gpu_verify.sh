#!/usr/bin/env bash
# gpu_verify.sh -- one command per device call: the GPU verification of issue 6, resumable.
#
#   bash benchmarks/gpu_verify.sh [options]          (run from anywhere; works in the repo root)
#
# Each call does what fits in --budget seconds, keeps its state under $GPU_VERIFY_STATE
# (default /tmp/gpuverify; survives only between back-to-back device calls), and always ends
# by writing the cumulative report into $OUT (the device tool's folder; else STATE/out):
#   gpu_report.json / .md / .html   rnndeploy results merged with `rnndeploy report`, targets,
#                                   environment, exact commands
#   gpu_summary.json                units, builds, target checks, versions (machine-readable)
#   gpu_logs.tar.xz                 every log, unit record, raw result and engine sidecar
#
# Order of work (each step skipped once done):
#   1. the prepared folder (.gpuprep from benchmarks/gpu_prepare.py, carried) -> STATE/prep, sha256-checked
#   2. the trt86 kit: unpack /tmp/trt86-parts into /tmp/trt86 if needed, then its smoke test (once)
#   3. onnxruntime-gpu from /tmp/ortgpu-parts when those pieces were sent (optional)
#   4. tier 1 (sine-lstm: fast feedback), TensorRT side then torch side
#   5. pytest -m gpu under the kit's Python 3.9 and under the device's Python 3.12 (once each)
#   6. tiers 2.. (the other LSTM/GRU models; then SimpleRNN, sequence output, seq2seq, the second
#      FP16 policy and the hoisted rewrite; then streaming forms) until the budget is spent
#   7. the report (always)
#
# Options:
#   --budget S      seconds this call may use, from its start (default 560; the device allows 600)
#   --prep DIR      the prepared folder to use (default: .gpuprep in the repo, when it was carried)
#   --reserve S     seconds kept for the report at the end (default 45)
#   --models A,B    only these prepared models (names as in .gpuprep/manifest.json)
#   --max-tier N    stop after tier N (default: all)
#   --no-pytest     skip step 5 (capped at $PYTEST_KIT_S=200 s and $PYTEST_TORCH_S=120 s otherwise)
#   --retry-failed  run failed units again (after a fix)
#   --dry-run       CPU box: the staged kit's Python 3.9 (+ .devkit/py39extra's onnxruntime as the
#                   TensorRT stand-in) and .venv's Python in place of the device's; state in
#                   /tmp/gpuverify-dryrun; reports say DRY RUN. Never results.
set -uo pipefail

ARGS="$*"
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
BUDGET=560 RESERVE=45 MODELS="" MAXTIER=9 PYTEST=1 RETRY="" DRY=0 SRC_PREP=$REPO/.gpuprep
PYTEST_KIT_S=${PYTEST_KIT_S:-200} PYTEST_TORCH_S=${PYTEST_TORCH_S:-120}   # caps: the benchmark matters more
while [ $# -gt 0 ]; do
  case $1 in
    --budget) BUDGET=$2; shift 2 ;;
    --prep) SRC_PREP=$2; shift 2 ;;
    --reserve) RESERVE=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --max-tier) MAXTIER=$2; shift 2 ;;
    --no-pytest) PYTEST=0; shift ;;
    --retry-failed) RETRY=--retry-failed; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_verify.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
DEADLINE=$((T0 + BUDGET - RESERVE))
if [ $DRY = 1 ]; then
  ROOT=${GPU_VERIFY_STATE:-/tmp/gpuverify-dryrun}
  KITPY=${TRT86_PY:-$REPO/.devkit/stage/trt86/bin/python3.9}
  KIT_PP="$REPO:$REPO/.devkit/py39extra"     # onnxruntime 1.19 for the stand-in rows
  TORCHPY=${TORCH_PY:-$REPO/.venv/bin/python}
  DRYFLAG=--dry-run
else
  ROOT=${GPU_VERIFY_STATE:-/tmp/gpuverify}
  KITPY=${TRT86_PY:-/tmp/trt86/bin/python3.9}
  KIT_PP="$REPO"
  TORCHPY=${TORCH_PY:-/opt/torch/.venv/bin/python3}
  DRYFLAG=
fi
STATE=$ROOT/state PREP=$ROOT/prep DONE=$ROOT/done
OUTDIR=${OUT:-$ROOT/out}
LOGS=$STATE/logs
mkdir -p "$LOGS" "$DONE" "$OUTDIR"
TORCH_PP="$REPO"
MODELARG=(); [ -n "$MODELS" ] && MODELARG=(--models "$MODELS")

say() { printf '[gpu_verify.sh] %s %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOGS/driver.log" >&2; }
left() { echo $((DEADLINE - $(date +%s))); }
record() { printf '%s  %s\n' "$(date -u +%FT%TZ)" "$*" >> "$STATE/commands.txt"; }
# run NAME TIMEOUT CMD...: logged, recorded, bounded; returns the command's status
run() {
  local name=$1 limit=$2; shift 2
  record "${PYTHONPATH:+PYTHONPATH=$PYTHONPATH }$*"
  say "$name: $* (limit ${limit}s)"
  timeout -s TERM -k 15 "$limit" "$@" > >(tee -a "$LOGS/$name.log") 2>&1
  local rc=$?
  say "$name: exit $rc"
  return $rc
}

record "bash benchmarks/gpu_verify.sh $ARGS (budget ${BUDGET}s, reserve ${RESERVE}s, dry=$DRY)"
say "start: budget ${BUDGET}s, deadline in $(left)s; state $ROOT; out $OUTDIR"

# 1. the prepared folder --------------------------------------------------------------------------
if [ -f "$SRC_PREP/manifest.json" ]; then
  if ! cmp -s "$SRC_PREP/manifest.json" "$PREP/manifest.json" 2>/dev/null; then
    rm -rf "$PREP.tmp" && cp -a "$SRC_PREP" "$PREP.tmp" && rm -rf "$PREP" && mv "$PREP.tmp" "$PREP"
    rm -f "$DONE/prep-verified"
    say "prepared folder copied to $PREP ($(du -sh "$PREP" | cut -f1))"
  fi
fi
[ -f "$PREP/manifest.json" ] || { say "no prepared folder: carry .gpuprep (benchmarks/gpu_prepare.py)"; exit 2; }
if [ ! -e "$DONE/prep-verified" ]; then
  PYTHONPATH="$REPO/benchmarks" "$TORCHPY" -c 'import sys, gpu_common as g
p = g.verify_manifest(sys.argv[1]); print("\n".join(p[:20]) or "prepared folder intact"); sys.exit(1 if p else 0)' "$PREP" \
    >> "$LOGS/driver.log" 2>&1 && touch "$DONE/prep-verified" || { say "prepared folder damaged (see $LOGS/driver.log)"; exit 2; }
fi

# 2. the trt86 kit ---------------------------------------------------------------------------------
KIT_OK=1
if [ $DRY = 0 ] && [ ! -x "$KITPY" ]; then
  if [ -f /tmp/trt86-parts/device-setup.sh ]; then
    run kit-install $(( $(left) > 30 ? $(left) : 30 )) bash /tmp/trt86-parts/device-setup.sh install || KIT_OK=0
  else
    KIT_OK=0
  fi
fi
[ -x "$KITPY" ] || { KIT_OK=0; say "no trt86 kit at $KITPY: the TensorRT side is skipped (send the parts first)"; }
if [ $KIT_OK = 1 ] && [ ! -e "$DONE/kit-smoke" ]; then
  if [ $DRY = 1 ]; then
    run kit-smoke 120 "$KITPY" "$(dirname "$(dirname "$KITPY")")/smoke/trt_smoke.py"; rc=$?
  else
    lim=$(( $(left) < 180 ? $(left) : 180 )); [ $lim -ge 30 ] || lim=30
    run kit-smoke $lim bash /tmp/trt86-parts/device-setup.sh smoke; rc=$?
  fi
  echo "$rc" > "$DONE/kit-smoke"
  [ $DRY = 1 ] && [ $rc = 2 ] && say "kit smoke: CPU part passed, no GPU (expected in a dry run)"
fi

# 3. onnxruntime-gpu (optional) ---------------------------------------------------------------------
if [ $DRY = 0 ]; then
  if [ ! -d /tmp/ortgpu/onnxruntime ] && [ -f /tmp/ortgpu-parts/SHA256SUMS ]; then
    ( cd /tmp/ortgpu-parts && sha256sum -c --quiet SHA256SUMS ) >> "$LOGS/ortgpu.log" 2>&1 \
      && whl=$(sed -n 's/^wheel=//p' /tmp/ortgpu-parts/WHEEL.txt) \
      && cat /tmp/ortgpu-parts/part-* > "/tmp/$whl" \
      && run ortgpu-install 180 "$TORCHPY" -m pip install -q --no-deps --no-index --no-compile --target /tmp/ortgpu "/tmp/$whl" \
      || say "onnxruntime-gpu pieces incomplete or install failed (see $LOGS/ortgpu.log): no ort-cuda rows"
  fi
  [ -d /tmp/ortgpu/onnxruntime ] && TORCH_PP="/tmp/ortgpu:$REPO"
fi

# 4-6. the work ------------------------------------------------------------------------------------------
side() {  # side trt|torch TIER
  local s=$1 tier=$2 py pp tries=0 rc
  if [ "$s" = trt ]; then py=$KITPY; pp=$KIT_PP; [ $KIT_OK = 1 ] || return 0; else py=$TORCHPY; pp=$TORCH_PP; fi
  while [ "$(left)" -gt 15 ] && [ $tries -lt 3 ]; do
    tries=$((tries + 1))
    # the script stops starting units at the deadline; this limit only catches one that overruns it
    PYTHONPATH="$pp" PYTHONUNBUFFERED=1 run "run-$s-tier$tier" $(( $(left) + 15 )) "$py" benchmarks/gpu_verify.py run \
      --side "$s" --prep "$PREP" --state "$STATE" --deadline "$DEADLINE" --max-tier "$tier" ${MODELARG[@]+"${MODELARG[@]}"} $RETRY $DRYFLAG
    rc=$?
    # 0: slice done; 124/137/143: the deadline; anything else: the process died (a crash is marked on restart)
    case $rc in 0|124|137|143) return 0 ;; esac
    say "$s side died (exit $rc); restarting it"
  done
}
pytests() {
  local files
  files=$(grep -l 'pytest.mark.gpu' tests/test_*.py | tr '\n' ' ')
  if [ $KIT_OK = 1 ] && [ ! -e "$DONE/pytest-kit" ] && [ "$(left)" -gt 60 ]; then
    lim=$(( $(left) < PYTEST_KIT_S ? $(left) : PYTEST_KIT_S ))
    PYTHONPATH="$KIT_PP" run pytest-kit $lim "$KITPY" -m pytest -m gpu -p no:cacheprovider -v -rfEs --durations=15 \
      --junitxml="$LOGS/pytest-kit.xml" $files
    echo $? > "$DONE/pytest-kit"
  fi
  if [ ! -e "$DONE/pytest-torch" ] && [ "$(left)" -gt 45 ]; then
    lim=$(( $(left) < PYTEST_TORCH_S ? $(left) : PYTEST_TORCH_S ))
    PYTHONPATH="$TORCH_PP" run pytest-torch $lim "$TORCHPY" -m pytest -m gpu -p no:cacheprovider -v -rfEs --durations=15 \
      --junitxml="$LOGS/pytest-torch.xml" $files
    echo $? > "$DONE/pytest-torch"
  fi
}
for tier in 1 2 3 4 5 6; do
  [ "$tier" -le "$MAXTIER" ] || break
  [ "$(left)" -gt 15 ] || break
  side trt "$tier"
  side torch "$tier"
  if [ "$tier" = 1 ] && [ $PYTEST = 1 ]; then pytests; fi
done

# 7. the report -------------------------------------------------------------------------------------------
# it must end inside the call: by BUDGET + 25 s (the device allows 600 s for a 560 s budget), at least 30 s
REPORT_S=$(( T0 + BUDGET + 25 - $(date +%s) )); [ $REPORT_S -ge 30 ] || REPORT_S=30; [ $REPORT_S -le 150 ] || REPORT_S=150
PYTHONPATH="$TORCH_PP" run report $REPORT_S "$TORCHPY" benchmarks/gpu_verify.py report --prep "$PREP" --state "$STATE" \
  --out "$OUTDIR" ${MODELARG[@]+"${MODELARG[@]}"} $DRYFLAG \
  || PYTHONPATH="$KIT_PP" run report-kit 60 "$KITPY" benchmarks/gpu_verify.py report --prep "$PREP" --state "$STATE" \
       --out "$OUTDIR" ${MODELARG[@]+"${MODELARG[@]}"} $DRYFLAG
for f in kit-smoke pytest-kit pytest-torch; do [ -e "$DONE/$f" ] && say "$f: exit $(cat "$DONE/$f")"; done
grep -E '^## (Engine builds|FP16 parity|Argmax|Latency stretch)|^[0-9]+ done' "$OUTDIR/gpu_report.md" 2>/dev/null
say "done in $(( $(date +%s) - T0 ))s; files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
