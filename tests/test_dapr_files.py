"""The files that run the app on real Dapr, checked against the schemas of the tools that read them.

daprd and the Dapr CLI both ignore unknown keys silently (the CLI
decodes dapr.yaml with yaml.v2, daprd's loader and the Kubernetes API prune Component fields),
so a misspelt key would only show up as a sidecar that quietly does the wrong thing. These tests
parse dapr.yaml, components/, config/ and deploy/ and validate them:

- the run file and Dapr's Component/Configuration against JSON Schemas in tests/schemas/,
  written from the CLI's structs and Dapr's CRDs (each schema cites its sources);
- every other Kubernetes object against the OpenAPI schemas bundled with kubernetes-validate,
  in strict mode (unknown fields fail);
- the cross-references no schema sees: ports, app ids, Services and the pods they select,
  Secrets and the commands in docs/dapr.md that create them.

Each validator is also shown to reject a misspelt copy. Plain functions: no Django, no database.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RUN_FILE = ROOT / "dapr.yaml"
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "dapr.md"

WORKER_APP_ID = "orders-worker"
WEB_APP_ID = "orders-web"
DAPR_KINDS = {"Component", "Configuration"}
# The oldest Kubernetes the manifests promise to fit, and the newest schema the package ships.
K8S_VERSIONS = ("1.27", kubernetes_validate.latest_version())
# Dapr resource names and app ids: DNS labels (app ids also name Services `<app id>-dapr`,
# and may not contain dots, which separate the parts of the workflow actor type).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DAPRD_API_PORTS = {50001, 3500}  # daprd's gRPC and HTTP API ports in a pod


# --- loading ------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"})


@cache
def validator(schema_file: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(schema_file: str, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(schema_file).iter_errors(doc)
    ]


def dapr_resource_errors(doc: dict[str, Any]) -> list[str]:
    schema = {"Component": "dapr-component.schema.json"}.get(
        doc.get("kind", ""), "dapr-configuration.schema.json"
    )
    return schema_errors(schema, doc)


def k8s_errors(doc: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def run_file() -> dict[str, Any]:
    [doc] = load_documents(RUN_FILE)
    return doc


def run_app(doc: dict[str, Any], app_id: str) -> dict[str, Any]:
    [app] = [a for a in doc["apps"] if a.get("appID") == app_id]
    return app


def deploy_documents() -> list[dict[str, Any]]:
    return [doc for path in yaml_files(DEPLOY) for doc in load_documents(path)]


def deploy_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in deploy_documents() if d["kind"] == kind}


def pod_templates() -> dict[str, dict[str, Any]]:
    """Pod templates of every workload in deploy/, by workload name."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in deploy_documents()
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}
    }


def app_templates() -> dict[str, dict[str, Any]]:
    """Pod templates running this application's image (web, worker, migrate)."""
    templates = pod_templates()
    image = templates["orders-web"]["spec"]["containers"][0]["image"]
    return {
        name: t for name, t in templates.items() if t["spec"]["containers"][0]["image"] == image
    }


def annotations(template: dict[str, Any]) -> dict[str, str]:
    return template["metadata"].get("annotations", {})


def container_env(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [container] = template["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def is_actor_state_store(component: dict[str, Any]) -> bool:
    return any(
        m["name"] == "actorStateStore" and m.get("value") == "true"
        for m in component["spec"]["metadata"]
    )


def dapr_annotation_problems(template: dict[str, Any]) -> list[str]:
    """What the sidecar injector would silently ignore or refuse in a pod's annotations."""
    known = set(json.loads((SCHEMAS / "dapr-annotations.json").read_text())["annotations"])
    found = annotations(template)
    problems = [
        f"unknown annotation {k}" for k in found if k.startswith("dapr.io/") and k not in known
    ]
    if found.get("dapr.io/enabled") == "true":
        app_id = found.get("dapr.io/app-id", "")
        if not DNS_LABEL.match(app_id):
            problems.append(f"dapr.io/app-id {app_id!r} is not a DNS label")
        for key in ("dapr.io/app-port", "dapr.io/graceful-shutdown-seconds"):
            if key in found and not found[key].isdigit():
                problems.append(f"{key} must be a number in a string, not {found[key]!r}")
    return problems


# --- dapr.yaml ----------------------------------------------------------------------------


def test_run_file_matches_cli_schema():
    assert schema_errors("dapr-run-file.schema.json", run_file()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["apps"][1].__setitem__("appPrt", 8000), "'appPrt' was unexpected"),
        (
            lambda d: d.__setitem__("common", {"resourcePaths": ["x"]}),
            "'resourcePaths' was unexpected",
        ),
        (lambda d: d["apps"][0].__setitem__("daprGRPCPort", "50010"), "is not of type 'integer'"),
        (lambda d: d["apps"][1]["env"].__setitem__("PORT", 8000), "is not of type 'string'"),
        (lambda d: d["apps"][0].pop("appDirPath"), "'appDirPath' is a required property"),
        (lambda d: d.pop("version"), "'version' is a required property"),
    ],
    ids=[
        "misspelt-app-key",
        "misspelt-common-key",
        "port-as-string",
        "env-not-string",
        "no-appDirPath",
        "no-version",
    ],
)
def test_run_file_schema_rejects_mistake(mutate, expected):
    doc = copy.deepcopy(run_file())
    mutate(doc)
    errors = schema_errors("dapr-run-file.schema.json", doc)
    assert any(expected in e for e in errors), errors


