"""Comparing what a program saw on daprd and on the embedded sidecar: normalise what
legitimately differs (instance ids the program did not choose, timestamps, daprd's app id),
then every key must be equal, or differ exactly as a ``Deliberate`` entry pins it."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

_UUID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


def normalise(observation: Any) -> Any:
    """Instance ids the program did not choose (UUIDs) become <id1>, <id2>, ... in order of
    first appearance, timestamps <time>; everything else is compared as it is."""
    text = json.dumps(observation, sort_keys=True, default=str)
    ids: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        key = match.group(0).replace("-", "")
        return ids.setdefault(key, f"<id{len(ids) + 1}>")

    text = _UUID.sub(rename, text)
    text = _TIMESTAMP.sub("<time>", text)
    return json.loads(text)


def without(text: str, observation: dict[str, Any]) -> dict[str, Any]:
    """``observation`` with every occurrence of ``text`` (an app id) replaced by <app id>."""
    dumped = json.dumps(observation, default=str)
    return dict(json.loads(dumped.replace(json.dumps(text)[1:-1], "<app id>")))


# -- expectations and outcomes ------------------------------------------------------------------


@dataclass
class Deliberate:
    """A difference kept on purpose: each engine's pinned value of the keys that differ."""

    reason: str
    daprd: dict[str, Any]
    sidecar: dict[str, Any]


@dataclass
class Outcome:
    name: str
    verdict: str  # "equal" or "deliberate difference: <reason>"
    seconds: float


OUTCOMES: list[Outcome] = []


@dataclass
class Comparison:
    daprd: dict[str, Any]
    sidecar: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def compare(
    daprd: dict[str, Any], sidecar: dict[str, Any], deliberate: Deliberate | None
) -> Comparison:
    """Normalise both observations and list every way they disagree with the expectation:
    equal, or different exactly as ``deliberate`` pins it."""
    result = Comparison(normalise(daprd), normalise(sidecar))
    pinned = set(deliberate.daprd) | set(deliberate.sidecar) if deliberate else set()
    for key in sorted(set(result.daprd) | set(result.sidecar)):
        on_daprd, on_sidecar = result.daprd.get(key), result.sidecar.get(key)
        if key in pinned:
            assert deliberate is not None
            for engine, seen, expected in (
                ("daprd", on_daprd, deliberate.daprd.get(key)),
                ("sidecar", on_sidecar, deliberate.sidecar.get(key)),
            ):
                if seen != expected:
                    result.problems.append(
                        f"{key!r} on {engine} drifted from its pinned value:\n"
                        f"  pinned: {json.dumps(expected)}\n  seen:   {json.dumps(seen)}"
                    )
        elif on_daprd != on_sidecar:
            result.problems.append(f"{key!r} differs:\n" + _difference(on_daprd, on_sidecar))
    return result


def _difference(on_daprd: Any, on_sidecar: Any) -> str:
    if isinstance(on_daprd, list) and isinstance(on_sidecar, list) and len(on_daprd) > 8:
        lines = difflib.unified_diff(
            [json.dumps(x) for x in on_daprd],
            [json.dumps(x) for x in on_sidecar],
            "daprd",
            "sidecar",
            lineterm="",
        )
        return "\n".join(f"  {line}" for line in lines)
    return f"  daprd:   {json.dumps(on_daprd)}\n  sidecar: {json.dumps(on_sidecar)}"
