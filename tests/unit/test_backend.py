"""The backend switch: native after a normal install, pure when forced or when broken."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cqrs_ddd_persistence_mongo as pkg
from cqrs_ddd_persistence_mongo import _accel


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CQRS_DDD_MONGO_PURE"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=environment, check=True,
    )


def test_backend_matches_the_environment() -> None:
    forced = os.environ.get("CQRS_DDD_MONGO_PURE", "") in {"1", "true", "yes", "on"}
    if forced:
        assert pkg.BACKEND == "pure"
    else:
        assert pkg.BACKEND == "native", "the native module should be built by a normal install"
    assert pkg.BACKEND == _accel.BACKEND


def test_variable_forces_pure_without_warning() -> None:
    result = _run("import cqrs_ddd_persistence_mongo as p; print(p.BACKEND)", CQRS_DDD_MONGO_PURE="1")
    assert result.stdout.strip() == "pure"
    assert "RuntimeWarning" not in result.stderr


def test_normal_import_is_native() -> None:
    result = _run("import cqrs_ddd_persistence_mongo as p; print(p.BACKEND)")
    assert result.stdout.strip() == "native"


def test_missing_native_module_falls_back_with_one_warning() -> None:
    result = _run(
        """
        import sys
        sys.modules['cqrs_ddd_persistence_mongo._native'] = None  # import fails
        import cqrs_ddd_persistence_mongo as p
        print(p.BACKEND)
        """
    )
    assert result.stdout.strip() == "pure"
    assert result.stderr.count("RuntimeWarning") == 1
    assert "could not be imported" in result.stderr


def test_bound_functions_are_the_pure_twins_when_pure() -> None:
    if pkg.BACKEND == "pure":
        assert _accel.validate_keys is _accel.pure_twin("validate_keys")
    else:
        assert _accel.validate_keys is _accel.native_function("validate_keys")
