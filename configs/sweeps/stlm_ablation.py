"""Super Tiny Language Models' levers (arXiv 2405.14159) on the STLM 10M config, one lever per
arm at matched steps: the untied baseline, tied embedding/head, one FFN shared by all layers
(after MobiLlama, arXiv 2402.16840), byte-pooled input (a byte encoder instead of the token
embedding table), and byte-pooled input with the byte decoder head. Compare params (`tinylm
info`), tokens/s and the held-out bits per byte, which stays comparable across tokenizers and
heads.
Run: tinylm sweep run --spec=sweeps/stlm_ablation.py
"""

import ml_collections

BYTE_POOLED = {"input_embedding": "byte_pooled"}


def get_config() -> ml_collections.ConfigDict:
    arms = {
        "baseline": {},
        "tied": {"tie_embeddings": True},
        "ffn_shared": {"ffn_sharing": "all"},
        "byte_pooled": BYTE_POOLED,
        "byte_pooled_byte_head": {**BYTE_POOLED, "output_head": "bytes"},
    }
    return ml_collections.ConfigDict(
        {
            "name": "stlm_ablation",
            "gin_files": ["base.gin", "models/stlm_10m.gin"],
            "params": {
                "DataConfig": {"dataset": "python_stdlib", "vocab_size": 4000},
                "ModelConfig": {"tie_embeddings": False},
                "TrainConfig": {
                    "num_steps": 200,
                    "batch_size": 16,
                    "seq_len": 128,
                    "log_every": 10,
                    "eval_every": 0,
                    "eval_steps": 16,
                },
                "OptimizerConfig": {"learning_rate": 3e-3, "warmup_steps": 20},
            },
            "arms": [
                {"name": name, "params": {"ModelConfig": changes}} for name, changes in arms.items()
            ],
        }
    )
