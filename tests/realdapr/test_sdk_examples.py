"""The Dapr Python SDK's workflow examples, each run on daprd and on the embedded sidecar: what
they print must be equal after normalising (ids, times), or differ as ``DELIBERATE`` pins it.

All examples run at once (they mostly sleep) before the first comparison, each on its own
daprd and its own sidecar; each test then compares one example."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sidecar import Sidecar

from .comparison import OUTCOMES, Outcome, compare
from .deliberate import DELIBERATE
from .processes import ControlPlane, Daprd, free_port
from .sdk_examples import (
    EXAMPLES,
    SOURCE_VARIABLE,
    Example,
    normalise_stdout,
    read_example,
    run_example,
    source_location,
)

Results = dict[str, tuple[str, str, float]]  # file -> (daprd stdout, sidecar stdout, seconds)


def _run_on_both(example: Example, source: str, root: Path, plane: ControlPlane) -> tuple:
    started = time.monotonic()
    root.mkdir(parents=True)
    program = root / example.file
    program.write_text(read_example(source, example.file))
    daprd = Daprd(plane, root / "daprd")
    sidecar = Sidecar(db_path=str(root / "workflows.db"), grpc_port=0, http_port=free_port())
    daprd.start()
    sidecar.start()
    try:
        assert sidecar.http_port is not None
        with ThreadPoolExecutor(2) as pool:
            on_daprd = pool.submit(
                run_example, example, program, daprd.grpc_port, daprd.http_port, root / "d.log"
            )
            on_sidecar = pool.submit(
                run_example,
                example,
                program,
                int(sidecar.grpc_address.rsplit(":", 1)[1]),
                sidecar.http_port,
                root / "s.log",
            )
            # daprd's app id is ours, and random: the propagation example prints it.
            daprd_out = on_daprd.result().replace(daprd.app_id, "<app id>")
            return daprd_out, on_sidecar.result(), time.monotonic() - started
    finally:
        sidecar.stop()
        daprd.stop()


@pytest.fixture(scope="module")
def example_runs(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Results]:
    source = source_location()
    if source is None:
        pytest.skip(
            f"the Dapr Python SDK's example programs are not in this repository (their code "
            f"is not copied here): set {SOURCE_VARIABLE} to a checkout of dapr/python-sdk"
        )
    root = tmp_path_factory.mktemp("sdk-examples")
    with ThreadPoolExecutor(4, thread_name_prefix="sdk-example") as pool:
        futures = {
            e.file: pool.submit(
                _run_on_both, e, source, root / e.file.removesuffix(".py"), control_plane
            )
            for e in EXAMPLES
        }
        results = {name: future.result() for name, future in futures.items()}
    # The examples wait with fixed sleeps (simple.py gives its retries 12 s), which a loaded
    # machine can outrun on either engine: an example whose runs differ runs once more, alone.
    for example in EXAMPLES:
        on_daprd, on_sidecar, _ = results[example.file]
        if f"sdk example {example.file}" not in DELIBERATE and normalise_stdout(
            example, on_daprd
        ) != normalise_stdout(example, on_sidecar):
            again = root / f"{example.file.removesuffix('.py')}-again"
            results[example.file] = _run_on_both(example, source, again, control_plane)
    yield results


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.file for e in EXAMPLES])
def test_sdk_example(example: Example, example_runs: Results) -> None:
    on_daprd, on_sidecar, seconds = example_runs[example.file]
    name = f"sdk example {example.file}"
    deliberate = DELIBERATE.get(name)
    result = compare(
        {"stdout": normalise_stdout(example, on_daprd)},
        {"stdout": normalise_stdout(example, on_sidecar)},
        deliberate,
    )

    assert not result.problems, f"{name}:\n" + "\n".join(result.problems)
    assert "<exit 0>" in on_daprd, on_daprd  # it ran to its end on daprd, the reference
    verdict = "equal" if deliberate is None else f"deliberate difference: {deliberate.reason}"
    OUTCOMES.append(Outcome(name, verdict, seconds))