def test_run_file_apps_are_worker_then_web_with_unique_ids():
    ids = [app["appID"] for app in run_file()["apps"]]
    # Apps start in file order; the web process needs the worker's daprd.
    assert ids == [WORKER_APP_ID, WEB_APP_ID]
    assert all(DNS_LABEL.match(i) for i in ids)


def test_run_file_paths_exist():
    """The CLI refuses to start on a missing path; relative app paths resolve against appDirPath."""
    for app in run_file()["apps"]:
        app_dir = ROOT / app["appDirPath"]
        assert app_dir.is_dir(), app["appDirPath"]
        assert app["resourcesPaths"], "an app without resourcesPaths falls back to ~/.dapr"
        for resources in app["resourcesPaths"]:
            assert (app_dir / resources).is_dir(), resources
        assert (app_dir / app["configFilePath"]).is_file(), app["configFilePath"]


def test_run_file_each_app_loads_exactly_one_valid_actor_state_store():
    for app in run_file()["apps"]:
        components = [
            doc
            for resources in app["resourcesPaths"]
            for path in yaml_files(ROOT / app["appDirPath"] / resources)
            for doc in load_documents(path)
            if doc.get("kind") == "Component"
        ]
        for component in components:
            assert dapr_resource_errors(component) == []
        stores = [c["metadata"]["name"] for c in components if is_actor_state_store(c)]
        assert len(stores) == 1, f"{app['appID']}: actor state stores {stores}"


def test_run_file_configuration_enables_tracing():
    for app in run_file()["apps"]:
        [config] = load_documents(ROOT / app["appDirPath"] / app["configFilePath"])
        assert dapr_resource_errors(config) == []
        assert config["kind"] == "Configuration"
        assert float(config["spec"]["tracing"]["samplingRate"]) > 0


def test_run_file_web_port_agrees_with_gunicorn_bind():
    web = run_app(run_file(), WEB_APP_ID)
    command = web["command"]
    bind = command[command.index("--bind") + 1]
    assert bind == f"127.0.0.1:{web['appPort']}"  # loopback only, like the embedded mode
    assert web["env"]["PORT"] == str(web["appPort"])


def test_run_file_web_sends_workflow_calls_to_the_worker_sidecar():
    doc = run_file()
    worker, web = run_app(doc, WORKER_APP_ID), run_app(doc, WEB_APP_ID)
    assert worker["daprGRPCPort"] > 0 and worker["daprHTTPPort"] > 0, "must be pinned"
    assert web["env"]["DAPR_GRPC_PORT"] == str(worker["daprGRPCPort"])
    assert web["env"]["DAPR_HTTP_PORT"] == str(worker["daprHTTPPort"])
    pinned = [worker["daprGRPCPort"], worker["daprHTTPPort"], web["appPort"]]
    assert len(set(pinned)) == len(pinned)


GUNICORN_TIMEOUT_S = 30  # gunicorn's default worker timeout; no command here changes it


def test_workflow_client_calls_have_a_deadline_on_dapr():
    """daprd holds a schedule or an event while no worker is connected: without a deadline an
    order placed then hangs its web request until gunicorn kills it (tests/realdapr checks
    the outcome on daprd)."""
    doc = run_file()
    common = (doc.get("common") or {}).get("env", {})
    for app_id in (WORKER_APP_ID, WEB_APP_ID):
        env = {**common, **run_app(doc, app_id).get("env", {})}
        assert 0 < float(env["DAPR_API_TIMEOUT_SECONDS"]) < GUNICORN_TIMEOUT_S, app_id
    for name in (WEB_APP_ID, WORKER_APP_ID):
        value = container_env(pod_templates()[name])["DAPR_API_TIMEOUT_SECONDS"]["value"]
        assert 0 < float(value) < GUNICORN_TIMEOUT_S, name


