"""Many runs at once: sweeps (grid, ER-UCB + ZOOpt), the PanGu ladder, reports and plots.

Orchestration only spawns `tinylm` commands and reads the workdirs they leave (through
`tinylm_jax.layout`); it never parses gin itself.

  arm.py          an Arm (a run's name and gin) and the `tinylm` command lines
  runner.py       runs jobs of commands here (one or `parallel` at a time) or emits them as
                  a SLURM job array
  report.py       report.json + report.md (Markdown tables, figures) of every orchestration
  sweep.py        `tinylm sweep run|report`: picks grid.py or budget.py by the spec
  grid.py         sweep specs (configs/sweeps/) expanded into arms, each trained once
  budget.py       ER-UCB (bandit.py) over per-arm ZOOpt searches (search.py), resumable
                  through sweep_state.py
  ladder.py       the PanGu-π Pro ladder as resumable steps, and its report
  plot.py         training curves, best-per-arm bars, budget allocation
"""
