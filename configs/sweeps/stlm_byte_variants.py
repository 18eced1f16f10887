"""Our byte path against the released Super Tiny Language Models one (arXiv 2405.14159),
`ModelConfig.byte_variant` 'tinylm' vs 'stlm', on byte-pooled input with the token head (the
embedders alone; bits per byte are code lengths for both) and with the byte head too (the
released `ByteModelShell`: 'stlm' adds its reconstruction loss). A tiny body (d_model 128,
4 layers), 12 byte slots and the released 4 encoder blocks, but byte width 32 instead of 128
and 2 decoder blocks instead of 7, so each arm trains in under 5 minutes on a loaded 2-core
CPU. Every arm at seeds 0 and 1, same steps.
Run: tinylm sweep run --spec=sweeps/stlm_byte_variants.py
"""

import ml_collections

BYTE_HEAD = {"output_head": "bytes"}


def get_config() -> ml_collections.ConfigDict:
    arms = {
        "tinylm_token_head": {"byte_variant": "tinylm"},
        "stlm_token_head": {"byte_variant": "stlm"},
        "tinylm_byte_head": {"byte_variant": "tinylm", **BYTE_HEAD},
        "stlm_byte_head": {"byte_variant": "stlm", **BYTE_HEAD},
    }
    return ml_collections.ConfigDict(
        {
            "name": "stlm_byte_variants",
            "gin_files": ["base.gin"],
            "params": {
                "DataConfig": {"dataset": "python_stdlib", "vocab_size": 4000},
                "ModelConfig": {
                    "vocab_size": 4000,
                    "d_model": 128,
                    "n_layers": 4,
                    "n_heads": 4,
                    "n_kv_heads": 2,
                    "ffn_dim": 384,
                    "max_seq_len": 512,
                    "input_embedding": "byte_pooled",
                    "byte_embed_dim": 32,
                    "max_token_bytes": 12,
                    "byte_encoder_layers": 4,
                    "byte_decoder_layers": 2,
                },
                "TrainConfig": {
                    "num_steps": 100,
                    "batch_size": 8,
                    "seq_len": 128,
                    "log_every": 10,
                    "eval_every": 0,
                    "eval_steps": 12,
                },
                "OptimizerConfig": {"learning_rate": 3e-3, "warmup_steps": 15},
            },
            "grid": {"TrainConfig": {"seed": [0, 1]}},
            "arms": [
                {"name": name, "params": {"ModelConfig": changes}} for name, changes in arms.items()
            ],
        }
    )
