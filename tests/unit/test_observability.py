"""The observability extra without a server: what happens when OpenTelemetry is absent or
switched off (nothing is imported, the gateway's hook is None), URL parsing, and the
operation name a span gets."""

from __future__ import annotations

import cqrs_ddd_persistence_mongo
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_PARENT = str(Path(cqrs_ddd_persistence_mongo.__file__).resolve().parents[1])  # where the tested package is imported from (site-packages in CI)

ROOT = Path(__file__).resolve().parents[2]

_WITHOUT_OTEL = """
import importlib.abc, json, sys

class NoOtel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError("opentelemetry is not installed")
        return None

sys.meta_path.insert(0, NoOtel())
"""

_PROBE = """
import asyncio
from cqrs_ddd_persistence_mongo import _gateway
from cqrs_ddd_persistence_mongo.exceptions import MongoPersistenceError
from cqrs_ddd_persistence_mongo import observability

class Conn:
    operation_timeout = 5.0

with _gateway.call(Conn(), "probing"):
    pass
hook = _gateway._TRACE is not None
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
errors = []
for attempt in (observability.instrument, observability.register_metrics):
    try:
        attempt()
    except MongoPersistenceError as exc:
        errors.append(str(exc))
print(json.dumps({
    "hook": hook,
    "otel_loaded": loaded,
    "errors": errors,
}))
"""


def _run(prelude: str, env: dict[str, str] | None = None) -> dict[str, object]:
    environment = {**os.environ, "PYTHONPATH": PACKAGE_PARENT, **(env or {})}
    script = "import json, sys\n" + prelude + _PROBE
    out = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_opentelemetry_nothing_is_imported_and_the_hook_is_none() -> None:
    result = _run(_WITHOUT_OTEL)
    assert result["hook"] is False
    assert result["otel_loaded"] == []
    assert len(result["errors"]) == 2
    assert all("[otel]" in message for message in result["errors"])  # type: ignore[union-attr]


def test_the_environment_switch_turns_spans_off() -> None:
    pytest.importorskip("opentelemetry")
    result = _run("", {"CQRS_DDD_MONGO_OTEL": "0"})
    assert result["hook"] is False
    assert result["otel_loaded"] == []


def test_with_opentelemetry_the_hook_is_bound_at_import() -> None:
    pytest.importorskip("opentelemetry")
    result = _run("", {"CQRS_DDD_MONGO_OTEL": "1"})
    assert result["hook"] is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mongodb://localhost:27018/shop?replicaSet=rs0", ("localhost", 27018, "shop")),
        ("mongodb://user:p%40ss@db1.example.com,db2.example.com:27017/", ("db1.example.com", 27017, None)),
        ("mongodb://[::1]:27019", ("::1", 27019, None)),
        ("mongodb+srv://cluster0.example.net/app", ("cluster0.example.net", None, "app")),
    ],
)
def test_server_address_comes_from_the_first_host_of_the_url(url: str, expected: tuple[object, ...]) -> None:
    tracing = pytest.importorskip("cqrs_ddd_persistence_mongo.observability.tracing")
    assert tracing._parse_url(url) == expected


def test_the_operation_is_the_nearest_public_function_of_the_package() -> None:
    tracing = pytest.importorskip("cqrs_ddd_persistence_mongo.observability.tracing")
    assert tracing.operation_of(sys._getframe()) == ("call", "call")  # application code: no library frame
