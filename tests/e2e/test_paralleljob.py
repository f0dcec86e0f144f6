"""ParallelJob end to end: the real apiserver, the operator process, the Batch emulator whose node agent really
runs the driver and the entry script, and Azurite for inputs, code and outputs."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import textwrap
import threading
import uuid
import zipfile
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pytest
import yaml
from azure.batch.aio import BatchClient

import amlops_testbed as testbed
from amlops.azure.blob import BlobFolder, BlobStore
from amlops_emulator.azurite import Azurite
from tests.support.objects import apply, condition, events, find_condition, is_true, wait_condition, wait_for, wait_gone
from tests.support.processes import EmulatorProcess, StartOperator

from .test_amlcompute import compute_name
from .test_amlcompute import manifest as aml_manifest
from .test_batchcompute import batch, key_secret, manifest

pytestmark = pytest.mark.e2e
T = TypeVar("T")

SCORE = """
import os, time

def init():
    global delay
    delay = float(os.environ.get("DELAY", "0"))

def run(mini_batch):
    rows = []
    for path in mini_batch:
        text = open(path).read().strip()
        if text.startswith("bad"):
            raise ValueError(f"cannot score {os.path.basename(path)}")
        time.sleep(delay)
        rows.append(f"{os.path.basename(path)} {text.upper()}")
    return rows
"""

TABULAR = """
def run(mini_batch):
    return [f"{row['id']} {int(row['x']) * 2}" for row in mini_batch]
"""

# Each row with every region its mini-batch held (DataFrame or list of rows alike).
REGIONS = """
def run(mini_batch):
    rows = mini_batch.to_dict("records") if hasattr(mini_batch, "to_dict") else mini_batch
    regions = "+".join(sorted({row["region"] for row in rows}))
    return [f"{row['id']} {regions}" for row in rows]
"""


# Uses every SAS URL the task can see (its environment, its manifest) to reach beyond its own result blobs; each
# row says what was tried and the HTTP status Azurite answered.
TRESPASS = """
import json, os, urllib.error, urllib.parse, urllib.request

def status(url, method="GET", data=None):
    headers = {"x-ms-version": "2021-08-06", "x-ms-blob-type": "BlockBlob"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method)) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

def elsewhere(url, name):
    # The same token on another blob of the same container: the results folder's sibling, the plan.
    parts = urllib.parse.urlsplit(url)
    folder = parts.path.rsplit("/", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(path=f"{folder}/{name}"))

def run(mini_batch):
    summary = os.environ["AMLOPS_SUMMARY_URL"]
    manifest = json.loads(os.environ["AMLOPS_MINI_BATCH"])
    an_input = next(iter(manifest["urls"].values()))
    plan = elsewhere(summary, "../plan/index.json")
    container = urllib.parse.urlsplit(summary)
    listing = urllib.parse.urlunsplit(container._replace(
        path="/".join(container.path.split("/")[:3]), query=container.query + "&restype=container&comp=list"))
    tries = {
        "overwrite-plan": status(plan, "PUT", b"{}"),
        "overwrite-other-summary": status(elsewhere(summary, "99.summary.json"), "PUT", b"{}"),
        "overwrite-input": status(an_input, "PUT", b"x"),
        "read-plan": status(plan),
        "list-container": status(listing),
        "own-summary": status(summary),
    }
    return [f"{name} {code}" for name, code in tries.items()]
