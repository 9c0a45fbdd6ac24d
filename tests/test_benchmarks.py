"""The quick benchmarks, as part of the test suite: a target missed by more
than 2x (a regression, not noise) fails the run."""

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).parent.parent / "bench" / "run.py"


@pytest.mark.benchmark
def test_quick_benchmarks_meet_their_targets_within_2x():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
