"""The fault battery: every fault case the suite injects, in one table, so its size is counted,
not guessed. `python -m tests.fault_battery` prints the counts; `--nodes` prints the test ids
to run them all:

    pytest $(python -m tests.fault_battery --nodes)

Each case is a fault, the phase it hits, the test that injects it, and the outcome the test
checks: `resumed` (the rerun or relaunch ends where an uninterrupted run does: bit-exactly
on one process, to 1e-6 across two), `completed` (the run absorbs the fault and finishes: as
a clean run after 503s, a backlog or a cold cache; past the skipped batches after a rollback)
or `refused` (a clear message and a documented exit code, nothing half-written, and the same
command completes once the cause is gone). `tests/integration/test_faults.py` checks that
every listed test exists and every fault test is listed.
"""

from __future__ import annotations

import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class FaultCase:
    fault: str
    phase: str
    test: str  # a pytest node id, relative to the repository root
    outcome: str  # 'resumed', 'completed' or 'refused'


_MP = "tests/integration/test_multiprocess_resume.py::"
_ROUNDS = "tests/integration/test_rounds.py::"
_CKPT = "tests/integration/test_checkpoint.py::"
_NAN = "tests/integration/test_faults_nonfinite.py::"
_GCS = "tests/integration/test_remote_storage.py::"
_SIGTERM = (
    "tests/integration/test_faults_sigterm.py::"
    "test_sigterm_stops_the_phase_with_143_and_a_rerun_completes"
)
_DATA = "tests/integration/test_faults_data.py::test_a_damaged_shard_of_"
_LAUNCH = "tests/integration/test_launch_relaunch.py::"
_RELAUNCH = _LAUNCH + "test_the_launchers_relaunch_on_a_lost_process_only_and_boundedly"
_PEERS = "tests/integration/test_faults_peers.py::"
_ENOSPC = "tests/integration/test_faults_storage.py::"
_COLD = "tests/integration/test_data_cache_concurrency.py::"
_HANG = "tests/integration/test_faults_scoring.py::"
_CMC = "tests/integration/test_recipe_cmc.py::"

