"""``amlops demo``: the whole stack on this machine, one command.

Starts the real Kubernetes test bed and the Azure emulator (with its Azurite storage account, where Azure ML jobs
keep their code, outputs and logs), installs the CRDs, starts the operator against both, applies ``samples/``
(the CommandJob trains on the AmlCompute through azure-ai-ml's MLClient), shows the resources converging,
prints the final ``kubectl get amlops`` table and how to reach the cluster, then keeps running until Ctrl-C (or
exits at once with ``--exit``, which the test of this command uses).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import amlops_testbed as testbed
from amlops.status import find, is_true
from amlops_emulator.seed import DEFAULT_BATCH_KEY

SAMPLES = testbed.REPO_ROOT / "samples"
CRDS = testbed.REPO_ROOT / "charts" / "amlops" / "crds"


SAMPLE_CONTAINER = "amlops"  # what samples/*.yaml say; replaced by the namespace's own container
SAMPLE_FILES = 100
SAMPLE_BLOB = "http://127.0.0.1:10000/devstoreaccount1"  # what samples/*.yaml say; replaced by Azurite's URL
JOB_KINDS = ("ParallelJob", "CommandJob")  # done once Complete
# The emulator's service principal in this Secret: azure-ai-ml submits a job only with a JWT for Azure ML, which
# the operator's fixed emulator token is not; every sample without spec.credentials uses it.
CREDENTIALS_SECRET = "azure-sp"


def upload_sample_data(connection_string: str, container_name: str) -> None:
    """The ParallelJob sample's inputs (small text files) and entry script, into Azurite."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    container = service.get_container_client(container_name)
    if not container.exists():
        container.create_container()
    words = ["azure", "batch", "cluster", "node", "queue", "score", "input", "output", "mini", "batch"]
    for i in range(SAMPLE_FILES):
        text = " ".join(words[(i + j) % len(words)] for j in range(5 + i % 7))
        container.upload_blob(f"inputs/data/item-{i:03d}.txt", text.encode(), overwrite=True)
    script = (SAMPLES / "paralleljob-code" / "score.py").read_bytes()
    container.upload_blob("code/score.py", script, overwrite=True)


def _summary_line(item: dict[str, Any]) -> str:
    kind, name = item["kind"], item["metadata"]["name"]
    status = item.get("status") or {}
    ready = find(status.get("conditions") or [], "Ready") or {}
    detail = ""
    if kind == "AmlCompute":
        detail = f"{status.get('provisioningState', '-')}, nodes {status.get('currentNodeCount', '-')}"
    elif kind == "BatchCompute":
        detail = f"pools {status.get('poolCount', '-')}, dedicated nodes {status.get('dedicatedNodes', '-')}"
    elif kind == "ParallelJob":
        detail = f"{status.get('phase', '-')}, mini-batches {status.get('progress', '-')}"
    elif kind == "CommandJob":
        detail = f"{status.get('phase', '-')}, Azure ML {status.get('azureStatus', '-')}"
    elif kind == "WorkspaceQuota":
        detail = f"headroom {status.get('headroomSummary', '-')}"
    return f"{kind}/{name}: Ready={ready.get('status', '-')} ({ready.get('reason', '-')}) {detail}"


def sample_manifests(blob_endpoint: str, container: str) -> list[str]:
    """samples/*.yaml with their blob URLs pointed at this Azurite and ``container``: with the operator's shared
    storage account a namespace may use only its own containers (``<namespace>`` or ``<namespace>-*``)."""
    sample, ours = f"{SAMPLE_BLOB}/{SAMPLE_CONTAINER}/", f"{blob_endpoint}/{container}/"
    return [p.read_text().replace(sample, ours) for p in sorted(SAMPLES.glob("*.yaml"))]


