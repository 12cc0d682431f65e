"""docker-compose.yml and docker/Dockerfile stay valid and on the versions of the local stack.

The version test reads the real files, no Docker needed: pom.xml pins the JVM side,
pyproject.toml the Python side, and the compose setup must use the same Kafka and
Flink releases.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from core.config import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
POM = REPO_ROOT / "pom.xml"
PYPROJECT = REPO_ROOT / "pyproject.toml"

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
