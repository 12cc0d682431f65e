"""docker-compose.yml and docker/Dockerfile stay valid and on the versions of the local stack.

The version test reads the real files, no Docker needed: pom.xml pins the JVM side,
pyproject.toml the Python side, and the compose setup must use the same Kafka and
Flink releases.  docker-compose.yml is validated against the Compose
Specification's JSON schema (the one compose-go, and so `docker compose`, checks
with), kept in schemas/deploy/ (`make schemas` refreshes it); `docker compose
config` runs too where the Docker CLI is installed.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
POM = REPO_ROOT / "pom.xml"
PYPROJECT = REPO_ROOT / "pyproject.toml"
SCHEMAS_DIR = REPO_ROOT / "schemas" / "deploy"
# `make schemas` names the file after the compose-go release it came from.
COMPOSE_SCHEMA_GLOB = "compose-spec.compose-go-*.json"

EXPECTED_SERVICES = {"kafka", "jobmanager", "taskmanager", "submit"}


def pom_property(name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    value = ET.parse(POM).getroot().findtext(f"m:properties/m:{name}", namespaces=ns)
    assert value, f"<{name}> missing from pom.xml properties"
    return value.strip()


def pinned_apache_flink() -> str:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [d.split("==", 1)[1].strip() for d in deps if re.match(r"^apache-flink\s*==", d)]
    assert len(pins) == 1, f"expected one apache-flink==X pin in pyproject.toml, got {deps}"
    return pins[0]


def flink_base_image(dockerfile: str) -> str:
    """The Flink image the Dockerfile builds on: the FLINK_IMAGE build arg's default."""
    match = re.search(r"^ARG\s+FLINK_IMAGE=(\S+)\s*$", dockerfile, re.MULTILINE)
    assert match, "docker/Dockerfile must declare ARG FLINK_IMAGE=flink:<version>-..."
    image = match.group(1)
    # The final stage (and the python stage) must really be built from it.
    assert "FROM ${FLINK_IMAGE}\n" in dockerfile, "the final stage must be FROM ${FLINK_IMAGE}"
    return image


def image_tag(image: str, repository: str) -> str:
    name, _, tag = image.partition(":")
    assert name == repository, f"expected the {repository} image, got {image}"
    assert tag, f"{image} has no tag"
    return tag


# --------------------------------------------------------------------------- versions (no Docker)


def test_kafka_image_matches_pom() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    tag = image_tag(compose["services"]["kafka"]["image"], "apache/kafka")
    assert tag == pom_property("kafka.version")


def test_flink_base_image_matches_pom() -> None:
    tag = image_tag(flink_base_image(DOCKERFILE.read_text()), "flink")
    flink_version = pom_property("flink.version")
    # Official tag format: <flink>-scala_<scala>-java<jdk>; the next character must
    # end the version, so 2.2.0 does not match 2.2.01.
    assert re.match(rf"^{re.escape(flink_version)}(-|$)", tag), f"flink:{tag} is not Flink {flink_version}"


def test_pyflink_pin_matches_pom() -> None:
    assert pinned_apache_flink() == pom_property("flink.version")


def test_flink_services_use_the_built_image() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in ("jobmanager", "taskmanager", "submit"):
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert service["image"].startswith("feedtrends-flink"), name


# --------------------------------------------------------------------------- Compose Specification (no Docker)


