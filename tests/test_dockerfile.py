"""The Dockerfile builds the image deploy/ names, and hadolint finds nothing in it.

No Docker engine runs here, so the image is not built in the suite (docs/dapr.md); what can be
checked without one is held here: the lint, and that the image matches what the Kubernetes
manifests expect of it (name and version, user, port, commands, environment, writable directory).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).with_name("hadolint")
# Read by programs in the image other than ours: gunicorn (PORT, WEB_CONCURRENCY) and the Dapr
# SDK (DAPR_API_TOKEN, DAPR_GRPC_PORT).
READ_BY_OTHERS = {"PORT", "WEB_CONCURRENCY", "DAPR_API_TOKEN", "DAPR_GRPC_PORT"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in args_of("ENV"):
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def app_containers() -> list[dict]:
    """Every container (jobs included) in deploy/ that runs our image."""
    found = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {})
            for container in (pod or {}).get("containers", []):
                if container["image"].startswith("dapr-orders:"):
                    found.append({**container, "_file": path.name})
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_manifests_name_the_image_this_dockerfile_builds():
    labels = dict(pair.split("=", 1) for pair in shlex.split(" ".join(args_of("LABEL"))))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    containers = app_containers()

    assert {c["_file"] for c in containers} >= {"web.yaml", "worker.yaml", "migrate-job.yaml"}
    assert labels["org.opencontainers.image.title"] == "dapr-orders"
    assert labels["org.opencontainers.image.version"] == version
    assert {c["image"] for c in containers} == {f"dapr-orders:{version}"}


def test_image_runs_as_the_user_the_manifests_require():
    (user,) = args_of("USER")
    for container in app_containers():
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert user == f"{context['runAsUser']}:{context['runAsGroup']}", container["_file"]


def test_web_port_is_exposed_and_gunicorn_binds_it():
    exposed = {int(port) for args in args_of("EXPOSE") for port in args.split()}
    (web,) = [c for c in app_containers() if c["_file"] == "web.yaml"]
    env = {e["name"]: e.get("value") for e in web["env"]}

    assert {p["containerPort"] for p in web["ports"]} <= exposed
    assert int(env["PORT"]) in exposed
    assert int(image_env()["PORT"]) in exposed


@pytest.mark.parametrize("container", app_containers(), ids=lambda c: c["_file"])
def test_manifest_command_exists_in_the_image(container):
    copied = {shlex.split(args)[-2].lstrip("./") for args in args_of("COPY")}
    requirements = (ROOT / "requirements.txt").read_text().lower()
    command = container.get("command") or shlex.split(args_of("CMD")[0].replace('"', ""))

    if command[0] == "gunicorn":
        module = command[1]
        assert re.search(r"^gunicorn\b", requirements, re.M)
        assert module.split(".")[0] in copied
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    else:
        assert command[:2] == ["python", "manage.py"]
        assert "manage.py" in copied
        name = command[2]
        ours = ROOT / "orders" / "management" / "commands" / f"{name}.py"
        assert ours.is_file() or name in {"migrate", "check"}, name


def test_image_copies_every_package_the_app_imports():
    copied = {shlex.split(args)[-2].lstrip("./") for args in args_of("COPY")}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"bench", "tests", "tools"}

    assert packages <= copied


@pytest.mark.parametrize("container", app_containers(), ids=lambda c: c["_file"])
def test_every_manifest_variable_is_read_by_the_app(container):
    """A variable nobody reads is a setting that silently does nothing."""
    source = "\n".join(
        p.read_text()
        for pkg in ("ordersite", "orders", "sidecar")
        for p in (ROOT / pkg).rglob("*.py")
    )
    env = container.get("env", [])
    expanded = " ".join(str(e.get("value", "")) for e in env)
    for variable in env:
        name = variable["name"]
        used = name in READ_BY_OTHERS or f'"{name}"' in source or f"$({name})" in expanded
        assert used, f"{container['_file']}: {name} is set but nothing reads it"


def test_var_dir_is_the_writable_volume_and_nothing_secret_is_baked_in():
    env = image_env()
    for container in app_containers():
        manifest_env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert manifest_env["ORDERS_VAR_DIR"] == env["ORDERS_VAR_DIR"]
        assert env["ORDERS_VAR_DIR"] in mounts
    secret_like = re.compile(r"SECRET|PASSWORD|TOKEN|KEY", re.I)
    baked = [name for name in env if secret_like.search(name)]
    baked += [a for a in args_of("ARG") if secret_like.search(a)]
    assert baked == []
