"""One workflow worker process: ``python -m bench.dapr_worker --port P``.

Registers the benchmark's workflows with dapr.ext.workflow's WorkflowRuntime, connects to the
sidecar at 127.0.0.1:P, prints ``ready`` on stdout, and serves until SIGTERM/SIGINT or until
its standard input closes (so it never outlives the benchmark that started it).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from dapr.ext.workflow import WorkflowRuntime

from bench.workload import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dapr_worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def watch_stdin() -> None:
        try:
            sys.stdin.read()
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    runtime = WorkflowRuntime(host=args.host, port=str(args.port))
    register(runtime)
    runtime.start()
    print("ready", flush=True)
    stop.wait()
    runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