def test_run_file_commands_run_the_worker_and_the_web_process():
    doc = run_file()
    worker, web = run_app(doc, WORKER_APP_ID), run_app(doc, WEB_APP_ID)
    assert worker["command"][1:] == ["manage.py", "runworker"]
    assert web["command"][1] == "ordersite.wsgi"
    for app in (worker, web):
        executable = ROOT / app["appDirPath"] / app["command"][0]
        assert app["command"][0].startswith(".venv/bin/"), "the Makefile's virtualenv"
        if (ROOT / ".venv").is_dir():
            assert executable.exists(), executable


def test_run_file_commands_name_project_modules():
    assert (ROOT / "manage.py").is_file()
    assert (ROOT / "ordersite" / "wsgi.py").is_file()


# --- components/ and config/ --------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(ROOT / "components"), ids=lambda p: p.name)
def test_component_file_is_valid(path):
    for doc in load_documents(path):
        assert dapr_resource_errors(doc) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["spec"].__setitem__("metdata", []), "'metdata' was unexpected"),
        (
            lambda c: c["spec"]["metadata"][0].__setitem__("name", "redisHots"),
            "'redisHots' is not one of",
        ),
        (
            lambda c: c["spec"]["metadata"][2].__setitem__("value", True),
            "True is not of type 'string'",
        ),
        (lambda c: c["spec"].pop("version"), "'version' is a required property"),
        (lambda c: c.__setitem__("scope", ["orders-web"]), "'scope' was unexpected"),
    ],
    ids=["misspelt-spec-key", "misspelt-redis-metadata", "unquoted-true", "no-version", "scope"],
)
def test_component_schema_rejects_mistake(mutate, expected):
    [component] = load_documents(ROOT / "components" / "statestore.yaml")
    mutated = copy.deepcopy(component)
    mutate(mutated)
    errors = dapr_resource_errors(mutated)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["spec"].__setitem__("tracin", {}), "'tracin' was unexpected"),
        (lambda c: c["spec"]["tracing"].__setitem__("samplingRate", 1), "is not of type 'string'"),
        (
            lambda c: c["spec"]["tracing"]["zipkin"].__setitem__(
                "endpointAdress", c["spec"]["tracing"]["zipkin"].pop("endpointAddress")
            ),
            "'endpointAddress' is a required property",
        ),
    ],
    ids=["misspelt-section", "rate-not-string", "misspelt-endpoint"],
)
def test_configuration_schema_rejects_mistake(mutate, expected):
    [config] = load_documents(ROOT / "config" / "dapr-config.yaml")
    mutated = copy.deepcopy(config)
    mutate(mutated)
    errors = dapr_resource_errors(mutated)
    assert any(expected in e for e in errors), errors


# --- deploy/ ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", yaml_files(DEPLOY), ids=lambda p: p.name)
def test_manifest_is_valid(path, version):
    for doc in load_documents(path):
        if doc.get("kind") in DAPR_KINDS and doc.get("apiVersion") == "dapr.io/v1alpha1":
            errors = dapr_resource_errors(doc)
        else:
            errors = k8s_errors(doc, version)
        assert errors == [], f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda c: c.__setitem__("imagePullPolicyy", "IfNotPresent"),
            "'imagePullPolicyy' was unexpected",
        ),
        (lambda c: c["ports"][0].__setitem__("containerPort", "8000"), "is not of type 'integer'"),
        (
            lambda c: c["env"][0].__setitem__("valueFrom", {"secretRef": {}}),
            "'secretRef' was unexpected",
        ),
    ],
    ids=["misspelt-field", "port-as-string", "misspelt-nested-field"],
)
def test_kubernetes_schema_rejects_mistake(mutate, expected):
    web = copy.deepcopy(deploy_objects("Deployment")["orders-web"])
    mutate(web["spec"]["template"]["spec"]["containers"][0])
    errors = k8s_errors(web, K8S_VERSIONS[0])
    assert any(expected in e for e in errors), errors


def test_dapr_annotations_are_known_to_the_injector():
    for name, template in pod_templates().items():
        assert dapr_annotation_problems(template) == [], name


