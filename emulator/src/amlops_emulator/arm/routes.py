"""The ``Microsoft.MachineLearningServices`` routes that azure-mgmt-machinelearningservices 1.0.1 calls.

ARM paths are case-insensitive, and every refusal must be ARM-shaped, so one catch-all aiohttp route hands the
path to :class:`Dispatcher`, which matches case-insensitive patterns and answers 404/405 itself. Each handler
names its operation with the SDK's operation id, which the call statistics report.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from yarl import URL

from amlops_emulator.arm import catalogue
from amlops_emulator.arm.compute import AML_COMPUTE, ComputeRecord, obj, opt_int, opt_str
from amlops_emulator.arm.errors import ArmError, bad_request
from amlops_emulator.arm.state import PROVIDER, ArmState, Workspace
from amlops_emulator.arm.versions import SUPPORTED_API_VERSIONS, ApiVersion, api_version
from amlops_emulator.instrumentation import ASYNC_FAILURE, DISCARD, OPERATION
from amlops_emulator.ml.assets import Assets, workspace_guid
from amlops_emulator.ml.execution import RunExecutor
from amlops_emulator.ml.jobs import JobRoutes
from amlops_emulator.ml.routes import MlRoutes
from amlops_emulator.ml.storage import StorageAccount

# The request's ApiVersion, set once its api-version is checked.
API_VERSION = web.RequestKey("amlops_emulator.arm.api_version", ApiVersion)

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_WS = _SUB + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
_LOC = _SUB + r"/providers/Microsoft\.MachineLearningServices/locations/(?P<loc>[^/]+)"
_RG = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"

Params = dict[str, str]
RouteHandler = Callable[[web.Request, Params], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    resource_type: str  # as ARM names it in NoRegisteredProviderFound, e.g. 'workspaces/computes'
    methods: dict[str, tuple[str, RouteHandler]]  # method -> (operation id, handler)


class Dispatcher:
    def __init__(
        self,
        state: ArmState,
        storage: StorageAccount | None = None,
        assets: Assets | None = None,
        runs: RunExecutor | None = None,
    ) -> None:
        self.state = state
        self.storage = storage
        self.routes: list[Route] = [
            self._route(_WS, GET=("Workspaces_Get", self.get_workspace)),
            self._route(_WS + r"/computes", GET=("MachineLearningCompute_ListByWorkspace", self.list_computes)),
            self._route(
                _WS + r"/computes/(?P<name>[^/]+)",
                GET=("MachineLearningCompute_Get", self.get_compute),
                PUT=("MachineLearningCompute_CreateOrUpdate", self.put_compute),
                PATCH=("MachineLearningCompute_Update", self.patch_compute),
                DELETE=("MachineLearningCompute_Delete", self.delete_compute),
            ),
            self._route(
                _WS + r"/computes/(?P<name>[^/]+)/listNodes",
                POST=("MachineLearningCompute_ListNodes", self.list_nodes),
                GET=("MachineLearningCompute_ListNodes", self.list_nodes),  # nextLink is followed with GET
            ),
            self._route(
                _WS + r"/computes/(?P<name>[^/]+)/listKeys",
                POST=("MachineLearningCompute_ListKeys", self.list_keys),
            ),
            self._route(
                _LOC + r"/computeOperationsStatus/(?P<op>[^/]+)",
                GET=("ComputeOperationsStatus_Get", self.operation_status),
            ),
            self._route(_LOC + r"/usages", GET=("Usages_List", self.usages)),
            self._route(_LOC + r"/vmSizes", GET=("VirtualMachineSizes_List", self.vm_sizes)),
            self._route(_LOC + r"/quotas", GET=("Quotas_List", self.list_quotas)),
            self._route(_LOC + r"/updateQuotas", POST=("Quotas_Update", self.update_quotas)),
        ]
        # The workspace's datastores and asset versions (amlops_emulator.ml), beside the computes.
        ml = MlRoutes(state, storage, assets or Assets())
        self.routes += ml.routes(self)
        # Jobs run on the AmlCompute clusters: only where the emulator has a run executor.
        self.jobs = JobRoutes(ml, runs) if runs is not None else None
        if self.jobs is not None:
            self.routes += self.jobs.routes(self._route)

    @staticmethod
    def _route(pattern: str, **methods: tuple[str, RouteHandler]) -> Route:
        # The resource type is the path after the provider without its names: .../workspaces/{ws}/computes/{c}
        # is 'workspaces/computes', .../locations/{loc}/vmSizes is 'locations/vmSizes'.
        tail = re.sub(r"/\(\?P<\w+>\[\^/\]\+\)", "", pattern.split(r"Microsoft\.MachineLearningServices/")[1])
        return Route(re.compile(f"^{pattern}/?$", re.IGNORECASE), tail, methods)

    # -- dispatch ------------------------------------------------------------------------------------------------
    def operation_of(self, method: str, path: str) -> str | None:
        """The SDK operation id a call would reach (an :data:`~amlops_emulator.instrumentation.OperationNamer`)."""
        for route in self.routes:
            if route.pattern.match(path) is not None:
                entry = route.methods.get(method)
                return entry[0] if entry else None
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            entry = route.methods.get(request.method)
            if entry is None:
                raise ArmError(
                    405,
                    "HttpMethodNotAllowed",
                    f"The requested resource does not support http method '{request.method}'.",
                )
            operation, handler = entry
            request[OPERATION] = operation
            request[API_VERSION] = self._check_api_version(request, route.resource_type, match.groupdict())
            return await handler(request, match.groupdict())
        self._not_found(request)

    def _not_found(self, request: web.Request) -> NoReturn:
        group = re.match(_RG, request.path, re.IGNORECASE)
        if group is not None:
            self.state.resource_group(group["sub"], group["rg"])
        sub = re.match(_SUB, request.path, re.IGNORECASE)
        if sub is not None:
            self.state.subscription(sub["sub"])
        if PROVIDER.lower() in request.path.lower():
            raise ArmError(
                404,
                "InvalidResourceType",
                f"The resource type could not be found in the namespace '{PROVIDER}' for api version "
                f"'{request.query.get('api-version', '')}'.",
            )
        raise ArmError(404, "NotFound", f"The requested path '{request.path}' does not exist.")

    def _check_api_version(self, request: web.Request, resource_type: str, p: Params) -> ApiVersion:
        name = request.query.get("api-version")
        if not name:
            raise bad_request(
                "The api-version query parameter (?api-version=) is required for all requests.",
                code="MissingApiVersionParameter",
            )
        version = api_version(name)
        if version is None:
            # ARM's own refusal, as quoted in MicrosoftDocs/azure-docs#92520 and Azure/azure-sdk-for-js#4097:
            # 400 NoRegisteredProviderFound naming the location, the version and the type, then the versions and
            # locations it does serve (ascending, ", "-separated).
            raise bad_request(
                f"No registered resource provider found for location '{self._location_for(p)}' and API version "
                f"'{name}' for type '{resource_type}'. The supported api-versions are "
                f"'{', '.join(SUPPORTED_API_VERSIONS)}'. The supported locations are "
                f"'{', '.join(self.state.locations())}'.",
                code="NoRegisteredProviderFound",
            )
        return version

    def _location_for(self, p: Params) -> str:
        if "loc" in p:
            return p["loc"]
        try:
            return self._workspace(p).location
        except ArmError:
            return "*"  # no known location: ARM said '*' for a subscription-wide call (sdk-for-js#4097)

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def _version(request: web.Request) -> ApiVersion:
        return request[API_VERSION]

    def _workspace(self, p: Params) -> Workspace:
        return self.state.workspace(p["sub"], p["rg"], p["ws"])

    def _render(self, request: web.Request, record: ComputeRecord, *, initial: bool = False) -> dict[str, Any]:
        return self.state.render(record, initial=initial, version=self._version(request))

    @staticmethod
    def _failure(request: web.Request) -> dict[str, Any] | None:
        failure = request.get(ASYNC_FAILURE)
        return failure.model_dump() if failure is not None else None

    @staticmethod
    def _operation_url(request: web.Request, subscription: str, location: str, op_id: str) -> str:
        version = request.query["api-version"]
        return str(
            URL.build(
                scheme=request.scheme,
                host=request.url.host or "localhost",
                port=request.url.port,
                path=f"/subscriptions/{subscription}/providers/{PROVIDER}/locations/{location}"
                f"/computeOperationsStatus/{op_id}",
            ).with_query({"api-version": version, "service": "new"})
        )

    @staticmethod
    async def _body(request: web.Request, *, lenient: bool = False) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            raise bad_request(
                "The request content was invalid and could not be deserialized: empty body.",
                code="InvalidRequestContent",
            )
        try:
            body = json.loads(raw)
            if lenient and isinstance(body, str):
                # azureml-core's remove_identity sends json.dumps(...) through json=, double-encoding the body.
                body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise bad_request(
                f"The request content was invalid and could not be deserialized: {exc}.",
                code="InvalidRequestContent",
            ) from None
        if not isinstance(body, dict):
            raise bad_request(
                "The request content was invalid and could not be deserialized: expected a JSON object.",
                code="InvalidRequestContent",
            )
        return body

    @staticmethod
    def _token(request: web.Request) -> str | None:
        """The decoded skip token of a nextLink this emulator gave (None: the first page)."""
        token = _query(request, "$skiptoken") or _query(request, "$skip")
        if not token:
            return None
        try:
            return base64.urlsafe_b64decode(token.encode()).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_request(f"The skip token '{token}' is invalid.", code="InvalidSkipToken") from None

    def _offset(self, request: web.Request) -> int:
        token = self._token(request)
        if token is None:
            return 0
        if not token.isdigit():
            raise bad_request(f"The skip token '{token}' is invalid.", code="InvalidSkipToken")
        return int(token)

    @staticmethod
    def _next_link(request: web.Request, position: int | str, parameter: str) -> str:
        token = base64.urlsafe_b64encode(str(position).encode()).decode()
        query = {k: v for k, v in request.query.items() if k.lower() not in ("$skiptoken", "$skip")}
        query[parameter] = token
        return str(request.url.with_query(query))

    def _page(
        self, request: web.Request, items: list[Any], parameter: str = "$skiptoken"
    ) -> tuple[list[Any], str | None]:
        """One page and the nextLink to the next, carrying the opaque token in ``parameter``."""
        offset = self._offset(request)
        size = self.state.settings.page_size
        end = offset + size
        return items[offset:end], (self._next_link(request, end, parameter) if end < len(items) else None)

    # -- workspaces ------------------------------------------------------------------------------------------
    async def get_workspace(self, request: web.Request, p: Params) -> web.Response:
        """``Workspaces_Get`` as ``stable/2024-10-01/examples/Workspace/get.json`` shows it, with what azure-ai-ml
        reads: ``storageAccount`` (the ARM id of the emulator's storage account), ``discoveryUrl``,
        ``workspaceId``, ``keyVault``, ``applicationInsights``, ``hbiWorkspace``. The discovery URL names this
        emulator, which serves the document and run history's run details (``ml/history.py``). Without a
        storage account (the emulator started without ``--azurite``) ``storageAccount`` is left out rather than
        naming one that is not there."""
        ws = self._workspace(p)
        group = f"/subscriptions/{ws.subscription}/resourceGroups/{ws.resource_group}/providers"
        base = f"{request.scheme}://{request.host}"
        return web.json_response(
            {
                "id": ws.arm_id,
                "name": ws.name,
                "type": f"{PROVIDER}/workspaces",
                "location": ws.location,
                "identity": {"type": "SystemAssigned"},
                "sku": {"name": "Basic", "tier": "Basic"},
                "kind": "Default",
                "properties": {
                    "provisioningState": "Succeeded",
                    "friendlyName": ws.name,
                    "workspaceId": workspace_guid(ws),
                    "keyVault": f"{group}/Microsoft.KeyVault/vaults/kv-{ws.name}"[:200],
                    "applicationInsights": f"{group}/microsoft.insights/components/ai-{ws.name}",
                    "discoveryUrl": f"{base}/discovery",
                    "hbiWorkspace": False,
                    "publicNetworkAccess": "Enabled",
                    "v1LegacyMode": False,
                    **(
                        {"storageAccount": self.storage.arm_id(ws.subscription, ws.resource_group)}
                        if self.storage is not None
                        else {}
                    ),
                },
            }
        )

    # -- computes --------------------------------------------------------------------------------------------
    async def list_computes(self, request: web.Request, p: Params) -> web.Response:
        ws = self._workspace(p)
        # The list's paging parameter: $skiptoken up to 2021-04-01, PaginationParameter $skip from 2022-05-01. The
        # token names the last compute of the page (pages in name order): a page costs the emulator that page, not
        # the whole workspace (10,000 computes are 200 pages per listing), and a compute created or deleted while
        # a client pages shifts no other compute into or out of the pages still to come.
        after = self._token(request)
        page, more = self.state.computes_page(ws, after, self.state.settings.page_size)
        parameter = self._version(request).skip_parameter
        next_link = self._next_link(request, page[-1].name, parameter) if more else None
        return web.json_response({"value": [self._render(request, r) for r in page], "nextLink": next_link})

    async def get_compute(self, request: web.Request, p: Params) -> web.Response:
        record = self.state.get(self._workspace(p), p["name"])
        return web.json_response(self._render(request, record))

    async def put_compute(self, request: web.Request, p: Params) -> web.Response:
        ws = self._workspace(p)
        _check_name(p["name"])
        body = await self._body(request)
        record, op = self.state.put(ws, p["name"], body, self._failure(request), self._version(request))
        # Trap 2: 201 and Azure-AsyncOperation only (no Location, no Retry-After), on create and on update.
        return web.json_response(
            self._render(request, record, initial=True),
            status=201,
            headers={"Azure-AsyncOperation": self._operation_url(request, ws.subscription, op.location, op.id)},
        )

    async def patch_compute(self, request: web.Request, p: Params) -> web.Response:
        ws = self._workspace(p)
        body = await self._body(request, lenient=True)
        if request.get(DISCARD):  # a fault: accepted, nothing changes (answered as a PATCH that changed nothing)
            return web.json_response(self._render(request, self.state.get(ws, p["name"])))
        record, op = self.state.patch(ws, p["name"], body, self._failure(request), self._version(request))
        headers = {}
        if op is not None:  # "Patch API will not return Azure-AsyncOperation if nothing has changed"
            headers["Azure-AsyncOperation"] = self._operation_url(request, ws.subscription, op.location, op.id)
        return web.json_response(self._render(request, record), headers=headers)

    async def delete_compute(self, request: web.Request, p: Params) -> web.Response:
        ws = self._workspace(p)
        action = _query(request, "underlyingResourceAction")
        if action is None:
            raise bad_request(
                "The query parameter 'underlyingResourceAction' is required: Delete or Detach.",
                code="MissingRequiredParameter",
            )
        canonical = {"delete": "Delete", "detach": "Detach"}.get(action.lower())
        if canonical is None:
            raise bad_request(
                f"The value '{action}' of 'underlyingResourceAction' is invalid: use Delete or Detach.",
                code="InvalidParameter",
            )
        if self.state.find(ws, p["name"]) is None and self._version(request).delete_missing_204:
            # "204: No content; The target compute does not exist." (from 2022-05-01); before, ARM's 404 (C9).
            return web.Response(status=204)
        _, op = self.state.delete(ws, p["name"], canonical, self._failure(request))
        # Trap 3: 202, empty body, Azure-AsyncOperation (the recording had no Location).
        return web.Response(
            status=202,
            headers={"Azure-AsyncOperation": self._operation_url(request, ws.subscription, op.location, op.id)},
        )

    async def list_nodes(self, request: web.Request, p: Params) -> web.Response:
        record = self.state.get(self._workspace(p), p["name"])
        if record.compute_type != AML_COMPUTE:
            raise bad_request(f"listNodes is supported for AmlCompute only, not for {record.compute_type}.")
        nodes = [n.to_wire() for n in record.cluster.listed_nodes()] if record.cluster else []
        page, next_link = self._page(request, nodes)
        return web.json_response({"computeType": AML_COMPUTE, "nodes": page, "nextLink": next_link})

    async def list_keys(self, request: web.Request, p: Params) -> web.Response:
        record = self.state.get(self._workspace(p), p["name"])
        # Neither AmlCompute nor an attached Batch account has secrets in the 2020-08-01 ComputeSecrets union.
        return web.json_response({"computeType": record.compute_type})

    async def operation_status(self, request: web.Request, p: Params) -> web.Response:
        self.state.subscription(p["sub"])
        op = self.state.operations.get(p["op"])
        if op is None:
            raise ArmError(404, "NotFound", f"The operation '{p['op']}' was not found.")
        return web.json_response(op.status_body(self.state.clock.now()))

    # -- location: usages, VM sizes, quotas ------------------------------------------------------------------
    async def vm_sizes(self, request: web.Request, p: Params) -> web.Response:
        self.state.subscription(p["sub"])
        wanted = request.query.get("compute-type")
        sizes = [
            s.to_wire()
            for s in catalogue.SIZES
            if wanted is None or wanted.lower() in ("amlcompute", "computeinstance")
        ]
        # Trap 1: each version's swagger key (amlCompute up to 2021-07-01, value from 2022-05-01); the official
        # 2020-08-01 example shows `value`, so a setting lets tests serve that form too.
        key = self._version(request).vm_sizes_key
        if key == "amlCompute":
            key = self.state.settings.vm_sizes_key_2020_08_01
        return web.json_response({key: sizes})

    async def usages(self, request: web.Request, p: Params) -> web.Response:
        sub = self.state.subscription(p["sub"])
        loc = p["loc"]
        records = self.state.all_in(sub, loc)
        names = _Names(self._version(request).cluster_vcpu_names)
        return web.json_response({"value": _usages(self.state, sub, loc, records, names), "nextLink": None})

    async def list_quotas(self, request: web.Request, p: Params) -> web.Response:
        """``Quotas_List`` as ``stable/2020-08-01/examples/ListWorkspaceQuotasByVMFamily.json`` and
        ``stable/2025-12-01/examples/Quota/list.json`` show it (each in its version's names): per family the
        subscription's row, then each workspace's of the location."""
        sub = self.state.subscription(p["sub"])
        names = _Names(self._version(request).cluster_vcpu_names)
        items: list[dict[str, Any]] = []
        for family in catalogue.FAMILIES:
            scopes = [(f"/subscriptions/{sub}", "vmFamily", self.state.family_limit(family))] + [
                (ws.arm_id, "workspaces", self.state.workspace_limit(ws.arm_id, family))
                for ws in self.state.workspaces_in(sub, p["loc"])
            ]
            for scope, kind, limit in scopes:
                items.append(
                    {
                        "id": f"{scope}/quotas/{names.segment(family, low_priority=False)}",
                        "type": f"{PROVIDER}/{names.kind(kind, 'quotas', low_priority=False)}",
                        "name": {"value": names.value(family, low_priority=False), "localizedValue": family.display},
                        "limit": limit,
                        "unit": "Count",
                    }
                )
        return web.json_response({"value": items, "nextLink": None})

    async def update_quotas(self, request: web.Request, p: Params) -> web.Response:
        """``Quotas_Update`` as ``stable/2020-08-01/examples/updateQuota.json`` shows it: 200 with each item's id,
        type, limit and unit echoed and a ``status``; a refused item is answered in the list with the swagger's
        ``UpdateWorkspaceQuotas.status`` value, never as an HTTP error (tests/emulator/arm/test_quotas_update.py)."""
        sub = self.state.subscription(p["sub"])
        body = await self._body(request)
        value = body.get("value")
        if not isinstance(value, list) or not value:
            raise bad_request("'value' must be a non-empty list of quotas.")
        results = [self._update_quota(sub, obj(item, "value[]")) for item in value]
        return web.json_response({"value": results, "nextLink": None})

    def _update_quota(self, subscription: str, item: dict[str, Any]) -> dict[str, Any]:
        quota_id = opt_str(item.get("id"), "value[].id") or ""
        limit = opt_int(item.get("limit"), "value[].limit")
        if limit is None:
            raise bad_request("'value[].limit' is required.")
        result = {
            "id": quota_id,
            "type": opt_str(item.get("type"), "value[].type") or f"{PROVIDER}/workspaces/dedicatedCores/quotas",
            "limit": limit,
            "unit": "Count",
        }
        match = re.match(_WS + r"/quotas/(?P<family>[^/]+)$", quota_id, re.IGNORECASE)
        if match is None or match["sub"].lower() != subscription.lower():
            raise bad_request(f"The quota id '{quota_id}' is not a workspace quota of this subscription.")
        ws = self.state.workspace(match["sub"], match["rg"], match["ws"])
        family = _quota_family(match["family"])
        if family is None:
            return {**result, "status": "InvalidVMFamilyName"}
        if limit > self.state.family_limit(family):
            return {**result, "status": "InvalidQuotaExceedsSubscriptionLimit"}
        in_use = sum(
            r.cluster.cores_in_use()
            for r in self.state.computes_in(ws)
            if r.cluster is not None
            and r.aml is not None
            and not r.aml.low_priority
            and r.aml.vm_size.family == family.name
        )
        if limit < 0 or limit < in_use:
            return {**result, "status": "InvalidQuotaBelowClusterMinimum"}
        self.state.quotas.by_workspace[(ws.arm_id.lower(), family.name)] = limit
        return {**result, "status": "Success"}


def _query(request: web.Request, name: str) -> str | None:
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value
    return None


_COMPUTE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,23}$")


def _check_name(name: str) -> None:
    # The ML RP's rule: 2-24 characters, letters, digits and hyphens, starting with a letter.
    if _COMPUTE_NAME.match(name) is None:
        raise bad_request(
            f"The compute name '{name}' is invalid: use 2 to 24 letters, digits or hyphens, starting with a letter.",
            code="InvalidComputeName",
        )


def _quota_family(name: str) -> catalogue.VmFamily | None:
    """The family a quota id names: "StandardDSv2Family" (2020-08-01's ``updateQuota.json``) or
    "Standard_DSv2_Family_Cluster_Dedicated_vCPUs" (2025-12-01's ``Quota/update.json``)."""
    key = name.replace("_", "").lower().removesuffix("clusterdedicatedvcpus")
    return next((f for f in catalogue.FAMILIES if f.name.replace("_", "").lower() == key), None)


@dataclass(frozen=True)
class _Names:
    """How a version names a family's usage and quota rows (``ApiVersion.cluster_vcpu_names``): the id segment,
    ``name.value`` and type of a row of ``scope`` ("vmFamily", "workspaces", "workspaces/computes")."""

    cluster_vcpus: bool

    def value(self, family: catalogue.VmFamily, *, low_priority: bool) -> str:
        if not self.cluster_vcpus:
            return family.usage_name  # "StandardDSv2Family"
        return family.low_priority_display if low_priority else family.display

    def segment(self, family: catalogue.VmFamily, *, low_priority: bool) -> str:
        return self.value(family, low_priority=low_priority).replace(" ", "_")

    def kind(self, scope: str, what: str, *, low_priority: bool) -> str:
        if self.cluster_vcpus:
            return f"{scope}/{what}"
        return f"{scope}/{'lowPriorityCores' if low_priority else 'dedicatedCores'}/{what}"


def _usage(usage_id: str, kind: str, value: str, label: str, current: int, limit: int) -> dict[str, Any]:
    return {
        "id": usage_id,
        "type": f"{PROVIDER}/{kind}",
        "unit": "Count",
        "currentValue": current,
        "limit": limit,
        "name": {"value": value, "localizedValue": label},
    }


def _usages(state: ArmState, sub: str, loc: str, records: list[ComputeRecord], names: _Names) -> list[dict[str, Any]]:
    """The rows of ``stable/2020-08-01/examples/ListUsages.json``, in its order: the subscription's totals, then
    per VM family the subscription's dedicated row (``/subscriptions/{s}/usages/StandardDSv2Family``), each
    workspace's and each cluster's row of that family; then the low-priority total and the same rows for
    low priority, whose family rows have no limit (-1). Workspace and cluster rows exist only where clusters of
    the family do; a cluster row's limit is the family's. From 2022-05-01 (``examples/Usage/list.json``) the
    same rows in that version's names: ``/subscriptions/{s}/usages/Standard_DSv2_Family_Cluster_Dedicated_vCPUs``
    typed ``.../vmFamily/usages``, the totals at ``/subscriptions/{s}/usages`` typed ``.../dedicatedCores/usages``
    and ``.../lowPriorityCores/usages`` (its "Clusters" count row is not served)."""
    clusters = [r for r in records if r.cluster is not None and r.aml is not None]

    def cores(rs: list[ComputeRecord]) -> int:
        return sum(r.cluster.cores_in_use() for r in rs if r.cluster is not None)

    def tier(low: bool) -> list[ComputeRecord]:
        return [r for r in clusters if r.aml is not None and r.aml.low_priority == low]

    dedicated, low = tier(False), tier(True)
    dedicated_limit, low_limit = state.settings.total_dedicated_cores, state.settings.total_low_priority_cores
    dedicated_total, low_total = "Total Cluster Dedicated Regional vCPUs", "Total Cluster LowPriority Regional vCPUs"
    if names.cluster_vcpus:
        totals = f"/subscriptions/{sub}/usages"
        head = [
            _usage(totals, "dedicatedCores/usages", dedicated_total, dedicated_total, cores(dedicated), dedicated_limit)
        ]
        low_head = _usage(totals, "lowPriorityCores/usages", low_total, low_total, cores(low), low_limit)
    else:
        totals = f"/subscriptions/{sub}"
        head = [
            _usage(totals, "totalCores/usages", "TotalCores", "Total Cluster vCPUs", cores(clusters), dedicated_limit),
            _usage(
                totals,
                "totalDedicatedCores/usages",
                "TotalDedicatedCores",
                dedicated_total,
                cores(dedicated),
                dedicated_limit,
            ),
        ]
        low_head = _usage(
            totals, "totalLowPriorityCores/usages", "TotalLowPriorityCores", low_total, cores(low), low_limit
        )
    return [
        *head,
        *_family_usages(state, sub, loc, dedicated, names, low_priority=False),
        low_head,
        *_family_usages(state, sub, loc, low, names, low_priority=True),
    ]


def _family_usages(
    state: ArmState, sub: str, loc: str, clusters: list[ComputeRecord], names: _Names, *, low_priority: bool
) -> list[dict[str, Any]]:
    def kind(scope: str) -> str:
        return names.kind(scope, "usages", low_priority=low_priority)

    items: list[dict[str, Any]] = []
    for family in catalogue.FAMILIES:
        value = names.value(family, low_priority=low_priority)
        segment = names.segment(family, low_priority=low_priority)
        label = family.low_priority_display if low_priority else family.display
        mine = [r for r in clusters if r.aml is not None and r.aml.vm_size.family == family.name]
        family_limit = -1 if low_priority else state.family_limit(family)
        used = sum(r.cluster.cores_in_use() for r in mine if r.cluster is not None)
        items.append(
            _usage(f"/subscriptions/{sub}/usages/{segment}", kind("vmFamily"), value, label, used, family_limit)
        )
        for ws in state.workspaces_in(sub, loc):
            in_ws = [r for r in mine if r.arm_id.lower().startswith(ws.arm_id.lower() + "/")]
            if not in_ws:
                continue
            ws_limit = -1 if low_priority else state.workspace_limit(ws.arm_id, family)
            ws_used = sum(r.cluster.cores_in_use() for r in in_ws if r.cluster is not None)
            items.append(_usage(f"{ws.arm_id}/usages/{segment}", kind("workspaces"), value, label, ws_used, ws_limit))
            for r in in_ws:
                r_used = r.cluster.cores_in_use() if r.cluster is not None else 0
                items.append(
                    _usage(
                        f"{r.arm_id}/usages/{segment}", kind("workspaces/computes"), value, label, r_used, family_limit
                    )
                )
    return items
