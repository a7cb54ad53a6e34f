"""The demo command runs end to end against the real-wire server and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_command_passes(mongo_url: str) -> None:
    env = {**os.environ, "MONGODB_URL": mongo_url}
    result = subprocess.run(
        [sys.executable, "-m", "cqrs_ddd_persistence_mongo", "demo", "--orders", "100"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "demo finished: all steps passed" in result.stdout


def test_cli_reports_library_errors_cleanly() -> None:
    env = {**os.environ, "MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"}
    result = subprocess.run(
        [sys.executable, "-m", "cqrs_ddd_persistence_mongo", "demo"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach MongoDB")