def test_dapr_annotation_check_rejects_mistake():
    web = copy.deepcopy(pod_templates()["orders-web"])
    web["metadata"]["annotations"]["dapr.io/app-prot"] = "8000"
    web["metadata"]["annotations"]["dapr.io/app-id"] = "orders.web"
    problems = dapr_annotation_problems(web)
    assert "unknown annotation dapr.io/app-prot" in problems
    assert any("not a DNS label" in p for p in problems)


def test_dapr_apps_match_the_run_file():
    """Same app ids in both modes; web has an app port equal to gunicorn's, the worker none."""
    templates = pod_templates()
    configurations = deploy_objects("Configuration")
    dapr_apps = {
        annotations(t)["dapr.io/app-id"]: t
        for t in templates.values()
        if annotations(t).get("dapr.io/enabled") == "true"
    }
    assert set(dapr_apps) == {a["appID"] for a in run_file()["apps"]}
    for template in dapr_apps.values():
        assert annotations(template)["dapr.io/config"] in configurations
    web = dapr_apps[WEB_APP_ID]
    [port] = web["spec"]["containers"][0]["ports"]
    assert annotations(web)["dapr.io/app-port"] == str(port["containerPort"])
    assert container_env(web)["PORT"]["value"] == str(port["containerPort"])
    assert "dapr.io/app-port" not in annotations(dapr_apps[WORKER_APP_ID])
    assert dapr_apps[WORKER_APP_ID]["spec"]["containers"][0]["command"][-1] == "runworker"


def test_migrate_job_runs_migrate_without_a_sidecar():
    job = pod_templates()["orders-migrate"]
    assert annotations(job).get("dapr.io/enabled") != "true", "a Job with daprd never completes"
    assert job["spec"]["containers"][0]["command"][-2:] == ["migrate", "--noinput"]


