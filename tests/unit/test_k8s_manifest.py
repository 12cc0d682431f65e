"""k8s/*.yaml stays on the versions, files and cluster tuning of the rest of the repository.

No cluster needed: the manifests are parsed as YAML and compared with pom.xml,
pyproject.toml, docker/submit.sh and flink-conf/config.yaml, and the FlinkDeployment
is validated against the Flink Kubernetes Operator's own CRD schema, kept in
schemas/deploy/ (`make schemas` refreshes it; no network during the tests).
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import REPO_ROOT
from tests.unit.test_docker_compose import pom_property

K8S_DIR = REPO_ROOT / "k8s"
FLINK_CONF = REPO_ROOT / "flink-conf" / "config.yaml"
SUBMIT_SH = REPO_ROOT / "docker" / "submit.sh"
PYPROJECT = REPO_ROOT / "pyproject.toml"
SCHEMAS_DIR = REPO_ROOT / "schemas" / "deploy"
# `make schemas` names the file after the operator release its api jar came from.
CRD_GLOB = "flinkdeployments.flink.apache.org-v1.operator-*.yml"

# Where the Dockerfile copies the repository (COPY . /opt/feedtrends).
IMAGE_REPO_DIR = PurePosixPath("/opt/feedtrends")

# Loopback locally; on Kubernetes the operator sets the pod and service addresses,
# so the manifest must leave these out.
ADDRESS_KEYS = {
    "jobmanager.rpc.address",
    "jobmanager.bind-host",
    "taskmanager.host",
    "taskmanager.bind-host",
    "rest.address",
    "rest.bind-address",
}
# Keys of flink-conf/config.yaml whose value on Kubernetes differs on purpose.
DEPLOYMENT_SPECIFIC = ADDRESS_KEYS | {
    # Sizes: from spec.jobManager/taskManager.resource.memory and spec.job.parallelism.
    "jobmanager.memory.process.size",
    "taskmanager.memory.process.size",
    "parallelism.default",
    # A port range locally (JobManager and TaskManager share one host); one process
    # per pod on Kubernetes, so one fixed port that the scrape annotations name.
    "metrics.reporter.prom.port",
}


def load_k8s_docs() -> list[dict[str, Any]]:
    files = sorted(K8S_DIR.glob("*.yaml"))
    assert files, f"no manifests in {K8S_DIR}"
    docs = []
    for path in files:
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def the_one(kind: str) -> dict[str, Any]:
    found = [d for d in load_k8s_docs() if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in k8s/*.yaml, found {len(found)}"
    return found[0]


def flink_string(value: Any) -> str:
    """A config.yaml value as Flink reads it: YAML true -> "true", 2.0 -> "2.0", 1000 -> "1000"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main_container(spec: dict[str, Any]) -> dict[str, Any]:
    containers = spec["podTemplate"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == "flink-main-container"]
    return container


def container_env(spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in main_container(spec).get("env", [])}


def data_mount(spec: dict[str, Any]) -> PurePosixPath:
    """Mount path of the volume backed by the manifest's PersistentVolumeClaim."""
    claim = the_one("PersistentVolumeClaim")["metadata"]["name"]
    volumes = {
        v["name"]
        for v in spec["podTemplate"]["spec"]["volumes"]
        if v.get("persistentVolumeClaim", {}).get("claimName") == claim
    }
    assert volumes, f"no pod volume uses the claim {claim}"
    mounts = [m["mountPath"] for m in main_container(spec)["volumeMounts"] if m["name"] in volumes]
    assert len(mounts) == 1, mounts
    return PurePosixPath(mounts[0])


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    fd = the_one("FlinkDeployment")
    assert fd["apiVersion"] == "flink.apache.org/v1beta1"
    return fd["spec"]


# --------------------------------------------------------------------------- versions


def test_flink_version_matches_pom(deployment: dict[str, Any]) -> None:
    major, minor = pom_property("flink.version").split(".")[:2]
    assert deployment["flinkVersion"] == f"v{major}_{minor}"


