"""docker-compose.yml and deploy/k8s read as the issue asks, with names the services read.

`make deploy-check` validates the same files with the real tools (docker-compose config,
kustomize, kubernetes-validate --strict, hadolint); this checks what those cannot: that each
setting is one a service actually reads, and that the pieces agree with each other.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from order_service.settings import OrderSettings
from product_service.settings import ProductSettings
from tests.support.dockerfiles import REPOSITORY
from user_service.settings import UserSettings

pytestmark = pytest.mark.deploy

K8S = REPOSITORY / "deploy" / "k8s"
HTTP = {"user_service": 8082, "product_service": 8081, "order_service": 8080}
SETTINGS = {"user_service": UserSettings, "product_service": ProductSettings}
SETTINGS["order_service"] = OrderSettings
# Read by gunicorn's config, boto3, the image's entrypoint or Python itself.
OUTSIDE_SETTINGS = {
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_WORKER_CLASS",
    "GUNICORN_TIMEOUT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "PORT",
    "SERVICE_PACKAGE",
    "RUN_MIGRATIONS",
    "PRESTART_ATTEMPTS",
    "PYTHONUNBUFFERED",
}


def _read_names(settings: type[Any]) -> set[str]:
    names = set()
    for field_name, field in settings.model_fields.items():
        names.add(field_name.upper())
        choices = getattr(field.validation_alias, "choices", None) or []
        names.update(str(choice).upper() for choice in choices)
    return names


def _assert_read_by(service: str, variables: set[str]) -> None:
    unknown = variables - _read_names(SETTINGS[service]) - OUTSIDE_SETTINGS
    assert not unknown, f"{service} reads no setting named {sorted(unknown)}"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())


def test_compose_services_ports_and_health_ordering():
    services = _compose()["services"]
    assert set(services) == {
        "user_db",
        "product_db",
        "order_db",
        "localstack",
        *HTTP,
        "order_worker",
    }
    for db in ("user_db", "product_db", "order_db"):
        assert services[db]["image"] == "mysql:8.4"
        assert services[db]["volumes"] and services[db]["healthcheck"]["test"]
    for service, port in HTTP.items():
        definition = services[service]
        assert definition["build"]["dockerfile"] == f"{service}/Dockerfile"
        assert any(str(p).endswith(f":{port}") for p in definition["ports"])
    for name, definition in services.items():
        for dependency, condition in (definition.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert (
                services[dependency].get("healthcheck")
                or "HEALTHCHECK"
                in (REPOSITORY / services[dependency]["build"]["dockerfile"]).read_text()
            ), dependency
    worker = services["order_worker"]
    assert worker["command"] == ["python", "-m", "order_service", "worker"]
    assert worker["image"] == services["order_service"]["image"]
    assert services["localstack"]["environment"]["SERVICES"] == "sqs"


def test_compose_environment_names_are_the_services_settings():
    services = _compose()["services"]
    for service in HTTP:
        _assert_read_by(service, set(services[service]["environment"]))
    _assert_read_by("order_service", set(services["order_worker"]["environment"]))


def test_env_example_defines_every_value_compose_requires():
    text = (REPOSITORY / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text)) | set(re.findall(r"\$\{(\w+)\}", text))
    example = (REPOSITORY / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert required <= defined, sorted(required - defined)
    ignored = (REPOSITORY / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "secrets/" in ignored


def test_localstack_init_script_is_the_same_for_compose_and_kubernetes():
    compose_copy = REPOSITORY / "deploy" / "localstack" / "create-queues.sh"
    k8s_copy = K8S / "overlays" / "local" / "localstack" / "create-queues.sh"
    assert compose_copy.read_bytes() == k8s_copy.read_bytes()
    mounts = _compose()["services"]["localstack"]["volumes"]
    assert any(
        m.startswith("./deploy/localstack/create-queues.sh:/etc/localstack/init/ready.d/")
        for m in mounts
    )


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _base(kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (K8S / "base").rglob("*.yaml"):
        for document in _documents(path):
            if document.get("kind") == kind:
                found[document["metadata"]["name"]] = document
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_k8s_base_http_services():
    deployments, services = _base("Deployment"), _base("Service")
    pdbs, hpas, jobs = _base("PodDisruptionBudget"), _base("HorizontalPodAutoscaler"), _base("Job")
    for package, port in HTTP.items():
        name = package.replace("_", "-")
        container = _container(deployments[name])
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["ports"][0]["containerPort"] == port
        assert services[name]["spec"]["ports"][0]["port"] == port
        resources = container["resources"]
        assert resources["requests"] and resources["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert secrets == [f"{name}-secrets"]
        # Selectors name the HTTP pods only: the migration Job's pods share the name label.
        http_pods = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "http"}
        assert deployments[name]["spec"]["selector"]["matchLabels"] == http_pods
        assert services[name]["spec"]["selector"] == http_pods
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == http_pods
        job_labels = jobs[f"{name}-migrate"]["spec"]["template"]["metadata"]["labels"]
        assert job_labels["app.kubernetes.io/component"] != "http"
        assert hpas[name]["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"], "the HPA owns the replica count"
        job = _container(jobs[f"{name}-migrate"])
        assert job["args"] == ["python", "-m", package, "prestart"]
        assert job["image"] == container["image"]
    prune = _base("CronJob")["product-service-prune"]["spec"]["jobTemplate"]
    prune_container = _container(prune)
    assert prune_container["args"] == ["python", "-m", "product_service", "prune-reservations"]
    assert prune_container["image"] == _container(deployments["product-service"])["image"]
    relay = _container(deployments["order-relay"])
    assert relay["args"] == ["python", "-m", "order_service", "worker"]
    assert relay["livenessProbe"]["exec"]["command"] == ["python", "-m", "order_service.heartbeat"]
    assert {"name": "WORKER_METRICS_PORT", "value": "9100"} in relay["env"]
    assert relay["ports"] == [{"name": "metrics", "containerPort": 9100}]
    assert relay["image"] == _container(deployments["order-service"])["image"]


def test_k8s_configuration_names_are_the_services_settings():
    literals: dict[str, set[str]] = {}
    for path in (K8S / "base").rglob("kustomization.yaml"):
        for generator in yaml.safe_load(path.read_text()).get("configMapGenerator", []):
            keys = {literal.split("=", 1)[0] for literal in generator["literals"]}
            literals[generator["name"]] = keys
    for package in HTTP:
        _assert_read_by(package, literals[f"{package.replace('_', '-')}-config"])
        _assert_read_by(package, literals["shop-config"])


def test_k8s_overlays():
    local = yaml.safe_load((K8S / "overlays" / "local" / "kustomization.yaml").read_text())
    aws_dir = K8S / "overlays" / "aws"
    aws = yaml.safe_load((aws_dir / "kustomization.yaml").read_text())
    assert {"../../base", "mysql.yaml", "localstack.yaml"} <= set(local["resources"])
    local_config = next(
        g for g in local["configMapGenerator"] if g["name"] == "order-service-config"
    )
    assert "SQS_ENDPOINT_URL=http://localstack:4566" in local_config["literals"]
    statefulsets = [
        d["metadata"]["name"]
        for d in _documents(K8S / "overlays" / "local" / "mysql.yaml")
        if d["kind"] == "StatefulSet"
    ]
    assert sorted(statefulsets) == ["order-db", "product-db", "user-db"]

    # Real SQS: no LocalStack and no endpoint override, in the aws overlay or the base.
    assert aws["resources"] == ["namespace.yaml", "../../base"]
    generators = list(aws.get("configMapGenerator", []))
    for path in (K8S / "base").rglob("kustomization.yaml"):
        generators += yaml.safe_load(path.read_text()).get("configMapGenerator", [])
    literals = [literal for g in generators for literal in g.get("literals", [])]
    assert not [literal for literal in literals if literal.startswith("SQS_ENDPOINT_URL")]
    assert "localstack" not in yaml.safe_dump(aws.get("patches", [])).lower()
    assert "SQS_ENDPOINT_URL" not in "".join(
        yaml.safe_dump(d) for p in (K8S / "base").rglob("*.yaml") for d in _documents(p)
    )
    (irsa,) = _documents(aws_dir / "serviceaccount-irsa.yaml")
    assert irsa["kind"] == "ServiceAccount" and irsa["metadata"]["name"] == "order-service"
    assert irsa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    for name in ("order-service", "order-relay"):
        assert _base("Deployment")[name]["spec"]["template"]["spec"]["serviceAccountName"] == (
            "order-service"
        )


def test_local_secrets_script_makes_secrets_that_agree():
    """DRY_RUN=1 prints what create-secrets.sh would apply: each database URL must carry its
    database's password, and both services the same service-account password."""
    if not shutil.which("kubectl") or not shutil.which("openssl"):
        pytest.skip("create-secrets.sh needs kubectl and openssl")
    script = K8S / "overlays" / "local" / "create-secrets.sh"
    done = subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "DRY_RUN": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    secrets = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
        for d in yaml.safe_load_all(done.stdout)
        if d
    }
    for package in HTTP:
        short = package.removesuffix("_service")
        service = secrets[f"{short}-service-secrets"]
        url = sa.make_url(service[f"{short.upper()}_DATABASE_URL"])
        assert url.host == f"{short}-db" and url.username == "shop"
        assert url.password == secrets[f"{short}-db-secrets"]["MYSQL_PASSWORD"]
        _assert_read_by(package, set(service))
    service_passwords = {
        secrets[f"{s}-service-secrets"]["SERVICE_PASSWORD"] for s in ("user", "order")
    }
    assert len(service_passwords) == 1
    assert "BEGIN PRIVATE KEY" in secrets["user-service-secrets"]["JWT_PRIVATE_KEY"]
