#!/usr/bin/env bash
# Runs a `tinylm` command (default `train`) on every worker of a Cloud TPU VM slice
# (v4/v5e/v5p/v6e pods):
#   launch/tpu_pod.sh TPU_NAME ZONE -- --workdir=gs://BUCKET/run --gin_file=experiments/X.gin
#   launch/tpu_pod.sh TPU_NAME ZONE -- inherit --parent=gs://... --workdir=gs://...
# Multi-host commands (train, inherit, score, bench) join JAX's distributed runtime.
# Each worker installs this checkout (copied with scp) and starts the same command; JAX's
# distributed runtime discovers the slice's topology itself (`--distributed`), and the
# workdir must be shared storage (a GCS bucket) so checkpoints are written once.
# A lost worker (exit 75, 134 or 137) restarts the command on every worker from the last
# checkpoint, at most TINYLM_MAX_RESTARTS times (default 3; see relaunch.sh).
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 TPU_NAME ZONE -- [tinylm command, default train] --workdir=gs://... [flags]" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/launch/relaunch.sh"
tpu=$1 zone=$2
shift 3
command=train
if [[ $# -gt 0 && "$1" != -* ]]; then command=$1; shift; fi
case "$command" in train|inherit|score|bench) distributed=--distributed ;; *) distributed= ;; esac
workdir=
for arg in "$@"; do [[ $arg == --workdir=* ]] && workdir=${arg#--workdir=}; done
archive=$(mktemp -d)/tinylm_jax.tar.gz
git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$tpu":~/tinylm_jax.tar.gz --zone="$zone" --worker=all
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e; mkdir -p ~/tinylm_jax && tar -xzf ~/tinylm_jax.tar.gz -C ~/tinylm_jax && cd ~/tinylm_jax
  pip install -q -e . 'jax[tpu]'"

lost_worker() {
  echo "a worker exited $1; last good checkpoint: step $(last_checkpoint "${workdir:-.}")"
}

printf -v flags '%q ' "$@"
with_relaunches lost_worker gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all \
  --command="cd ~/tinylm_jax && tinylm ${command} ${distributed} ${flags}"
