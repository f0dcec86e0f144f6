"""Tenancy (issue 13): from namespace A nothing reaches namespace B's Secrets, ConfigMaps or computes; a namespace
acts in Azure only with credentials it may use; immutable fields stay put; credentials Secrets outlive the
resources that need them.

Everything here runs against the real apiserver (and, for the operator cases, the ARM emulator)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

import amlops_testbed as testbed
from amlops.handlers.kube_api import CREDENTIALS_FINALIZER, KubeApi
from amlops.reconcile.errors import TerminalError
from tests.support.objects import apply, condition, events, wait_condition, wait_gone
from tests.support.processes import EmulatorProcess, StartOperator

from .test_amlcompute import WORKSPACE, WS_PATH, compute_name, manifest
from .test_batchcompute import manifest as batch_manifest
from .test_batchcompute import pools
from .test_kube_api import _info

pytestmark = pytest.mark.e2e
VICTIM_SECRET = "victim-sp"


def _try_apply(k8s: testbed.Testbed, namespace: str, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump(doc),
        env=k8s.env(),
        capture_output=True,
        text=True,
        check=False,
    )


def _principal_secret(
    k8s: testbed.Testbed, namespace: str, name: str, azure: EmulatorProcess, client_secret: str | None = None
) -> None:
    """A credentials Secret holding the emulator's service principal (with another client secret, if given)."""
    principal = dict(azure.run.endpoints["servicePrincipal"])
    if client_secret is not None:
        principal["AZURE_CLIENT_SECRET"] = client_secret
    literals = [f"--from-literal={k}={v}" for k, v in principal.items()]
    k8s.kubectl("create", "secret", "generic", name, "-n", namespace, *literals)


def _victim(k8s: testbed.Testbed, namespace: str) -> str:
    """Namespace B with a Secret and a ConfigMap of the same name, for A to try to reach."""
    victim = f"{namespace[:40]}-b"
    k8s.kubectl("create", "namespace", victim)
    k8s.kubectl("create", "secret", "generic", VICTIM_SECRET, "-n", victim, "--from-literal=AZURE_CLIENT_SECRET=b")
    k8s.kubectl("create", "configmap", VICTIM_SECRET, "-n", victim, "--from-literal=score.py=print()")
    return victim


def _kind(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "amlops.io/v1alpha1", "kind": kind, "metadata": {"name": "probe"}, "spec": spec}


BATCH = {"workspace": WORKSPACE, "batchAccount": {"resourceGroup": "rg", "accountName": "acct"}}
JOB = {
    "compute": {"name": "batch"},
    "inputs": {"data": {"uri": "https://acct.blob.core.windows.net/c/in"}},
    "outputs": {"out": {"uri": "https://acct.blob.core.windows.net/c/out"}},
    "inputData": "${{inputs.data}}",
    "task": {"code": "https://acct.blob.core.windows.net/c/code", "entryScript": "score.py"},
}


def _reaching(victim: str) -> list[tuple[str, dict[str, Any]]]:
    """Each reference field of each kind, aimed at namespace B."""
    secret = f"../../{victim}/secrets/{VICTIM_SECRET}"
    return [
        (
            "spec.credentials.secretRef.name",
            _kind("AmlCompute", {"workspace": WORKSPACE, "credentials": {"secretRef": {"name": secret}}}),
        ),
        (
            "spec.adminUser.passwordSecretRef.name",
            _kind(
                "AmlCompute",
                {"workspace": WORKSPACE, "adminUser": {"username": "u", "passwordSecretRef": {"name": secret}}},
            ),
        ),
        (
            "spec.credentials.secretRef.name",
            _kind("BatchCompute", {**BATCH, "credentials": {"secretRef": {"name": secret}}}),
        ),
        (
            "spec.batchCredentials.sharedKeySecretRef.name",
            _kind("BatchCompute", {**BATCH, "batchCredentials": {"sharedKeySecretRef": {"name": secret}}}),
        ),
        (
            "spec.compute.name",
            _kind("ParallelJob", {**JOB, "compute": {"name": f"../../{victim}/batchcomputes/batch"}}),
        ),
        (
            "spec.task.codeConfigMap",
            _kind(
                "ParallelJob",
                {**JOB, "task": {"codeConfigMap": f"../../{victim}/configmaps/{VICTIM_SECRET}", "entryScript": "s.py"}},
            ),
        ),
        (
            "spec.storageCredentials.secretRef.name",
            _kind("ParallelJob", {**JOB, "storageCredentials": {"secretRef": {"name": secret}}}),
        ),
    ]


def test_every_reference_field_refuses_a_path_into_another_namespace(k8s: testbed.Testbed, namespace: str) -> None:
    victim = _victim(k8s, namespace)
    for field, doc in _reaching(victim):
        refused = _try_apply(k8s, namespace, doc)
        assert refused.returncode != 0, f"{doc['kind']} {field} was accepted"
        assert field in refused.stderr, refused.stderr
        assert "should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?" in refused.stderr, refused.stderr
    assert json.loads(k8s.kubectl("get", "amlops", "-n", namespace, "-o", "json"))["items"] == []


