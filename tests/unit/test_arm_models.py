"""Every body the operator sends to Microsoft.MachineLearningServices, checked against api-version 2025-12-01's
models: each key is a field of the model at its place (recursively, ``computeType`` choosing the ``Compute``
subclass), and none is read-only (a field Azure only reports, which it would ignore or refuse in a request).

The models are azure-ai-ml 1.35.2's generated ``azure.ai.ml._restclient.arm_ml_service`` (default api-version
2025-12-01), never imported by the compute path (azure-ai-ml is a runtime dependency for ParallelJobs on an
AmlCompute only, imported lazily): the operator sends raw JSON through SDK 1.0.1's client at that version
(``amlops.azure.ml``). A body that sends a key the version does not know, or puts one where the model does not
have it (2020-08-01's PATCH ``{properties: {scaleSettings}}``, say), fails here."""

from __future__ import annotations

import types
import typing
import warnings
from typing import Any, Union

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # importing it loads all of azure.ai.ml, whose marshmallow schemas warn
    from azure.ai.ml._restclient.arm_ml_service import models as arm
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model, _RestField

from amlops.azure.ml import quota_update_parameters
from amlops.external import amlcompute_map, batchcompute_map, workspacequota_map
from tests.unit.test_amlcompute_map import OWNER, TO_ARM, spec
from tests.unit.test_batchcompute_map import ACCOUNT_ID
from tests.unit.test_batchcompute_map import spec as batch_spec
from tests.unit.test_workspacequota_map import QUOTAS, QUOTAS_2025, WS_ID
from tests.unit.test_workspacequota_map import spec as quota_spec

pytestmark = pytest.mark.unit

JSON = dict[str, Any]
# azureml-core's attach type of a Batch account: in no swagger's ComputeType enum (fidelity trap 4), so checked
# against the base ``Compute`` fields.
UNMODELLED_COMPUTE_TYPES = frozenset({"Batch"})


