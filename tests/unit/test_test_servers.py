"""The test-server helper fails clearly when the Rust server cannot start or never gets ready,
and leaves no process or storage behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _servers import ServerStartError, chosen_server, rust_binary, rust_binary_or_skip, rust_server


def _fake_binary(tmp_path: Path, body: str) -> str:
    path = tmp_path / "secantusd-rs"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_server_that_exits_is_reported_with_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECANTUSD_RS", _fake_binary(tmp_path, 'echo "cannot open storage: $6" >&2; exit 3'))
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3 .*cannot open storage"):
        with rust_server(timeout_s=10):
            pass


def test_a_server_that_never_answers_fails_within_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("SECANTUSD_RS", _fake_binary(tmp_path, f"echo $$ > {pid_file}; exec sleep 60"))
    with pytest.raises(ServerStartError, match=r"did not become a writable primary within 2s"):
        with rust_server(timeout_s=2):
            pass
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # stopped, not left running
        os.kill(pid, 0)


def test_an_unknown_server_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setenv("CQRS_DDD_MONGO_TEST_SERVER", "mongod")
    with pytest.raises(ServerStartError, match="expected 'embedded' or 'secantus-rs'"):
        chosen_server()


def test_the_rust_binary_is_found_where_the_install_script_puts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    installed = _fake_binary(tmp_path / "bin", "exit 0")
    monkeypatch.delenv("SECANTUSD_RS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CARGO_HOME", str(tmp_path))
    assert rust_binary() == installed
    monkeypatch.setenv("SECANTUSD_RS", installed)
    assert rust_binary_or_skip() == installed


def test_a_missing_rust_binary_skips_locally_and_fails_under_the_test_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "no-cargo"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SECANTUSD_RS", raising=False)
    with pytest.raises(pytest.skip.Exception):
        rust_binary_or_skip()
    monkeypatch.setenv("SECANTUSD_RS", str(tmp_path / "missing" / "secantusd-rs"))  # scripts/test.sh exported it
    with pytest.raises(pytest.fail.Exception, match="SECANTUSD_RS"):
        rust_binary_or_skip()
