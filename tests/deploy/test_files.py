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
from shopctl.compose_secrets import compose_secrets
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
    "PRESTART_SECRETS",
    "PYTHONUNBUFFERED",
}


def _read_names(settings: type[Any]) -> set[str]:
    """Every variable a settings class reads: each setting's names and their *_FILE forms."""
    names = set()
    for field_name, field in settings.model_fields.items():
        names.add(field_name.upper())
        choices = getattr(field.validation_alias, "choices", None) or []
        names.update(str(choice).upper() for choice in choices)
    return names | {f"{name}_FILE" for name in names}


def _assert_read_by(service: str, variables: set[str]) -> None:
    unknown = variables - _read_names(SETTINGS[service]) - OUTSIDE_SETTINGS
    assert not unknown, f"{service} reads no setting named {sorted(unknown)}"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())


def test_compose_services_ports_and_health_ordering():
    services = _compose()["services"]
    assert set(services) == {
        "secrets-init",
        "user_db",
        "product_db",
        "order_db",
        "localstack",
        *HTTP,
        "order_worker",
        "product_pruner",
    }
    for db in ("user_db", "product_db", "order_db"):
        assert services[db]["image"] == "mysql:8.4"
        assert services[db]["volumes"] and services[db]["healthcheck"]["test"]
    for service, port in HTTP.items():
        definition = services[service]
        assert definition["build"]["context"] == "."
        assert "dockerfile" not in definition["build"], "the one Dockerfile at the root"
        assert definition["build"]["args"]["SERVICE"] == service
        assert str(definition["build"]["args"]["PORT"]) == str(port)
        assert any(str(p).endswith(f":{port}") for p in definition["ports"])
    for name, definition in services.items():
        for dependency, condition in (definition.get("depends_on") or {}).items():
            if dependency == "secrets-init":
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert (
                services[dependency].get("healthcheck")
                or "HEALTHCHECK" in (REPOSITORY / "Dockerfile").read_text()
            ), dependency
    worker = services["order_worker"]
    assert worker["command"] == ["python", "-m", "order_service", "worker"]
    assert worker["image"] == services["order_service"]["image"]
    assert worker["build"] == services["order_service"]["build"]
    assert services["localstack"]["environment"]["SERVICES"] == "sqs"
    pruner = services["product_pruner"]
    assert pruner["command"] == [
        "python",
        "-m",
        "product_service",
        "prune-reservations",
        "--every",
        "3600",
    ]
    assert pruner["image"] == services["product_service"]["image"]
    assert pruner["build"] == services["product_service"]["build"]
    assert pruner["healthcheck"] == {"disable": True}


def test_compose_environment_names_are_the_services_settings():
    services = _compose()["services"]
    for service in HTTP:
        _assert_read_by(service, set(services[service]["environment"]))
    _assert_read_by("order_service", set(services["order_worker"]["environment"]))


