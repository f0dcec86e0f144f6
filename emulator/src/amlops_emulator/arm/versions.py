"""Every stable ``Microsoft.MachineLearningServices`` api-version, with what differs between them for computes.

One table, read by the routes and the renderers, so that no ``if version >= ...`` is scattered elsewhere. The
facts come from each version's swagger, ``specification/machinelearningservices/resource-manager/
Microsoft.MachineLearningServices/stable/<version>/machineLearningServices.json`` in Azure/azure-rest-api-specs
(2025-12-01 and later: ``.../MachineLearningServices/stable/<version>/openapi.json``):

- 2018-11-19 … 2020-08-01 (2020-08-01 read whole): ``ClusterUpdateParameters`` is
  ``{properties: {scaleSettings}}``; DELETE answers 200/202 only; ``VirtualMachineSizeListResult.amlCompute``;
  errors are ``MachineLearningServiceError`` ``{error: {code, message, details[{code, message}]}}``; user-assigned
  identities ``{principalId, clientId}`` (as the fidelity reference read 2020-08-01); the computes list pages with
  ``$skiptoken``. The versions before 2020-08-01 are taken as 2020-08-01.
- 2021-01-01, 2021-04-01: as 2020-08-01 (2021-04-01's ``ClusterUpdateProperties`` still holds ``scaleSettings``
  itself, its errors are still ``MachineLearningServiceError``), and ``AmlCompute.properties`` gains
  ``virtualMachineImage``, ``isolatedNetwork`` and ``enableNodePublicIp``.
- 2021-07-01: ``ClusterUpdateProperties.properties`` is ``ScaleSettingsInformation {scaleSettings}``, so the
  PATCH body becomes ``{properties: {properties: {scaleSettings}}}``; errors become common-types v2
  ``ErrorResponse`` (the same wire shape as v3); ``Compute.disableLocalAuth`` appears; the computes list takes
  ``PaginationParameter`` (``$skip``, as the 2025-12-01 generated client names it); still ``amlCompute``, still
  no 204; its local ``Identity`` declares ``UserAssignedIdentity {principalId, tenantId, clientId}``.
- 2022-05-01 and later: common-types v3 ``ErrorResponse`` and ``ManagedServiceIdentity`` (user-assigned values
  ``{principalId, clientId}``, no ``tenantId``); DELETE documents ``204 "No content; The target compute does not
  exist."``; ``VirtualMachineSizeListResult.value``; ``AmlComputeProperties`` has ``virtualMachineImage``,
  ``isolatedNetwork``, ``enableNodePublicIp`` and ``propertyBag``; ``Compute.disableLocalAuth`` stays; usages
  and quotas name a family "Standard DSv2 Family Cluster Dedicated vCPUs" (``examples/Usage/list.json`` of
  2022-05-01, 2024-04-01 and 2025-12-01, ``examples/Quota/list.json`` and ``update.json`` of 2025-12-01), where
  2020-08-01's ``ListUsages.json`` and ``ListWorkspaceQuotasByVMFamily.json`` say "StandardDSv2Family" (2021-*
  not checked: taken as 2020-08-01).
  2025-12-01 was checked through its generated client (azure-ai-ml 1.35.2 ``_restclient/arm_ml_service``, default
  api-version 2025-12-01): ``properties.properties.scaleSettings``, DELETE 200/202/204, ``value``, ``$skip``.
  2026-07-01 (the newest stable folder) is taken as 2025-12-01.

Preview versions: only those azure-ai-ml 1.35.2 sends (its ``_ml_client.py`` builds one
``MachineLearningServicesMgmtClient`` per api-version, 2022-02-01-preview … 2025-01-01-preview). Seen on the wire
(tests/emulator/ml): ``workspaces.get`` and datastores at 2024-10-01-preview, ``compute.*`` (and the workspace
GET before ``list_sizes``/``list_usage``) at 2023-08-01-preview, environment and data versions at
2023-04-01-preview, code versions and ``startPendingUpload`` at the stable 2023-04-01. A preview is served with the
behaviour of the newest stable version dated on or before it (for what the emulator serves, each preview swagger
declares what that stable one does, plus preview-only fields the emulator ignores); any other preview is refused
like an unknown version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class ErrorShape(Enum):
    ML_SERVICE = "MachineLearningServiceError"  # {error: {code, message, details}}
    COMMON_TYPES = "ErrorResponse"  # {error: {code, message, target, details, additionalInfo}}


@dataclass(frozen=True)
class ApiVersion:
    name: str
    nested_patch: bool  # PATCH scale settings at properties.properties.scaleSettings (else properties.scaleSettings)
    delete_missing_204: bool  # DELETE of a compute that does not exist: 204 (else ARM's 404)
    vm_sizes_key: str  # the list key of VirtualMachineSizeListResult
    errors: ErrorShape
    user_identity_tenant: bool  # UserAssignedIdentity carries tenantId (2021-07-01's local Identity)
    skip_parameter: str  # the computes list's paging query parameter
    # Usages and quotas name a family "Standard DSv2 Family Cluster Dedicated vCPUs" (ids ..._Cluster_Dedicated_vCPUs,
    # types .../vmFamily/usages, .../workspaces/quotas), else "StandardDSv2Family" (.../vmFamily/dedicatedCores/...).
    cluster_vcpu_names: bool
    aml_properties: frozenset[str]  # AmlComputeProperties beyond the 2020-08-01 set: accepted and echoed
    compute_properties: frozenset[str]  # Compute (properties.*) fields beyond the 2020-08-01 set


_CLASSIC = ApiVersion(
    name="",
    nested_patch=False,
    delete_missing_204=False,
    vm_sizes_key="amlCompute",
    errors=ErrorShape.ML_SERVICE,
    user_identity_tenant=False,
    skip_parameter="$skiptoken",
    cluster_vcpu_names=False,
    aml_properties=frozenset(),
    compute_properties=frozenset(),
)
_2021_01 = replace(
    _CLASSIC,
    aml_properties=frozenset({"enableNodePublicIp", "virtualMachineImage", "isolatedNetwork"}),
)
_2021_07 = replace(
    _2021_01,
    nested_patch=True,
    errors=ErrorShape.COMMON_TYPES,
    user_identity_tenant=True,
    skip_parameter="$skip",
    compute_properties=frozenset({"disableLocalAuth"}),
)
_2022_05 = replace(
    _2021_07,
    delete_missing_204=True,
    vm_sizes_key="value",
    user_identity_tenant=False,
    cluster_vcpu_names=True,
    aml_properties=_2021_07.aml_properties | {"propertyBag"},
)

_TABLE: dict[str, ApiVersion] = {
    "2018-11-19": _CLASSIC,
    "2019-05-01": _CLASSIC,
    "2019-06-01": _CLASSIC,
    "2019-11-01": _CLASSIC,
    "2020-01-01": _CLASSIC,
    "2020-03-01": _CLASSIC,
    "2020-04-01": _CLASSIC,
    "2020-06-01": _CLASSIC,
    "2020-08-01": _CLASSIC,
    "2021-01-01": _2021_01,
    "2021-04-01": _2021_01,
    "2021-07-01": _2021_07,
    "2022-05-01": _2022_05,
    "2022-10-01": _2022_05,
    "2023-04-01": _2022_05,
    "2023-10-01": _2022_05,
    "2024-04-01": _2022_05,
    "2024-10-01": _2022_05,
    "2025-04-01": _2022_05,
    "2025-06-01": _2022_05,
    "2025-09-01": _2022_05,
    "2025-12-01": _2022_05,
    "2026-07-01": _2022_05,
}

# The previews azure-ai-ml 1.35.2 sends, each served as the newest stable version dated on or before it.
PREVIEWS = (
    "2022-02-01-preview",
    "2022-10-01-preview",
    "2023-02-01-preview",
    "2023-04-01-preview",
    "2023-06-01-preview",
    "2023-08-01-preview",
    "2024-01-01-preview",
    "2024-04-01-preview",
    "2024-10-01-preview",
    "2025-01-01-preview",
)


def _stable_for(preview: str) -> ApiVersion:
    date = preview.removesuffix("-preview")
    return _TABLE[max(name for name in _TABLE if name <= date)]


_ALL = {**_TABLE, **{name: _stable_for(name) for name in PREVIEWS}}
API_VERSIONS: dict[str, ApiVersion] = {name: replace(_ALL[name], name=name) for name in sorted(_ALL)}
SUPPORTED_API_VERSIONS = tuple(API_VERSIONS)  # ascending, previews among the stable ones, as ARM lists them
# The version ARM-level refusals (before any api-version is known) are rendered in, and the default of callers
# that name none (the operator itself asks at 2025-12-01).
DEFAULT = API_VERSIONS["2020-08-01"]


def api_version(name: str | None) -> ApiVersion | None:
    return API_VERSIONS.get(name or "")
