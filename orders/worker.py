"""``Worker``: hosts the workflow runtime for ``manage.py runworker``.

Topology. Without Dapr the parent process hosts the embedded sidecar in-process and spawns N child
processes, each running a ``WorkflowRuntime`` against it (``processes=0`` runs the runtime in the
parent instead: one process, used by tests). Under ``dapr run`` (``DAPR_GRPC_PORT`` set) daprd is
the engine and no sidecar is started. The parent also runs the order domain's sweeps
(``orders.services.reconcile``) at start and every ``sweep_interval`` seconds.

Shutdown. The first SIGTERM/SIGINT stops gracefully: children get SIGTERM and finish the work they
hold, then the sidecar stops (everything it acknowledged is on disk). A second signal forces:
children are killed and the process exits at once. Ctrl-C under a process manager may deliver
SIGINT and then SIGTERM a moment later, so a second signal within ``FORCE_AFTER`` seconds of the
first counts as the same request.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from orders import selectors, workflow_client
from orders.embedded_sidecar import sidecar_start
from orders.services.reconcile import orders_reconcile
from orders.workflows.runtime import runtime_create

logger = logging.getLogger("orders.worker")

FORCE_AFTER = 1.0
RESCHEDULE_GRACE = timedelta(seconds=5)
CHILD_STOP_TIMEOUT = 20.0


@dataclass
class Worker:
    processes: int
    grpc_port: int | None = None  # default: settings.WORKFLOW_GRPC_PORT
    db_path: Path | None = None  # default: settings.WORKFLOW_DB_PATH
    sweep_interval: float | None = None  # default: settings.ORDER_RESCHEDULE_INTERVAL
    max_seconds: float | None = None
    once: bool = False
    address: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _first_signal_at: float | None = None
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _sidecar: Any = None
    _runtime: Any = None

    # --- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        previous = self._install_signal_handlers()
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 0

    def stop(self) -> None:
        """Ask the loop to finish (what the first signal does)."""
        self._stop.set()

    def _start(self) -> None:
        if workflow_client.uses_dapr():
            self.address = workflow_client.engine_address()
            logger.info("Using the Dapr sidecar at %s", self.address)
        else:
            db_path = self.db_path or settings.WORKFLOW_DB_PATH
            port = settings.WORKFLOW_GRPC_PORT if self.grpc_port is None else self.grpc_port
            self._sidecar = sidecar_start(db_path=db_path, port=port)
            self.address = self._sidecar.grpc_address
            logger.info("Embedded sidecar listening on %s (database %s)", self.address, db_path)
        workflow_client.use_address(self.address)
        if self.processes == 0:
            self._runtime = runtime_create(self.address)
            self._runtime.start()
            logger.info("Workflow runtime started in this process")
        else:
            for _ in range(self.processes):
                self._children.append(self._spawn())
            logger.info("Started %d worker processes against %s", self.processes, self.address)

    def _loop(self) -> None:
        started = time.monotonic()
        interval = self.sweep_interval or settings.ORDER_RESCHEDULE_INTERVAL
        orders_reconcile(grace=timedelta(0))
        next_sweep = time.monotonic() + interval
        while not self._stop.is_set():
            if self.max_seconds is not None and time.monotonic() - started >= self.max_seconds:
                logger.info("Ran for %.0f s, stopping", self.max_seconds)
                break
            if self.once and self._drained():
                logger.info("No order left in progress, stopping")
                break
            if time.monotonic() >= next_sweep:
                orders_reconcile(grace=RESCHEDULE_GRACE)
                next_sweep = time.monotonic() + interval
            self._reap_children()
            self._stop.wait(0.2 if self.once else 1.0)

    def _shutdown(self) -> None:
        logger.info("Shutting down")
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_TIMEOUT
        for child in self._children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("Worker process %d did not stop in time, killing it", child.pid)
                child.kill()
                child.wait()
        self._children.clear()
        if self._runtime is not None:
            self._runtime.shutdown()
            self._runtime = None
        if self._sidecar is not None:
            self._sidecar.stop()
            self._sidecar = None
        workflow_client.use_address(None)
        logger.info("Worker stopped")

    # --- signals --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._first_signal_at is None:
            self._first_signal_at = now
            logger.info("Received %s, stopping gracefully", signal.Signals(signum).name)
            self._stop.set()
            return
        if now - self._first_signal_at < FORCE_AFTER:
            return
        logger.warning("Received %s again, stopping now", signal.Signals(signum).name)
        for child in self._children:
            if child.poll() is None:
                child.kill()
        os._exit(1)

    # --- child processes ------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "ordersite.settings")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(settings.BASE_DIR), *filter(None, [env.get("PYTHONPATH")])]
        )
        # A session of its own: a terminal's Ctrl-C reaches the parent, which stops the children
        # in order, instead of every process at once.
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "runworker",
                "--child",
                f"--address={self.address}",
                f"--parent-pid={os.getpid()}",
            ],
            env=env,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

    def _reap_children(self) -> None:
        for index, child in enumerate(self._children):
            code = child.poll()
            if code is not None and not self._stop.is_set():
                logger.warning(
                    "Worker process %d exited with %d, starting another", child.pid, code
                )
                self._children[index] = self._spawn()

    # --- drained (--once) ------------------------------------------------------------------

    def _drained(self) -> bool:
        close_old_connections()
        try:
            return not selectors.orders_in_progress_exist()
        except DatabaseError:
            logger.exception("Cannot tell whether orders are in progress; asking again")
            return False


def run_child(address: str, parent_pid: int | None = None) -> int:
    """One worker process: a WorkflowRuntime against ``address`` until SIGTERM/SIGINT, or until
    its parent (``parent_pid``, the process hosting the sidecar) is gone."""
    parent = parent_pid or os.getppid()
    stop = threading.Event()
    first: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if first and time.monotonic() - first[0] >= FORCE_AFTER:
            os._exit(1)
        first.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workflow_client.use_address(address)
    runtime = runtime_create(address)
    try:
        # Inside the try: a start that fails (the sidecar gone, a wrong token) must still shut
        # the runtime down, or its non-daemon thread keeps this process alive, retrying.
        runtime.start()
        logger.info("Worker process %d connected to %s", os.getpid(), address)
        # A parent killed with SIGKILL cannot stop us; notice it is gone instead of lingering.
        while not stop.wait(1.0):
            if os.getppid() != parent:
                logger.warning("Worker process %d lost its parent, stopping", os.getpid())
                break
    finally:
        runtime.shutdown()
    logger.info("Worker process %d stopped", os.getpid())
    return 0