def selected_template(service: dict[str, Any]) -> dict[str, Any]:
    selector = service["spec"]["selector"]
    matches = [
        t for t in pod_templates().values() if selector.items() <= t["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, (
        f"Service {service['metadata']['name']} selects {len(matches)} workloads"
    )
    return matches[0]


def test_services_select_one_workload_and_reach_its_ports():
    for name, service in deploy_objects("Service").items():
        template = selected_template(service)
        container_ports = {
            p.get("name"): p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target in DAPRD_API_PORTS:
                listen = annotations(template).get("dapr.io/sidecar-listen-addresses", "")
                assert "0.0.0.0" in listen, f"{name}: the sidecar listens on loopback only"
            elif isinstance(target, str):
                assert target in container_ports, f"{name}: no container port named {target}"
            else:
                assert target in container_ports.values(), f"{name}: nothing listens on {target}"


def test_web_sends_workflow_calls_to_the_worker_sidecars_with_the_token():
    templates = pod_templates()
    web, worker = templates["orders-web"], templates["orders-worker"]
    host = container_env(web)["DAPR_RUNTIME_HOST"]["value"]
    service = deploy_objects("Service")[host]
    assert annotations(selected_template(service))["dapr.io/app-id"] == WORKER_APP_ID
    assert 50001 in {p["port"] for p in service["spec"]["ports"]}
    token_secret = annotations(worker)["dapr.io/api-token-secret"]
    for template in (web, worker):
        assert annotations(template)["dapr.io/api-token-secret"] == token_secret
        ref = container_env(template)["DAPR_API_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": token_secret, "key": "token"}  # the key Dapr reads


def test_web_and_worker_share_image_database_and_settings():
    assert set(app_templates()) == {"orders-web", "orders-worker", "orders-migrate"}
    apps = [app_templates()[n] for n in ("orders-web", "orders-worker", "orders-migrate")]
    for key in ("DATABASE_URL", "DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "ORDERS_VAR_DIR"):
        assert len({json.dumps(container_env(t)[key], sort_keys=True) for t in apps}) == 1, key
    for key in ("ORDER_APPROVAL_THRESHOLD", "ORDER_APPROVAL_TIMEOUT"):
        assert container_env(apps[0])[key] == container_env(apps[1])[key], key


# Variables read by something other than the Django settings.
NOT_SETTINGS = {
    "PORT": "gunicorn's bind address",
    "WEB_CONCURRENCY": "gunicorn's worker count",
    "POSTGRES_PASSWORD": "expanded into DATABASE_URL by Kubernetes",
    "DAPR_GRPC_PORT": "orders/workflow_client.py, via the settings",
    "DAPR_HTTP_PORT": "the Dapr SDK",
    "DAPR_API_TOKEN": "the Dapr SDK",
    "DAPR_RUNTIME_HOST": "the Dapr SDK (and the engine address, orders/workflow_client.py)",
    "DAPR_API_TIMEOUT_SECONDS": "the Dapr SDK (a deadline on the workflow client's calls)",
}


def test_app_environment_names_are_read_by_the_settings():
    """A renamed setting would leave a manifest setting a variable nobody reads."""
    settings_file = ROOT / "ordersite" / "settings.py"
    source = settings_file.read_text()
    names = {name for t in app_templates().values() for name in container_env(t)}
    names |= {n for app in run_file()["apps"] for n in app.get("env", {})}
    names |= set((run_file().get("common") or {}).get("env", {}))
    unread = sorted(
        n for n in names - NOT_SETTINGS.keys() if not re.search(rf"[\"']{n}[\"']", source)
    )
    assert unread == []


def test_no_secret_is_written_in_a_manifest():
    for name, template in pod_templates().items():
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if re.search(r"SECRET|PASSWORD|TOKEN", env["name"]):
                    assert "valueFrom" in env, f"{name}: {env['name']} written in plain text"
    assert "Secret" not in {d["kind"] for d in deploy_documents()}
    [store] = [c for c in deploy_objects("Component").values() if is_actor_state_store(c)]
    [password] = [m for m in store["spec"]["metadata"] if m["name"] == "redisPassword"]
    assert "secretKeyRef" in password


def test_hosts_in_urls_and_components_are_services_here():
    services = deploy_objects("Service")

    def assert_service(host: str, port: int) -> None:
        assert host in services, host
        assert port in {p["port"] for p in services[host]["spec"]["ports"]}, (host, port)

    [store] = [c for c in deploy_objects("Component").values() if is_actor_state_store(c)]
    [redis_host] = [m["value"] for m in store["spec"]["metadata"] if m["name"] == "redisHost"]
    host, port = redis_host.split(":")
    assert_service(host, int(port))
    for config in deploy_objects("Configuration").values():
        endpoint = config["spec"]["tracing"]["zipkin"]["endpointAddress"]
        host, port = re.match(r"https?://([^:/]+):(\d+)/", endpoint).groups()
        assert_service(host, int(port))
    url = container_env(pod_templates()["orders-web"])["DATABASE_URL"]["value"]
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()
    assert_service(host, int(port))


def test_kubernetes_and_self_hosted_state_stores_agree():
    [local] = load_documents(ROOT / "components" / "statestore.yaml")
    [cluster] = [c for c in deploy_objects("Component").values() if is_actor_state_store(c)]
    for key in ("type", "version", "initTimeout"):
        assert local["spec"][key] == cluster["spec"][key], key
    assert local["metadata"]["name"] == cluster["metadata"]["name"]
    assert set(cluster["scopes"]) == {a["appID"] for a in run_file()["apps"]}


# --- docs/dapr.md -------------------------------------------------------------------------


def documented_secrets() -> set[tuple[str, str]]:
    """(secret, key) pairs created by the `kubectl create secret generic` commands in the docs."""
    text = DOCS.read_text().replace("\\\n", " ")
    pairs = set()
    for line in text.splitlines():
        if "kubectl create secret generic" not in line:
            continue
        words = shlex.split(line[line.index("kubectl") :])
        for word in words[words.index("generic") + 2 :]:
            if word.startswith("--from-literal="):
                pairs.add((words[words.index("generic") + 1], word.split("=")[1]))
    return pairs


def referenced_secrets() -> set[tuple[str, str]]:
    refs = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                refs.add((ref["name"], ref["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(deploy_documents())
    for template in pod_templates().values():
        if "dapr.io/api-token-secret" in annotations(template):
            refs.add((annotations(template)["dapr.io/api-token-secret"], "token"))
    return refs


def test_docs_create_exactly_the_secrets_the_manifests_use():
    assert documented_secrets() == referenced_secrets()


def test_docs_name_files_that_exist_and_the_run_file_values():
    text = DOCS.read_text()
    for path in re.findall(r"`((?:components|config|deploy|tests/schemas)/[\w./-]*)`", text):
        assert (ROOT / path).exists(), path
    for app in run_file()["apps"]:
        assert f"`{app['appID']}`" in text
        assert " ".join(app["command"]) in text
    worker = run_app(run_file(), WORKER_APP_ID)
    assert f"HTTP {worker['daprHTTPPort']}, gRPC {worker['daprGRPCPort']}" in text
