"""Loaded by the SDK's example programs run in tests/realdapr (on their PYTHONPATH): ``print``
writes each line whole, in one call under a lock. The examples print from the client's thread
and from activity threads at once, and the builtin ``print`` writes the text and its newline
separately, so two lines could run together ("...Instance ID: x" + "Step 1: ..."); the
programs themselves are run unchanged."""

from __future__ import annotations

import builtins
import sys
import threading
from typing import Any

_lock = threading.Lock()
_print = builtins.print


def _whole_line_print(
    *values: Any,
    sep: str | None = " ",
    end: str | None = "\n",
    file: Any = None,
    flush: bool = False,
) -> None:
    target = sys.stdout if file is None else file
    text = (" " if sep is None else sep).join(str(v) for v in values) + (
        "\n" if end is None else end
    )
    with _lock:
        target.write(text)
        if flush:
            target.flush()


builtins.print = _whole_line_print
