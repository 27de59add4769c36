"""``python -m sidecar``: run the embedded sidecar standalone until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import (
    DEFAULT_APP_ID,
    DEFAULT_COMMIT_DELAY_MS,
    DEFAULT_METRICS_PORT,
    MAX_COMMIT_DELAY_MS,
    Sidecar,
    SidecarStartError,
    new_event_loop,
)


def metrics_port(value: str) -> int | None:
    """A port number, 0 for a free one, or ``off``."""
    if value.strip().lower() in {"off", "none", "false"}:
        return None
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number or 'off': {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar",
        description="Embedded Dapr workflow sidecar: durable, SQLite-backed, speaks Dapr's"
        " workflow gRPC protocol.",
    )
    parser.add_argument("--grpc-port", type=int, default=50001, help="gRPC port (default 50001)")
    parser.add_argument(
        "--http-port", type=int, default=None, help="Dapr HTTP API port (off by default)"
    )
    parser.add_argument(
        "--db",
        default="var/workflows.db",
        help="SQLite database file, or :memory: (default var/workflows.db)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, loopback only)",
    )
    parser.add_argument(
        "--resources-path", default=None, help="folder of Dapr component YAML files (state stores)"
    )
    parser.add_argument(
        "--commit-delay-ms",
        type=float,
        default=DEFAULT_COMMIT_DELAY_MS,
        help="how long a running workflow's step may wait for its next step to share a commit"
        f" (default {DEFAULT_COMMIT_DELAY_MS:g}; 0 commits every step on its own)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="a Dapr Configuration file, as daprd's --config: its tracing section (samplingRate,"
        " zipkin, otel) is honoured; without one nothing is traced",
    )
    parser.add_argument(
        "--app-id",
        default=DEFAULT_APP_ID,
        help=f"the app id daprd would have: service name of spans, app_id of metrics"
        f" (default {DEFAULT_APP_ID})",
    )
    parser.add_argument(
        "--metrics-port",
        type=metrics_port,
        default=DEFAULT_METRICS_PORT,
        help=f"port of the Prometheus /metrics endpoint, on --host (default"
        f" {DEFAULT_METRICS_PORT} as daprd's; 0 picks a free one; off disables it)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    args = parser.parse_args(argv)
    if not 0 <= args.commit_delay_ms <= MAX_COMMIT_DELAY_MS:
        parser.error(f"--commit-delay-ms must be between 0 and {MAX_COMMIT_DELAY_MS:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    sidecar = Sidecar(
        args.db,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        resources_path=args.resources_path,
        commit_delay_ms=args.commit_delay_ms,
        config=args.config,
        app_id=args.app_id,
        metrics_port=args.metrics_port,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stops = 0

        def on_signal() -> None:
            nonlocal stops
            stops += 1
            if stops > 1:
                logging.getLogger("sidecar").warning("second signal: exiting now")
                raise SystemExit(1)
            sidecar.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await sidecar.serve_async()

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve())
    except SidecarStartError as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