"""


def blobs(azurite: Azurite, work: Callable[[BlobStore], Coroutine[Any, Any, T]]) -> T:
    async def go() -> T:
        async with BlobStore.from_connection_string(azurite.connection_string) as store:
            return await work(store)

    return asyncio.run(go())


@dataclass
class Bed:
    k8s: testbed.Testbed
    ns: str
    azure: EmulatorProcess
    azurite: Azurite
    container: str
    start_operator: StartOperator
    operator: testbed.OperatorRun | None = None

    def uri(self, path: str) -> str:
        return f"{self.azurite.blob_endpoint}/{self.container}/{path}"

    def upload(self, folder: str, files: Mapping[str, str | bytes]) -> None:
        async def put(store: BlobStore) -> None:
            await store.create_container(self.container)
            await store.upload_files(BlobFolder(self.container, f"{folder}/"), dict(files))

        blobs(self.azurite, put)

    def read(self, path: str) -> str | None:
        async def get(store: BlobStore) -> bytes | None:
            return await store.read(BlobFolder(self.container), path)

        data = blobs(self.azurite, get)
        return None if data is None else data.decode()

    def listing(self, folder: str) -> list[str]:
        async def names(store: BlobStore) -> list[str]:
            return [b.name async for b in store.list_folder(BlobFolder(self.container, f"{folder}/"))]

        return blobs(self.azurite, names)

    def job(self, name: str, **spec: Any) -> None:
        body: dict[str, Any] = {
            "apiVersion": "amlops.io/v1alpha1",
            "kind": "ParallelJob",
            "metadata": {"name": name},
            "spec": {
                "compute": {"name": "batch", "poolId": "scoring"},
                "inputs": {"data": {"uri": self.uri("inputs")}},
                "outputs": {"scores": {"uri": self.uri(f"out/{name}")}},
                "inputData": "${{inputs.data}}",
                "miniBatchSize": "10",
                "retrySettings": {"maxRetries": 0, "timeout": 60},
                "task": {"code": self.uri("code"), "entryScript": "score.py", "appendRowTo": "${{outputs.scores}}"},
                "storageCredentials": {"secretRef": {"name": "storage"}},
                **spec,
            },
        }
        if body["spec"]["compute"].get("poolId") == "scoring":
            # The whole shared pool (2 nodes, 4 slots each) unless a test says otherwise: on a given pool the job
            # runs at most instanceCount times maxConcurrencyPerInstance mini-batches at once, as the seed's.
            body["spec"] = {"instanceCount": 2, "maxConcurrencyPerInstance": 4, **body["spec"]}
        apply(self.k8s, self.ns, yaml.safe_dump(body))

    def get(self, name: str) -> dict[str, Any]:
        return testbed.get_object(self.k8s, "paralleljob", name, self.ns) or {}

    def wait_phase(self, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        def in_phase(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in phases

        try:
            return wait_for(self.k8s, "paralleljob", name, self.ns, in_phase, what=f"{phases}", timeout=timeout)
        except Exception:
            print(json.dumps(self.get(name).get("status"), indent=1))
            if self.operator is not None:
                print(self.operator.output()[-6000:])
            raise

    def output_rows(self, name: str) -> list[str]:
        text = self.read(f"out/{name}/parallel_run_step.txt")
        assert text is not None, "parallel_run_step.txt is missing"
        return text.splitlines()

    def summaries(self, name: str) -> list[dict[str, Any]]:
        uid = self.get(name)["metadata"]["uid"]
        folder = f"out/{name}/_amlops/pj-{uid}/results"
        return [json.loads(self.read(f"{folder}/{n}") or "{}") for n in self.listing(folder) if n.endswith(".json")]


@pytest.fixture
def bed(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess, azurite: Azurite
) -> Bed:
    """A Ready BatchCompute ``batch`` with a pool ``scoring`` (2 nodes, 4 slots each), the storage Secret, code."""
    key_secret(k8s, namespace)
    k8s.kubectl(
        "create", "secret", "generic", "storage", "-n", namespace,
        f"--from-literal=connectionString={azurite.connection_string}",
    )  # fmt: skip
    b = Bed(k8s, namespace, azure, azurite, f"t{uuid.uuid4().hex[:12]}", start_operator)
    scripts = {"score.py": SCORE, "tabular.py": TABULAR, "regions.py": REGIONS, "trespass.py": TRESPASS}
    b.upload("code", {name: textwrap.dedent(text).lstrip() for name, text in scripts.items()})
    b.operator = start_operator(namespace, extra_env=azure.operator_env())
    pool = {"id": "scoring", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 4}
    apply(k8s, namespace, manifest("batch", compute_name(), pools=[pool]))
    wait_condition(k8s, "batchcompute", "batch", namespace, "Ready")
    return b


def files(count: int, bad: frozenset[int] = frozenset()) -> dict[str, str]:
    return {f"f{i:04d}.txt": ("bad" if i in bad else f"item{i}") for i in range(count)}


class Watcher:
    """Records every distinct status.progress while a job runs (a thread polling the apiserver)."""

    def __init__(self, b: Bed, name: str) -> None:
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(b, name), daemon=True)
        self._thread.start()

    def _run(self, b: Bed, name: str) -> None:
        while not self._stop.wait(0.2):
            progress = (b.get(name).get("status") or {}).get("progress")
            if progress and (not self.seen or self.seen[-1] != progress):
                self.seen.append(progress)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.seen


def test_files_run_to_complete_with_rows_in_order_and_progress(bed: Bed) -> None:
    """Also: the seed's description, experiment_name, tags and properties reach the Batch job's metadata (after
    the owner tag), its display_name the job's displayName, and on the shared pool the job's maxParallelTasks is
    instanceCount times maxConcurrencyPerInstance (2 x 4)."""
    bed.upload("inputs", files(1000))
    bed.job(
        "score",
        environmentVariables={"DELAY": "0.01"},
        displayName="Score files",
        description="parallel component for batch score",
        experimentName="seed",
        tags={"team": "ml"},
        properties={"origin": "seed"},
    )
    watcher = Watcher(bed, "score")
    obj = bed.wait_phase("score", "Complete", "Failed", timeout=240)
    seen = watcher.stop()

    status = obj["status"]
    assert status["phase"] == "Complete", status
    assert bed.output_rows("score") == [f"f{i:04d}.txt ITEM{i}" for i in range(1000)]
    assert status["miniBatches"] == {
        "total": 100,
        "pending": 0,
        "running": 0,
        "succeeded": 100,
        "failed": 0,
        "retried": 0,
    }
    assert status["items"] == {"processed": 1000, "failed": 0}
    assert status["progress"] == "100/100"
    assert status["progressPercentage"] == 100
    assert status["output"].endswith(f"/{bed.container}/out/score/parallel_run_step.txt")
    assert status["startTime"]
    assert status["completionTime"]
    intermediate = [p for p in seen if p not in ("0/100", "100/100")]
    assert intermediate, f"no intermediate progress among {seen}"
    assert condition(obj, "Complete")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Running")["status"] == "False"
    # The Batch job has ended; every mini-batch ran exactly once.
    assert all(s["attempt"] == 1 for s in bed.summaries("score"))
    batch_job = batch(bed.azure, lambda client: client.get_job(status["jobId"]))
    assert batch_job.display_name == "Score files"
    assert batch_job.max_parallel_tasks == 8
    assert [(item.name, item.value) for item in batch_job.metadata or []][1:] == [
        ("description", "parallel component for batch score"),
        ("experimentName", "seed"),
        ("tag:team", "ml"),
        ("property:origin", "seed"),
    ]
    assert (batch_job.metadata or [])[0].value == f"{bed.ns}.score.{obj['metadata']['uid']}", "the owner tag first"


def test_a_task_can_write_only_its_own_result_blobs(bed: Bed) -> None:
    """Every token a task holds names one blob: a user script that reuses them on the plan, another task's
    summary or its input, or on the container, is refused by the storage service (Azurite) with 403, while its
    own summary answers (404 before the driver writes it). The job still completes and the plan is intact."""
    bed.upload("inputs", files(1))
    code = {"code": bed.uri("code"), "entryScript": "trespass.py", "appendRowTo": "${{outputs.scores}}"}
    bed.job("trespass", task=code)

    obj = bed.wait_phase("trespass", "Complete", "Failed", timeout=120)

    assert obj["status"]["phase"] == "Complete", obj["status"]
    rows = dict(line.split(" ") for line in bed.output_rows("trespass"))
    assert rows == {
        "overwrite-plan": "403",
        "overwrite-other-summary": "403",
        "overwrite-input": "403",
        "read-plan": "403",
        "list-container": "403",
        "own-summary": "404",
    }
    plan = json.loads(bed.read(f"out/trespass/_amlops/pj-{obj['metadata']['uid']}/plan/index.json") or "{}")
    assert plan["done"]
    assert plan["count"] == 1


def test_the_operators_storage_account_reaches_only_the_namespaces_own_containers(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess, azurite: Azurite
) -> None:
    """Without spec.storageCredentials the operator's account is used, for a namespace it lists, and only in
    containers named after that namespace: a job whose input is another team's container is Stalled
    StorageNotAllowed before anything is created (no Batch job, no plan)."""
    key_secret(k8s, namespace)
    shared = {"AMLOPS_BLOB_CONNECTION_STRING": azurite.connection_string,
              "AMLOPS_SHARED_STORAGE_NAMESPACES": namespace}  # fmt: skip
    operator = start_operator(namespace, extra_env={**azure.operator_env(), **shared})
    pool = {"id": "scoring", "vmSize": "STANDARD_D2S_V3", "targetDedicatedNodes": 0}
    apply(k8s, namespace, manifest("batch", compute_name(), pools=[pool]))
    wait_condition(k8s, "batchcompute", "batch", namespace, "Ready")
    other = f"other-team-{uuid.uuid4().hex[:8]}"
    endpoint = azurite.blob_endpoint
    blobs(azurite, lambda store: store.create_container(namespace))  # the namespace's own, empty
    body = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": "ParallelJob",
        "metadata": {"name": "borrowed"},
        "spec": {
            "compute": {"name": "batch", "poolId": "scoring"},
            "inputs": {"data": {"uri": f"{endpoint}/{other}/inputs"}},
            "outputs": {"scores": {"uri": f"{endpoint}/{namespace}/out"}},
            "inputData": "${{inputs.data}}",
            "miniBatchSize": "10",
            "task": {"code": f"{endpoint}/{namespace}-code/src", "entryScript": "score.py"},
        },
    }
    apply(k8s, namespace, yaml.safe_dump(body))

    try:
        obj = wait_condition(k8s, "paralleljob", "borrowed", namespace, "Stalled", timeout=60)
    except TimeoutError:
        print(operator.output()[-4000:])
        raise
    refused = condition(obj, "Stalled")
    assert refused["reason"] == "StorageNotAllowed"
    assert other in refused["message"]
    assert f"pj-{obj['metadata']['uid']}" not in batch(azure, _job_ids)

    assert blobs(azurite, lambda store: _names(store, namespace)) == [], "nothing was planned or uploaded"


async def _job_ids(client: BatchClient) -> list[str]:
    return [str(job.id) async for job in client.list_jobs()]


async def _names(store: BlobStore, container: str) -> list[str]:
    return [b.name async for b in store.list_folder(BlobFolder(container))]


def test_thresholds_at_the_boundary_and_retries(bed: Bed) -> None:
    bed.upload("inputs", files(6, bad=frozenset({1, 3, 4})))  # three items fail, one per mini-batch
    one = {"miniBatchSize": "1"}
    bed.job("items-2", errorThreshold=2, **one)
    bed.job("items-3", errorThreshold=3, **one)
    bed.job("items-4", errorThreshold=4, **one)
    bed.job("batches-2", miniBatchErrorThreshold=2, **one)
    bed.job("ignored", retrySettings={"maxRetries": 2, "timeout": 60}, **one)

    failed = bed.wait_phase("items-2", "Complete", "Failed")
    assert failed["status"]["phase"] == "Failed"
    assert condition(failed, "Failed")["reason"] == "ErrorThresholdExceeded"
    assert condition(failed, "Failed")["message"] == "3 items and 3 mini-batches failed; errorThreshold is 2"
    assert condition(failed, "Stalled")["status"] == "True"
    assert condition(failed, "Ready")["status"] == "False"

    for name in ("items-3", "items-4"):
        done = bed.wait_phase(name, "Complete", "Failed")
        assert done["status"]["phase"] == "Complete", name
        assert done["status"]["items"] == {"processed": 3, "failed": 3}
        assert done["status"]["failedMiniBatches"] == "1,3-4"
        assert bed.output_rows(name) == ["f0000.txt ITEM0", "f0002.txt ITEM2", "f0005.txt ITEM5"]

    batches = bed.wait_phase("batches-2", "Complete", "Failed")
    assert batches["status"]["phase"] == "Failed"
    assert condition(batches, "Failed")["reason"] == "MiniBatchErrorThresholdExceeded"
    # The third failure crosses the threshold and amlops terminates the job; a mini-batch still running then
    # ends failed too (Batch's TaskEnded). The message counts what the status counts: 3, or 4 with that one.
    failed = batches["status"]["miniBatches"]["failed"]
    assert failed in (3, 4)
    assert condition(batches, "Failed")["message"] == (
        f"3 items and {failed} mini-batches failed; miniBatchErrorThreshold is 2"
    )

    ignored = bed.wait_phase("ignored", "Complete", "Failed")
    assert ignored["status"]["phase"] == "Complete"
    assert ignored["status"]["miniBatches"]["failed"] == 3
    assert ignored["status"]["miniBatches"]["retried"] == 6  # maxRetries 2 for each of the three
    attempts = {s["index"]: s["attempt"] for s in bed.summaries("ignored")}
    assert attempts == {0: 1, 1: 3, 2: 1, 3: 3, 4: 3, 5: 1}

    # Terminal states are sticky: a later pass (forced by the annotation) changes nothing.
    before = bed.get("items-2")["status"]
    bed.k8s.kubectl(
        "annotate", "paralleljob/items-2", "-n", bed.ns, "amlops.io/reconcile-requested-at=now", "--overwrite"
    )
    testbed.eventually(
        lambda: (bed.get("items-2").get("status") or {}).get("lastHandledReconcileAt") == "now", what="handled"
    )
    after = bed.get("items-2")["status"]
    assert after["phase"] == before["phase"]
    assert after["completionTime"] == before["completionTime"]


def test_operator_killed_mid_run_resumes_without_rerunning(bed: Bed) -> None:
    bed.upload("inputs", files(60))
    bed.job("resume", miniBatchSize="2", environmentVariables={"DELAY": "0.3"})

    def midway() -> bool:
        progress = (bed.get("resume").get("status") or {}).get("progress") or "0/0"
        done, total = (int(n) for n in progress.split("/"))
        return 0 < done < total

    testbed.eventually(midway, timeout=90, what="some mini-batches finished")
    assert bed.operator is not None
    bed.operator.stop(signal.SIGKILL)
    bed.operator = bed.start_operator(bed.ns, extra_env=bed.azure.operator_env())

    obj = bed.wait_phase("resume", "Complete", "Failed", timeout=120)
    assert obj["status"]["phase"] == "Complete"
    assert bed.output_rows("resume") == [f"f{i:04d}.txt ITEM{i}" for i in range(60)]
    summaries = bed.summaries("resume")
    assert sorted(s["index"] for s in summaries) == list(range(30))
    assert all(s["attempt"] == 1 for s in summaries), "a mini-batch ran twice"


def test_suspend_resume_and_delete(bed: Bed) -> None:
    bed.upload("inputs", files(40))
    bed.job("pause", miniBatchSize="1", environmentVariables={"DELAY": "0.4"})
    testbed.eventually(
        lambda: (bed.get("pause").get("status") or {}).get("miniBatches", {}).get("succeeded", 0) >= 2,
        timeout=90,
        what="running",
    )
    bed.k8s.kubectl("patch", "paralleljob/pause", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    suspended = bed.wait_phase("pause", "Suspended")
    assert condition(suspended, "Suspended")["status"] == "True"
    assert condition(suspended, "Ready")["status"] == "False"
    assert condition(suspended, "Reconciling")["status"] == "False"
    job_id = suspended["status"]["jobId"]
    assert batch(bed.azure, lambda c: c.get_job(job_id)).state == "disabled"
    counts = batch(bed.azure, lambda c: c.get_job_task_counts(job_id)).task_counts
    assert counts.running == 0
    assert counts.completed < 40

    # Only suspend may change.
    refused = subprocess.run(
        ["kubectl", "patch", "paralleljob/pause", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"miniBatchSize":"2"}}'],
        env=bed.k8s.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "immutable except suspend" in refused.stderr

    bed.k8s.kubectl("patch", "paralleljob/pause", "-n", bed.ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    obj = bed.wait_phase("pause", "Complete", "Failed", timeout=120)
    assert obj["status"]["phase"] == "Complete"
    assert condition(obj, "Suspended")["status"] == "False"
    assert bed.output_rows("pause") == [f"f{i:04d}.txt ITEM{i}" for i in range(40)]

    # A job on a pool of its own: deleting the object deletes the Batch job and that pool.
    bed.job("own", compute={"name": "batch"}, instanceCount=1, miniBatchSize="1", environmentVariables={"DELAY": "1"})
    running = testbed.eventually(
        lambda: bed.get("own") if (bed.get("own").get("status") or {}).get("miniBatches", {}).get("running") else None,
        timeout=90,
        what="own pool running",
    )
    own_job, own_pool = running["status"]["jobId"], running["status"]["poolId"]
    assert own_pool == own_job
    bed.k8s.kubectl("delete", "paralleljob/own", "-n", bed.ns, "--wait=false")
    wait_gone(bed.k8s, "paralleljob", "own", bed.ns)

    async def gone(client: BatchClient) -> tuple[list[str], dict[str, str]]:
        jobs = [j.id async for j in client.list_jobs()]
        pools = {p.id: p.state async for p in client.list_pools()}
        return jobs, pools

    jobs, pools = batch(bed.azure, gone)
    assert own_job not in jobs
    assert own_pool not in pools or pools[own_pool] == "deleting"
    assert "scoring" in pools  # the BatchCompute's pool is not ours to delete


def test_tabular_input_is_split_by_size(bed: Bed) -> None:
    parts = {f"part{p}.csv": "id,x\n" + "".join(f"r{p}{i:03d},{i}\n" for i in range(100)) for p in range(2)}
    bed.upload("table", {**parts, "MLTable": "paths:\n  - pattern: ./*.csv\n"})
    bed.job(
        "table",
        inputs={"data": {"uri": bed.uri("table"), "type": "mltable"}},
        miniBatchSize="256",
        task={"code": bed.uri("code"), "entryScript": "tabular.py", "appendRowTo": "${{outputs.scores}}"},
    )
    obj = bed.wait_phase("table", "Complete", "Failed")
    status = obj["status"]
    assert status["phase"] == "Complete", status
    # About 100 rows of ~8 bytes a file in ranges of ~256 bytes: several mini-batches per file, cut at lines.
    assert status["miniBatches"]["total"] >= 6
    assert status["items"] == {"processed": 200, "failed": 0}
    assert bed.output_rows("table") == [f"r{p}{i:03d} {i * 2}" for p in range(2) for i in range(100)]

    # Partition keys on a column: regions interleaved row by row; no mini-batch mixes them.
    regions = ("eu", "us", "asia")
    rows = [f"r{i:03d},{regions[i % 3]},{i}\n" for i in range(150)]
    header = "id,region,x\n"
    bed.upload("regions", {"a.csv": header + "".join(rows[:90]), "b.csv": header + "".join(rows[90:])})
    bed.job(
        "by-region",
        inputs={"data": {"uri": bed.uri("regions"), "type": "mltable"}},
        miniBatchSize="1KB",
        partitionKeys=["region"],
        task={"code": bed.uri("code"), "entryScript": "regions.py", "appendRowTo": "${{outputs.scores}}"},
    )
    obj = bed.wait_phase("by-region", "Complete", "Failed")
    assert obj["status"]["phase"] == "Complete", obj["status"]
    assert obj["status"]["items"] == {"processed": 150, "failed": 0}
    output = dict(line.split() for line in bed.output_rows("by-region"))
    assert output == {f"r{i:03d}": regions[i % 3] for i in range(150)}, "each mini-batch holds one region"


def test_compute_not_ready_waits_and_batch_only_fields_on_an_amlcompute_are_refused(bed: Bed) -> None:
    bed.upload("inputs", files(2))
    bed.job("nowhere", compute={"name": "later", "poolId": "scoring"})
    apply(bed.k8s, bed.ns, aml_manifest("cpu", compute_name()))
    bed.job("on-aml", compute={"name": "cpu"})

    def reason(name: str, type_: str) -> str | None:
        return (find_condition(bed.get(name), type_) or {}).get("reason")

    # A pool the BatchCompute does not manage (here one the account does not even have), and an image on a pool
    # that cannot run containers: refused before any task is added.
    bed.job("no-pool", compute={"name": "batch", "poolId": "nosuch"})
    task = {"code": bed.uri("code"), "entryScript": "score.py", "environment": {"image": "scoring:1"}}
    bed.job("image", task=task)

    testbed.eventually(lambda: reason("nowhere", "Reconciling") == "WaitingForCompute", what="waiting for compute")
    # On an AmlCompute the job runs through Azure ML, where Batch-only fields would be ignored: refused by name.
    testbed.eventually(lambda: reason("on-aml", "Stalled") == "InvalidSpec", what="Batch-only fields refused")
    assert "storageCredentials" in condition(bed.get("on-aml"), "Stalled")["message"]
    testbed.eventually(lambda: reason("no-pool", "Stalled") == "PoolNotManaged", what="unmanaged pool refused")
    testbed.eventually(lambda: reason("image", "Stalled") == "InvalidSpec", what="image on a plain pool refused")
    assert "has no containerConfiguration" in condition(bed.get("image"), "Stalled")["message"]
    assert (bed.get("nowhere").get("status") or {}).get("phase") in (None, "Pending")


def test_is_deterministic_reuses_an_identical_completed_job_and_new_code_runs_again(bed: Bed) -> None:
    bed.upload("inputs", files(20))
    bed.job("first", isDeterministic=True)
    first = bed.wait_phase("first", "Complete", "Failed", timeout=120)
    assert first["status"]["phase"] == "Complete", first["status"]
    assert first["status"]["contentHash"]
    tasks_before = sum(n for op, n in bed.azure.operations().items() if op.endswith("/addtaskcollection"))

    # Same spec, inputs and code, another output folder: nothing runs, the first job's output is the answer.
    # isDeterministic left out: true, the seed's default (parallel_run_function(is_deterministic=True)).
    bed.job("second")
    second = bed.wait_phase("second", "Complete", "Failed", timeout=60)
    assert second["status"]["reusedFrom"] == "first"
    assert second["status"]["output"] == first["status"]["output"]
    assert second["status"]["contentHash"] == first["status"]["contentHash"]
    assert condition(second, "Complete")["reason"] == "Reused"
    assert sum(n for op, n in bed.azure.operations().items() if op.endswith("/addtaskcollection")) == tasks_before

    # Not deterministic: runs although identical. New code at the same URI: a new hash, so it runs too.
    bed.job("third", isDeterministic=False)
    assert "reusedFrom" not in bed.wait_phase("third", "Complete", "Failed", timeout=120)["status"]
    bed.upload("code", {"score.py": textwrap.dedent(SCORE).lstrip() + "\n# changed\n"})
    bed.job("fourth", isDeterministic=True)
    fourth = bed.wait_phase("fourth", "Complete", "Failed", timeout=120)
    assert "reusedFrom" not in fourth["status"]
    assert fourth["status"]["contentHash"] != first["status"]["contentHash"]
    assert bed.output_rows("fourth") == bed.output_rows("first")


GREET = """
import os
import amlops_fixture

