"""``python -m cqrs_ddd_persistence_mongo rebuild`` and the demo's projection tour, as a user runs them."""

from __future__ import annotations

import cqrs_ddd_persistence_mongo
import asyncio
import os
import subprocess
import signal
import sys
import time
from pathlib import Path

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_mongo_demo.orders import differences, fold_orders, order_history, read_model

pytestmark = pytest.mark.integration

PYTHON_DIR = str(Path(cqrs_ddd_persistence_mongo.__file__).resolve().parents[1])  # the tested package (site-packages in CI)
SLOW_PROJECTION = """
import time

from cqrs_ddd_mongo_demo.orders import OrderSummaryProjection


class Slow(OrderSummaryProjection):
    def on_OrderItemAdded(self, doc, event):
        time.sleep(0.005)
        super().on_OrderItemAdded(doc, event)
"""

SPEC = "cqrs_ddd_mongo_demo.orders:OrderSummaryProjection"


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if k != "MONGODB_URL"}
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [PYTHON_DIR, os.environ.get("PYTHONPATH")]))
    return {**merged, **(env or {})}


def cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cqrs_ddd_persistence_mongo", *args],
                          capture_output=True, text=True, env=environment(env), timeout=300, cwd=cwd)


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
    assert "append history: 100%  1,500/1,500 events" in result.stderr  # progress while appending
    assert " ms)" not in result.stdout  # durations for people
    assert "demo finished: all steps passed" in result.stdout


async def test_rebuild_shows_counts_before_the_swap(pymongo_connection: MongoConnectionManager, mongo_url: str) -> None:
    await MongoEventStore(pymongo_connection).append_batch(list(order_history(30, 4, concurrent=10)))
    result = await asyncio.to_thread(cli, "rebuild", SPEC, "--url", mongo_url, "--database",
                                     pymongo_connection.database_name)
    assert result.returncode == 0, result.stderr
    assert "swapping in order_summary from 120 events: order_summaries: 30 documents replace 0; product_sales:" in result.stderr
    assert "ms" not in result.stdout and " s (" in result.stdout  # a human duration


async def test_rebuild_from_a_misspelled_events_collection_is_refused(
    pymongo_connection: MongoConnectionManager, mongo_url: str
) -> None:
    await MongoEventStore(pymongo_connection).append_batch(list(order_history(10, 4, concurrent=5)))
    database = pymongo_connection.database_name
    result = await asyncio.to_thread(cli, "rebuild", SPEC, "--url", mongo_url, "--database", database,
                                     "--events-collection", "domain_evnts")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: refusing to rebuild 'order_summary'")
    assert "--allow-empty" in result.stderr
    assert "domain_evnts" not in await pymongo_connection.db().list_collection_names()
    result = await asyncio.to_thread(cli, "rebuild", SPEC, "--url", mongo_url, "--database", database,
                                     "--events-collection", "domain_evnts", "--allow-empty")
    assert result.returncode == 0, result.stderr


def test_rebuild_needs_a_url() -> None:
    result = cli("rebuild", SPEC)
    assert result.returncode == 2
    assert "rebuild needs the server that holds your events: pass --url" in result.stderr


def test_a_bad_url_fails_at_once() -> None:
    started = time.monotonic()
    result = cli("rebuild", SPEC, "--url", "notaurl")
    assert result.returncode == 2 and time.monotonic() - started < 8
    assert "--url 'notaurl' is not a MongoDB URL" in result.stderr and result.stderr.count("\n") <= 3


def test_a_url_without_database_names_the_flag(mongo_url: str) -> None:
    bare = mongo_url.split("?")[0].rstrip("/") + "/"
    result = cli("rebuild", SPEC, "--url", bare)
    assert result.returncode == 2 and "pass --database NAME" in result.stderr


def test_an_unreachable_server_is_one_line() -> None:
    result = cli("rebuild", SPEC, "--url", "mongodb://127.0.0.1:1/db?serverSelectionTimeoutMS=300")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Topology" not in result.stderr and len(result.stderr) < 320


def test_version() -> None:
    from cqrs_ddd_persistence_mongo import __version__

    result = cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


async def test_console_script_imports_from_the_current_directory(
    pymongo_connection: MongoConnectionManager, mongo_url: str, tmp_path: Path
) -> None:
    await MongoEventStore(pymongo_connection).append_batch(list(order_history(10, 4, concurrent=5)))
    (tmp_path / "mymod.py").write_text("from cqrs_ddd_mongo_demo.orders import OrderSummaryProjection as P\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "cqrs-ddd-mongo"  # what pip writes for a console script
    script.write_text("import sys\nfrom cqrs_ddd_persistence_mongo.cli import main\nsys.exit(main())\n")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(script), "rebuild", "mymod:P", "--url", mongo_url,
                         "--database", pymongo_connection.database_name],
        capture_output=True, text=True, env=environment(), timeout=300, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt order_summary: 40 events" in result.stdout


@pytest.mark.parametrize("workers", [1, 2])
async def test_ctrl_c_prints_one_line_and_the_next_run_resumes(
    pymongo_connection: MongoConnectionManager, mongo_url: str, tmp_path: Path, workers: int
) -> None:
    events = list(order_history(300, 10, concurrent=50))
    await MongoEventStore(pymongo_connection).append_batch(events)
    (tmp_path / "slowmod.py").write_text(SLOW_PROJECTION)
    args = [sys.executable, "-m", "cqrs_ddd_persistence_mongo", "rebuild", "slowmod:Slow", "--url", mongo_url,
            "--database", pymongo_connection.database_name, "--batch-size", "200", "--workers", str(workers)]
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        # a shell's background job inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the CLI the default disposition a terminal gives it
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                   env=environment(), cwd=str(tmp_path),
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for _ in range(600):  # interrupt once the fold is under way (the bar shows events), not before
            if " events " in err_path.read_text() or process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.communicate, timeout=120)
    err = err_path.read_text()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "exception" not in err and "Error" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at position ")
    assert last.endswith("; run the same command to resume, or --fresh to start over")
    position = int(last.split()[3].rstrip(";").replace(",", ""))
    assert 0 < position < len(events)
    result = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, env=environment(),
                                     timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"resumed at position {position:,}" in result.stdout
    assert differences(fold_orders(events), await read_model(pymongo_connection.db())) == []
