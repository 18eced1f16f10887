"""PanGu-π Pro's architecture ablation (arXiv 2402.02791, Sec. 3.2) at CPU-demo scale.

Four depth/width shapes with ~3.4M non-embedding parameters each (head dim 64, FFN by the
8/3 rule rounded to 128), trained identically on the demo corpus; the paper's finding is that
deeper wins for tiny models. Run: tinylm sweep run --spec=sweeps/pangu_depth_width.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    shapes = [(384, 2, 1024), (256, 4, 768), (192, 8, 512), (128, 16, 384)]
    return ml_collections.ConfigDict(
        {
            "name": "pangu_depth_width",
            "gin_files": ["experiments/demo.gin"],
            "params": {"TrainConfig": {"eval_every": 0}},
            "arms": [
                {
                    "name": f"d{d}_l{layers}",
                    "params": {
                        "ModelConfig": {
                            "d_model": d,
                            "n_layers": layers,
                            "n_heads": d // 64,
                            "n_kv_heads": d // 64,
                            "ffn_dim": ffn,
                        }
                    },
                }
                for d, layers, ffn in shapes
            ],
        }
    )
