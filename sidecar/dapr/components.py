"""Dapr component files (``--resources-path``): which state stores the sidecar serves.

The embedded sidecar has exactly one storage engine, its SQLite database. A folder written for
real Dapr (``components/statestore.yaml`` with ``type: state.redis``, say) still names the stores
the application uses, so every ``state.*`` component becomes a store of that name, served by the
embedded store, and the log says so: the connection metadata (Redis host, passwords, secret
references) is never read or used. Other component types are not served and are logged as
ignored. With no state component at all the sidecar serves one store named ``statestore``, the
name ``dapr init`` writes and the quickstarts use.

Parsing follows daprd's loader where it matters: ``*.yaml``/``*.yml`` files directly in the
folder (not sub-folders), several documents per file separated by ``---``, only documents with
``kind: Component``. A component name that appears twice is refused, as daprd refuses it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import yaml

log = logging.getLogger("sidecar.components")

DEFAULT_STATE_STORE = "statestore"


class ComponentsError(ValueError):
    """The resources folder or one of its files cannot be used; the message is one line."""


def load_state_store_names(resources_path: str | None) -> list[str]:
    """Names of the state stores to serve, in file order; ``["statestore"]`` when there are none.

    Raises ``ComponentsError`` for a missing folder, unreadable or malformed YAML, a state
    component without a name, or a duplicate component name.
    """
    if resources_path is None:
        log.info(
            "no resources path: serving state store %r from the embedded store", DEFAULT_STATE_STORE
        )
        return [DEFAULT_STATE_STORE]
    if not os.path.isdir(resources_path):
        raise ComponentsError(f"resources path {resources_path!r} is not a directory")

    names: list[str] = []
    seen: dict[str, str] = {}
    for filename in sorted(os.listdir(resources_path)):
        if not filename.endswith((".yaml", ".yml")):
            continue
        path = os.path.join(resources_path, filename)
        if not os.path.isfile(path):
            continue
        for doc in _documents(path):
            if doc.get("kind") != "Component":
                continue
            name, type_ = _name_and_type(doc, path)
            if name in seen:
                raise ComponentsError(
                    f"component {name!r} is defined twice ({seen[name]} and {path})"
                )
            seen[name] = path
            if type_.startswith("state."):
                log.info(
                    "component %r (%s) from %s: served by the embedded SQLite store;"
                    " its connection metadata is not used",
                    name,
                    type_,
                    filename,
                )
                names.append(name)
            else:
                log.info(
                    "component %r (%s) from %s: ignored, the embedded sidecar serves"
                    " only state stores",
                    name,
                    type_,
                    filename,
                )
    if not names:
        log.info(
            "no state store component in %s: serving state store %r from the embedded store",
            resources_path,
            DEFAULT_STATE_STORE,
        )
        return [DEFAULT_STATE_STORE]
    return names


def _documents(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
    except OSError as exc:
        raise ComponentsError(f"cannot read component file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ComponentsError(f"component file {path} is not valid YAML: {first_line}") from exc
    return [doc for doc in docs if isinstance(doc, dict)]


def _name_and_type(doc: dict[str, Any], path: str) -> tuple[str, str]:
    metadata = doc.get("metadata")
    spec = doc.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    type_ = spec.get("type") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not name:
        raise ComponentsError(f"a component in {path} has no metadata.name")
    if not isinstance(type_, str) or not type_:
        raise ComponentsError(f"component {name!r} in {path} has no spec.type")
    return name, type_
