"""The differential conformance suite: every registered scenario runs on daprd (with its Redis
state store) and on the embedded sidecar at once, and what the program saw must be equal after
normalising, or differ exactly as ``DELIBERATE`` pins it (docs/sidecar-apis.md lists each kept
difference with its reason). The terminal summary lists every scenario with its verdict."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from . import (  # noqa: F401 - each module registers its scenarios
    scenarios_api,
    scenarios_client,
    scenarios_lifecycle,
    scenarios_tasks,
    scenarios_versions,
)
from .comparison import OUTCOMES, Outcome, compare, without
from .conftest import StartDaprd
from .deliberate import DELIBERATE
from .differential import SCENARIOS, daprd_engine, run_both
from .differential import sidecar_engine as start_sidecar
from .sdk_examples import EXAMPLES


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str, start_daprd: StartDaprd, tmp_path: Path) -> None:
    registered = SCENARIOS[name]
    deliberate = DELIBERATE.get(name)
    started = time.monotonic()
    with start_sidecar(tmp_path / "sidecar", registered.api_token) as sidecar:
        daprd = start_daprd(api_token=registered.api_token)
        on_daprd, on_sidecar = run_both(registered.run, daprd_engine(daprd), sidecar)
    # daprd names its app id in some messages (Redis keys, ErrorInfo metadata); it is ours.
    result = compare(without(daprd.app_id, on_daprd), on_sidecar, deliberate)

    assert not result.problems, f"{name}:\n" + "\n".join(result.problems)
    verdict = "equal" if deliberate is None else f"deliberate difference: {deliberate.reason}"
    OUTCOMES.append(Outcome(name, verdict, time.monotonic() - started))


def test_every_deliberate_difference_names_a_scenario() -> None:
    examples = {f"sdk example {e.file}" for e in EXAMPLES}
    assert set(DELIBERATE) <= set(SCENARIOS) | examples