def run(mini_batch):
    site = os.path.dirname(amlops_fixture.__file__)
    return [f"{amlops_fixture.greet(os.path.basename(p))} {site}" for p in mini_batch]
"""


def fixture_wheel() -> tuple[str, bytes]:
    """A pure-Python wheel made on the spot: pip installs it from task.code with no index (no network here)."""
    info = "amlops_fixture-1.0.dist-info"
    members = {
        "amlops_fixture/__init__.py": "def greet(name):\n    return f'hi {name}'\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: amlops-fixture\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: amlops-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    members[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*members, f"{info}/RECORD"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for name, text in members.items():
            wheel.writestr(name, text)
    return "amlops_fixture-1.0-py3-none-any.whl", buffer.getvalue()


def test_environment_requirements_are_installed_once_per_node_and_failures_are_clear(bed: Bed) -> None:
    wheel_name, wheel = fixture_wheel()
    conda = {
        "bad-pip.yml": "dependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - no-such-package-amlops==9.9\n",
        "conda-only.yml": "name: scoring\ndependencies:\n  - numpy=2.1\n",
        "interpreter.yml": "dependencies:\n  - python=3.11\n  - pip\n",  # nothing to install
    }
    bed.upload("code", {"greet.py": textwrap.dedent(GREET).lstrip(), wheel_name: wheel, **conda})
    bed.upload("inputs", files(24))
    offline = {"PIP_NO_INDEX": "1"}  # fail fast instead of retrying an index this machine cannot reach

    def task(**environment: Any) -> dict[str, Any]:
        return {"code": bed.uri("code"), "entryScript": "greet.py", "appendRowTo": "${{outputs.scores}}",
                "environment": environment}  # fmt: skip

    bed.job("env", task=task(pipRequirements=[f"./{wheel_name}"]), environmentVariables=offline, miniBatchSize="2")
    bed.job("bad-pip", task=task(condaFile="bad-pip.yml"), environmentVariables=offline, miniBatchErrorThreshold=0)
    bed.job("conda-only", task=task(condaFile="conda-only.yml"))
    plain = {"code": bed.uri("code"), "entryScript": "score.py", "appendRowTo": "${{outputs.scores}}"}
    bed.job("interpreter", task={**plain, "environment": {"condaFile": "interpreter.yml"}})

    obj = bed.wait_phase("env", "Complete", "Failed", timeout=180)
    assert obj["status"]["phase"] == "Complete", obj["status"]
    rows = [line.split(" ", 2) for line in bed.output_rows("env")]
    assert [f"{hi} {name}" for hi, name, _ in rows] == [f"hi f{i:04d}.txt" for i in range(24)]
    # Installed into the node's shared folder, once per node (the pool has 2 nodes), reused by every mini-batch.
    sites = {site for _, _, site in rows}
    assert 1 <= len(sites) <= 2
    assert all("/amlops-envs/" in site for site in sites)

    failed = bed.wait_phase("bad-pip", "Failed", "Complete", timeout=120)
    assert failed["status"]["phase"] == "Failed", failed["status"]
    errors = [s["error"]["message"] for s in bed.summaries("bad-pip") if s.get("error")]
    assert errors
    assert all("pip install -r requirements.txt failed" in e and "no-such-package-amlops" in e for e in errors)

    # A conda file naming only the interpreter installs nothing, and the job runs as without one.
    plain_run = bed.wait_phase("interpreter", "Complete", "Failed", timeout=120)
    assert plain_run["status"]["phase"] == "Complete", plain_run["status"]
    assert bed.output_rows("interpreter") == [f"f{i:04d}.txt ITEM{i}" for i in range(24)]

    refused = testbed.eventually(lambda: stalled(bed, "conda-only"), timeout=60, what="conda-only Stalled")
    assert refused["reason"] == "InvalidSpec"
    assert "numpy=2.1" in refused["message"]
    assert "pip: section" in refused["message"]


def test_code_from_a_configmap_and_ttl_after_finished_deletes_the_job(bed: Bed) -> None:
    bed.upload("inputs", files(12))
    code = {"code": None, "codeConfigMap": "scoring-code", "entryScript": "score.py",
            "appendRowTo": "${{outputs.scores}}"}  # fmt: skip
    # Both code sources, or neither: refused by the apiserver (CEL), nothing reaches the operator.
    for task in ({**code, "code": bed.uri("code")}, {"entryScript": "score.py"}):
        with pytest.raises(subprocess.CalledProcessError) as refused:
            bed.job("both", task=task)
        assert "set exactly one of task.code" in refused.value.stderr

    # The ConfigMap comes after the job (GitOps applies in any order): Stalled, then it runs once it exists.
    bed.job("from-cm", task={k: v for k, v in code.items() if v is not None}, ttlSecondsAfterFinished=4)
    testbed.eventually(
        lambda: (find_condition(bed.get("from-cm"), "Stalled") or {}).get("reason") == "ConfigMapNotFound",
        what="Stalled",
    )
    bed.k8s.kubectl(
        "create", "configmap", "scoring-code", "-n", bed.ns, f"--from-literal=score.py={textwrap.dedent(SCORE)}"
    )  # fmt: skip
    done = bed.wait_phase("from-cm", "Complete", "Failed", timeout=120)
    assert done["status"]["phase"] == "Complete", done["status"]
    uid = done["metadata"]["uid"]
    assert bed.output_rows("from-cm") == [f"f{i:04d}.txt ITEM{i}" for i in range(12)]

    # ttlSecondsAfterFinished: gone a few seconds after completionTime, with its Batch job; the output stays.
    wait_gone(bed.k8s, "paralleljob", "from-cm", bed.ns)  # deleted by its TTL
    assert any(e["involvedObject"]["uid"] == uid for e in events(bed.k8s, bed.ns, "TTLExpired"))

    async def job_ids(client: BatchClient) -> list[str]:
        return [j.id async for j in client.list_jobs()]

    testbed.eventually(lambda: f"pj-{uid}" not in batch(bed.azure, job_ids), timeout=60, what="Batch job deleted")
    assert bed.output_rows("from-cm")


def stalled(bed: Bed, name: str) -> Mapping[str, Any] | None:
    """The Stalled condition of ``paralleljob/name`` once it is True."""
    obj = bed.get(name)
    return condition(obj, "Stalled") if is_true(obj, "Stalled") else None


def test_specs_that_cannot_run_are_stalled_before_any_pool_or_job_exists(bed: Bed) -> None:
    """Each is Stalled with its reason, and the emulator's Batch account shows no job and no pool for it."""
    bed.upload("inputs", files(4))
    bed.upload("latin", {"a.csv": "id,région\n1,été\n".encode("latin-1")})
    bed.k8s.kubectl(
        "create", "secret", "generic", "garbage", "-n", bed.ns, "--from-literal=connectionString=not a connection",
    )  # fmt: skip
    own = {"name": "batch"}  # no poolId: amlops would create a pool for each
    bed.job("quotes", compute=own, task={"code": bed.uri("code"), "entryScript": "score.py",
                                         "programArguments": "--name 'unbalanced"})  # fmt: skip
    bed.job("garbage", compute=own, storageCredentials={"secretRef": {"name": "garbage"}})
    bed.job(
        "latin",
        compute=own,
        inputs={"data": {"uri": bed.uri("latin"), "type": "mltable"}},
        partitionKeys=["région"],
        task={"code": bed.uri("code"), "entryScript": "tabular.py"},
    )
    # A single line longer than MAX_LINE_BYTES (16 MiB), and a conda file of nested aliases (billion laughs).
    bed.upload("long", {"big.jsonl": b'{"a": "' + b"x" * (17 << 20) + b'"}\n{"a": "y"}\n'})
    bed.upload("code", {"laughs.yml": "a: &a [lol, lol]\nb: &b [*a, *a]\ndependencies: [{pip: [*b, *b]}]\n"})
    tabular = {"code": bed.uri("code"), "entryScript": "tabular.py"}
    bed.job("long", compute=own, inputs={"data": {"uri": bed.uri("long"), "type": "mltable"}}, miniBatchSize="1KB",
            task=tabular)  # fmt: skip
    bed.job(
        "laughs", compute=own, task={**tabular, "entryScript": "score.py", "environment": {"condaFile": "laughs.yml"}}
    )
    # Only Azure ML honours these; on the shared pool, more than the pool is refused rather than ignored.
    bed.job("gpu", compute=own, resources={"instanceType": "Standard_NC6s_v3", "shmSize": "2g"})
    bed.job("token", identity={"type": "aml_token"})
    bed.job("bigger", compute={"name": "batch", "poolId": "scoring", "instanceType": "STANDARD_D4S_V3"})
    bed.job("wide", maxConcurrencyPerInstance=5)
    expected = {
        "quotes": "InvalidSpec",
        "garbage": "InvalidConnectionString",
        "latin": "InputNotUtf8",
        "long": "LineTooLong",
        "laughs": "CondaFileHasAliases",
        "gpu": "RequiresAmlCompute",
        "token": "RequiresAmlCompute",
        "bigger": "InvalidSpec",
        "wide": "InvalidSpec",
    }
    for name, reason in expected.items():
        found = testbed.eventually(partial(stalled, bed, name), timeout=60, what=f"{name} Stalled")
        assert found["reason"] == reason, (name, found)
    assert "balance its quotes" in condition(bed.get("quotes"), "Stalled")["message"]
    assert "not a connection" not in condition(bed.get("garbage"), "Stalled")["message"], "never echo the secret"
    assert "a.csv" in condition(bed.get("latin"), "Stalled")["message"]
    assert (
        "resources.instanceType, resources.shmSize need an AmlCompute"
        in condition(bed.get("gpu"), "Stalled")["message"]
    )
    assert "is not the vmSize of pool scoring" in condition(bed.get("bigger"), "Stalled")["message"]
    assert "more than the 4 task slots" in condition(bed.get("wide"), "Stalled")["message"]

    async def ours(client: BatchClient) -> tuple[list[str], list[str]]:
        jobs = [j.id async for j in client.list_jobs()]
        pools = [p.id async for p in client.list_pools()]
        return jobs, pools

    jobs, pools = batch(bed.azure, ours)
    uids = {bed.get(name)["metadata"]["uid"] for name in expected}
    assert not [j for j in jobs if j.removeprefix("pj-") in uids], jobs
    assert not [p for p in pools if p.removeprefix("pj-") in uids], pools
    assert not any(op.endswith("/addtaskcollection") for op in bed.azure.operations()), "no task was added"