async def test_the_client_refuses_a_path_into_another_namespace_when_the_schema_is_bypassed(
    k8s: testbed.Testbed, namespace: str
) -> None:
    """The same names, given straight to the operator's client: refused before any request, so B's Secret is
    never read (an unescaped ``..`` would have been normalised by the HTTP client into B's path)."""
    victim = _victim(k8s, namespace)
    api = KubeApi(lambda: _info(k8s))
    try:
        assert await api.read(namespace, "no-such-secret") is None, "a plain name still works"
        for attempt in (
            api.read(namespace, f"../../{victim}/secrets/{VICTIM_SECRET}"),
            api.read(namespace, ".."),
            api.read_config_map(namespace, f"../../{victim}/configmaps/{VICTIM_SECRET}"),
            api.get("batchcomputes", namespace, f"../../../{victim}/batchcomputes/batch"),
            api.read(f"{namespace}/../{victim}", VICTIM_SECRET),
        ):
            with pytest.raises(TerminalError) as refused:
                await attempt
            assert refused.value.reason == "InvalidSpec"
    finally:
        await api.close()


IMMUTABLE_CHANGES = [
    ("AmlCompute", "add spec.location", {"location": "westus"}, "location is immutable"),
    ("AmlCompute", "remove spec.computeName", {"computeName": None}, "computeName is immutable"),
    ("AmlCompute", "another workspace", {"workspace": {**WORKSPACE, "name": "ws-other"}}, "workspace is immutable"),
    ("AmlCompute", "add an admin user", {"adminUser": {"username": "u"}}, "adminUser is immutable"),
    ("BatchCompute", "add spec.endpoint", {"endpoint": "https://acct.westus.batch.azure.com"}, "endpoint is immutable"),
    (
        "BatchCompute",
        "another account",
        {"batchAccount": {"resourceGroup": "rg", "accountName": "other"}},
        "batchAccount is immutable",
    ),
    ("BatchCompute", "remove spec.computeName", {"computeName": None}, "computeName is immutable"),
]


@pytest.mark.parametrize(
    ("kind", "change", "patch", "message"), IMMUTABLE_CHANGES, ids=[c[1] for c in IMMUTABLE_CHANGES]
)
def test_immutable_fields_cannot_be_changed_added_or_removed(
    k8s: testbed.Testbed, namespace: str, kind: str, change: str, patch: dict[str, Any], message: str
) -> None:
    spec = {"workspace": WORKSPACE, "computeName": "c1"} if kind == "AmlCompute" else {**BATCH, "computeName": "c1"}
    created = _try_apply(k8s, namespace, _kind(kind, spec))
    assert created.returncode == 0, created.stderr
    refused = subprocess.run(
        ["kubectl", "patch", kind.lower(), "probe", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch})],
        env=k8s.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0, f"{change} was accepted"
    assert message in refused.stderr, refused.stderr
    assert "delete this one" in refused.stderr, "the message says what to do instead"


