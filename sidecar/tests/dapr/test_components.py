"""load_state_store_names: which Dapr components become embedded state stores."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sidecar.dapr.components import ComponentsError, load_state_store_names

REDIS_STATESTORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  initTimeout: 1m
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: actorStateStore
    value: "true"
"""


def test_no_resources_path_serves_statestore() -> None:
    assert load_state_store_names(None) == ["statestore"]


def test_state_components_are_served_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state_redis.yaml").write_text(REDIS_STATESTORE)
    (tmp_path / "more.yml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\n"
        "spec:\n  type: state.postgresql\n  version: v1\n"
        "---\n"
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n"
        "spec:\n  type: pubsub.redis\n  version: v1\n"
        "---\n"
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\n"
    )
    (tmp_path / "README.md").write_text("not a component")
    with caplog.at_level(logging.INFO, logger="sidecar.components"):
        names = load_state_store_names(str(tmp_path))
    assert names == ["orders", "statestore"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "'statestore' (state.redis)" in m and "served by the embedded SQLite store" in m
        for m in messages
    )
    assert any("'pubsub' (pubsub.redis)" in m and "ignored" in m for m in messages)


def test_folder_without_state_components_serves_statestore(tmp_path: Path) -> None:
    (tmp_path / "pubsub.yaml").write_text(
        "kind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n"
    )
    assert load_state_store_names(str(tmp_path)) == ["statestore"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentsError, match="is not a directory"):
        load_state_store_names(str(tmp_path / "nope"))


def test_duplicate_component_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(REDIS_STATESTORE)
    (tmp_path / "b.yaml").write_text(REDIS_STATESTORE)
    with pytest.raises(ComponentsError, match="'statestore' is defined twice"):
        load_state_store_names(str(tmp_path))


def test_malformed_yaml_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Component\nmetadata: [unclosed\n")
    with pytest.raises(ComponentsError) as info:
        load_state_store_names(str(tmp_path))
    assert "bad.yaml is not valid YAML" in str(info.value)
    assert "\n" not in str(info.value)


def test_component_without_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "anon.yaml").write_text("kind: Component\nspec:\n  type: state.redis\n")
    with pytest.raises(ComponentsError, match="has no metadata.name"):
        load_state_store_names(str(tmp_path))