def test_a_plan_refused_after_its_job_exists_ends_the_job(bed: Bed) -> None:
    """On a given pool the job is created, and its first tasks added, once the plan's first chunk is written, while
    the rest is planned (bench/paralleljob_plan_submit.py): a file the plan refuses after that (InputNotUtf8) stalls
    the object and ends its Batch job, so no task of a plan that cannot run stays queued."""
    rows = "".join(f"{i},x\n" for i in range(2_100))  # one row a mini-batch: four chunks of 500 before b.csv
    bed.upload("late", {"a.csv": f"id,v\n{rows}", "b.csv": "id,région\n1,été\n".encode("latin-1")})
    tabular = {"code": bed.uri("code"), "entryScript": "tabular.py"}
    bed.job("late", inputs={"data": {"uri": bed.uri("late"), "type": "mltable"}}, miniBatchSize="1", task=tabular)

    found = testbed.eventually(partial(stalled, bed, "late"), timeout=90, what="Stalled")
    assert found["reason"] == "InputNotUtf8"
    assert "b.csv" in found["message"]
    job_id = f"pj-{bed.get('late')['metadata']['uid']}"

    async def state(client: BatchClient) -> tuple[str, str | None]:
        async for job in client.list_jobs():
            if job.id == job_id:
                ended = "completed" if job.state == "completed" else "not yet"
                return ended, job.execution_info.termination_reason if job.execution_info else None
        return "absent", None  # refused before the job was created: nothing to end

    def settled() -> tuple[str, str | None] | None:
        now = batch(bed.azure, state)
        return now if now[0] in ("absent", "completed") else None

    assert testbed.eventually(settled, timeout=60, what="the Batch job ended") in (
        ("completed", "InputNotUtf8"),
        ("absent", None),
    )


