"""The fault battery's table (`tests/fault_battery.py`) is the suite: every case names a test
that exists, and every test of the fault files (`test_faults_*.py`, the launchers') is a case,
so the counts in README are the counts of what runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fault_battery import FAULTS, counts

REPO = Path(__file__).resolve().parents[2]
FAULT_FILES = sorted(
    str(p.relative_to(REPO))
    for p in (REPO / "tests" / "integration").glob("*.py")
    if p.name.startswith("test_faults_") or p.name == "test_launch_relaunch.py"
)


@pytest.mark.slow
def test_the_table_and_the_fault_tests_are_the_same_set():
    listed = {case.test for case in FAULTS}
    files = sorted({test.split("::")[0] for test in listed} | set(FAULT_FILES))
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    nodes = {line for line in collected.stdout.splitlines() if "::" in line}
    assert listed - nodes == set(), collected.stdout[-3000:] + collected.stderr[-3000:]
    in_fault_files = {n for n in nodes if n.split("::")[0] in FAULT_FILES}
    assert in_fault_files - listed == set(), "fault tests missing from tests/fault_battery.py"


def test_the_counts_add_up():
    n = counts(FAULTS)
    assert n["cases"] == len(FAULTS) == n["resumed"] + n["completed"] + n["refused"]
    assert len(set(FAULTS)) == len(FAULTS)  # no case listed twice
