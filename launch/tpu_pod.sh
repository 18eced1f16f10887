#!/usr/bin/env bash
# Runs a `tinylm` command (default `train`) on every worker of a Cloud TPU VM slice
# (v4/v5e/v5p/v6e pods):
#   launch/tpu_pod.sh TPU_NAME ZONE -- --workdir=gs://BUCKET/run --gin_file=experiments/X.gin
#   launch/tpu_pod.sh TPU_NAME ZONE -- inherit --parent=gs://... --workdir=gs://...
# Multi-host commands (train, inherit, score, bench) join JAX's distributed runtime.
# Each worker installs this checkout (copied with scp) and starts the same command; JAX's
# distributed runtime discovers the slice's topology itself (`--distributed`), and the
# workdir must be shared storage (a GCS bucket) so checkpoints are written once.
set -euo pipefail
if [[ $# -lt 3 || "$3" != "--" ]]; then
  echo "usage: $0 TPU_NAME ZONE -- [tinylm command, default train] --workdir=gs://... [flags]" >&2
  exit 2
fi
tpu=$1 zone=$2
shift 3
command=train
if [[ $# -gt 0 && "$1" != -* ]]; then command=$1; shift; fi
case "$command" in train|inherit|score|bench) distributed=--distributed ;; *) distributed= ;; esac
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=$(mktemp -d)/tinylm_jax.tar.gz
git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$tpu":~/tinylm_jax.tar.gz --zone="$zone" --worker=all
printf -v flags '%q ' "$@"
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="
  set -e; mkdir -p ~/tinylm_jax && tar -xzf ~/tinylm_jax.tar.gz -C ~/tinylm_jax && cd ~/tinylm_jax
  pip install -q -e . 'jax[tpu]' && tinylm ${command} ${distributed} ${flags}"
