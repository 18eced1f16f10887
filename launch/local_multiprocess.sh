#!/usr/bin/env bash
# Runs `tinylm train` as N cooperating processes on this machine (jax.distributed over
# 127.0.0.1, CPU collectives through gloo): the way to exercise multi-host code on a laptop.
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS -- --workdir=DIR [tinylm train flags]" >&2
  exit 2
fi
num_processes=$1 devices=$2
shift 3
port=${TINYLM_COORDINATOR_PORT:-$((20000 + RANDOM % 20000))}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
for ((i = 0; i < num_processes; i++)); do
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    tinylm train --coordinator_address="127.0.0.1:${port}" --num_processes="${num_processes}" \
    --process_id="${i}" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