def test_a_vanished_plan_document_is_stalled_naming_it(bed: Bed) -> None:
    bed.upload("inputs", files(8))
    bed.job("plan", miniBatchSize="1", environmentVariables={"DELAY": "2"})
    running = testbed.eventually(
        lambda: bed.get("plan") if (bed.get("plan").get("status") or {}).get("phase") == "Running" else None,
        timeout=90, what="running",
    )  # fmt: skip
    uid = running["metadata"]["uid"]

    async def remove(store: BlobStore) -> None:
        await store.delete_blob(BlobFolder(bed.container, f"out/plan/_amlops/pj-{uid}/plan/"), "index.json")

    blobs(bed.azurite, remove)
    found = testbed.eventually(lambda: stalled(bed, "plan"), timeout=60, what="Stalled")
    assert found["reason"] == "PlanBlobMissing"
    assert "index.json" in found["message"]


def test_a_second_run_into_the_same_output_folder_reports_its_own_rows(bed: Bed) -> None:
    """Both jobs write out/shared/parallel_run_step.txt: the second replaces the first's file exactly once."""
    bed.upload("first", files(3))
    bed.upload("second", {f"g{i}.txt": f"other{i}" for i in range(5)})
    shared = {"scores": {"uri": bed.uri("out/shared")}}
    bed.job("run-1", inputs={"data": {"uri": bed.uri("first")}}, outputs=shared)
    first = bed.wait_phase("run-1", "Complete", "Failed", timeout=120)
    assert first["status"]["phase"] == "Complete", first["status"]
    assert bed.output_rows("shared") == [f"f{i:04d}.txt ITEM{i}" for i in range(3)]

    bed.job("run-2", inputs={"data": {"uri": bed.uri("second")}}, outputs=shared)
    second = bed.wait_phase("run-2", "Complete", "Failed", timeout=120)
    assert second["status"]["phase"] == "Complete", second["status"]
    assert second["status"]["items"] == {"processed": 5, "failed": 0}
    assert bed.output_rows("shared") == [f"g{i}.txt OTHER{i}" for i in range(5)]
    assert second["status"]["output"] == first["status"]["output"]

    # A pass of the first job later (forced) neither takes the file back nor rewrites it.
    bed.k8s.kubectl("annotate", "paralleljob/run-1", "-n", bed.ns, "amlops.io/reconcile-requested-at=again")
    testbed.eventually(
        lambda: (bed.get("run-1").get("status") or {}).get("lastHandledReconcileAt") == "again", what="handled"
    )
    assert bed.output_rows("shared") == [f"g{i}.txt OTHER{i}" for i in range(5)]


