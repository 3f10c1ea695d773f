"""deploy/k8s and deploy/grafana agree with the code they deploy and watch.

The Kubernetes manifests must parse, name only real settings or command variables, run
only real ``freshet`` commands with options those commands accept, and wire the probes,
ports and volumes the way the settings say. The Grafana dashboard must query only
metric names that the worker's and the API's registries export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import typer
import yaml

from freshet.api.metrics import ApiMetrics
from freshet.cli import app
from freshet.settings import Secret, Settings
from streams.runtime.metrics import WorkerMetrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
DASHBOARD = DEPLOY / "grafana" / "freshet-dashboard.json"

Doc = dict[str, Any]


def _cli() -> Any:
    """The click group behind the Typer app (Typer vendors its own click)."""
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


def _command_envvars(command: Any) -> Iterator[str]:
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            yield envvar
        elif envvar:
            yield from envvar
    for sub in getattr(command, "commands", {}).values():
        yield from _command_envvars(sub)


SETTINGS_VARS = {f"FRESHET_{f.name.upper()}" for f in fields(Settings)}
SECRET_VARS = {
    f"FRESHET_{name.upper()}" for name, t in get_type_hints(Settings).items() if t is Secret
}
COMMAND_VARS = set(_command_envvars(_cli())) - SETTINGS_VARS


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    out: list[Doc] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
            out.append(doc)
    return out


def _one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    for doc in docs:
        if doc["kind"] in {"Deployment", "CronJob"}:
            for container in _pod_spec(doc)["containers"]:
                yield doc, container


def test_kustomization_lists_every_manifest_and_image(docs: list[Doc]) -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == manifests
    images = {i["name"] for i in kust["images"]}
    assert {c["image"] for _, c in _containers(docs)} <= images
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ConfigMap",
            "Secret",
            "PersistentVolumeClaim",
            "Deployment",
            "Deployment",
            "Service",
            "CronJob",
            "PodDisruptionBudget",
        ]
    )
    assert kust["namespace"] == _one(docs, "Namespace")["metadata"]["name"]


def test_every_variable_is_a_setting_or_a_command_variable(docs: list[Doc]) -> None:
    assert COMMAND_VARS, "no command variables found; the CLI walk is broken"
    named: set[str] = set()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            named |= set(doc["data"])
        if doc["kind"] == "Secret":
            named |= set(doc["stringData"])
    for _, container in _containers(docs):
        named |= {e["name"] for e in container.get("env", [])}
    unknown = sorted(n for n in named if n not in SETTINGS_VARS | COMMAND_VARS)
    assert not unknown, f"manifests name variables no code reads: {unknown}"


def test_secrets_only_in_the_secret(docs: list[Doc]) -> None:
    secret = _one(docs, "Secret")
    assert set(secret["stringData"]) == SECRET_VARS
    config = _one(docs, "ConfigMap")["data"]
    assert not SECRET_VARS & set(config)
    assert "@" not in config["FRESHET_REDIS_URL"], "no credentials inside the Redis URL"
    # The ConfigMap's values parse as the settings they are.
    Settings.from_env(config)


def test_containers_run_real_commands_with_real_options(docs: list[Doc]) -> None:
    cli = _cli()
    commands: set[str] = set()
    for doc, container in _containers(docs):
        assert container["command"] == ["freshet"], doc["metadata"]["name"]
        name, *rest = container["args"]
        assert name in cli.commands, f"`freshet {name}` is not a command"
        # Parsing refuses an unknown option or a bad value, without running anything.
        cli.commands[name].make_context(name, list(rest), resilient_parsing=False)
        commands.add(name)
        res = container["resources"]
        assert {"cpu", "memory"} <= res["requests"].keys() & res["limits"].keys()
        refs = {
            r.get("configMapRef", r.get("secretRef", {})).get("name") for r in container["envFrom"]
        }
        assert refs == {"freshet-settings", "freshet-secrets"}
    assert commands == {"worker", "api", "retrain"}


def test_worker_deployment(docs: list[Doc]) -> None:
    config = Settings.from_env(_one(docs, "ConfigMap")["data"])
    worker = _one(docs, "Deployment", "freshet-worker")
    assert 1 <= worker["spec"]["replicas"] <= config.topic_partitions
    pod = _pod_spec(worker)
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.metrics_port > 0 and ports["metrics"] == config.metrics_port
    assert container["readinessProbe"]["tcpSocket"]["port"] in {"metrics", config.metrics_port}
    assert "exec" in container["livenessProbe"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(config.bundle_dir) == "/models" and mounts["models"] == "/models"
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    pvc = _one(docs, "PersistentVolumeClaim", claim)
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    pdb = _one(docs, "PodDisruptionBudget")
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_api_deployment_and_service(docs: list[Doc]) -> None:
    config = Settings.from_env(_one(docs, "ConfigMap")["data"])
    assert config.api_host == "0.0.0.0"
    api = _one(docs, "Deployment", "freshet-api")
    (container,) = _pod_spec(api)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == config.api_port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = _one(docs, "Service", "freshet-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {"http", config.api_port}


def test_retrain_cronjob_writes_the_shared_models_volume(docs: list[Doc]) -> None:
    job = _one(docs, "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(job["spec"]["schedule"].split()) == 5
    pod = _pod_spec(job)
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and not mounts["models"].get("readOnly")
    worker_pod = _pod_spec(_one(docs, "Deployment", "freshet-worker"))
    claims = [
        {v["name"]: v for v in p["volumes"]}["models"]["persistentVolumeClaim"]["claimName"]
        for p in (pod, worker_pod)
    ]
    assert claims[0] == claims[1]


# --- Grafana -----------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    """Every series name the worker's and the API's registries can export."""
    names: set[str] = set()
    for registry in (WorkerMetrics().registry, ApiMetrics().registry):
        for family in registry.collect():
            names |= {family.name + s for s in _SUFFIXES[family.type]}
    return names


def dashboard_metrics(dashboard: Any) -> set[str]:
    """``freshet_*`` names used in the dashboard's query expressions."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            expr = node.get("expr")
            if isinstance(expr, str):
                found.update(re.findall(r"\bfreshet_[a-z0-9_]+", expr))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    return found


def test_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = dashboard_metrics(dashboard)
    unknown = sorted(used - exported_names())
    assert not unknown, f"the dashboard queries metrics the code does not export: {unknown}"
    # The panels the issue asks for are there.
    for needed in (
        "freshet_events_total",
        "freshet_event_to_publish_seconds_bucket",
        "freshet_lists_total",
        "freshet_dead_letters_total",
        "freshet_consumer_lag",
        "freshet_model_info",
        "freshet_redis_round_trips_total",
        "freshet_encoder_seconds_bucket",
        "freshet_recommend_seconds_bucket",
    ):
        assert needed in used, needed
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_check_catches_a_misspelt_metric() -> None:
    fake = {"panels": [{"targets": [{"expr": "rate(freshet_event_total[5m])"}]}]}
    assert dashboard_metrics(fake) - exported_names() == {"freshet_event_total"}
