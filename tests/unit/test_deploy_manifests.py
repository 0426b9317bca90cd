"""deploy/ is checked here, since no container engine or cluster runs on this machine: YAML
lint, the compose file against the Compose Specification's JSON Schema, the Kubernetes
objects against Kubernetes' own schemas, nats-server's configuration with nats-server itself,
and the Dockerfile's rules (multi-stage, pinned bases, non-root, no secret inside)."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy/compose/secrets.sh makes, in a folder of its own."""
    if shutil.which("openssl") is None:
        pytest.skip("secrets.sh needs openssl")
    out = tmp_path_factory.mktemp("secrets")
    result = run("sh", str(DEPLOY / "compose" / "secrets.sh"), str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_nats_server_accepts_the_production_configuration(tmp_path: Path, made: Path) -> None:
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    conf = conf.replace("/etc/nats/tls", str(made / "tls" / "nats")).replace(
        "/data/jetstream", str(tmp_path / "js")
    )
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


# --- Deployment secrets (issue 18, defect 6) ---------------------------------------------------

COMPOSE = DEPLOY / "compose" / "compose.yaml"
SERVICE_UID, MONGOD_UID = 10001, 999
# The service whose MongoDB user each connection string carries (mail-service uses no database).
DATABASES = {
    "job-gateway": "fleetmail_gateway",
    "token-service": "fleetmail_tokens",
    "notifier": "fleetmail_notifier",
}


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_secrets_sh_makes_every_key_and_secret_private(made: Path) -> None:
    private = [
        *made.glob("ca/*"),
        *made.glob("secrets/*"),
        *made.rglob("*-key.pem"),
        *made.rglob("*bundle.pem"),
    ]
    assert len(private) > 20
    assert {p.relative_to(made).as_posix(): oct(_mode(p)) for p in private if _mode(p) != 0o600} == {}
    assert _mode(made / "ca") == _mode(made / "secrets") == 0o700
    public = {"ca.pem", "server.pem", "routes.pem", "routes-ca.pem", "smtp.pem"}
    for cert in (p for p in made.rglob("tls/**/*.pem") if p.name in public):
        assert _mode(cert) == 0o644, cert
    if os.geteuid() == 0:  # run as root, each file belongs to the container user that reads it
        assert (made / "tls/gateway/smtp-key.pem").stat().st_uid == SERVICE_UID
        assert (made / "secrets/mongodb_uri_token_service").stat().st_uid == SERVICE_UID
        assert (made / "tls/mongo/server-bundle.pem").stat().st_uid == MONGOD_UID
        assert (made / "secrets/mongo_keyfile").stat().st_uid == MONGOD_UID
        assert (made / "ca/ca-key.pem").stat().st_uid == 0


def _certificate(path: Path) -> tuple[str, str]:
    """(public key, subjectAltName) of a PEM certificate."""
    key = run("openssl", "x509", "-in", str(path), "-noout", "-pubkey").stdout
    san = run("openssl", "x509", "-in", str(path), "-noout", "-ext", "subjectAltName").stdout
    return key, san


def test_one_certificate_per_role_and_routes_trust_only_their_own_ca(made: Path) -> None:
    roles = {
        "nats": made / "tls/nats/server.pem",
        "routes": made / "tls/nats/routes.pem",
        "mongodb": made / "tls/mongo/server.pem",
        "smtp": made / "tls/gateway/smtp.pem",
    }
    certificates = {role: _certificate(path) for role, path in roles.items()}
    assert len({key for key, _ in certificates.values()}) == len(roles), "a key serves two roles"
    assert "nats-0" in certificates["nats"][1] and "mongo-0" not in certificates["nats"][1]
    assert "mongo-0" in certificates["mongodb"][1] and "nats-0" not in certificates["mongodb"][1]
    assert "nats" not in certificates["smtp"][1] and "mongo" not in certificates["smtp"][1]

    def verifies(ca: Path, cert: Path) -> bool:
        return run("openssl", "verify", "-CAfile", str(ca), str(cert)).returncode == 0

    routes_ca = made / "tls/nats/routes-ca.pem"
    assert verifies(routes_ca, roles["routes"])
    # Nothing the services' CA signed passes as a route, and a route certificate is nothing else.
    for role in ("nats", "mongodb", "smtp"):
        assert not verifies(routes_ca, roles[role]), role
    assert not verifies(made / "tls/ca.pem", roles["routes"])
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    cluster_tls = conf[conf.index("cluster {") :]
    assert 'ca_file: "/etc/nats/tls/routes-ca.pem"' in cluster_tls and "verify: true" in cluster_tls
    assert 'cert_file: "/etc/nats/tls/routes.pem"' in cluster_tls
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())["config"]
    assert values["cluster"]["tls"]["secretName"] != values["nats"]["tls"]["secretName"]
    assert values["cluster"]["tls"]["merge"]["verify"] is True
    assert values["cluster"]["tls"]["merge"]["ca_file"].startswith("/etc/nats-certs/cluster/")


def _compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _mounts(service: dict) -> set[str]:
    return {str(v).split(":")[0] for v in service.get("volumes", []) if str(v).startswith((".", "/"))}


def _secrets(service: dict) -> dict[str, str]:
    """source → name inside the container."""
    found = {}
    for entry in service.get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        found[source] = source if isinstance(entry, str) else entry.get("target", source)
    return found


