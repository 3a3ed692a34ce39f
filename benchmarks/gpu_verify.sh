#!/usr/bin/env bash
# gpu_verify.sh -- the device side of the GPU verification (benchmarks/GPU_RUNBOOK.md).
#
#   bash benchmarks/gpu_verify.sh arrive            every call that carries a kit part (returns in seconds)
#   bash benchmarks/gpu_verify.sh finish --budget S the call with the last part: TensorRT work, then the report
#   bash benchmarks/gpu_verify.sh status            what has arrived, what runs, what is done
#
# arrive: copies the carried prepared folder (.gpuprep) to the state folder and checks it; checks
#   the carried kit parts (.gpuship/part-NNN) and stashes them; starts, once, two background
#   processes in their own sessions (they outlive the call, as setsid processes do on the device):
#     - the kit assembler: unpacks the kit while its parts arrive, into $ROOT/trt86;
#     - the torch side: nvidia-smi, the torch-cuDNN units (parity vs the goldens, latency eager and
#       CUDA graph, FP32 and FP16) of tiers 1-2, `pytest -m gpu` under the device's Python, then
#       the torch units of the later tiers.
#   So the GPU works while the next parts travel.
# finish: stashes the last part, waits for the kit, runs its smoke test, then the TensorRT side by
#   tiers (1: sine-lstm + charlm FP16/FP32 engines, parity, latency; 2: sentiment, sunspots, g2p;
#   then `pytest -m gpu` under the kit; 3: the second FP16 policy, the hoisted input projection,
#   layer timing, sampling/decoding agreement; 4-5: the other models and streaming forms). The
#   TensorRT side has priority on the GPU lock; the torch side runs between its units only when
#   it is waiting. Last, the report (gpu_report.md/.json/.html, gpu_summary.json, gpu_logs.tar.xz)
#   into $OUT. A second `finish` in a later call continues where the first stopped.
#
# Options: --budget S (finish: seconds from its start, default 540; the report is started by
#   S - 45), --models A,B, --max-tier N, --retry-failed, --no-pytest, --prep DIR and --ship DIR
#   (the carried folders, default .gpuprep and .gpuship).
# Environment: CAMPAIGN_ROOT (default /tmp: holds trt86-parts/, trt86/, gpuverify/), TORCH_PY
#   (default /opt/torch/.venv/bin/python3), OUT (the device tool's result folder), and
#   CAMPAIGN_REHEARSAL=1 (the rehearsal on a CPU box: reports say so).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
ACTION=${1:-status}; [ $# -gt 0 ] && shift
BUDGET=540 MODELS="" MAXTIER=9 RETRY="" PYTEST=1 CARRIED_PREP=.gpuprep CARRIED_SHIP=.gpuship
while [ $# -gt 0 ]; do
  case $1 in
    --budget) BUDGET=$2; shift 2 ;;
    --prep) CARRIED_PREP=$2; shift 2 ;;
    --ship) CARRIED_SHIP=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --max-tier) MAXTIER=$2; shift 2 ;;
    --retry-failed) RETRY=--retry-failed; shift ;;
    --no-pytest) PYTEST=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_verify.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
case $ACTION in arrive|finish|status|torch-side) ;; -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
  *) echo "gpu_verify.sh: unknown action $ACTION (arrive, finish, status)" >&2; exit 2 ;; esac

ROOT=${CAMPAIGN_ROOT:-/tmp}
PARTS=$ROOT/trt86-parts KIT=$ROOT/trt86 W=$ROOT/gpuverify
STATE=$W/state PREP=$W/prep LOGS=$W/state/logs CHECKS=$W/state/checks LOCK=$W/gpu.lock
KITPY=$KIT/bin/python3.9
TORCHPY=${TORCH_PY:-/opt/torch/.venv/bin/python3}
OUTDIR=${OUT:-$W/out}
mkdir -p "$LOGS" "$CHECKS" "$OUTDIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
MODELARG=(); [ -n "$MODELS" ] && MODELARG=(--models "$MODELS")
GV=(benchmarks/gpu_verify.py)

