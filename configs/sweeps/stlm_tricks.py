"""Super Tiny Language Models' parameter savers (arXiv 2405.14159) on the demo model: tied vs
untied embeddings crossed with SwiGLU vs GELU MLPs.
Run: tinylm sweep run --spec=sweeps/stlm_tricks.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "stlm_tricks",
            "gin_files": ["experiments/demo.gin"],
            "grid": {
                "ModelConfig": {"tie_embeddings": [True, False], "activation": ["swiglu", "gelu"]}
            },
        }
    )
