"""``Sidecar``: the store, the engine and the servers, started in-process or by ``__main__``.

The servers and the engine share one asyncio loop. In-process, that loop runs on a thread of
its own, so a Django management command or a test can start the sidecar and go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from .dapr.components import ComponentsError, load_state_store_names
from .dapr.runtime_grpc import add_dapr_servicer
from .dapr.runtime_http import create_app
from .dapr.state_store import StateStore
from .engine.core import Engine
from .engine.observers import EngineObserver
from .limits import MAX_BODY_BYTES
from .metrics import WorkflowMetrics, start_metrics_server
from .storage.store import Store, StoreError
from .taskhub import add_taskhub_servicer
from .tracing_config import ConfigurationError, load_tracing

log = logging.getLogger("sidecar")

# How long a running workflow's step may wait for that workflow's next step to share its
# commit (and fsync) with (``Store.write``). A step is held only while a worker is about to
# send the next one, and only while that workflow is the only one writing (steps of several
# share commits anyway); only the worker's completion calls are answered later. A hop takes
# 2-4 ms here, but a turn of a long workflow takes the SDK longer (it replays the whole
# history: ~40 ms at 1,000 activities), and those steps should share commits too.
DEFAULT_COMMIT_DELAY_MS = 100.0
MAX_COMMIT_DELAY_MS = 1000.0
FLUSH_TIMEOUT_S = 2.0
TRACE_FLUSH_TIMEOUT_S = 5.0
DEFAULT_APP_ID = "sidecar"
DEFAULT_METRICS_PORT = 9090  # daprd's default --metrics-port

GRPC_OPTIONS = [
    # daprd's --max-body-size, both ways (sidecar/limits.py): a larger request is refused with
    # RESOURCE_EXHAUSTED before it reaches a handler.
    ("grpc.max_receive_message_length", MAX_BODY_BYTES),
    ("grpc.max_send_message_length", MAX_BODY_BYTES),
    # The SDK pings every 30 s even when idle; accept that rather than GOAWAY the worker
    # with "too_many_pings" (the SDK's channel options: dapr.ext.workflow
    # _durabletask/internal/shared.py; daprd allows pings every 8 s: dapr/dapr
    # pkg/api/grpc/server.go).
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.so_reuseport", 0),
]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: it cuts grpc.aio's per-call CPU by roughly a fifth here."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class GenericHandlersOnly:
    """Hands a generated ``add_*Servicer_to_server`` only the generic handler of a service.

    The generated code registers each service twice: a generic handler (one lookup by method
    name) and "registered methods". For every registered method grpc.aio's server keeps a task
    waiting for calls and, on every call that arrives, passes all of them to ``asyncio.wait``:
    with the 111 methods of the two services here that was ~15% of the sidecar's CPU and about
    0.1 ms added to every RPC. The generic handler serves the same methods the same way.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass  # served by the generic handler


class SidecarStartError(Exception):
    """The sidecar could not start; the message is one line meant for the operator."""


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Require ``dapr-api-token`` metadata on every call, as daprd does when DAPR_API_TOKEN is set."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        given = dict(details.invocation_metadata or ()).get("dapr-api-token") or ""
        if isinstance(given, str):
            given = given.encode()
        if hmac.compare_digest(given, self.token.encode()):  # constant time, as the HTTP API's
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:
            return handler
        why = (
            "authentication error: api token mismatch"
            if given
            else ("missing api token in request metadata")
        )
        return _refusing_handler(handler, why)


