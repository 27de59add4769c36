"""Differences between daprd and the embedded sidecar that are kept on purpose, each with its
reason and each engine's pinned value for the keys that differ (docs/sidecar-apis.md lists
them too). A scenario not named here must observe the same on both engines."""

from __future__ import annotations

from .differential import Deliberate

DELIBERATE: dict[str, Deliberate] = {}