def _done(items: list[dict[str, Any]]) -> bool:
    def true(item: dict[str, Any], type_: str) -> bool:
        return is_true((item.get("status") or {}).get("conditions") or [], type_)

    samples = len(list(SAMPLES.glob("*.yaml")))
    return len(items) == samples and all(true(i, "Complete" if i["kind"] in JOB_KINDS else "Ready") for i in items)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(*, exit_when_done: bool, timeout: float, workdir: Path | None = None) -> int:
    """Run the demo; Ctrl-C or SIGTERM stops it and everything it started (each given a short grace period).

    Signals are handled, never blocked: a blocked mask is inherited by every child process, which then cannot
    be stopped gracefully (the operator and the emulator used to wait out their whole grace period)."""
    from amlops_emulator.azurite import azurite_blob

    # Set explicitly: a shell starting the demo in the background hands it SIGINT ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    work = workdir or Path(tempfile.mkdtemp(prefix="amlops-demo-"))
    print(f"==> building or reusing the Kubernetes test bed (cache: {testbed.cache_dir()})", flush=True)
    bin_dir = testbed.ensure_built()
    bed = testbed.start(bin_dir, work / "testbed")
    operator: testbed.OperatorRun | None = None
    emulator: testbed.EmulatorRun | None = None
    try:
        with azurite_blob(work / "azurite") as azurite:
            print(f"==> kube-apiserver ready at {bed.server}", flush=True)
            testbed.install_crds(bed, CRDS)
            print("==> the chart's CRDs installed and Established", flush=True)
            emulator = testbed.start_emulator(work / "emulator", "--azurite", speed=30, timeout=90)
            azure_env = emulator.operator_env(
                AMLOPS_POLL_FLOOR_SECONDS="1",
                AMLOPS_REQUEUE_SECONDS="2",
                AMLOPS_STORAGE_ENDPOINT_SUFFIX=emulator.endpoints["storage"]["storageEndpointSuffix"],
                AMLOPS_DEFAULT_CREDENTIALS_SECRET=CREDENTIALS_SECRET,
                **testbed.ml_storage_env(emulator.endpoints),
            )
            print(f"==> Azure emulator: ARM {azure_env['AMLOPS_ARM_ENDPOINT']}, Batch data plane", flush=True)
            namespace = "amlops-demo"
            upload_sample_data(azurite.connection_string, namespace)
            print(f"==> Azurite at {azurite.blob_endpoint}: {SAMPLE_FILES} input files and score.py", flush=True)
            bed.kubectl("create", "namespace", namespace)
            # The emulator's well-known account key (not a secret: the seed's default), as samples/ expects.
            key = f"--from-literal=key={DEFAULT_BATCH_KEY}"
            bed.kubectl("create", "secret", "generic", "amlopsbatch-key", "-n", namespace, key)
            principal = [f"--from-literal={k}={v}" for k, v in emulator.endpoints["servicePrincipal"].items()]
            bed.kubectl("create", "secret", "generic", CREDENTIALS_SECRET, "-n", namespace, *principal)
            operator = testbed.start_operator(
                bed,
                work / "operator.log",
                "--namespace",
                namespace,
                env={
                    **azure_env,
                    "AMLOPS_BLOB_CONNECTION_STRING": azurite.connection_string,
                    "AMLOPS_SHARED_STORAGE_NAMESPACES": namespace,
                },
                liveness=False,
                wait=False,
            )
            print(f"==> operator started (pid {operator.proc.pid}, log {work / 'operator.log'})", flush=True)
            for text in sample_manifests(azurite.blob_endpoint, namespace):
                print(bed.kubectl("apply", "-n", namespace, "-f", "-", input_text=text), end="", flush=True)
            deadline = time.monotonic() + timeout
            shown: dict[str, str] = {}
            while time.monotonic() < deadline:
                items = json.loads(bed.kubectl("get", "amlops", "-n", namespace, "-o", "json"))["items"]
                for item in items:
                    line = _summary_line(item)
                    if shown.get(item["kind"]) != line:
                        print(f"    {line}", flush=True)
                        shown[item["kind"]] = line
                if _done(items):
                    break
                if operator.proc.poll() is not None:
                    print(
                        f"operator exited with {operator.proc.returncode}; see {work / 'operator.log'}", file=sys.stderr
                    )
                    return 1
                time.sleep(0.5)
            else:
                print("timed out waiting for the samples; see the operator log", file=sys.stderr)
                print(bed.kubectl("get", "amlops", "-n", namespace), file=sys.stderr)
                return 1
            print(bed.kubectl("get", "amlops", "-n", namespace), flush=True)
            job = json.loads(bed.kubectl("get", "paralleljob", "score", "-n", namespace, "-o", "json"))
            output = (job.get("status") or {}).get("output")
            print(f"ParallelJob output: {output}", flush=True)
            _print_head(azurite.connection_string, namespace, output)
            trained = json.loads(bed.kubectl("get", "commandjob", "train", "-n", namespace, "-o", "json"))
            print(f"CommandJob model: {((trained.get('status') or {}).get('outputs') or {}).get('model')}", flush=True)
            print(f"KUBECONFIG={bed.kubeconfig} kubectl get amlops -n {namespace}    # to look around", flush=True)
            if exit_when_done:
                return 0
            print("Press Ctrl-C to stop the demo (everything it started stops with it).", flush=True)
            while True:
                signal.pause()  # until Ctrl-C or SIGTERM (_stop) ends it
    except KeyboardInterrupt:
        print("==> stopping the demo", flush=True)
        return 0
    finally:
        if operator is not None:
            operator.stop(grace=10)
        if emulator is not None:
            emulator.stop()
        bed.stop()


def _print_head(connection_string: str, container: str, output: str | None, lines: int = 5) -> None:
    if not output or f"/{container}/" not in output:
        return
    from azure.storage.blob import BlobServiceClient

    blob = output.split(f"/{container}/", 1)[1]
    client = BlobServiceClient.from_connection_string(connection_string).get_blob_client(container, blob)
    text = client.download_blob().readall().decode()
    print(f"first {lines} of {len(text.splitlines())} rows:", flush=True)
    for row in text.splitlines()[:lines]:
        print(f"    {row}", flush=True)


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``amlops demo`` (entry point ``amlops.commands``: the operator's CLI never imports this package)."""
    parser = sub.add_parser("demo", help="run the local demo: test bed, emulator, operator, samples")
    parser.add_argument("--exit", action="store_true", help="exit once the samples are reconciled")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the samples")
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and state go (default: a temp dir)")
    parser.set_defaults(func=lambda args: run(exit_when_done=args.exit, timeout=args.timeout, workdir=args.workdir))
