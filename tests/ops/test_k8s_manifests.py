"""docker/k8s/: every manifest parses (PyYAML; kubeconform is not available here) and says what the
README promises: probes on /readyz and /healthz, a preStop drain, one beat that never overlaps
itself, an HPA for web, a migration Job, secrets only as files through the *_FILE variables, and only
images, ports, commands and variables that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands

from tests.ops.documented import is_documented

K8S = Path(__file__).resolve().parents[2] / "docker" / "k8s"
SECRET_MOUNT = "/run/secrets/symbiosis"
SECRET_VARIABLES = {"SECRET_KEY", "SECRETS_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"}
GATEWAY_IMAGE = "symbiosis-gateway"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


DOCUMENTS = _documents()


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc.get("kind") == kind}


def _workloads() -> dict[str, dict[str, Any]]:
    return _kind("Deployment") | _kind("Job")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_parses_with_a_kind_and_a_name_when_read() -> None:
    assert len(DOCUMENTS) >= 9
    for filename, document in DOCUMENTS:
        assert document.get("apiVersion") and document.get("kind"), filename
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"].startswith("symbiosis-"), filename


def test_kustomization_lists_every_manifest_but_the_secret_example_when_applied() -> None:
    (kustomization,) = [doc for _, doc in DOCUMENTS if doc["kind"] == "Kustomization"]
    expected = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == expected
    assert [image["name"] for image in kustomization["images"]] == [GATEWAY_IMAGE]


def test_web_is_ready_on_readyz_and_alive_on_healthz_when_probed() -> None:
    web = _container(_kind("Deployment")["symbiosis-web"])
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert ports[web[probe]["httpGet"]["port"]] == 8000
    bind = web["command"][web["command"].index("--bind") + 1]
    assert bind == "0.0.0.0:8000"


def test_web_drains_before_it_stops_when_terminated() -> None:
    deployment = _kind("Deployment")["symbiosis-web"]
    web = _container(deployment)
    pre_stop = web["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) >= 5
    graceful = int(web["command"][web["command"].index("--graceful-timeout") + 1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_web_service_targets_the_web_port_when_routed() -> None:
    service = _kind("Service")["symbiosis-web"]
    web = _kind("Deployment")["symbiosis-web"]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= {
        port["name"] for port in _container(web)["ports"]
    }


def test_beat_runs_alone_when_rolled_out() -> None:
    beat = _kind("Deployment")["symbiosis-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert _container(beat)["command"][:4] == ["celery", "-A", "gateway", "beat"]
    assert all(
        hpa["spec"]["scaleTargetRef"]["name"] != "symbiosis-beat" for hpa in _kind("HorizontalPodAutoscaler").values()
    )


def test_worker_runs_celery_workers_when_deployed() -> None:
    worker = _kind("Deployment")["symbiosis-worker"]
    assert _container(worker)["command"][:4] == ["celery", "-A", "gateway", "worker"]
    assert worker["spec"]["replicas"] >= 1


def test_hpa_scales_the_web_deployment_on_cpu_when_loaded() -> None:
    hpa = _kind("HorizontalPodAutoscaler")["symbiosis-web"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "symbiosis-web")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert _container(_kind("Deployment")["symbiosis-web"])["resources"]["requests"]["cpu"]  # what % is of


def test_migration_job_runs_migrate_once_when_applied() -> None:
    job = _kind("Job")["symbiosis-migrate"]
    assert _container(job)["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("name", sorted(_workloads()))
def test_workload_reads_secrets_only_as_files_when_started(name: str) -> None:
    workload = _workloads()[name]
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    environment = {item["name"]: item for item in container.get("env", [])}
    for variable in SECRET_VARIABLES:
        assert variable not in environment, f"{variable} must come from a file"
        assert environment[f"{variable}_FILE"]["value"].startswith(SECRET_MOUNT + "/")
    assert not any("valueFrom" in item for item in environment.values())
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    secrets_volume = next(volume for volume in pod["volumes"] if "secret" in volume)
    assert secrets_volume["secret"]["secretName"] == "symbiosis-secrets"
    assert mounts[secrets_volume["name"]]["mountPath"] == SECRET_MOUNT
    assert mounts[secrets_volume["name"]]["readOnly"] is True
    example = _kind("Secret")["symbiosis-secrets"]
    for variable in SECRET_VARIABLES:
        filename = environment[f"{variable}_FILE"]["value"].rsplit("/", 1)[1]
        assert filename in example["stringData"], f"{filename} missing from secret.example.yaml"
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == ["symbiosis-config"]


@pytest.mark.parametrize("name", sorted(_workloads()))
def test_workload_runs_the_gateway_image_unprivileged_when_scheduled(name: str) -> None:
    workload = _workloads()[name]
    pod = workload["spec"]["template"]["spec"]
    container = _container(workload)
    assert container["image"] == GATEWAY_IMAGE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's gateway user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", sorted(_workloads()))
def test_workload_command_exists_when_run(name: str) -> None:
    command = _container(_workloads()[name])["command"]
    if command[:2] == ["python", "manage.py"]:
        assert command[2] in get_commands()
    elif command[0] == "gunicorn":
        worker_class = command[command.index("--worker-class") + 1]
        module, _, attribute = worker_class.rpartition(".")
        assert getattr(__import__(module, fromlist=[attribute]), attribute)
    else:
        assert command[:3] == ["celery", "-A", "gateway"]


def test_every_variable_the_manifests_set_is_documented_when_read() -> None:
    config = _kind("ConfigMap")["symbiosis-config"]
    names = set(config["data"])
    for workload in _workloads().values():
        names |= {item["name"] for item in _container(workload).get("env", [])}
    undocumented = sorted(name for name in names if not is_documented(name))
    assert not undocumented, f"not in the README's Configuration table: {undocumented}"
    assert all(isinstance(value, str) for value in config["data"].values())  # a ConfigMap holds strings
