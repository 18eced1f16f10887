"""PanGu-π Pro parameter inheritance (arXiv 2402.02791, Sec. 3.3): every width metric crossed
with two layer-selection rules, each arm a 2-layer, d_model 64 child of one trained parent,
continued for 100 steps on the stdlib corpus (the setup of benchmarks/inheritance_table.py).

The parent is `runs/inheritance/parent` (e.g. trained by `python
benchmarks/inheritance_table.py --root=runs/inheritance`); point `inherit_from` elsewhere for
another one (its d_model, depth, heads and FFN must be >= the child's, same tokenizer).
Each arm runs `tinylm inherit` once, then `tinylm train` (which resumes on reruns):
  tinylm sweep run --spec=sweeps/pangu_inheritance.py
  tinylm sweep report --spec=sweeps/pangu_inheritance.py
"""

import ml_collections

from tinylm_jax.config.inherit import WIDTH_METRICS


def get_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "pangu_inheritance",
            "inherit_from": "runs/inheritance/parent",
            "params": {
                "DataConfig": {
                    "dataset": "python_stdlib",
                    "max_documents": 400,
                    "vocab_size": 2048,
                    "validation_fraction": 0.05,
                },
                "ModelConfig": {
                    "vocab_size": 2048,
                    "tie_embeddings": True,
                    "max_seq_len": 128,
                    "d_model": 64,
                    "n_layers": 2,
                    "n_heads": 2,
                    "ffn_dim": 192,
                },
                "TrainConfig": {
                    "num_steps": 100,
                    "batch_size": 16,
                    "seq_len": 128,
                    "log_every": 50,
                    "eval_steps": 8,
                },
                "OptimizerConfig": {"learning_rate": 3e-3, "warmup_steps": 10},
                "InheritConfig": {"mask_steps": 100},
            },
            "grid": {
                "InheritConfig": {
                    "width_metric": list(WIDTH_METRICS),
                    "layer_selection": ["ends", "block_influence"],
                }
            },
        }
    )
