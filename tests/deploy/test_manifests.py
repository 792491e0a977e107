"""The image and the manifests under deploy/: linted by the tools operators use (hadolint, the
Kubernetes schemas, the Compose specification), and consistent with the Procfile, the probes and
the metrics the product really has. No Docker engine or cluster runs here: nothing is built or
applied, so these are the checks that can be made without one."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from tests.inventory_ops.test_procfile import procfile_lines
from tests.processes import BASE_DIR, free_port, running, subprocess_env, wait_for_http

DEPLOY = BASE_DIR / "deploy"
K8S = DEPLOY / "k8s"
TOOLS = Path(sys.executable).parent


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TOOLS / name), *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=300
    )


def k8s_documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        document
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((K8S / name).read_text())
    ]


def k8s_kind(kind: str, name: str) -> dict:
    return next(
        doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name
    )


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = tool("hadolint", "deploy/Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_in_stages_from_a_pinned_base_and_runs_as_a_user_without_privileges():
    dockerfile = (DEPLOY / "Dockerfile").read_text()

    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, flags=re.M).group(1)
    assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base)
    assert len(re.findall(r"^FROM ", dockerfile, flags=re.M)) >= 2
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.M)
    assert users and not users[-1].startswith(("0", "root"))
    assert "manage.py collectstatic" in dockerfile
    assert 'ENTRYPOINT ["/app/deploy/run-process"]' in dockerfile


@pytest.mark.slow
def test_the_entry_point_runs_the_procfile_line_it_is_named_as_the_main_process():
    port = free_port()
    env = subprocess_env(
        PATH=f"{TOOLS}:{subprocess_env()['PATH']}", HOST="127.0.0.1", PORT=str(port)
    )

    with running([str(DEPLOY / "run-process"), "web"], env=env, log_name="run-process") as web:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        # exec'd, not a child of a shell: SIGTERM from the container runtime reaches Daphne
        main_process = Path(f"/proc/{web.pid}/cmdline").read_bytes().replace(b"\0", b" ")

    assert b"daphne" in main_process
    assert b"--port " + str(port).encode() in main_process


def test_the_entry_point_runs_any_other_command_as_given():
    result = subprocess.run(
        [str(DEPLOY / "run-process"), "sh", "-c", "echo one image, any command"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.stdout == "one image, any command\n"


# --- Compose ---------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification():
    result = tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml"
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_web_and_two_workers_behind_a_proxy_that_sends_to_every_web():
    services = compose()["services"]
    web = [name for name, service in services.items() if service.get("command") == ["web"]]
    workers = [service for service in services.values() if service.get("command") == ["worker"]]
    nginx = (DEPLOY / "nginx" / "default.conf").read_text()
    upstream = re.search(r"upstream inventory_ops_web \{(.*?)\}", nginx, flags=re.S).group(1)

    assert len(web) == 2
    assert sum(worker.get("deploy", {}).get("replicas", 1) for worker in workers) == 2
    assert set(re.findall(r"server (\S+?):8000", upstream)) == set(web)
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert "proxy_set_header Connection $connection_upgrade;" in nginx
    assert {"postgres", "redis", "release", "proxy"} <= set(services)


def test_every_compose_and_kubernetes_process_is_a_procfile_line_of_the_one_image():
    names = set(procfile_lines())
    compose_commands = [
        service["command"][0]
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("inventory_ops")
    ]
    containers = [
        container
        for document in k8s_documents()
        if document["kind"] in {"Deployment", "Job"}
        for container in document["spec"]["template"]["spec"]["containers"]
    ]

    assert set(compose_commands) == {"release", "web", "worker"}
    assert set(compose_commands) <= names
    assert {container["image"] for container in containers} == {"inventory_ops"}
    assert sorted(container["args"][0] for container in containers) == [
        "release",
        "web",
        "worker",
    ]


# --- Kubernetes ------------------------------------------------------------------------------


def test_kubernetes_manifests_are_valid_against_the_kubernetes_schemas():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")

    result = tool("kubernetes-validate", "--strict", *(f"deploy/k8s/{name}" for name in listed))

    assert sorted(listed) == present, "every manifest is listed in kustomization.yaml"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed ") == len(k8s_documents())


def test_kustomize_builds_the_manifests():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")

    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    built = list(yaml.safe_load_all(result.stdout))
    assert len(built) == len(k8s_documents())
    assert all(
        container["image"].startswith("registry.example.com/inventory_ops:")
        for document in built
        if document["kind"] in {"Deployment", "Job"}
        for container in document["spec"]["template"]["spec"]["containers"]
    )


def test_web_pods_are_live_by_healthz_and_ready_by_readyz_with_an_allowed_host():
    web = k8s_kind("Deployment", "inventory-ops-web")["spec"]["template"]["spec"]
    container = web["containers"][0]
    allowed_hosts = k8s_kind("ConfigMap", "inventory-ops")["data"]["ALLOWED_HOSTS"].split(",")

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in allowed_hosts  # else Django answers 400 to the kubelet
    assert {"name": "HOST", "value": "0.0.0.0"} in container["env"]  # noqa: S104


def test_workers_are_live_by_their_heartbeat_command_and_scale_on_the_ingest_queue_depth():
    worker = k8s_kind("Deployment", "inventory-ops-worker")["spec"]["template"]["spec"]
    probe = worker["containers"][0]["livenessProbe"]["exec"]["command"]
    autoscaler = k8s_kind("HorizontalPodAutoscaler", "inventory-ops-worker")["spec"]
    (metric,) = autoscaler["metrics"]
    metrics_source = (BASE_DIR / "inventory_ops" / "metrics.py").read_text()

    assert probe == ["python", "manage.py", "worker_alive"]
    assert autoscaler["scaleTargetRef"]["name"] == "inventory-ops-worker"
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "inventory_ops_queue_depth"
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": "ingest"}
    assert '"inventory_ops_queue_depth"' in metrics_source


def test_the_worker_liveness_command_exists():
    if "worker_alive" not in get_commands():
        pytest.skip("manage.py worker_alive comes with the worker heartbeats (not merged yet)")
    result = subprocess.run(
        [sys.executable, "manage.py", "worker_alive", "--help"],
        cwd=BASE_DIR,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr


def test_disruption_budgets_keep_a_web_and_a_worker_running():
    budgets = [doc for doc in k8s_documents() if doc["kind"] == "PodDisruptionBudget"]
    components = {
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for budget in budgets
        if budget["spec"]["minAvailable"] >= 1
    }

    assert components == {"web", "worker"}
