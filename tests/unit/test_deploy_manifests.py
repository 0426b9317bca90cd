"""deploy/ is checked here, since no container engine or cluster runs on this machine: YAML
lint, the compose file against the Compose Specification's JSON Schema, the Kubernetes
objects against Kubernetes' own schemas, nats-server's configuration with nats-server itself,
and the Dockerfile's rules (multi-stage, pinned bases, non-root, no secret inside)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*.y*ml"))
K8S_VERSION = "1.31.0"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_there_is_something_to_check() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose/compose.yaml", "k8s/services.yaml", "k8s/nats-values.yaml"} <= names


def test_yaml_lint() -> None:
    config = "{extends: default, rules: {line-length: {max: 130, allow-non-breakable-inline-mappings: true}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}}}"
    result = run(sys.executable, "-m", "yamllint", "-f", "parsable", "-d", config, *map(str, YAML_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification() -> None:
    compose = DEPLOY / "compose" / "compose.yaml"
    result = run(
        sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    # Three NATS nodes, a replica set of three, two replicas of each worker, the telemetry.
    assert {f"nats-{n}" for n in range(3)} | {f"mongo-{n}" for n in range(3)} <= set(services)
    for worker in ("token-service", "mail-service", "notifier"):
        assert services[worker]["deploy"]["replicas"] == 2
    assert {"otel-collector", "prometheus", "grafana", "provisioner"} <= set(services)


# Helm values and the kustomization are inputs to tools, not Kubernetes objects: linted only.
K8S_OBJECTS = sorted(
    p for p in (DEPLOY / "k8s").glob("*.yaml") if p.name not in ("nats-values.yaml", "kustomization.yaml")
)


@pytest.mark.parametrize("path", K8S_OBJECTS, ids=lambda p: p.name)
def test_kubernetes_objects_match_kubernetes_schemas(path: Path) -> None:
    result = run(sys.executable, "-m", "kubernetes_validate", "-k", K8S_VERSION, "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_kubernetes_container_runs_unprivileged() -> None:
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("Deployment", "Job"):
                continue
            pod = doc["spec"]["template"]["spec"]
            if doc["metadata"]["name"].startswith("mongo"):
                continue  # the database image's own user
            assert pod["securityContext"]["runAsNonRoot"] is True, path.name
            for container in pod["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_nats_server_accepts_the_production_configuration(tmp_path) -> None:
    from fleetmail_devkit.ca import ensure_local_ca

    tls = tmp_path / "tls"
    ensure_local_ca(tls)
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    conf = conf.replace("/etc/nats/tls", str(tls)).replace("/data/jetstream", str(tmp_path / "js"))
    (tmp_path / "nats-server.conf").write_text(conf)
    shutil.copy(DEPLOY / "nats" / "accounts.conf", tmp_path / "accounts.conf")
    env = {
        "NATS_SERVER_NAME": "nats-0",
        **{
            f"FLEETMAIL_NATS_{user}_PASSWORD": "x"
            for user in ("PROVISIONER", "JOB_GATEWAY", "TOKEN_SERVICE", "MAIL_SERVICE", "NOTIFIER", "SYSTEM")
        },
    }
    binary = str(Path(sys.executable).parent / "nats-server")
    result = subprocess.run(
        [binary, "-t", "-c", str(tmp_path / "nats-server.conf")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_unprivileged_and_holds_no_secret() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3
    images = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M)
    assert images and all(re.search(r":\d+\.\d+", image) and "latest" not in image for image in images), (
        images
    )
    assert re.search(r"^USER 10001", text, re.M)
    for line in re.findall(r"^(?:ENV|ARG) .*$", text, re.M):
        assert not re.search(r"(?i)(password|secret|api_key|token)\s*=", line), line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".fleetmail", ".git"} <= set(ignored)
