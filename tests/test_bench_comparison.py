"""The main comparison's rows: a row this machine cannot run (no daprd built, no DBOS
installed) is skipped with a note saying why and what provides it; the other rows still run."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import comparison


def test_the_daprd_row_is_one_of_the_configurations() -> None:
    assert "daprd" in comparison.CONFIGURATIONS
    assert "daprd" in comparison.CONFIGURATIONS["daprd"].label


def test_daprd_row_is_skipped_with_a_note_when_daprd_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path))  # no .dapr/bin here
    skipped = comparison.skipped_configurations(["daprd", "sdk-floor"])
    assert list(skipped) == ["daprd"]
    assert str(tmp_path / ".dapr" / "bin" / "daprd") in skipped["daprd"]
    assert "make dapr" in skipped["daprd"]


def test_a_run_of_only_skipped_rows_notes_each_and_runs_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path))
    args = argparse.Namespace(
        only=["daprd"], worker_counts=[1, 2], rounds=1, workflows=10, inflight=2, sequential=2
    )
    out: dict[str, object] = {}
    with open(tmp_path / "processes.log", "w") as log:
        comparison.suite(args, tmp_path, log, out)
    assert out["results"] == []
    assert "failures" not in out  # a missing daprd is a note, not a failed run
    assert "make dapr" in str(out["skipped"])
    printed = capsys.readouterr().out
    assert "daprd: SKIPPED" in printed
    assert "not run" in printed