def test_compose_requires_no_env_and_env_example_lists_every_override():
    """A fresh clone has no .env: nothing is `${VAR:?required}`, and every variable compose
    reads is one .env.example describes (commented out: each is optional)."""
    text = (REPOSITORY / "docker-compose.yml").read_text()
    assert not re.findall(r"\$\{\w+:?\?", text), "a fresh clone has no .env to set it in"
    read = set(re.findall(r"\$\{(\w+)", text))
    example = (REPOSITORY / ".env.example").read_text()
    assert not re.findall(r"^\w+=", example, flags=re.MULTILINE), "every line is optional"
    listed = set(re.findall(r"^# (\w+)=", example, flags=re.MULTILINE))
    assert read == listed, (sorted(read - listed), sorted(listed - read))
    ignored = (REPOSITORY / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_compose_secrets_are_files_from_the_containers_own_volume():
    """Every *_FILE a container reads is a file secrets-init writes, in the volume of that
    container's own service, mounted read-only; secrets-init gets every override."""
    services = _compose()["services"]
    init = services["secrets-init"]
    written = {name for secret in compose_secrets() for name in secret.files}
    mounts = {m.split(":")[1]: m.split(":")[0] for m in init["volumes"]}
    assert mounts == {
        f"/run/shop-secrets/{s}": f"{s}_secrets" for s in ("user", "product", "order")
    }
    assert set(init["environment"]) == {secret.variable for secret in compose_secrets()}
    assert all(value == f"${{{name}:-}}" for name, value in init["environment"].items())
    assert init["image"] == services["user_service"]["image"]
    assert init["build"] == services["user_service"]["build"]
    for name, definition in services.items():
        if name == "secrets-init":
            continue
        files = {
            k: v for k, v in (definition.get("environment") or {}).items() if k.endswith("_FILE")
        }
        for variable, path in files.items():
            if variable == "JWT_PRIVATE_KEY_FILE" or variable.endswith("PASSWORD_FILE"):
                relative = path.removeprefix("/run/shop-secrets/")
                assert relative in written, (name, variable, path)
                volume = f"{relative.split('/')[0]}_secrets"
                assert (
                    f"{volume}:/run/shop-secrets/{relative.split('/')[0]}:ro"
                    in definition["volumes"]
                ), (name, volume)
        if name in HTTP or name == "order_worker" or name.endswith("_db"):
            assert files, f"{name} reads its secrets from files"
    # Only prestart ensures the accounts: the user service's server starts without them.
    user = services["user_service"]["environment"]
    assert set(user["PRESTART_SECRETS"].split()) == {"ADMIN_PASSWORD", "SERVICE_PASSWORD"}


SECRET_NAME = re.compile(r"(PASSWORD|SECRET|PRIVATE_KEY|ACCESS_KEY|API_KEY)$", re.IGNORECASE)
# LocalStack's documented dummy credentials: it accepts any.
NOT_SECRETS = {("AWS_SECRET_ACCESS_KEY", "test")}


def _no_usable_secret(where: str, name: str, value: Any) -> None:
    value = "" if value is None else str(value)
    if not SECRET_NAME.search(name) or (name, value) in NOT_SECRETS or name.endswith("_FILE"):
        return
    if name in {"PRESTART_SECRETS"}:
        return
    assert value in {"", f"${{{name}:-}}"}, f"{where}: {name} holds a value"


def test_no_usable_password_in_compose_env_example_or_manifests():
    for service, definition in _compose()["services"].items():
        for name, value in (definition.get("environment") or {}).items():
            _no_usable_secret(f"docker-compose.yml {service}", name, value)
        for url in (definition.get("environment") or {}).values():
            if "://" in str(url):
                assert sa.make_url(str(url)).password is None, (service, url)
    for line in (REPOSITORY / ".env.example").read_text().splitlines():
        if "=" in line:
            name, _, value = line.lstrip("# ").partition("=")
            _no_usable_secret(".env.example", name, value.strip('"'))
    for path in K8S.rglob("*.yaml"):
        for document in _documents(path):
            assert document.get("kind") != "Secret", f"{path}: a Secret with its values"
            text = yaml.safe_dump(document)
            for name, value in re.findall(r"(\w+)=(\S*)", text):
                _no_usable_secret(str(path), name, value)
            for name, value in _env_entries(document):
                _no_usable_secret(str(path), name, value)
            for url in re.findall(r"mysql\+pymysql://\S+", text):
                assert sa.make_url(url).password is None, (path, url)


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


def signing_key(name: str) -> set[str]:
    return {"user-service-signing-key"} if name == "user-service" else set()


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    template = (
        spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    )
    return dict(template["spec"])


def _secret_files(workload: dict[str, Any]) -> dict[str, set[str]]:
    """Each Secret the workload's container reads, and the *_FILE variables naming its files.
    Every such variable must name a file of a Secret mounted read-only, owner root and group
    the pod's (0440): a Secret's value is never in a process's environment."""
    pod, container = _pod(workload), _container_of_pod(_pod(workload))
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    read: dict[str, set[str]] = {}
    for entry in container.get("env", []):
        if not entry["name"].endswith("_FILE"):
            continue
        directory, key = entry["value"].rsplit("/", 1)
        mount = mounts[directory]
        assert mount["readOnly"] is True, entry
        secret = volumes[mount["name"]]
        assert secret["defaultMode"] == 0o440, secret
        assert key in {i["key"] for i in secret.get("items", [{"key": key}])}, (entry, secret)
        read.setdefault(secret["secretName"], set()).add(entry["name"])
    return read


def _container_of_pod(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return dict(container)


def test_k8s_secrets_reach_every_workload_as_files_only():
    """No Shop container gets a Secret through its environment (envFrom or secretKeyRef): each
    reads its Secrets' keys as files, by the *_FILE variables its settings know, and mounts
    only the Secrets it reads."""
    workloads = {**_base("Deployment"), **_base("Job"), **_base("CronJob")}
    package_of = {"order-relay": "order_service", "product-service-prune": "product_service"}
    for name, workload in workloads.items():
        pod, container = _pod(workload), _container_of_pod(_pod(workload))
        assert not [e for e in container.get("envFrom", []) if "secretRef" in e], name
        assert "secretKeyRef" not in yaml.safe_dump(container.get("env", [])), name
        files = _secret_files(workload)
        mounted = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        assert mounted == set(files), name
        package = package_of.get(name) or name.removesuffix("-migrate").replace("-", "_")
        _assert_read_by(package, {variable for names in files.values() for variable in names})
        database_url = f"{package.removesuffix('_service').upper()}_DATABASE_URL_FILE"
        assert database_url in files[f"{package.replace('_', '-')}-secrets"], name


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
        assert set(_secret_files(deployments[name])) == {f"{name}-secrets"} | signing_key(name)
        accounts = {"user-service-accounts"} if name == "user-service" else set()
        assert set(_secret_files(jobs[f"{name}-migrate"])) == {
            f"{name}-secrets"
        } | accounts | signing_key(name)
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


def test_k8s_signing_key_is_a_file_only_the_service_group_reads():
    deployments, jobs = _base("Deployment"), _base("Job")
    for workload in (deployments["user-service"], jobs["user-service-migrate"]):
        pod = workload["spec"]["template"]["spec"]
        container = _container(workload)
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        (volume,) = [
            v
            for v in pod["volumes"]
            if v.get("secret", {}).get("secretName") == "user-service-signing-key"
        ]
        # Owner root, group the pod's fsGroup (the service's 10001): never world-readable.
        assert volume["secret"]["defaultMode"] == 0o440
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        assert env["JWT_PRIVATE_KEY_FILE"] == f"{mount['mountPath']}/jwt-private.pem"
        assert "JWT_PRIVATE_KEY" not in env


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
    accounts = secrets["user-service-accounts"]
    _assert_read_by("user_service", set(accounts))
    assert accounts["SERVICE_PASSWORD"] == secrets["order-service-secrets"]["SERVICE_PASSWORD"]
    assert "ADMIN_PASSWORD" not in secrets["user-service-secrets"]
    assert "BEGIN PRIVATE KEY" in secrets["user-service-signing-key"]["jwt-private.pem"]


def _env_entries(node: Any) -> list[tuple[str, Any]]:
    """Every `- name: X / value: Y` pair in a manifest (container env lists)."""
    if isinstance(node, list):
        return [pair for item in node for pair in _env_entries(item)]
    if not isinstance(node, dict):
        return []
    found = [(node["name"], node["value"])] if {"name", "value"} <= set(node) else []
    return found + [pair for value in node.values() for pair in _env_entries(value)]