FAULTS: list[FaultCase] = [
    FaultCase(
        "SIGKILL",
        "train: async checkpoint save",
        _MP + "test_killed_mid_save_and_preempted_run_resumes_bit_exactly",
        "resumed",
    ),
    FaultCase(
        "SIGTERM",
        "train: steps",
        _MP + "test_killed_mid_save_and_preempted_run_resumes_bit_exactly",
        "resumed",
    ),
    FaultCase(
        "SIGKILL of a peer",
        "train: 2 processes",
        _MP + "test_two_processes_survive_a_dead_peer_and_preemption_and_match_one",
        "resumed",
    ),
    FaultCase(
        "SIGTERM",
        "train: 2 processes",
        _MP + "test_two_processes_survive_a_dead_peer_and_preemption_and_match_one",
        "resumed",
    ),
    FaultCase(
        "SIGKILL of a peer",
        "train: 2 processes under the launcher",
        _PEERS + "test_the_launcher_relaunches_after_a_lost_peer_and_resumes",
        "resumed",
    ),
    FaultCase(
        "SIGKILL",
        "train: scoring pass",
        _ROUNDS + "test_killed_while_scoring_saving_and_in_round_2_resumes_bit_exactly",
        "resumed",
    ),
    FaultCase(
        "SIGKILL",
        "train: round-switch save",
        _ROUNDS + "test_killed_while_scoring_saving_and_in_round_2_resumes_bit_exactly",
        "resumed",
    ),
    FaultCase(
        "SIGKILL",
        "train: round 2",
        _ROUNDS + "test_killed_while_scoring_saving_and_in_round_2_resumes_bit_exactly",
        "resumed",
    ),
    FaultCase(
        "SIGKILL of a peer",
        "train: round 2, 2 processes",
        _ROUNDS + "test_two_processes_killed_in_round_2_resume_and_match_one",
        "resumed",
    ),
    FaultCase(
        "truncated checkpoint",
        "train: restore",
        _CKPT + "test_damaged_latest_checkpoint_falls_back_and_training_recovers",
        "resumed",
    ),
    FaultCase(
        "truncated checkpoint",
        "load params (eval, sample, export)",
        _CKPT + "test_load_params_falls_back_past_a_damaged_latest_step",
        "resumed",
    ),
    FaultCase(
        "non-finite loss",
        "train: on_nonfinite='stop'",
        _CKPT + "test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint",
        "refused",
    ),
    FaultCase(
        "non-finite loss",
        "train: on_nonfinite='rollback'",
        _NAN + "test_a_nan_rolls_back_to_the_last_checkpoint_skips_batches_and_finishes",
        "completed",
    ),
    FaultCase(
        "non-finite loss past max_rollbacks",
        "train: on_nonfinite='rollback'",
        _NAN + "test_rollbacks_are_bounded",
        "refused",
    ),
    FaultCase(
        "a crash",
        "train: after a rollback",
        _NAN + "test_a_run_interrupted_after_a_rollback_resumes_like_an_uninterrupted_one",
        "resumed",
    ),
    FaultCase(
        "ENOSPC",
        "train: checkpoint save",
        _ENOSPC + "test_a_save_that_fails_with_enospc_keeps_the_last_checkpoint",
        "refused",
    ),
    FaultCase(
        "SIGKILL",
        "train: gs:// workdir",
        _GCS + "test_a_gs_workdir_trains_is_killed_resumes_and_serves",
        "resumed",
    ),
    FaultCase(
        "503 on every 5th write",
        "train: gs:// workdir",
        _GCS + "test_writes_that_fail_with_503_are_retried_and_the_run_is_unchanged",
        "completed",
    ),
    FaultCase(
        "5 concurrent runs",
        "data: cold cache",
        _COLD + "test_five_processes_on_a_cold_cache_all_succeed_and_share_one_cache",
        "completed",
    ),
    FaultCase(
        "collective launch backlog",
        "scoring: 8 devices",
        _HANG + "test_many_collective_batches_in_a_row_finish_on_8_devices",
        "completed",
    ),
    FaultCase(
        "collective launch backlog",
        "train: scoring pass, 8 devices",
        _HANG + "test_a_two_round_run_on_8_devices_scores_tens_of_thousands_of_sequences",
        "completed",
    ),
    FaultCase(
        "SIGKILL",
        "cmc train",
        _CMC + "test_kill_9_resumes_bit_exactly_and_the_template_is_untouched",
        "resumed",
    ),
    *(
        FaultCase("SIGTERM", phase, f"{_SIGTERM}[{test_id}]", "refused")
        for phase, test_id in [
            ("score", "score"),
            ("train: scoring pass", "train-scoring-pass"),
            ("inherit: learnable mask steps", "inherit-learnable-masks"),
            ("tokenizer compress", "tokenizer-compress"),
            ("eval", "eval"),
            ("cmc train", "cmc-train"),
        ]
    ),
    *(
        FaultCase(f"{damage} shard", phase, f"{_DATA}{test}[{damage}]", "refused")
        for damage in ("missing", "truncated", "corrupted")
        for phase, test in [
            ("data: packed cache", "the_data_cache_exits_2_naming_it"),
            ("data: prepared dataset", "a_prepared_dataset_exits_2_naming_it"),
        ]
    ),
    *(
        FaultCase(fault, f"launch: {launcher}", f"{_RELAUNCH}[{case}-{launcher}]", outcome)
        for launcher in ("slurm", "tpu", "local")
        for fault, case, outcome in [
            ("a lost process twice (exit 75)", "75x2", "resumed"),
            ("an abort and a SIGKILL (exit 134, 137)", "134-137", "resumed"),
            ("a crash (exit 1)", "1", "refused"),
            ("a user error (exit 2)", "2", "refused"),
            ("a lost process past the relaunch bound", "bound", "refused"),
        ]
    ),
    FaultCase(
        "a lost worker (exit 75)",
        "launch: tpu, installed once",
        _LAUNCH + "test_the_tpu_launcher_installs_once_and_reruns_only_the_command",
        "resumed",
    ),
    FaultCase(
        "SIGTERM (exit 143)",
        "launch: slurm",
        _LAUNCH + "test_slurm_requeues_a_preempted_job_boundedly",
        "resumed",
    ),
]


def counts(cases: list[FaultCase]) -> dict[str, int]:
    """Cases, distinct faults, distinct phases, test nodes, and the cases per outcome."""
    outcomes = {o: sum(c.outcome == o for c in cases) for o in ("resumed", "completed", "refused")}
    return {
        "cases": len(cases),
        "faults": len({c.fault for c in cases}),
        "phases": len({c.phase for c in cases}),
        "tests": len({c.test for c in cases}),
        **outcomes,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--nodes"]:
        print("\n".join(sorted({c.test for c in FAULTS})))
    else:
        n = counts(FAULTS)
        print(
            f"{n['cases']} fault cases ({n['faults']} faults x {n['phases']} phases) in "
            f"{n['tests']} tests: {n['resumed']} resumed, {n['completed']} completed, "
            f"{n['refused']} refused cleanly"
        )
