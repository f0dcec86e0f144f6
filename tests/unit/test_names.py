"""Names that reach other objects: the schema's rules (pydantic is the CRD's source) and the client's own guard,
which holds even when the schema is bypassed (issue 13, point 1)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel, ValidationError

from amlops.api.amlcompute import AmlComputeSpec
from amlops.api.batchcompute import BatchComputeSpec
from amlops.api.paralleljob import ParallelJobSpec
from amlops.handlers.kube_api import _custom, segment
from amlops.reconcile.errors import TerminalError

pytestmark = pytest.mark.unit

WORKSPACE = {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg", "name": "ws-1"}
TRAVERSAL = "../../victim/secrets/victim-sp"


@dataclass(frozen=True)
class Case:
    reason: str
    value: str
    ok: bool


SEGMENTS = [
    Case("an ordinary name is kept", "sp-creds", True),
    Case("dots inside a subdomain are fine", "team.sp", True),
    Case("empty: no object has no name", "", False),
    Case("the current segment", ".", False),
    Case("the parent segment", "..", False),
    Case("a slash climbs into another path", TRAVERSAL, False),
    Case("a backslash is a slash for some proxies", "..\\secrets", False),
    Case("control characters", "a\nb", False),
]


@pytest.mark.parametrize("case", SEGMENTS, ids=lambda c: c.reason)
def test_segment_refuses_what_leaves_its_segment(case: Case) -> None:
    if case.ok:
        assert segment(case.value) == case.value
    else:
        with pytest.raises(TerminalError) as error:
            segment(case.value)
        assert error.value.reason == "InvalidSpec"


def test_segment_percent_encodes_what_is_left() -> None:
    # Not a valid Kubernetes name, but whatever reaches the client must stay inside one segment.
    assert segment("a%2F..b?c#d") == "a%252F..b%3Fc%23d"


def test_custom_object_paths_escape_every_segment() -> None:
    assert _custom("batchcomputes", "team-a", "gpu") == "/apis/amlops.io/v1alpha1/namespaces/team-a/batchcomputes/gpu"
    with pytest.raises(TerminalError):
        _custom("batchcomputes", "team-a", "../../team-b/batchcomputes/gpu")


@dataclass(frozen=True)
class Spec:
    reason: str
    model: type[BaseModel]
    spec: dict[str, object]


REFERENCES = [
    Spec("ARM credentials Secret", AmlComputeSpec, {"credentials": {"secretRef": {"name": TRAVERSAL}}}),
    Spec(
        "admin password Secret",
        AmlComputeSpec,
        {"adminUser": {"username": "azureuser", "passwordSecretRef": {"name": TRAVERSAL}}},
    ),
    Spec(
        "admin password Secret key",
        AmlComputeSpec,
        {"adminUser": {"username": "u", "passwordSecretRef": {"name": "s", "key": "a/b"}}},
    ),
    Spec(
        "user-assigned identity that is not an ARM id",
        AmlComputeSpec,
        {"identity": {"type": "UserAssigned", "userAssignedIdentities": ["not-an-id"]}},
    ),
    Spec(
        "subnet id that is not a subnet", AmlComputeSpec, {"subnet": {"subnetId": "/subscriptions/x/resourceGroups/y"}}
    ),
    Spec("vnet name with a slash", AmlComputeSpec, {"subnet": {"vnetName": "a/b", "subnetName": "s"}}),
]

BATCH = {"workspace": WORKSPACE, "batchAccount": {"resourceGroup": "rg", "accountName": "acct"}}
BATCH_REFERENCES = [
    Spec(
        "Batch shared key Secret",
        BatchComputeSpec,
        {**BATCH, "batchCredentials": {"sharedKeySecretRef": {"name": TRAVERSAL}}},
    ),
    Spec(
        "account resource group with a slash",
        BatchComputeSpec,
        {**BATCH, "batchAccount": {"resourceGroup": "rg/x", "accountName": "acct"}},
    ),
    Spec("endpoint with credentials in it", BatchComputeSpec, {**BATCH, "endpoint": "https://user@evil.example"}),
]

JOB = {
    "compute": {"name": "batch"},
    "outputs": {"out": {"uri": "https://a/c/out"}},
    "inputData": "${{inputs.data}}",
    "task": {"code": "https://a/c/code", "entryScript": "score.py"},
}
JOB_REFERENCES = [
    Spec("compute in another namespace", ParallelJobSpec, {**JOB, "compute": {"name": "../../team-b/batchcomputes/x"}}),
    Spec(
        "code ConfigMap pointing at a Secret",
        ParallelJobSpec,
        {**JOB, "task": {"codeConfigMap": "../secrets/sp", "entryScript": "s.py"}},
    ),
    Spec("storage Secret", ParallelJobSpec, {**JOB, "storageCredentials": {"secretRef": {"name": TRAVERSAL}}}),
]


@pytest.mark.parametrize("case", REFERENCES + BATCH_REFERENCES + JOB_REFERENCES, ids=lambda c: c.reason)
def test_every_reference_field_carries_the_name_rule(case: Spec) -> None:
    spec = {"workspace": WORKSPACE, **case.spec} if case.model is AmlComputeSpec else case.spec
    with pytest.raises(ValidationError):
        case.model.model_validate(spec)


def test_valid_references_are_accepted() -> None:
    AmlComputeSpec.model_validate(
        {
            "workspace": WORKSPACE,
            "credentials": {"secretRef": {"name": "team.sp-1"}},
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": [
                    "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg/providers/"
                    "microsoft.managedidentity/userAssignedIdentities/id-1"
                ],
            },
        }
    )
    ParallelJobSpec.model_validate({**JOB, "task": {"codeConfigMap": "score-code", "entryScript": "s.py"}})