def load_compose() -> dict[str, Any]:
    # PyYAML's safe loader resolves the `<<: *flink-common` merge keys as Compose does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    files = sorted(SCHEMAS_DIR.glob(COMPOSE_SCHEMA_GLOB))
    assert len(files) == 1, f"expected one {COMPOSE_SCHEMA_GLOB} in {SCHEMAS_DIR}, found {[f.name for f in files]}"
    schema = json.loads(files[0].read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def compose_errors(validator: jsonschema.protocols.Validator, compose: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, keyword) of each error, at its most specific cause.

    The schema is draft 2020-12 with oneOf alternatives and unevaluatedProperties,
    so one broken value also fails the oneOf around it and marks the keys that hold
    it as unevaluated: best_match digs out the cause, and the ancestors' errors
    come along as they are.
    """
    found = set()
    for error in validator.iter_errors(compose):
        cause = jsonschema.exceptions.best_match([error])
        found.add((".".join(map(str, cause.absolute_path)), cause.validator))
    return found


def test_compose_file_matches_the_compose_spec(compose_validator: jsonschema.protocols.Validator) -> None:
    errors = sorted(compose_validator.iter_errors(load_compose()), key=lambda e: list(e.absolute_path))
    assert [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


@pytest.mark.parametrize(
    ("path", "value", "rejected_at", "validator"),
    [
        # Misspelt keys, which Compose refuses (only x-* keys are free).
        ("servicess", {}, "", "additionalProperties"),
        ("services.kafka.healthchek", {"test": ["CMD", "true"]}, "services.kafka", "unevaluatedProperties"),
        # Wrong types and values.
        ("services.kafka.ports", "127.0.0.1:9092:9092", "services.kafka.ports", "type"),
        ("services.submit.profiles", "submit", "services.submit.profiles", "type"),
        ("services.submit.depends_on.kafka.condition", "service_ready",
         "services.submit.depends_on.kafka.condition", "enum"),
        ("volumes.flink-data", "local", "volumes.flink-data", "type"),
    ],
)
def test_compose_spec_rejects_a_broken_file(
    compose_validator: jsonschema.protocols.Validator, path: str, value: Any, rejected_at: str, validator: str
) -> None:
    broken = copy.deepcopy(load_compose())
    *parents, last = path.split(".")
    node = broken
    for key in parents:
        node = node[key]
    node[last] = value
    errors = compose_errors(compose_validator, broken)
    assert (rejected_at, validator) in errors
    # Nothing but the broken value and what holds it is reported.
    assert {where for where, _ in errors} <= {".".join(parents[:i]) for i in range(len(parents) + 1)} | {path}, errors


def test_services_profiles_and_ports() -> None:
    # What `docker compose config` is checked for below, on the file as written.
    services = load_compose()["services"]
    assert EXPECTED_SERVICES <= services.keys(), sorted(services)
    assert services["submit"]["profiles"] == ["submit"]
    ports = {name: service.get("ports", []) for name, service in services.items()}
    assert ports["kafka"] == ["127.0.0.1:9092:9092"]
    # Loopback only, like the local stack.
    assert [p for published in ports.values() for p in published if not p.startswith("127.0.0.1:")] == []
    # The merge key brought the shared volume into every Flink service.
    for name in ("jobmanager", "taskmanager", "submit"):
        assert services[name]["volumes"] == ["flink-data:/flink-data"], name


# --------------------------------------------------------------------------- compose config (Docker CLI)


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _compose_available(), reason="docker CLI or its compose plugin is not installed")
def test_compose_config_parses() -> None:
    proc = subprocess.run(
        # Without --profile, `config` leaves out the services behind a profile (submit).
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "submit", "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert EXPECTED_SERVICES <= set(config["services"]), sorted(config["services"])
    assert config["services"]["submit"]["profiles"] == ["submit"]
    kafka_ports = config["services"]["kafka"]["ports"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in kafka_ports] == [("127.0.0.1", "9092", 9092)]


def test_image_carries_the_jobs_jvm_operators() -> None:
    """The job wires `connectors/jvm`'s operators in: the image builds them into the lib/ it ships,
    against the same Flink distribution it runs."""
    dockerfile = DOCKERFILE.read_text()
    jvm_sources = sorted((REPO_ROOT / "connectors" / "jvm").rglob("*.java"))
    assert jvm_sources
    assert "COPY --from=flink-dist /opt/flink/lib /flink-lib" in dockerfile
    assert "FROM ${FLINK_IMAGE} AS flink-dist" in dockerfile
    build = re.search(r"^RUN bash connectors/jvm/build\.sh /flink-lib (\S+)$", dockerfile, re.MULTILINE)
    assert build and build.group(1).startswith(".cache/jars/flink/"), "the JVM jar must land with the connector jars"
    assert "COPY --from=jars /build/.cache/jars/flink/ /opt/flink/lib/" in dockerfile
    # The job loads the class by this name.
    from connectors.flink_io import WATERMARK_RESTORER

    package, _, name = WATERMARK_RESTORER.rpartition(".")
    assert any(p.stem == name and p.parent.name == package.split(".")[-1] for p in jvm_sources)
