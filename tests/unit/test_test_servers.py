"""The test-server helper fails clearly when the Rust server cannot start or never gets ready,
and leaves no process or storage behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _servers import ServerStartError, chosen_server, rust_server


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
