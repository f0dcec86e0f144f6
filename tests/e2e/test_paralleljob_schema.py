"""ParallelJob fields that azure-ai-ml or Azure would refuse are refused by the real apiserver at ``kubectl
apply`` time (schema and CEL), and the model refuses them too: input and output names (what ``${{inputs.<name>}}``
can name, none equal but for case: azure-ai-ml 1.35.2 ``Component._validate_io_names``), ``resources.shmSize``
(azure-ai-ml's ``JobResourceConfigurationSchema.shm_size``: "(number)(unit) where number as to be greater than 0
and the unit can be one of b, k, m, or g") and ``identity`` (ManagedIdentityConfiguration's client id, object id
and ARM resource id; user_identity and aml_token take none)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

import amlops_testbed as testbed
from amlops.api.paralleljob import ParallelJobSpec
from tests.support.objects import try_apply

pytestmark = pytest.mark.e2e

BLOB = "https://acct.blob.core.windows.net/c"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
IDENTITY_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/scorer"
)
SPEC: dict[str, Any] = {
    "compute": {"name": "cpu-cluster"},
    "inputs": {"data": {"uri": f"{BLOB}/in"}},
    "outputs": {"scores": {"uri": f"{BLOB}/out"}},
    "inputData": "${{inputs.data}}",
    "task": {"code": f"{BLOB}/code", "entryScript": "score.py"},
}


def manifest(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC)
    body.update(spec)
    return {"apiVersion": "amlops.io/v1alpha1", "kind": "ParallelJob", "metadata": {"name": "pj"}, "spec": body}


def data(**more: Any) -> dict[str, Any]:
    return {"data": {"uri": f"{BLOB}/in"}, **more}


REFUSED = [
    ("an input name with a dash", manifest(inputs=data(**{"a-b": {"uri": f"{BLOB}/x"}})), "names are letters"),
    ("an input name starting with a digit", manifest(inputs=data(**{"1x": {"uri": f"{BLOB}/x"}})), "names are"),
    ("a non-ASCII output name", manifest(outputs={"scores": {"uri": f"{BLOB}/o"}, "ä": {"uri": f"{BLOB}/p"}}), "names"),
    ("an empty output name", manifest(outputs={"": {"uri": f"{BLOB}/o"}}), "names are letters"),
    ("a name ending in a newline", manifest(inputs=data(**{"x\n": {"uri": f"{BLOB}/x"}})), "names are letters"),
    ("two inputs equal but for case", manifest(inputs=data(Data={"uri": f"{BLOB}/x"})), "differ only by case"),
    (
        "an output equal to an input but for case",
        manifest(outputs={"scores": {"uri": f"{BLOB}/o"}, "DATA": {"uri": f"{BLOB}/p"}}),
        "differ only by case",
    ),
    (
        "two outputs equal but for case",
        manifest(outputs={"s": {"uri": f"{BLOB}/o"}, "S": {"uri": f"{BLOB}/p"}}),
        "case",
    ),
    ("shmSize without a unit", manifest(resources={"shmSize": "2"}), "should match"),
    ("shmSize of 0", manifest(resources={"shmSize": "0g"}), "should match"),
    ("shmSize in a unit Azure ML does not take", manifest(resources={"shmSize": "2gb"}), "should match"),
    ("an identity type azure-ai-ml does not know", manifest(identity={"type": "system"}), "Unsupported value"),
    ("a client id that is no uuid", manifest(identity={"type": "managed", "clientId": "abc"}), "should match"),
    ("a resource id of something else", manifest(identity={"type": "managed", "resourceId": "/x"}), "should match"),
    (
        "a client id on a user identity",
        manifest(identity={"type": "user_identity", "clientId": CLIENT_ID}),
        "set them only with type managed",
    ),
]

ACCEPTED = [
    ("every name form", manifest(inputs=data(_x={"uri": f"{BLOB}/x"}, Model_2={"uri": f"{BLOB}/m"}))),
    (
        "resources",
        manifest(resources={"instanceType": "Standard_NC6s_v3", "shmSize": "2g", "dockerArgs": "--ipc=host"}),
    ),
    ("a managed identity by client id", manifest(identity={"type": "managed", "clientId": CLIENT_ID})),
    ("a managed identity by resource id", manifest(identity={"type": "managed", "resourceId": IDENTITY_ID})),
    ("the system-assigned identity", manifest(identity={"type": "managed"})),
    ("the user's identity", manifest(identity={"type": "user_identity"})),
    ("an Azure ML token", manifest(identity={"type": "aml_token"})),
]


@pytest.mark.parametrize(("what", "body", "fragment"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_at_apply_time_and_by_the_model(
    k8s: testbed.Testbed, namespace: str, what: str, body: dict[str, Any], fragment: str
) -> None:
    answer = try_apply(k8s, namespace, body)
    assert answer.returncode != 0, f"{what}: accepted"
    assert fragment in answer.stderr, answer.stderr
    assert testbed.get_object(k8s, "paralleljobs", "pj", namespace) is None
    with pytest.raises(ValidationError):
        ParallelJobSpec.model_validate(body["spec"])


@pytest.mark.parametrize(("what", "body"), ACCEPTED, ids=[r[0] for r in ACCEPTED])
def test_accepted_by_the_apiserver_and_the_model(
    k8s: testbed.Testbed, namespace: str, what: str, body: dict[str, Any]
) -> None:
    answer = try_apply(k8s, namespace, body)
    assert answer.returncode == 0, f"{what}: {answer.stderr}"
    ParallelJobSpec.model_validate(body["spec"])
