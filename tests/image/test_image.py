"""The operator image, built for real from the Dockerfile with buildah, and the operator run from it.

No container registry is reachable here, so the Dockerfile's base (python:3.11-slim-bookworm) is replaced by a
local stand-in that ``tools/image/base-image`` builds once from Debian's archive (bookworm's python3.11) and keeps
in buildah's storage. The build itself installs the locked dependencies from PyPI. Build time and image size
are printed and written to ``<test bed cache>/image/build.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import amlops_testbed as testbed
from amlops import __version__
from tests.support.objects import wait_condition
from tests.support.processes import EmulatorProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
IMAGE = "localhost/amlops:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def buildah(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _require_buildah() -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: run tools/bootstrap (tools/debian-packages lists it)")
    # A working container from an empty image shows that storage and mounts work in this environment
    # (nested containers without privileges often cannot mount an overlay).
    probe = buildah("from", "scratch", check=False)
    if probe.returncode != 0:
        pytest.skip(f"buildah cannot create containers here: {probe.stderr.strip()[-500:]}")
    buildah("rm", probe.stdout.strip())


@pytest.fixture(scope="module")
def image() -> str:
    _require_buildah()
    base = subprocess.run(
        [str(REPO / "tools" / "image" / "base-image")], capture_output=True, text=True, timeout=1200, check=False
    )
    assert base.returncode == 0, base.stderr[-4000:]
    args = [
        "bud",
        "--isolation=chroot",
        "--pull=never",
        # Reuse the dependency layer between runs: it only changes with uv.lock.
        "--layers",
        f"--build-arg=PYTHON_IMAGE={base.stdout.strip()}",
        f"--build-arg=VERSION={__version__}",
        f"--tag={IMAGE}",
    ]
    if HOST_CA.is_file():
        # This machine's trust store (it may include a TLS-inspecting proxy's CA), for the build's pip and uv
        # only: mounted for the RUN steps, never copied into a layer.
        args += [
            f"--volume={HOST_CA}:/run/build-ca.crt:ro",
            "--build-arg=SSL_CERT_FILE=/run/build-ca.crt",
            "--build-arg=PIP_CERT=/run/build-ca.crt",
        ]
    started = time.monotonic()
    buildah(*args, str(REPO), timeout=1800)
    seconds = round(time.monotonic() - started, 1)

    images = json.loads(buildah("images", "--json", IMAGE).stdout)
    record = {"image": IMAGE, "build_seconds": seconds, "size": images[0]["size"], "base": base.stdout.strip()}
    out = testbed.cache_dir() / "image" / "build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = buildah("from", "--pull=never", image).stdout.strip()
    yield name
    buildah("rm", name, check=False)


def run_in(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return buildah("run", "--isolation=chroot", container, "--", *command, check=False, timeout=120)


def test_image_prints_its_version(container: str) -> None:
    result = run_in(container, "amlops", "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"amlops {__version__}"


def test_image_runs_as_non_root_without_build_tools(image: str, container: str) -> None:
    config: dict[str, Any] = json.loads(buildah("inspect", "--type=image", image).stdout)["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["amlops"]
    assert config["Cmd"] == ["run"]
    assert "PYTHONSAFEPATH=1" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.title"] == "amlops"
    assert config["Labels"]["org.opencontainers.image.version"] == __version__

    assert run_in(container, "id", "-u").stdout.strip() == "10001"
    for tool in ("uv", "gcc", "cc", "make"):
        assert run_in(container, "sh", "-c", f"command -v {tool}").returncode != 0, f"{tool} in the final image"
    # The project is installed as a wheel into the environment: no source tree, no editable path.
    assert run_in(container, "test", "-e", "/src").returncode != 0
    where = run_in(container, "python", "-c", "import amlops; print(amlops.__file__)")
    assert where.stdout.startswith("/opt/amlops/lib/python3.11/site-packages/amlops/"), where.stderr


def test_image_runs_python_on_jemalloc(container: str) -> None:
    """The image's allocator (Dockerfile ENV, as testbed.IMAGE_ALLOCATOR_ENV): jemalloc is preloaded into Python
    without a loader warning, and Python hands it every allocation."""
    result = run_in(
        container, "python", "-c", "import os; print(os.environ['PYTHONMALLOC']); print(open('/proc/self/maps').read())"
    )
    assert result.returncode == 0, result.stderr
    assert "cannot be preloaded" not in result.stderr, result.stderr
    mode, maps = result.stdout.split("\n", 1)
    assert mode == "malloc"
    assert "libjemalloc.so.2" in maps


def test_image_cannot_run_the_emulator_the_test_bed_or_the_demo(container: str) -> None:
    """The emulator accepts a fixed token and runs task command lines: the image ships without it (and without
    the test bed and the demo, their own workspace packages), and the commands that would start them say why
    they cannot."""
    for module in ("amlops_emulator", "amlops_testbed", "amlops.emulator", "amlops.testbed"):
        imported = run_in(container, "python", "-c", f"import {module}")
        assert imported.returncode != 0, f"{module} is importable in the image"
        assert f"No module named '{module}'" in imported.stderr, imported.stderr
    for command in ("emulator", "demo"):
        refused = run_in(container, "amlops", command)
        assert refused.returncode == 2, refused.stderr
        assert f"amlops {command}: not available in this installation" in refused.stderr, refused.stderr
    # The operator itself still imports everything it needs.
    operator = run_in(container, "python", "-c", "import amlops.handlers.app, amlops.external.paralleljob")
    assert operator.returncode == 0, operator.stderr


def test_operator_from_the_image_takes_an_amlcompute_to_ready(
    k8s: testbed.Testbed, namespace: str, container: str, azure: EmulatorProcess, tmp_path: Path
) -> None:
    """The operator as the image runs it, against the real apiserver and the ARM emulator (its CA mounted):
    the AmlCompute sample is created in Azure and becomes Ready."""
    # The image's user (uid 10001) must be able to read the admin kubeconfig mounted into the container.
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copyfile(k8s.kubeconfig, kubeconfig)
    kubeconfig.chmod(0o644)
    ca = tmp_path / "emulator-ca.pem"
    shutil.copyfile(azure.ca_file, ca)
    ca.chmod(0o644)
    env = {**azure.operator_env(), "AMLOPS_CA_BUNDLE": "/etc/amlops/ca.pem"}
    in_the_image = [
        "buildah",
        "run",
        "--isolation=chroot",
        "--network=host",
        f"--volume={kubeconfig}:/etc/amlops/kubeconfig:ro",
        f"--volume={ca}:/etc/amlops/ca.pem:ro",
        "--env=KUBECONFIG=/etc/amlops/kubeconfig",
        # Every Azure endpoint is the emulator's (or a closed loopback port): nothing leaves this machine.
        *(f"--env={k}={v}" for k, v in sorted(env.items())),
        container,
        "--",
        "amlops",
        "run",
    ]
    with testbed.start_operator(k8s, tmp_path / "operator.log", f"--namespace={namespace}", command=in_the_image) as op:
        k8s.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "amlcompute.yaml"))
        try:
            wait_condition(k8s, "amlcompute", "cpu-cluster", namespace, "Ready")
        except TimeoutError as e:
            raise AssertionError(f"{e}\n--- operator log ---\n{op.output()[-4000:]}") from e
        assert azure.operations()["MachineLearningCompute_CreateOrUpdate"] == 1
        with urllib.request.urlopen(op.metrics_url, timeout=5) as response:
            assert b"amlops_reconcile_total" in response.read()
