"""Many runs at once: sweeps (grid, ER-UCB + ZOOpt), the PanGu ladder, reports and plots.

Orchestration only spawns `tinylm` commands and reads the workdirs they leave."""
