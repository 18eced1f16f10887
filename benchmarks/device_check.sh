#!/usr/bin/env bash
# The accelerator check of docs/performance.md, in one call (about 6-8 minutes on one H100):
#   training bench of the demo, bench_125m and tinyllama_1_1b in bfloat16 at seq 2048 (MFU
#   against the device's bf16 peak), each next to its --compile_only memory plan; cuDNN vs
#   XLA vs blockwise attention at seq 2048 and 8192; decode tokens/s; the PyTorch peers
#   (training with bf16 autocast, HF generate) at the same shapes. Ends with one table.
#
#   bash benchmarks/device_check.sh            # run everything (from the repo root)
#   bash benchmarks/device_check.sh --dry_run  # print the plan, run nothing
#
# Each step's output goes to $DEVICE_CHECK_OUT (default: a new temporary directory) as
# NAME.log and its last JSON line as NAME.json; a failed or timed-out step (say an OOM) is
# marked in the table and the rest still run. STEP_TIMEOUT (seconds, default 240) caps each.
set -uo pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY_RUN=1 ;;
    *) echo "device_check.sh: unknown argument $arg (only --dry_run)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ $DRY_RUN == 1 ]]; then
  OUT=${DEVICE_CHECK_OUT:-<a new temporary directory>}
else
  OUT=${DEVICE_CHECK_OUT:-$(mktemp -d -t tinylm-device-check-XXXX)}
fi
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TINYLM=("$PY" -m tinylm_jax.cli)
BF16=(--gin_param="ModelConfig.dtype = 'bfloat16'")
SEQ=(--gin_param="TrainConfig.seq_len = 2048" --gin_param="ModelConfig.max_seq_len = 8192")

# name | gin file | global batch at seq 2048
MODELS=(
  "demo|experiments/demo.gin|32"
  "125m|benchmarks/bench_125m.gin|16"
  "tinyllama|models/tinyllama_1_1b.gin|8"
)

step() {  # step NAME COMMAND...: run (or, dry, print) one command; keep its last JSON line
  local name=$1
  shift
  if [[ $DRY_RUN == 1 ]]; then
    printf '%-30s' "$name"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  echo "== $name: $*" >&2
  timeout "$STEP_TIMEOUT" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  grep '^{' "$OUT/$name.log" | tail -n 1 >"$OUT/$name.json" || true
  if [[ $rc != 0 ]]; then
    echo "{\"failed\": $rc}" >"$OUT/$name.json"
    tail -n 5 "$OUT/$name.log" >&2
  fi
}

[[ $DRY_RUN == 1 ]] && echo "device_check plan (outputs would go to $OUT):"
for entry in "${MODELS[@]}"; do
  IFS='|' read -r name gin batch <<<"$entry"
  shape=(--gin_file="$gin" "${BF16[@]}" "${SEQ[@]}" --gin_param="TrainConfig.batch_size = $batch")
  step "plan_$name" "${TINYLM[@]}" bench --compile_only "${shape[@]}"
  step "train_$name" "${TINYLM[@]}" bench --steps=10 --warmup_steps=2 "${shape[@]}"
  step "peer_$name" "$PY" benchmarks/peer_torch.py --device=cuda --bf16 --steps=10 \
    --warmup_steps=2 "${shape[@]}"
done

for seq in 2048 8192; do  # TinyLlama's attention shape: 32 heads, 4 KV heads, head dim 64
  step "attention_$seq" "$PY" benchmarks/attention_kernels.py --seq_lens="$seq" \
    --tokens=16384 --heads=32 --kv_heads=4 --head_dim=64 --block_sizes=512 \
    --dtype=bfloat16 --cudnn
done

HF_DIR="$OUT/tinyllama_hf"
step "hf_export_tinyllama" "$PY" benchmarks/peer_hf_decode.py --make_hf_dir="$HF_DIR" \
  --gin_file=models/tinyllama_1_1b.gin
for batch in 1 8; do
  decode=(--batch_size="$batch" --prompt_len=128 --new_tokens=256 --repeats=3)
  step "decode_demo_b$batch" "${TINYLM[@]}" bench --mode=decode \
    --gin_file=experiments/demo.gin "${BF16[@]}" "${decode[@]}"
  step "decode_tinyllama_b$batch" "${TINYLM[@]}" bench --mode=decode \
    --gin_file=models/tinyllama_1_1b.gin "${BF16[@]}" "${decode[@]}"
  step "peer_decode_tinyllama_b$batch" "$PY" benchmarks/peer_hf_decode.py \
    --hf_dir="$HF_DIR" --dtype=bfloat16 "${decode[@]}"
done

if [[ $DRY_RUN == 1 ]]; then
  echo "then: $PY benchmarks/device_table.py $OUT  (one markdown table of every step)"
  exit 0
fi
"$PY" benchmarks/device_table.py "$OUT"
