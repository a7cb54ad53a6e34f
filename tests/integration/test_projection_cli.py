"""``python -m cqrs_ddd_persistence_mongo rebuild`` and the demo's projection tour, as a user runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.projections.orders import differences, fold_orders, order_history, read_model

pytestmark = pytest.mark.integration

SPEC = "cqrs_ddd_persistence_mongo.projections.orders:OrderSummaryProjection"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cqrs_ddd_persistence_mongo", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


async def test_rebuild_command_rebuilds_and_logs_progress(pymongo_connection: MongoConnectionManager, mongo_url: str) -> None:
    events = list(order_history(50, 5, concurrent=10))
    await MongoEventStore(pymongo_connection).append_batch(events)
    database = pymongo_connection.database_name
    result = await asyncio.to_thread(cli, "rebuild", SPEC, "--url", mongo_url, "--database", database,
                                     "--batch-size", "60", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "rebuilt order_summary: 250 events" in result.stdout and "2 worker(s)" in result.stdout
    assert "\r" not in result.stderr  # not a terminal: plain log lines
    assert "rebuild order_summary: 100%  250/250 events" in result.stderr
    assert differences(fold_orders(events), await read_model(pymongo_connection.db())) == []


def test_rebuild_command_reports_a_bad_projection_spec(mongo_url: str) -> None:
    result = cli("rebuild", "nowhere_module_xyz:P", "--url", mongo_url, "--database", "x")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: cannot import module 'nowhere_module_xyz'")


def test_rebuild_command_refuses_bad_numbers() -> None:
    result = cli("rebuild", SPEC, "--workers", "0")
    assert result.returncode == 2 and "must be a positive integer" in result.stderr


def test_demo_runs_the_projection_tour_and_verifies(mongo_url: str) -> None:
    result = cli("demo", "--orders", "150", env={"MONGODB_URL": mongo_url})
    assert result.returncode == 0, result.stderr
    assert "appended 1,500 events over 150 orders" in result.stdout
    assert "all 153 order summaries and the product totals equal a direct fold" in result.stdout
    assert "demo finished: all steps passed" in result.stdout