def test_compose_mounts_each_key_only_where_it_is_used(made: Path) -> None:
    services = _compose_services()
    for name, service in services.items():
        mounts = _mounts(service)
        assert "./tls" not in mounts and not {m for m in mounts if m.startswith("./ca")}, name
        tls = {m for m in mounts if m.startswith("./tls")}
        if name.startswith("nats-"):
            assert tls == {"./tls/nats"}, name
        elif name.startswith("mongo-") and name != "mongo-init":
            assert tls == {"./tls/mongo"}, name
            assert set(_secrets(service)) == {"mongo_keyfile"}, name
        elif name == "job-gateway":
            assert tls == {"./tls/ca.pem", "./tls/gateway"}
        else:
            assert tls <= {"./tls/ca.pem"}, name
    # What each mounted folder holds: keys of that role only.
    assert {p.name for p in (made / "tls/gateway").iterdir()} == {"smtp.pem", "smtp-key.pem"}
    assert {p.name for p in (made / "tls/nats").iterdir()} == {
        "server.pem",
        "server-key.pem",
        "routes.pem",
        "routes-key.pem",
        "routes-ca.pem",
    }
    assert not [
        p
        for p in (made / "tls/mongo").iterdir()
        if p.name not in ("server.pem", "server-bundle.pem", "ca.pem")
    ]
    assert "ca-key.pem" not in {p.name for p in (made / "tls").rglob("*")}


def test_compose_mongodb_runs_with_access_control_and_a_user_per_service() -> None:
    services = _compose_services()
    for n in range(3):
        command = services[f"mongo-{n}"]["command"]
        assert "--auth" in command and "--keyFile" in command
    for name, service in services.items():
        env = service.get("environment") or {}
        assert "FLEETMAIL_MONGODB_URI" not in env, f"{name}: the connection string is a per-service secret"
        uris = {source for source, target in _secrets(service).items() if target == "fleetmail_mongodb_uri"}
        if name in DATABASES:
            assert uris == {f"mongodb_uri_{name.replace('-', '_')}"}, name
        else:
            assert uris == set(), name
        if name != "mongo-init":
            assert not {s for s in _secrets(service) if s.startswith("mongo_") and s != "mongo_keyfile"}, name
    init = services["mongo-init"]
    assert init["network_mode"] == "service:mongo-0"  # the localhost exception, for the first user
    assert "../mongo/init-users.js:/etc/mongo/init-users.js:ro" in init["volumes"]
    for name in DATABASES:
        assert services[name]["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"


def test_mongodb_users_may_use_their_own_database_only(made: Path) -> None:
    script = (DEPLOY / "mongo" / "init-users.js").read_text()
    for user, database in DATABASES.items():
        assert (
            f'{{ user: "{user}", secret: "mongo_{user.replace("-", "_")}_password", database: "{database}" }}'
            in script
        )
        uri = (made / "secrets" / f"mongodb_uri_{user.replace('-', '_')}").read_text()
        password = (made / "secrets" / f"mongo_{user.replace('-', '_')}_password").read_text().strip()
        assert uri.startswith(f"mongodb://{user}:{password}@") and f"authSource={database}" in uri
    assert 'roles = [{ role: "readWrite", db: service.database }]' in script
    assert "AnyDatabase" not in script


def _k8s_objects() -> list[dict]:
    docs = [doc for path in K8S_OBJECTS for doc in yaml.safe_load_all(path.read_text())]
    return [doc for doc in docs if doc]


def test_kubernetes_pods_mount_each_key_only_where_it_is_used() -> None:
    config = next(o for o in _k8s_objects() if o["kind"] == "ConfigMap")["data"]
    assert "FLEETMAIL_MONGODB_URI" not in config
    workloads = {
        o["metadata"]["name"]: o for o in _k8s_objects() if o["kind"] in ("Deployment", "Job", "StatefulSet")
    }
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        for volume, secret in secrets.items():
            if secret.get("items") == [{"key": "ca.crt", "path": "ca.crt"}]:
                continue  # a CA certificate: public
            assert secret.get("defaultMode", 0o644) & 0o007 == 0, f"{name}/{volume} is world-readable"
        if secrets:
            assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"], name
        names = {s["secretName"] for s in secrets.values()}
        assert "fleetmail-tls" not in names, name
        assert ("fleetmail-gateway-smtp-tls" in names) == (name == "job-gateway"), name
        assert ("fleetmail-mongo-tls" in names) == (name == "mongo"), name
        if name == "mongo":
            continue
        assert secrets["tls"] == {
            "secretName": "fleetmail-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        uris = {i["key"] for i in secrets["secrets"]["items"] if i["path"] == "fleetmail_mongodb_uri"}
        assert uris == ({f"mongodb-uri-{name}"} if name in DATABASES else set()), name
    mongo = workloads["mongo"]["spec"]["template"]["spec"]
    mongod = next(c for c in mongo["containers"] if c["name"] == "mongod")
    assert "--auth" in mongod["args"] and "--keyFile" in mongod["args"]
    users = next(c for c in mongo["containers"] if c["name"] == "mongo-users")
    assert "init-users.js" in " ".join(users["args"])
    assert {m["name"] for m in users["volumeMounts"]} == {"ca", "users", "init", "tmp"}  # no server key