def test_flink_python_jar_matches_pom(deployment: dict[str, Any]) -> None:
    match = re.fullmatch(r"local:///opt/flink/opt/flink-python-(.+)\.jar", deployment["job"]["jarURI"])
    assert match, deployment["job"]["jarURI"]
    assert match.group(1) == pom_property("flink.version")


def test_image_is_the_project_image_at_the_project_version(deployment: dict[str, Any]) -> None:
    name, _, tag = deployment["image"].rpartition(":")
    assert name.rsplit("/", 1)[-1] == "feedtrends-flink", deployment["image"]
    assert tag == tomllib.loads(PYPROJECT.read_text())["project"]["version"]


# --------------------------------------------------------------------------- the job


def test_python_job_runs_what_submit_sh_runs(deployment: dict[str, Any]) -> None:
    job = deployment["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    script, pyfiles = args[args.index("-py") + 1], args[args.index("-pyfs") + 1]

    submit = SUBMIT_SH.read_text().replace("$REPO", str(IMAGE_REPO_DIR))
    assert f'--python "{script}"' in submit
    assert f'--pyFiles "{pyfiles}"' in submit
    # ... and the paths are the repository's, as the Dockerfile copies it.
    assert (REPO_ROOT / PurePosixPath(script).relative_to(IMAGE_REPO_DIR)).is_file(), script
    for entry in pyfiles.split(","):
        assert (REPO_ROOT / PurePosixPath(entry).relative_to(IMAGE_REPO_DIR)).is_dir(), entry


def test_upgrades_keep_state(deployment: dict[str, Any]) -> None:
    job = deployment["job"]
    assert job["upgradeMode"] == "savepoint"
    assert job["state"] == "running"
    assert job.get("allowNonRestoredState", False) is False
    assert deployment["flinkConfiguration"].get("execution.checkpointing.savepoint-dir")


def test_job_parallelism_matches_feedtrends_parallelism(deployment: dict[str, Any]) -> None:
    # jobs/trends.py sets every operator's parallelism from FEEDTRENDS_PARALLELISM;
    # spec.job.parallelism only sizes the cluster.
    assert container_env(deployment)["FEEDTRENDS_PARALLELISM"] == str(deployment["job"]["parallelism"])


# --------------------------------------------------------------------------- flink configuration


def test_flink_configuration_values_are_strings(deployment: dict[str, Any]) -> None:
    config = deployment["flinkConfiguration"]
    assert {k: v for k, v in config.items() if not isinstance(v, str)} == {}


def test_exactly_once_on_rocksdb(deployment: dict[str, Any]) -> None:
    config = deployment["flinkConfiguration"]
    assert config["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert config["state.backend.type"] == "rocksdb"
    assert config["execution.checkpointing.incremental"] == "true"
    assert config["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"


def test_shared_keys_agree_with_flink_conf(deployment: dict[str, Any]) -> None:
    local = yaml.safe_load(FLINK_CONF.read_text())
    k8s = deployment["flinkConfiguration"]
    differing = {
        key: (flink_string(local[key]), k8s[key])
        for key in k8s.keys() & local.keys() - DEPLOYMENT_SPECIFIC
        if flink_string(local[key]) != k8s[key]
    }
    assert differing == {}, "flink-conf/config.yaml value vs k8s value"


def test_cluster_tuning_is_not_lost(deployment: dict[str, Any]) -> None:
    # The operator replaces the image's conf/config.yaml, so a key of
    # flink-conf/config.yaml missing here would silently fall back to Flink's default.
    local = yaml.safe_load(FLINK_CONF.read_text())
    missing = sorted(local.keys() - DEPLOYMENT_SPECIFIC - deployment["flinkConfiguration"].keys())
    assert missing == []


def test_addresses_are_left_to_the_operator(deployment: dict[str, Any]) -> None:
    assert ADDRESS_KEYS & deployment["flinkConfiguration"].keys() == set()


def test_state_and_output_live_on_the_shared_volume(deployment: dict[str, Any]) -> None:
    mount = data_mount(deployment)
    config = deployment["flinkConfiguration"]
    paths = {
        key: config[key]
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir", "high-availability.storageDir")
    }
    for key, uri in paths.items():
        assert uri.startswith("file:///"), f"{key}: {uri}"
        assert PurePosixPath(uri.removeprefix("file://")).is_relative_to(mount), f"{key}: {uri} not under {mount}"
    env = container_env(deployment)
    for name in ("FEEDTRENDS_PARQUET_DIR", "FEEDTRENDS_STATE_DIR"):
        assert PurePosixPath(env[name]).is_relative_to(mount), f"{name}: {env[name]} not under {mount}"
    assert env["FEEDTRENDS_BOOTSTRAP"]
    # JobManager and TaskManagers on different nodes share these directories.
    assert "ReadWriteMany" in the_one("PersistentVolumeClaim")["spec"]["accessModes"]


def test_prometheus_reporter_is_scraped(deployment: dict[str, Any]) -> None:
    config = deployment["flinkConfiguration"]
    assert (
        config["metrics.reporter.prom.factory.class"]
        == "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    )
    port = config["metrics.reporter.prom.port"]
    annotations = deployment["podTemplate"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert {p["containerPort"] for p in main_container(deployment)["ports"]} == {int(port)}


def test_resources_are_set(deployment: dict[str, Any]) -> None:
    for role in ("jobManager", "taskManager"):
        resource = deployment[role]["resource"]
        assert resource["memory"] and resource["cpu"] > 0, role


# --------------------------------------------------------------------------- the operator's CRD schema


def stored_crd() -> dict[str, Any]:
    """The one FlinkDeployment CRD in schemas/deploy/."""
    files = sorted(SCHEMAS_DIR.glob(CRD_GLOB))
    assert len(files) == 1, f"expected one {CRD_GLOB} in {SCHEMAS_DIR}, found {[f.name for f in files]}"
    return yaml.safe_load(files[0].read_text())


def strict(schema: Any) -> Any:
    """The CRD's structural schema with unknown fields made errors.

    The API server drops unknown fields silently unless validation is strict, which
    `kubectl apply` asks for by default (--validate=strict); there a misspelt field
    is an error.  In JSON Schema an object allows any extra key unless it says
    otherwise, so every object with declared properties (and no
    additionalProperties or x-kubernetes-preserve-unknown-fields of its own) is
    closed here, as kubeconform -strict does.
    """
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {k: (strict(v) if k != "properties" else {p: strict(ps) for p, ps in v.items()}) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    crd = stored_crd()
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "flink.apache.org"
    assert crd["spec"]["names"]["kind"] == "FlinkDeployment"
    api_version = the_one("FlinkDeployment")["apiVersion"].split("/", 1)[1]
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == api_version]
    assert version["served"], f"the CRD no longer serves {api_version}"
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    # The API server adds these to every custom resource's schema (metadata is
    # checked as ObjectMeta there, not here).
    schema["properties"] |= {
        "apiVersion": {"type": "string", "enum": [f"{crd['spec']['group']}/{api_version}"]},
        "kind": {"type": "string", "enum": [crd["spec"]["names"]["kind"]]},
        "metadata": {"type": "object"},
    }
    return strict(schema)


def crd_errors(schema: dict[str, Any], resource: dict[str, Any]) -> list[jsonschema.ValidationError]:
    # Kubernetes' OpenAPI v3 schemas are a subset of JSON Schema draft 4.
    validator = jsonschema.Draft4Validator(schema)
    return sorted(validator.iter_errors(resource), key=lambda e: list(e.absolute_path))


def flink_version_key(value: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"v(\d+)_(\d+)", value)
    return (int(match.group(1)), int(match.group(2))) if match else None


def newer_than_the_crd(error: jsonschema.ValidationError) -> bool:
    """An enum error on spec.flinkVersion only because the stored CRD is the older one.

    The stored CRD may come from an operator release older than the one the manifest
    needs (>= 1.15.0 for v2_2; see schemas/deploy/README.md).  Such a CRD rejects the
    newer FlinkVersion value and nothing else; a value that is not of the v<major>_<minor>
    form, or not past the CRD's newest, is still an error.  Whether it is the right
    value is test_flink_version_matches_pom's business.
    """
    if list(error.absolute_path) != ["spec", "flinkVersion"] or error.validator != "enum":
        return False
    known = [flink_version_key(v) for v in error.validator_value]
    ours = flink_version_key(error.instance)
    return ours is not None and None not in known and ours > max(known)


def test_stored_schemas_are_documented() -> None:
    # Where each schema came from is written down next to it (and refreshed with it).
    readme = (SCHEMAS_DIR / "README.md").read_text()
    stored = [p.name for p in SCHEMAS_DIR.iterdir() if p.name != "README.md"]
    assert stored and [name for name in stored if f"`{name}`" not in readme] == []


def test_stored_crd_is_the_operators(crd_schema: dict[str, Any]) -> None:
    jsonschema.Draft4Validator.check_schema(crd_schema)
    spec = crd_schema["properties"]["spec"]["properties"]
    # The fields the manifest relies on, as the operator defines them.
    assert spec["flinkConfiguration"]["additionalProperties"] == {"type": "string"}
    assert {"upgradeMode", "state", "jarURI", "entryClass", "args", "parallelism"} <= spec["job"]["properties"].keys()
    assert "savepoint" in spec["job"]["properties"]["upgradeMode"]["enum"]


def test_flink_deployment_matches_the_operators_crd(crd_schema: dict[str, Any]) -> None:
    errors = [e for e in crd_errors(crd_schema, the_one("FlinkDeployment")) if not newer_than_the_crd(e)]
    assert [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def _set(resource: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = resource
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value


@pytest.mark.parametrize(
    ("path", "value", "rejected_at", "validator"),
    [
        # Misspelt fields, which the operator would never see.
        ("spec.job.parallelismm", 4, "spec.job", "additionalProperties"),
        ("spec.taskManager.resources", {"memory": "2560m"}, "spec.taskManager", "additionalProperties"),
        # Wrong types and values.
        ("spec.job.parallelism", "4", "spec.job.parallelism", "type"),
        ("spec.job.upgradeMode", "savepoints", "spec.job.upgradeMode", "enum"),
        # map<string, string>: YAML's 4 is an int.
        ("spec.flinkConfiguration.taskmanager.numberOfTaskSlots", 4,
         "spec.flinkConfiguration.taskmanager.numberOfTaskSlots", "type"),
        # Inside the pod template, the Pod schema the CRD embeds.
        ("spec.podTemplate.spec.containers.0.ports.0.containerPort", "metrics",
         "spec.podTemplate.spec.containers.0.ports.0.containerPort", "type"),
        # The leeway for an older CRD is for a newer v<major>_<minor> only.
        ("spec.flinkVersion", "2.2", "spec.flinkVersion", "enum"),
        ("spec.flinkVersion", "v1_12", "spec.flinkVersion", "enum"),
    ],
)
def test_crd_rejects_a_broken_manifest(
    crd_schema: dict[str, Any], path: str, value: Any, rejected_at: str, validator: str
) -> None:
    broken = copy.deepcopy(the_one("FlinkDeployment"))
    if path.startswith("spec.flinkConfiguration."):
        # Flink keys contain dots: the last level is one key.
        broken["spec"]["flinkConfiguration"][path.removeprefix("spec.flinkConfiguration.")] = value
    else:
        _set(broken, path, value)
    errors = [e for e in crd_errors(crd_schema, broken) if not newer_than_the_crd(e)]
    assert [(".".join(map(str, e.absolute_path)), e.validator) for e in errors] == [(rejected_at, validator)]