def _fields(cls: type[Model]) -> dict[str, tuple[_RestField, Any]]:
    """Wire name → (the rest field, its type) of a generated model, its bases' fields included."""
    hints = typing.get_type_hints(cls, localns={"_models": arm})
    out: dict[str, tuple[_RestField, Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, _RestField):
                out[value._rest_name_input or attr] = (value, hints.get(attr, Any))
    return out


def _discriminated(cls: type[Model], value: JSON, path: str) -> tuple[type[Model], list[str]]:
    """The subclass the body's discriminator names (``computeType: AmlCompute`` → ``AmlCompute``)."""
    mapping: dict[str, type[Model]] = getattr(cls, "__mapping__", None) or {}
    if not mapping:
        return cls, []
    key = next(name for name, (rf, _) in _fields(cls).items() if rf._is_discriminator)
    kind = value.get(key)
    if kind in mapping:
        return mapping[kind], []
    if kind in UNMODELLED_COMPUTE_TYPES:
        return cls, []
    return cls, [f"{path}.{key}: {kind!r} is not a known {cls.__name__} type ({', '.join(sorted(mapping))})"]


def _model_in(annotation: Any) -> Any:
    """The model, dict or list type inside ``Optional[...]``/``Union[str, SomeEnum]``; ``Any`` for a scalar."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        structured = [a for a in inner if _is_model(a) or typing.get_origin(a) in (dict, list)]
        return structured[0] if structured else inner[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Model)


def problems(value: Any, annotation: Any, path: str = "body") -> list[str]:
    """What in ``value`` the model type ``annotation`` does not have, or has only as read-only."""
    annotation = _model_in(annotation)
    if _is_model(annotation):
        if not isinstance(value, dict):
            return [f"{path}: {annotation.__name__} must be an object, not {value!r}"]
        cls, found = _discriminated(annotation, value, path)
        fields = _fields(cls)
        for key, item in value.items():
            if key not in fields:
                found.append(f"{path}.{key}: not a field of {cls.__name__}")
                continue
            rest_field, field_type = fields[key]
            if rest_field._visibility == ["read"]:
                found.append(f"{path}.{key}: read-only in {cls.__name__}")
            found.extend(problems(item, field_type, f"{path}.{key}"))
        return found
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: must be an object, not {value!r}"]
        return [p for key, item in value.items() for p in problems(item, args[1], f"{path}[{key}]")]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: must be a list, not {value!r}"]
        return [p for i, item in enumerate(value) for p in problems(item, args[0], f"{path}[{i}]")]
    if annotation in (bool, int, str) and type(value) is not annotation:
        return [f"{path}: must be {annotation.__name__}, not {value!r}"]
    return []  # an enum's str, a date, Any (propertyBag is free-form)


UAI = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"
FULL_SPEC: JSON = {
    "vmSize": "Standard_NC6",
    "vmPriority": "LowPriority",
    "scaleSettings": {"minNodeCount": 1, "maxNodeCount": 8, "nodeIdleTimeBeforeScaleDown": 600},
    "adminUser": {"username": "azureuser", "sshPublicKey": "ssh-rsa AAAA", "passwordSecretRef": {"name": "pw"}},
    "subnet": {"vnetName": "vnet", "subnetName": "default"},
    "tags": {"team": "a"},
    "description": "every field set",
    "remoteLoginPortPublicAccess": "Disabled",
    "identity": {
        "type": "SystemAssigned,UserAssigned",
        "userAssignedIdentities": [UAI],
    },
    "location": "eastus",
    "enableNodePublicIp": False,
    "osType": "Windows",
    "virtualMachineImage": {
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0"
    },
    "isolatedNetwork": True,
    "disableLocalAuth": True,
    "propertyBag": {"anything": {"nested": [1, True, "x"]}},
}
PUT_CASES = [pytest.param(case.fields, case.password, id=case.reason) for case in TO_ARM] + [
    pytest.param(FULL_SPEC, "s3cr3t", id="every spec field set")
]


@pytest.mark.parametrize(("fields", "password"), PUT_CASES)
def test_every_put_body_is_a_2025_12_01_compute_resource(fields: JSON, password: str | None) -> None:
    body = amlcompute_map.to_arm(spec(**fields), owner=OWNER, location="westeurope", admin_password=password)
    assert problems(body, arm.ComputeResource) == []


def test_every_spec_field_reaches_the_put_body() -> None:
    """The full spec sends each of 2025-12-01's writable AmlComputeProperties (none left behind)."""
    body = amlcompute_map.to_arm(spec(**FULL_SPEC), owner=OWNER, location="westeurope", admin_password="s3cr3t")
    writable = {name for name, (rf, _) in _fields(arm.AmlComputeProperties).items() if rf._visibility != ["read"]}
    assert set(body["properties"]["properties"]) == writable
    assert body["properties"]["disableLocalAuth"] is True


def test_the_patch_body_is_2025_12_01_cluster_update_parameters_with_the_identity_beside_it() -> None:
    """The scale settings are ``ClusterUpdateParameters``; ``identity`` is no field of it, but azureml-core's
    ``add_identity``/``remove_identity`` PATCH it beside (shared/reference/azure-api-fidelity.md), so it is
    checked as the ``ManagedServiceIdentity`` it is."""
    wanted = spec(
        scaleSettings={"minNodeCount": 0, "maxNodeCount": 9},
        identity={
            "type": "UserAssigned",
            "userAssignedIdentities": [FULL_SPEC["identity"]["userAssignedIdentities"][0]],
        },
    )
    observed = {"properties": {"properties": {"scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4}}}}
    patch, _ = amlcompute_map.diff(wanted, observed)
    assert set(patch) == {"properties", "identity"}
    assert problems({"properties": patch["properties"]}, arm.ClusterUpdateParameters) == []
    assert problems(patch["identity"], arm.ManagedServiceIdentity, "body.identity") == []


def test_the_batch_attach_body_is_a_compute_resource_of_the_base_compute_fields() -> None:
    body = batchcompute_map.attach_body(
        batch_spec(resourceId=ACCOUNT_ID, description="d", tags={"t": "v"}), owner=OWNER, location="westeurope"
    )
    assert body["properties"]["computeType"] == "Batch"
    assert problems(body, arm.ComputeResource) == []


@pytest.mark.parametrize("quotas", [QUOTAS, QUOTAS_2025], ids=["2020-08-01 rows", "2025-12-01 rows"])
def test_the_quota_update_body_is_2025_12_01_quota_update_parameters(quotas: list[JSON]) -> None:
    items, _ = workspacequota_map.diff(quota_spec(("standardDSv2Family", 16), ("standardXYZFamily", 4)), quotas, WS_ID)
    assert len(items) == 2
    body = quota_update_parameters(items).serialize()
    assert problems(body, arm.QuotaUpdateParameters) == []
    assert [item["limit"] for item in body["value"]] == [16, 4]


@pytest.mark.parametrize(
    ("reason", "body", "model", "expected"),
    [
        (
            "2020-08-01's PATCH shape: scaleSettings one level too high",
            {"properties": {"scaleSettings": {"maxNodeCount": 1}}},
            arm.ClusterUpdateParameters,
            "body.properties.scaleSettings: not a field of ClusterUpdateProperties",
        ),
        (
            "an AmlCompute property at the Compute level",
            {"properties": {"computeType": "AmlCompute", "enableNodePublicIp": True}},
            arm.ComputeResource,
            "body.properties.enableNodePublicIp: not a field of AmlCompute",
        ),
        (
            "a Compute property among the AmlCompute properties",
            {"properties": {"computeType": "AmlCompute", "properties": {"disableLocalAuth": True}}},
            arm.ComputeResource,
            "body.properties.properties.disableLocalAuth: not a field of AmlComputeProperties",
        ),
        (
            "a read-only field",
            {"properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded"}},
            arm.ComputeResource,
            "body.properties.provisioningState: read-only in AmlCompute",
        ),
        (
            "a key no version has",
            {"properties": {"computeType": "AmlCompute", "properties": {"vmSizes": "x"}}},
            arm.ComputeResource,
            "body.properties.properties.vmSizes: not a field of AmlComputeProperties",
        ),
        (
            "an unknown compute type",
            {"properties": {"computeType": "Cluster"}},
            arm.ComputeResource,
            "body.properties.computeType: 'Cluster' is not a known Compute type",
        ),
        (
            "a key nested deeper than the model has",
            {"properties": {"computeType": "AmlCompute", "properties": {"userAccountCredentials": {"user": "u"}}}},
            arm.ComputeResource,
            "body.properties.properties.userAccountCredentials.user: not a field of UserAccountCredentials",
        ),
        (
            "a boolean as a string",
            {"properties": {"computeType": "AmlCompute", "properties": {"isolatedNetwork": "true"}}},
            arm.ComputeResource,
            "body.properties.properties.isolatedNetwork: must be bool",
        ),
    ],
)
def test_the_check_refuses_unknown_misplaced_and_read_only_keys(
    reason: str, body: JSON, model: type[Model], expected: str
) -> None:
    found = problems(body, model)
    assert any(p.startswith(expected) for p in found), (reason, found)
