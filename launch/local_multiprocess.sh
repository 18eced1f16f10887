#!/usr/bin/env bash
# Runs `tinylm train` as N cooperating processes on this machine (jax.distributed over
# 127.0.0.1, CPU collectives through gloo): the way to exercise multi-host code on a laptop.
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]
# A lost process (killed, or the others stopping on it: exit 75, or 134 when JAX's runtime
# aborts them) relaunches all of them from the last checkpoint, at most TINYLM_MAX_RESTARTS
# times (default 3; see relaunch.sh). Exit status: 0 done; otherwise the first failing
# process's status. TINYLM (default `tinylm`) is the command line that runs one process.
set -euo pipefail
source "$(dirname "$0")/relaunch.sh"
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]" >&2
  exit 2
fi
num_processes=$1 devices=$2
shift 3
read -r -a program <<<"${TINYLM:-tinylm}"
workdir=
for arg in "$@"; do [[ $arg == --workdir=* ]] && workdir=${arg#--workdir=}; done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM

# One attempt; returns the first failing process's exit status (0 if none failed) and sets
# `lost` to its index.
run_once() {
  local port=${TINYLM_COORDINATOR_PORT:-$((20000 + RANDOM % 20000))} i pid code start=$SECONDS
  local -A index_of=()
  pids=()
  for ((i = 0; i < num_processes; i++)); do
    JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
      "${program[@]}" train --coordinator_address="127.0.0.1:${port}" \
      --num_processes="${num_processes}" --process_id="${i}" "$@" &
    pids+=($!)
    index_of[$!]=$i
  done
  local status=0 first= first_at=0 remaining=("${pids[@]}")
  for ((i = 0; i < num_processes; i++)); do
    code=0
    wait -n -p pid "${remaining[@]}" || code=$?
    remaining=("${remaining[@]/$pid/}")
    read -r -a remaining <<<"${remaining[*]}"
    if [[ $code -ne 0 && -z $first ]]; then
      first=${index_of[$pid]} first_at=$SECONDS status=$code
      echo "launch: process $first exited $code after $((SECONDS - start)) s" >&2
    elif [[ $code -ne 0 ]]; then
      echo "launch: process ${index_of[$pid]} stopped $((SECONDS - first_at)) s after" \
        "process $first (exit $code)" >&2
    fi
  done
  lost=$first
  return "$status"
}

lost_process() {
  echo "lost process $lost (exit $1); last good checkpoint: step $(last_checkpoint "$workdir")" \
    "in $workdir/checkpoints"
}

with_relaunches lost_process run_once "$@"
