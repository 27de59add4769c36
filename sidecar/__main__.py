"""``python -m sidecar``: run the embedded sidecar standalone until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import (
    DEFAULT_COMMIT_DELAY_MS,
    MAX_COMMIT_DELAY_MS,
    Sidecar,
    SidecarStartError,
    new_event_loop,
)


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