def _refusal(why: str) -> tuple[tuple[str, bytes], ...]:
    """daprd's refusal: "Unauthorized", with an ErrorInfo that says why (the words of its
    HTTP API's 401) - as tests/realdapr sees daprd 1.18 answer."""
    status = status_pb2.Status(
        code=grpc.StatusCode.UNAUTHENTICATED.value[0], message="Unauthorized"
    )
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason="Unauthorized",
            domain="dapr.io",
            metadata={"http.error_message": why, "http.code": "401"},
        )
    )
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _refusing_handler(handler: grpc.RpcMethodHandler, why: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, "Unauthorized", trailing_metadata=_refusal(why)
        )

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, "Unauthorized", trailing_metadata=_refusal(why)
        )
        yield  # pragma: no cover - makes this an async generator

    des = handler.request_deserializer
    ser = handler.response_serializer
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, des, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, des, ser)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, des, ser)
    return grpc.unary_unary_rpc_method_handler(refuse, des, ser)


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the gRPC server itself does: connections of a killed predecessor lingering in
        # TIME_WAIT must not keep a restarted sidecar off its port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SidecarStartError(f"port {port} on {host} is already in use") from exc
            raise SidecarStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


class Sidecar:
    """The embedded sidecar. See docs/sidecar-internals.md for the arguments."""

    def __init__(
        self,
        db_path: str,
        *,
        host: str = "127.0.0.1",
        grpc_port: int = 50001,
        http_port: int | None = None,
        resources_path: str | None = None,
        api_token: str | None = None,
        commit_delay_ms: float = DEFAULT_COMMIT_DELAY_MS,
        config: str | None = None,
        app_id: str = DEFAULT_APP_ID,
        metrics_port: int | None = None,
    ) -> None:
        if not 0 <= commit_delay_ms <= MAX_COMMIT_DELAY_MS:
            raise ValueError(
                f"the commit delay must be between 0 and {MAX_COMMIT_DELAY_MS:g} ms,"
                f" not {commit_delay_ms:g}"
            )
        self.db_path = db_path
        self.commit_delay_ms = commit_delay_ms
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.resources_path = resources_path
        self.api_token = api_token if api_token is not None else os.environ.get("DAPR_API_TOKEN")
        self.config = config  # a Dapr Configuration file: its tracing section is honoured
        self.app_id = app_id  # daprd's --app-id: the service name of spans, metrics' app_id
        self.metrics_port = metrics_port  # None: no metrics endpoint; 0 picks a free port
        self.tracing: Any = None
        self.metrics: WorkflowMetrics | None = None
        self._metrics_runner: Any = None
        self.store: Store | None = None
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._http_runner: Any = None
        self._stopped: asyncio.Event | None = None

    @property
    def grpc_address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.grpc_port}"

    # -- in-process ------------------------------------------------------------------------------

    def start(self) -> Sidecar:
        """Start on a background thread; return once the ports listen."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve_async(on_ready=started.set))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="sidecar", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            exc = failure[0]
            if isinstance(exc, SidecarStartError):
                raise exc
            raise SidecarStartError(str(exc)) from exc
        return self

    def stop(self, grace: float = 2.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopped is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._stopped.set)
        thread.join(timeout=grace + 10)
        self._thread = None

    def __enter__(self) -> Sidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop's side -------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask a running ``serve_async`` to stop (call on the sidecar loop, e.g. from a signal)."""
        if self._stopped is not None:
            self._stopped.set()

    async def serve_async(self, on_ready: Callable[[], None] | None = None) -> None:
        self._stopped = asyncio.Event()
        _check_port_free(self.host, self.grpc_port)
        if self.http_port:
            _check_port_free(self.host, self.http_port)
        if self.metrics_port:
            _check_port_free(self.host, self.metrics_port)
        observers = self._observers()
        try:
            self.store = Store(self.db_path, commit_delay=self.commit_delay_ms / 1000)
        except StoreError as exc:
            raise SidecarStartError(str(exc)) from exc
        self.store.start()
        self.engine = Engine(self.store, observers=observers)
        self.engine.recover()
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.api_token:
            interceptors.append(TokenInterceptor(self.api_token))
        if self.tracing is not None:
            interceptors.append(self.tracing.interceptor())
        server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=interceptors)
        add_taskhub_servicer(GenericHandlersOnly(server), self.engine)
        self._add_extra_services(server)
        try:
            port = server.add_insecure_port(f"{self._bind_host()}:{self.grpc_port}")
        except RuntimeError as exc:
            raise SidecarStartError(f"cannot listen on {self.grpc_address}: {exc}") from exc
        self.grpc_port = port
        await server.start()
        self._server = server
        await self._start_http()
        await self._start_metrics()
        log.info(
            "sidecar listening: gRPC %s%s%s, database %s",
            self.grpc_address,
            f", HTTP {self.host}:{self.http_port}" if self.http_port else "",
            f", metrics http://{self.host}:{self.metrics_port}/metrics" if self.metrics else "",
            self.db_path,
        )
        if on_ready is not None:
            on_ready()
        try:
            await self._stopped.wait()
        finally:
            await self._shutdown()

    def _observers(self) -> tuple[EngineObserver, ...]:
        """Tracing from the Configuration file's tracing section (none: no OpenTelemetry at
        all) and daprd's workflow metrics when there is a metrics port."""
        try:
            settings = load_tracing(self.config)
        except ConfigurationError as exc:
            raise SidecarStartError(str(exc)) from exc
        observers: list[EngineObserver] = []
        if settings is not None:
            from .tracing import WorkflowTracing  # imports OpenTelemetry's SDK

            self.tracing = WorkflowTracing(settings, self.app_id)
            observers.append(self.tracing)
        if self.metrics_port is not None:
            self.metrics = WorkflowMetrics(self.app_id)
            observers.append(self.metrics)
        return tuple(observers)

    async def _start_metrics(self) -> None:
        if self.metrics is None or self.metrics_port is None:
            return
        try:
            self._metrics_runner, self.metrics_port = await start_metrics_server(
                self.metrics, self.host, self.metrics_port
            )
        except OSError as exc:
            raise SidecarStartError(
                f"cannot listen on {self.host}:{self.metrics_port}: {exc.strerror}"
            ) from exc

    def _bind_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _add_extra_services(self, server: grpc.aio.Server) -> None:
        """The Dapr runtime API (state, workflow Alpha1/Beta1, metadata) on the same port."""
        assert self.engine is not None and self.store is not None
        try:
            names = load_state_store_names(self.resources_path)
        except ComponentsError as exc:
            raise SidecarStartError(str(exc)) from exc
        self.state = StateStore(self.store, names)
        self._extended_metadata: dict[str, str] = {}
        add_dapr_servicer(
            GenericHandlersOnly(server),
            self.engine,
            self.state,
            extended_metadata=self._extended_metadata,
        )

    async def _start_http(self) -> None:
        """The Dapr HTTP API on ``http_port`` (0 picks a free port; read it back afterwards)."""
        if self.http_port is None:
            return
        assert self.engine is not None  # serve_async built it before the servers
        from aiohttp import web

        app = create_app(
            self.engine, self.state, self.api_token, extended_metadata=self._extended_metadata
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.http_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SidecarStartError(
                f"cannot listen on {self.host}:{self.http_port}: {exc.strerror}"
            ) from exc
        self._http_runner = runner
        self.http_port = runner.addresses[0][1]

    async def _shutdown(self) -> None:
        assert self.engine is not None and self.store is not None
        self.engine.close()
        # Held steps commit now, so that their completion calls are answered within the
        # server's grace period below rather than cancelled (the worker would see them fail,
        # although the store's close commits them anyway).
        # (Bounded: a writer stuck on a locked database must not hold the shutdown up.)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.store.flush()), FLUSH_TIMEOUT_S)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._server is not None:
            await self._server.stop(grace=1.0)
        self.store.close()
        if self.tracing is not None:
            # Export what is queued, off the loop; the exporter's own timeout bounds it.
            loop = asyncio.get_running_loop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    loop.run_in_executor(None, self.tracing.shutdown), TRACE_FLUSH_TIMEOUT_S
                )
        log.info("sidecar stopped")
