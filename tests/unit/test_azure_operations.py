"""The ``operation`` label of ``amlops_azure_requests_total``: one name per kind of request, never a resource
name (a label per pool, job or blob would grow without bound). Paths are the SDKs' own URL templates:
azure-mgmt-machinelearningservices (2020-08-01), azure-batch 15 (``_operations.py``), and the Blob service REST
reference (``restype``/``comp`` query parameters)."""

from __future__ import annotations

import pytest

from amlops.azure.pipeline import arm_operation, batch_operation, blob_operation

pytestmark = pytest.mark.unit

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


@pytest.mark.parametrize(
    ("reason", "method", "path", "operation"),
    [
        ("a compute", "GET", f"{WS}/computes/cpu", "computes.get"),
        ("create or update", "PUT", f"{WS}/computes/cpu", "computes.put"),
        ("the workspace listing the shared poller reads", "GET", f"{WS}/computes", "computes.list"),
        ("the workspace itself (its location)", "GET", WS, "workspaces.get"),
        (
            "an LRO's status",
            "GET",
            "/subscriptions/s/providers/x/locations/l/computeOperationsStatus/1",
            "operations.get",
        ),
        ("anything else keeps only its method", "GET", "/subscriptions/s/resourcegroups/rg", "get.other"),
    ],
)
def test_arm_operation(reason: str, method: str, path: str, operation: str) -> None:
    assert arm_operation(method, path) == operation, reason


@pytest.mark.parametrize(
    ("reason", "method", "path", "operation"),
    [
        ("list pools", "GET", "/pools", "pools.list"),
        ("create a pool", "POST", "/pools", "pools.add"),
        ("one pool, its id left out", "GET", "/pools/amlops-ns-pool-1", "pools.get"),
        ("pool metadata", "PATCH", "/pools/p", "pools.patch"),
        ("delete a pool", "DELETE", "/pools/p", "pools.delete"),
        ("an action on a pool", "POST", "/pools/p/resize", "pools.resize"),
        ("node counts of the account", "GET", "/nodecounts", "nodecounts.list"),
        ("a pool's nodes", "GET", "/pools/p/nodes", "pools.nodes.list"),
        ("a job's tasks", "GET", "/jobs/j/tasks", "jobs.tasks.list"),
        ("one task", "GET", "/jobs/j/tasks/t-00001", "jobs.tasks.get"),
        ("adding a collection of tasks", "POST", "/jobs/j/addtaskcollection", "jobs.addtaskcollection"),
        ("a job's task counts", "GET", "/jobs/j/taskcounts", "jobs.taskcounts"),
        ("terminating a job", "POST", "/jobs/j/terminate", "jobs.terminate"),
        ("a task's file: the path is one id", "GET", "/jobs/j/tasks/t/files/wd/out/a.txt", "jobs.tasks.files.get"),
    ],
)
def test_batch_operation_on_azure(reason: str, method: str, path: str, operation: str) -> None:
    assert batch_operation("https://acct.westeurope.batch.azure.com")(method, path, "") == operation, reason


def test_batch_operation_under_an_endpoint_with_a_path() -> None:
    """The emulator serves an account under ``/{account}``: the prefix is not a collection."""
    name = batch_operation("http://127.0.0.1:8080/devbatch/")
    assert name("GET", "/devbatch/pools/p", "api-version=2025-06-01") == "pools.get"


@pytest.mark.parametrize(
    ("reason", "method", "query", "operation"),
    [
        ("list a folder", "GET", "restype=container&comp=list&prefix=a%2F", "container.list"),
        ("create a container", "PUT", "restype=container", "container.put"),
        ("download (a range)", "GET", "", "blob.get"),
        ("properties or exists", "HEAD", "", "blob.properties"),
        ("upload", "PUT", "", "blob.put"),
        ("stage a block", "PUT", "comp=block&blockid=QUFB", "blob.block"),
        ("commit blocks", "PUT", "comp=blocklist", "blob.blocklist"),
        ("delete", "DELETE", "", "blob.delete"),
    ],
)
def test_blob_operation(reason: str, method: str, query: str, operation: str) -> None:
    assert blob_operation(method, "/devstoreaccount1/out/a/b/c.txt", query) == operation, reason
