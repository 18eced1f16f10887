# Sourced by the launch/ scripts: which exit codes relaunch a job, and the bounded relaunch loop.
# tinylm's exit codes: 0 done; 2 a user error (a relaunch cannot fix it); 75 a process lost a peer
# (EX_TEMPFAIL); 134 a process aborted (JAX's runtime stops the survivors of a dead peer with
# SIGABRT); 137 a process was SIGKILLed (a failed host, the OOM killer); 143 SIGTERM (preempted:
# a checkpoint was saved, or the last one is intact). A relaunch resumes from the last checkpoint.
RELAUNCH_CODES=(75 134 137)

relaunchable() { [[ " ${RELAUNCH_CODES[*]} " == *" $1 "* ]]; }

# with_relaunches DESCRIBE COMMAND...: runs COMMAND, and again after each exit in RELAUNCH_CODES,
# at most TINYLM_MAX_RESTARTS (default 3) times; returns its last exit status. `DESCRIBE STATUS`
# prints what a relaunch is about (who was lost, the last checkpoint).
with_relaunches() {
  local describe=$1 max=${TINYLM_MAX_RESTARTS:-3} attempt code
  shift
  for ((attempt = 0; ; attempt++)); do
    code=0
    "$@" || code=$?
    relaunchable "$code" || return "$code"
    if ((attempt >= max)); then
      echo "launch: $("$describe" "$code"); gave up after $max relaunches" >&2
      return "$code"
    fi
    echo "launch: $("$describe" "$code"); relaunching all processes ($((attempt + 1))/$max)" >&2
  done
}

# last_checkpoint WORKDIR: the newest complete checkpoint step under WORKDIR/checkpoints (local
# or gs://), or "none".
last_checkpoint() {
  local steps
  if [[ $1 == gs://* ]]; then
    steps=$(gcloud storage ls "$1/checkpoints/" 2>/dev/null | sed -E 's#/$##; s#.*/##')
  else
    steps=$(ls "$1/checkpoints" 2>/dev/null)
  fi
  steps=$(grep -E '^[0-9]+$' <<<"$steps" | sort -n | tail -1 || true)
  echo "${steps:-none}"
}