# Overwrites its own summary with garbage through the results SAS URL the driver got, then ends the process
# before the driver writes the real one: what a careless (or hostile) entry script can do.
FORGER = """
import os, urllib.request

def run(mini_batch):
    url = os.environ["AMLOPS_SUMMARY_URL"]  # the task's own summary blob: read + write, nothing else
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"}
    urllib.request.urlopen(urllib.request.Request(url, data=b"{not json", headers=headers, method="PUT"))
    os._exit(0)
"""


def test_a_summary_overwritten_by_user_code_fails_its_mini_batch(bed: Bed) -> None:
    bed.upload("code", {"forger.py": textwrap.dedent(FORGER).lstrip()})
    bed.upload("inputs", files(4))
    task = {"code": bed.uri("code"), "entryScript": "forger.py", "appendRowTo": "${{outputs.scores}}"}
    bed.job("forged", miniBatchSize="2", task=task)
    obj = bed.wait_phase("forged", "Complete", "Failed", timeout=120)
    status = obj["status"]
    assert status["phase"] == "Complete", status  # no threshold set: failures are counted, not fatal
    assert status["miniBatches"]["failed"] == 2
    assert status["miniBatches"]["succeeded"] == 0
    assert status["failedMiniBatches"] == "0-1"
    assert bed.output_rows("forged") == []
    results = f"out/forged/_amlops/pj-{obj['metadata']['uid']}/results"
    assert [bed.read(f"{results}/{i}.summary.json") for i in range(2)] == ["{not json"] * 2, "the forged summaries"