say() { printf '[gpu_verify.sh %s] %s %s\n' "$ACTION" "$(date +%H:%M:%S)" "$*" | tee -a "$LOGS/driver.log" >&2; }
record() { printf '%s  %s\n' "$(date -u +%FT%TZ)" "$*" >> "$STATE/commands.txt"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# start_bg NAME LOG CMD...: CMD in its own session (it outlives this call); its pid (= its process
# group) in $W/NAME.pid, written by the process itself whether or not setsid had to fork
start_bg() {
  local name=$1 log=$2; shift 2
  rm -f "$W/$name.pid"
  setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$W/$name.pid" "$@" > "$log" 2>&1 < /dev/null &
  for _ in $(seq 50); do [ -s "$W/$name.pid" ] && break; sleep 0.1; done
}
# check NAME LIMIT CMD...: a check outside the units; exit status to checks/NAME.exit, output to logs/NAME.log
check() {
  local name=$1 limit=$2; shift 2
  record "$*"; say "$name: $* (limit ${limit}s)"
  timeout -s TERM -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?; echo $rc > "$CHECKS/$name.exit"; say "$name: exit $rc"; return $rc
}

take_prep() {  # the carried prepared folder -> $PREP, sha256-checked (once per new manifest)
  if [ -f "$CARRIED_PREP/manifest.json" ] && ! cmp -s "$CARRIED_PREP/manifest.json" "$PREP/manifest.json" 2>/dev/null; then
    rm -rf "$PREP.tmp" && cp -a "$CARRIED_PREP" "$PREP.tmp" && rm -rf "$PREP" && mv "$PREP.tmp" "$PREP"
    rm -f "$W/prep-verified"
  fi
  [ -f "$PREP/manifest.json" ] || return 1
  if [ ! -e "$W/prep-verified" ]; then
    "$TORCHPY" "${GV[@]}" verify-prep --prep "$PREP" >> "$LOGS/driver.log" 2>&1 && touch "$W/prep-verified" \
      || { say "prepared folder damaged (see $LOGS/driver.log)"; return 1; }
    say "prepared folder in $PREP ($(du -sh "$PREP" | cut -f1)), sha256 checked"
  fi
}

take_parts() {  # carried parts -> $PARTS; start the assembler once
  if ls "$CARRIED_SHIP"/part-* >/dev/null 2>&1; then
    "$TORCHPY" "${GV[@]}" stash --src "$CARRIED_SHIP" --dest "$PARTS" 2>&1 | tee -a "$LOGS/driver.log"
  fi
  if [ -f "$PARTS/SHA256SUMS" ] && [ ! -x "$KITPY" ] && ! alive "$W/assemble.pid"; then
    start_bg assemble "$LOGS/assemble.log" "$TORCHPY" "${GV[@]}" assemble --parts "$PARTS" --dest "$KIT"
    say "kit assembler started (pid $(cat "$W/assemble.pid")): unpacks parts into $KIT as they arrive"
  fi
}

start_torch_side() {
  [ -e "$W/torch-side.started" ] && return 0
  touch "$W/torch-side.started"
  start_bg torch-side "$LOGS/torch-side.log" bash "$0" torch-side ${MODELARG[@]+"${MODELARG[@]}"} $RETRY \
    $([ $PYTEST = 0 ] && echo --no-pytest)
  say "torch side started in the background (pid $(cat "$W/torch-side.pid"))"
}

torch_run() {  # torch_run MAXTIER [DEADLINE]
  record "${GV[*]} run --side torch --max-tier $1"
  "$TORCHPY" "${GV[@]}" run --side torch --prep "$PREP" --state "$STATE" --lock "$LOCK" --max-tier "$1" \
    --deadline "${2:-$(( $(date +%s) + 1700 ))}" ${MODELARG[@]+"${MODELARG[@]}"} $RETRY
}

status() {
  [ -f "$PARTS/SHA256SUMS" ] && echo "kit parts: $(ls "$PARTS"/part-* 2>/dev/null | wc -l)/$(wc -l < "$PARTS/SHA256SUMS") in $PARTS"
  [ -f "$KIT.status.json" ] && echo "kit assembly: $(cat "$KIT.status.json")"
  [ -d "$STATE/units" ] && echo "units: $(grep -l '"status": "done"' "$STATE"/units/*.json 2>/dev/null | wc -l) done, $(grep -l '"status": "failed"' "$STATE"/units/*.json 2>/dev/null | wc -l) failed"
  alive "$W/torch-side.pid" && echo "torch side: running; last: $(grep -v '^$' "$LOGS/torch-side.log" | tail -1)"
  [ -e "$W/torch-side.done" ] && echo "torch side: done"
  for f in "$CHECKS"/*.exit; do [ -e "$f" ] && echo "check $(basename "$f" .exit): exit $(cat "$f")"; done
  return 0
}

case $ACTION in
  status) status ;;

  arrive)
    take_prep && start_torch_side
    take_parts
    status ;;

  torch-side)  # background, started by arrive
    check nvidia-smi 30 nvidia-smi
    torch_run 2
    if [ $PYTEST = 1 ]; then
      files=$(grep -l 'pytest.mark.gpu' tests/test_*.py | tr '\n' ' ')
      check pytest-torch 150 "$TORCHPY" "${GV[@]}" locked --lock "$LOCK" --side torch -- "$TORCHPY" -m pytest -m gpu \
        -p no:cacheprovider -q -rfEs --junitxml="$LOGS/pytest-torch.xml" $files
    fi
    torch_run "$MAXTIER"
    touch "$W/torch-side.done"; say "torch side done" ;;

  finish)
    T0=$(date +%s); DEADLINE=$((T0 + BUDGET - 45))
    left() { echo $((DEADLINE - $(date +%s))); }
    record "bash benchmarks/gpu_verify.sh finish --budget $BUDGET"
    take_prep && start_torch_side
    take_parts
    while [ ! -x "$KITPY" ] && alive "$W/assemble.pid" && [ "$(left)" -gt 30 ]; do sleep 1; done
    if [ ! -x "$KITPY" ]; then
      say "no kit at $KIT: $(cat "$KIT.status.json" 2>/dev/null || echo 'its parts did not all arrive') — TensorRT side skipped"
      echo 1 > "$CHECKS/kit-smoke.exit"; cat "$KIT.status.json" > "$LOGS/kit-smoke.log" 2>/dev/null
    else
      if [ ! -e "$CHECKS/kit-smoke.exit" ]; then
        check kit-smoke 180 "$TORCHPY" "${GV[@]}" locked --lock "$LOCK" --side trt --deadline "$DEADLINE" -- \
          "$KITPY" "$KIT/smoke/trt_smoke.py"
        [ "$(cat "$CHECKS/kit-smoke.exit")" = 2 ] && say "kit smoke: its CPU part passed, then no CUDA GPU"
      fi
      trt_run() {  # trt_run MAXTIER: the TensorRT side, restarted after a crash (the crashed unit is marked)
        local tries=0 rc
        while [ "$(left)" -gt 15 ] && [ $tries -lt 3 ]; do
          tries=$((tries + 1))
          record "${GV[*]} run --side trt --max-tier $1 (kit Python)"
          timeout -s TERM -k 15 $(( $(left) + 15 )) "$KITPY" "${GV[@]}" run --side trt --prep "$PREP" --state "$STATE" \
            --lock "$LOCK" --prefer --deadline "$DEADLINE" --max-tier "$1" ${MODELARG[@]+"${MODELARG[@]}"} $RETRY \
            >> "$LOGS/trt-side.log" 2>&1
          rc=$?
          case $rc in 0|124|137|143) return 0 ;; esac
          say "TensorRT side died (exit $rc); restarting it"
        done
      }
      trt_run 2
      if [ $PYTEST = 1 ] && [ ! -e "$CHECKS/pytest-kit.exit" ] && [ "$(left)" -gt 90 ]; then
        files=$(grep -l 'pytest.mark.gpu' tests/test_*.py | tr '\n' ' ')
        check pytest-kit $(( $(left) < 150 ? $(left) : 150 )) "$KITPY" "${GV[@]}" locked --lock "$LOCK" --side trt \
          --deadline "$DEADLINE" -- "$KITPY" -m pytest -m gpu -p no:cacheprovider -q -rfEs \
          --junitxml="$LOGS/pytest-kit.xml" $files
      fi
      trt_run "$MAXTIER"
    fi
    # the torch side may still have work: let it use what is left, then stop it
    while alive "$W/torch-side.pid" && [ "$(left)" -gt 5 ]; do sleep 2; done
    if alive "$W/torch-side.pid"; then
      say "stopping the torch side (its unit in progress is redone by a later finish)"
      kill -TERM -- "-$(cat "$W/torch-side.pid")" 2>/dev/null; sleep 3
    fi
    REPORT_S=$(( T0 + BUDGET + 20 - $(date +%s) )); [ $REPORT_S -ge 30 ] || REPORT_S=30
    record "${GV[*]} report --out \$OUT"
    timeout -k 5 "$REPORT_S" "$TORCHPY" "${GV[@]}" report --prep "$PREP" --state "$STATE" --out "$OUTDIR" \
      ${MODELARG[@]+"${MODELARG[@]}"} > "$LOGS/report-driver.log" 2>&1 \
      || { say "report under $TORCHPY failed (see logs); trying the kit's Python"
           timeout -k 5 60 "$KITPY" "${GV[@]}" report --prep "$PREP" --state "$STATE" --out "$OUTDIR" \
             ${MODELARG[@]+"${MODELARG[@]}"} >> "$LOGS/report-driver.log" 2>&1; }
    status
    grep -E '^## (Rehearsal verdict|Engine builds|FP16 parity|Argmax|Latency stretch)|^[0-9]+ done|units failed' \
      "$OUTDIR/gpu_report.md" 2>/dev/null
    say "done in $(( $(date +%s) - T0 ))s; files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')" ;;
esac
