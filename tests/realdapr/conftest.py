"""Fixtures for tests that run against real Dapr (daprd 1.18.2, built by `make dapr`).

Every test here is marked ``realdapr`` (the marker is added to each item collected under this
folder). The session starts its OWN Redis, placement and scheduler on free ports under a
temporary directory (``control_plane``), never the fixed ports of `dapr run` that other work on
the machine may hold, and stops them at the end. ``start_daprd`` launches daprds for one test,
each with its own app id and free ports, and stops them when the test ends.

When ``~/.dapr/bin/daprd`` is missing the tests are skipped with the reason printed, or fail on
CI (``CI=true``) when Go is there to build it: `make test` runs `make dapr` first whenever Go is
present, so a missing daprd on CI is a broken build, not a machine without Go.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .comparison import OUTCOMES
from .processes import ControlPlane, Daprd, dapr_bin_dir

HERE = Path(__file__).parent
_skip_reason: list[str] = []


def missing_dapr_reason() -> str | None:
    """Why the real-Dapr tests cannot run, or None when they can."""
    missing = [n for n in ("daprd", "placement", "scheduler") if not (dapr_bin_dir() / n).exists()]
    if not missing:
        return None
    what = f"no {', '.join(missing)} in {dapr_bin_dir()}"
    if shutil.which("go") is None:
        return f"no Go, and {what}"
    return f"{what}: run `make dapr`"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.realdapr)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    reason = missing_dapr_reason()
    if reason is not None:
        if os.environ.get("CI") == "true" and shutil.which("go"):
            pytest.fail(f"real-Dapr suites cannot run on CI: {reason}", pytrace=False)
        reason = f"real-Dapr suites: SKIPPED ({reason})"
        if reason not in _skip_reason:
            _skip_reason.append(reason)
        pytest.skip(reason)
    plane = ControlPlane(tmp_path_factory.mktemp("realdapr"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(autouse=True)
def _clean_dapr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads DAPR_* from the environment on every client it builds."""
    for name in list(os.environ):
        if name.startswith("DAPR_"):
            monkeypatch.delenv(name)


StartDaprd = Callable[..., Daprd]


@pytest.fixture
def start_daprd(
    control_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartDaprd]:
    """``start_daprd(app_id=None, api_token=None) -> Daprd``: a running daprd on free ports,
    its app id unique to this test unless given; every one is stopped after the test."""
    started: list[Daprd] = []
    module = re.sub(r"[^a-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1].lower())

    def start(*, app_id: str | None = None, api_token: str | None = None) -> Daprd:
        n = len(started)
        daprd = Daprd(
            control_plane,
            tmp_path / f"daprd-{n}",
            app_id=app_id or f"{module}-{os.getpid()}-{id(started) % 10**6}-{n}",
            api_token=api_token,
        )
        started.append(daprd)
        daprd.start()
        return daprd

    try:
        yield start
    finally:
        for daprd in reversed(started):
            daprd.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in _skip_reason:
        terminalreporter.write_line(reason, yellow=True, bold=True)
    if OUTCOMES:
        terminalreporter.section(f"differential conformance: {len(OUTCOMES)} scenarios")
        for outcome in sorted(OUTCOMES, key=lambda o: o.name):
            terminalreporter.write_line(
                f"{outcome.name}: {outcome.verdict} ({outcome.seconds:.1f} s)"
            )
