"""A two-round run small enough for the suite."""

ROUND_FLAGS = [
    f"--gin_param={p}"
    for p in [
        "TrainConfig.num_steps = 8",
        "DataConfig.max_documents = 12",
        "RoundsConfig.num_rounds = 2",
        "RoundsConfig.partitions = 2",
        "RoundsConfig.score_batch_size = 64",
        # Losses of an untrained model differ by hundredths of a nat: a low τ makes the
        # preference for hard units plain to see.
        "RoundsConfig.temperature = 0.01",
    ]
]