def test_a_namespace_without_credentials_does_not_act_as_the_operator(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """The operator's identity serves only the namespaces it is given: elsewhere a resource without credentials
    is Stalled CredentialsMissing, and Azure sees no request from it."""
    env = {**azure.operator_env(), "AMLOPS_OPERATOR_IDENTITY_NAMESPACES": "platform,team-*"}
    start_operator(namespace, extra_env=env)
    azure.control("DELETE", "/stats")
    cname = compute_name()
    apply(k8s, namespace, manifest("nocreds", cname))
    obj = wait_condition(k8s, "amlcompute", "nocreds", namespace, "Stalled")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "CredentialsMissing"
    assert "operator's own identity does not serve" in stalled["message"]
    assert azure.operations() == {}, "nothing reached Azure"
    status, _ = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status == 404


def test_a_credentials_secret_outlives_the_resources_that_need_it(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """A namespace deletion removes the Secrets and the resources at once. The in-use finalizer keeps the
    credentials until the resource has deleted its cluster in Azure, then lets the Secret go."""
    _principal_secret(k8s, namespace, "team-creds", azure)
    env = {**azure.operator_env(), "AMLOPS_DEFAULT_CREDENTIALS_SECRET": "team-creds"}
    env["AMLOPS_OPERATOR_IDENTITY_NAMESPACES"] = ""
    start_operator(namespace, extra_env=env)
    cname = compute_name()
    apply(k8s, namespace, manifest("held", cname))
    wait_condition(k8s, "amlcompute", "held", namespace, "Ready", timeout=120)
    secret = json.loads(k8s.kubectl("get", "secret", "team-creds", "-n", namespace, "-o", "json"))
    assert CREDENTIALS_FINALIZER in secret["metadata"]["finalizers"]

    k8s.kubectl("delete", "secret", "team-creds", "-n", namespace, "--wait=false")
    k8s.kubectl("delete", "amlcompute", "held", "-n", namespace, "--wait=false")
    # The Secret goes once the AmlCompute no longer needs it.
    wait_gone(k8s, "secret", "team-creds", namespace, timeout=120)
    assert testbed.get_object(k8s, "amlcompute", "held", namespace) is None
    status, _ = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status == 404, "the cluster was deleted in Azure, not leaked"


def test_a_resource_acts_with_its_own_service_principal(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """spec.credentials names a service principal's Secret: the operator exchanges it for a token at the identity
    platform (the emulator's) and acts with that; a wrong client secret is Stalled AuthenticationFailed, with the
    platform's AADSTS code, even though the operator's own identity would have been allowed."""
    _principal_secret(k8s, namespace, "sp", azure)
    _principal_secret(k8s, namespace, "sp-wrong", azure, client_secret="not-the-secret")
    start_operator(namespace, extra_env=azure.operator_env())
    for name, secret in (("own", "sp"), ("wrong", "sp-wrong")):
        apply(k8s, namespace, manifest(name, compute_name(), credentials={"secretRef": {"name": secret}}))
    wait_condition(k8s, "amlcompute", "own", namespace, "Ready", timeout=120)
    stalled = condition(wait_condition(k8s, "amlcompute", "wrong", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "AuthenticationFailed"
    assert "AADSTS7000215" in stalled["message"]


def test_the_batch_data_plane_acts_with_the_resources_own_service_principal(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """A BatchCompute without a shared key reaches the Batch data plane with Microsoft Entra tokens of its own
    spec.credentials (it used to send the operator's): the pool it manages is created with the service
    principal's token, and the operator's own identity serves no namespace here. With a wrong secret nothing
    reaches Batch: Stalled AuthenticationFailed."""
    _principal_secret(k8s, namespace, "sp", azure)
    _principal_secret(k8s, namespace, "sp-wrong", azure, client_secret="not-the-secret")
    env = {**azure.operator_env(), "AMLOPS_OPERATOR_IDENTITY_NAMESPACES": ""}
    start_operator(namespace, extra_env=env)
    for name, secret in (("aad", "sp"), ("aad-wrong", "sp-wrong")):
        doc = yaml.safe_load(
            batch_manifest(name, compute_name(), pools=[{"id": f"{name}-pool", "vmSize": "STANDARD_D2S_V3"}])
        )
        doc["spec"].pop("batchCredentials")
        doc["spec"]["credentials"] = {"secretRef": {"name": secret}}
        apply(k8s, namespace, yaml.safe_dump(doc))
    wait_condition(k8s, "batchcompute", "aad", namespace, "Ready", timeout=120)
    assert "aad-pool" in pools(azure), "the pool was created with the service principal's token"
    stalled = condition(wait_condition(k8s, "batchcompute", "aad-wrong", namespace, "Stalled"), "Stalled")
    assert stalled["reason"] == "AuthenticationFailed"
    assert "aad-wrong-pool" not in pools(azure)


def test_objects_that_could_never_reach_azure_are_deleted_without_waiting(
    k8s: testbed.Testbed, namespace: str, start_operator: StartOperator, azure: EmulatorProcess
) -> None:
    """Found by the spec fuzz: a credentials Secret that never existed, and a BatchCompute whose endpoint was
    never the account's, kept their finalizers for ever. Neither could have created anything there (the data
    plane was never reachable; a used Secret would have been kept by the in-use finalizer): deletion ends, the
    attach is detached, and a Warning says what amlops could not reach."""
    start_operator(namespace, extra_env=azure.operator_env())
    cname = compute_name()
    apply(k8s, namespace, manifest("nosecret", compute_name(), credentials={"secretRef": {"name": "no-such-secret"}}))
    doc = yaml.safe_load(batch_manifest("elsewhere", cname, endpoint="https://collector.example/acct"))
    doc["spec"].pop("batchCredentials")
    apply(k8s, namespace, yaml.safe_dump(doc))
    nosecret = wait_condition(k8s, "amlcompute", "nosecret", namespace, "Stalled")
    assert condition(nosecret, "Stalled")["reason"] == "CredentialsMissing"
    elsewhere = wait_condition(k8s, "batchcompute", "elsewhere", namespace, "Stalled")
    assert condition(elsewhere, "Stalled")["reason"] == "EndpointNotAllowed"
    status, _ = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status == 200, "the attach went through ARM before the data plane was refused"
    k8s.kubectl("delete", "amlcompute/nosecret", "batchcompute/elsewhere", "-n", namespace, "--timeout=120s")
    status, _ = azure.arm("GET", f"{WS_PATH}/computes/{cname}")
    assert status == 404, "detached, not left attached"
    assert [e["involvedObject"]["name"] for e in events(k8s, namespace, "CredentialsGone")] == ["nosecret"]
