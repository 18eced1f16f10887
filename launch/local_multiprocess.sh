#!/usr/bin/env bash
# Runs `tinylm train` as N cooperating processes on this machine (jax.distributed over
# 127.0.0.1, CPU collectives through gloo): the way to exercise multi-host code on a laptop.
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]
# A lost process (killed, or the others stopping on it: exit 75, or 134 when JAX's runtime
# aborts them) relaunches all of them from the last checkpoint, at most TINYLM_MAX_RESTARTS
# times (default 3). Exit status: 0 done; otherwise the first failing process's status.
# TINYLM (default `tinylm`) is the command line that runs one process.
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]" >&2
  exit 2
fi
num_processes=$1 devices=$2
shift 3
max_restarts=${TINYLM_MAX_RESTARTS:-3}
read -r -a program <<<"${TINYLM:-tinylm}"
workdir=
for arg in "$@"; do [[ $arg == --workdir=* ]] && workdir=${arg#--workdir=}; done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM

last_checkpoint() {
  local steps
  steps=$(ls "$workdir/checkpoints" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
  echo "${steps:-none}"
}

# One attempt; sets `status` to the first failing process's exit status (0 if none failed).
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
  status=0
  local first= first_at=0 remaining=("${pids[@]}")
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
}

for ((attempt = 0; ; attempt++)); do
  run_once "$@"
  case $status in
    0 | 2) exit "$status" ;;  # done, or a user error a relaunch cannot fix
    75 | 134 | 137) ;;  # a process died, or the others stopped on a lost peer
    *) exit "$status" ;;
  esac
  if ((attempt >= max_restarts)); then
    echo "launch: lost process $lost again; gave up after $max_restarts relaunches" >&2
    exit "$status"
  fi
  echo "launch: lost process $lost; last good checkpoint: step $(last_checkpoint) in" \
    "$workdir/checkpoints; relaunching all $num_processes processes" \
    "($((attempt + 1))/$max_restarts)" >&2
done
