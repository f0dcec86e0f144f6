"""The Azure ML management adapter: the aio ``MachineLearningServicesMgmtClient``, raw JSON in and out.

Bodies are plain dicts in ARM's wire format: the external clients build and read them with pure functions,
and attached ``computeType: Batch`` (which no SDK model knows) goes through the same SDK pipeline as raw bytes.
Every error leaves this module as the engine's RetryableError / TerminalError.

Why SDK 1.0.1's client at an api-version it was not generated for: azure-mgmt-machinelearningservices stops at
1.0.1 (api-version 2020-08-01, where ``enableNodePublicIp``, ``virtualMachineImage``, ``isolatedNetwork``,
``propertyBag`` and ``disableLocalAuth`` do not exist: Azure ignored ``enableNodePublicIp`` there). The only Python
client of a current stable version is azure-ai-ml's private generated ``_restclient.arm_ml_service`` (2025-12-01),
and importing it loads all of azure.ai.ml: 762 modules, 161 MB of RSS and 2.3 s at start. So the operator keeps
1.0.1's aio client and its pipeline (credential, retries, LRO polling, throttle accounting), sends every request at
:data:`API_VERSION` (the client's ``api_version`` keyword), writes bodies as raw JSON and reads answers raw, so
that 1.0.1's 2020-08-01 models never drop a field of the newer version. tests/unit/test_arm_models.py checks every
body the mappings build against azure-ai-ml's 2025-12-01 models. (azure-ai-ml is a runtime dependency since
issue 18, for ParallelJobs on an AmlCompute only, imported lazily by ``azure/ml_jobs.py``; this module never
imports it.)

Checked at 2025-12-01 (the examples of ``stable/2025-12-01``, azure-ai-ml's client generated from that swagger, and
1.0.1's operation code): PUT answers 200/201 (1.0.1 accepts both), PATCH 200 (likewise) with the nested
``ClusterUpdateParameters`` ``{properties: {properties: {scaleSettings}}}``, DELETE 200/202 and 204 "the target
compute does not exist" (read as gone, below); errors are common-types ``ErrorResponse`` ``{error: {code, message,
details}}``, the same wire shape azure-core's ARM error format reads; the computes list pages with ``nextLink``
(``$skip``); vmSizes lists under ``value``; usages and quotas name a family "Standard DSv2 Family Cluster Dedicated
vCPUs" (the mappings read that and the 2020-08-01 names).
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.polling import AsyncLROPoller
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.machinelearningservices.aio import MachineLearningServicesMgmtClient
from azure.mgmt.machinelearningservices.models import QuotaBaseProperties, QuotaUpdateParameters

from amlops.azure.errors import arm_error_text, azure_errors
from amlops.azure.pacing import Pacer, buckets
from amlops.azure.pipeline import CappedRetryPolicy, ThrottleBudget, arm_accounting
from amlops.azure.pollers import Listing
from amlops.reconcile.external import Pending
from amlops.settings import Settings
from amlops.status import now_iso

JSON = dict[str, Any]
# The newest stable api-version with a generated Python client (azure-ai-ml 1.35.2's default); see above.
API_VERSION = "2025-12-01"


@dataclass(frozen=True)
class WorkspaceId:
    subscription_id: str
    resource_group: str
    name: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )


def _raw(pipeline_response: Any, deserialized: Any, headers: Any) -> JSON:
    body = pipeline_response.http_response.text()
    return json.loads(body) if body else {}


@dataclass(frozen=True)
class OperationState:
    done: bool
    failed: bool = False
    error_code: str = ""
    error_message: str = ""


class MlClient:
    """One aio management client per (credential, subscription); shared by every resource using them."""

    def __init__(
        self,
        credential: AsyncTokenCredential,
        subscription_id: str,
        settings: Settings,
        budget: ThrottleBudget,
        transport: AsyncHttpTransport[Any, Any] | None = None,
    ):
        self._settings = settings
        kwargs: dict[str, Any] = {"transport": transport} if transport else {}
        # One pacer per client: ARM's buckets are per principal and subscription, as this client is.
        pacer = Pacer(settings.arm_budget_share, buckets(settings.arm_buckets))
        self._client = MachineLearningServicesMgmtClient(
            credential,
            subscription_id,
            base_url=settings.arm_endpoint,
            api_version=API_VERSION,
            polling_interval=settings.lro_polling_interval,
            per_retry_policies=[arm_accounting(budget, pacer)],
            retry_policy=CappedRetryPolicy(),
            **kwargs,
        )
        self.subscription_id = subscription_id

    async def close(self) -> None:
        await self._client.close()

    # -- workspaces -----------------------------------------------------------------------------------
    async def workspace_location(self, ws: WorkspaceId) -> str:
        with azure_errors():
            workspace = await self._client.workspaces.get(ws.resource_group, ws.name)
        return str(workspace.location)

    # -- computes ---------------------------------------------------------------------------------------
    async def get_compute(self, ws: WorkspaceId, name: str) -> JSON | None:
        ops = self._client.machine_learning_compute
        with azure_errors():
            try:
                body: JSON = await ops.get(ws.resource_group, ws.name, name, cls=_raw)  # type: ignore[assignment]
            except ResourceNotFoundError:
                return None
        return body

    async def list_computes(self, ws: WorkspaceId) -> Listing:
        """Every compute of the workspace as raw JSON, packed page by page, following nextLink through the SDK's
        pipeline.

        The SDK's pager would build a model per compute only for us to serialize it back; with a thousand
        computes polled every few seconds that round trip is most of the operator's CPU.
        """
        listing = Listing()
        async for page in self._pages("GET", f"{ws.arm_id}/computes"):
            listing.add_page(page)
        return listing

    async def _list_raw(self, method: str, path: str, key: str = "value") -> list[JSON]:
        """Every item of a paged list (``key``)."""
        return [item async for page in self._pages(method, path, key) for item in page]

    async def _pages(self, method: str, path: str, key: str = "value") -> AsyncIterator[list[JSON]]:
        """The items (``key``) of each page of a paged list, following ``nextLink`` with GET through the SDK's
        pipeline, as 1.0.1's pagers do, without building its models."""
        url: str | None = f"{self._settings.arm_endpoint.rstrip('/')}{path}"
        while url:
            with azure_errors():
                page = await self._send(method, url)
            yield [item for item in page.get(key) or [] if isinstance(item, dict)]
            url, method = page.get("nextLink"), "GET"

    async def _send(self, method: str, url: str) -> JSON:
        # nextLink carries its own query; the client's api-version replaces whatever it holds (as the SDK does).
        base, _, query = url.partition("?")
        params = {k: v for k, v in urllib.parse.parse_qsl(query) if k != "api-version"}
        params["api-version"] = API_VERSION
        response = await self._client._send_request(HttpRequest(method, base, params=params))
        if response.status_code >= 400:
            # As 1.0.1's own operations raise it: Azure's code and message read from the ARM error body.
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        page: JSON = response.json()
        return page

    async def begin_put_compute(self, ws: WorkspaceId, name: str, body: JSON) -> Pending:
        ops = self._client.machine_learning_compute
        return await self._begin(
            "create",
            lambda: ops.begin_create_or_update(
                ws.resource_group, ws.name, name, _bytes(body), content_type="application/json", cls=_raw
            ),
        )

    async def begin_patch_compute(self, ws: WorkspaceId, name: str, body: JSON) -> Pending:
        ops = self._client.machine_learning_compute
        return await self._begin(
            "update",
            lambda: ops.begin_update(
                ws.resource_group, ws.name, name, _bytes(body), content_type="application/json", cls=_raw
            ),
        )

    async def begin_delete_compute(self, ws: WorkspaceId, name: str, action: str) -> Pending | None:
        """None: the compute is not there, so there is nothing to wait for. Azure says so with a 404 (whatever
        its code: ``ResourceNotFound``, or the ML RP's ``UserError``) or, from api-version 2022-05-01, with a 204
        (``Compute_Delete`` in the swagger, 2025-12-01 included), which SDK 1.0.1's 2020-08-01 code accepts as
        neither 200 nor 202 and raises as an error: read as gone, never retried."""
        ops = self._client.machine_learning_compute
        with azure_errors():
            try:
                poller = await ops.begin_delete(ws.resource_group, ws.name, name, action)
            except ResourceNotFoundError:
                return None
            except HttpResponseError as error:
                if error.status_code == 204:
                    return None
                raise
        return _pending("delete", poller)

    async def _begin(self, operation: str, begin: Callable[[], Awaitable[AsyncLROPoller[Any]]]) -> Pending:
        with azure_errors():
            poller = await begin()
        return _pending(operation, poller)

    async def operation_state(self, ws: WorkspaceId, name: str, pending: Pending) -> OperationState | None:
        """Check a saved operation once, without waiting; None when the token cannot be used any more."""
        if not pending.continuation_token:
            return None
        ops = self._client.machine_learning_compute
        resume: dict[str, Callable[[], Awaitable[AsyncLROPoller[Any]]]] = {
            "create": lambda: ops.begin_create_or_update(
                ws.resource_group, ws.name, name, io.BytesIO(), continuation_token=pending.continuation_token
            ),
            "update": lambda: ops.begin_update(
                ws.resource_group, ws.name, name, io.BytesIO(), continuation_token=pending.continuation_token
            ),
            "delete": lambda: ops.begin_delete(
                ws.resource_group, ws.name, name, "Delete", continuation_token=pending.continuation_token
            ),
        }
        if pending.operation not in resume:
            return None
        with azure_errors():
            try:
                poller = await resume[pending.operation]()
                method = poller.polling_method()
                await method.update_status()  # type: ignore[attr-defined]
                status = str(method.status()).lower()
            except (ValueError, TypeError, KeyError, AttributeError):
                return None  # an unreadable token is dropped; observe falls back to GET
        if status in ("succeeded", "canceled", "cancelled"):
            return OperationState(done=True)
        if status == "failed":
            code, message = _operation_error(method)
            return OperationState(done=True, failed=True, error_code=code, error_message=message)
        return OperationState(done=False)

    async def list_nodes(self, ws: WorkspaceId, name: str, limit: int) -> tuple[list[JSON], int]:
        """``MachineLearningCompute_ListNodes``: POST ``listNodes``, its pages under ``nodes``."""
        nodes = await self._list_raw("POST", f"{ws.arm_id}/computes/{name}/listNodes", key="nodes")
        return nodes[:limit], len(nodes)

    # -- location -----------------------------------------------------------------------------------------
    async def vm_sizes(self, location: str) -> JSON:
        """The raw answer: SDK 1.0.1's model reads only ``amlCompute``, and Azure may name the list ``value``
        (``amlcompute_map.vm_sizes_of`` reads either)."""
        with azure_errors():
            body: JSON = await self._client.virtual_machine_sizes.list(location, cls=_raw)  # type: ignore[assignment]
        return body

    async def usages(self, location: str) -> list[JSON]:
        """``Usages_List``, raw: 1.0.1's ``Usage`` model would drop 2025-12-01's ``amlWorkspaceLocation``."""
        return await self._list_raw("GET", f"{self._location_path(location)}/usages")

    async def quotas(self, location: str) -> list[JSON]:
        """``Quotas_List``, raw: 1.0.1's ``ResourceQuota`` model would drop 2025-12-01's ``amlWorkspaceLocation``."""
        return await self._list_raw("GET", f"{self._location_path(location)}/quotas")

    def _location_path(self, location: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/providers/Microsoft.MachineLearningServices/locations/"
            f"{urllib.parse.quote(location, safe='')}"
        )

    async def update_quotas(self, location: str, items: list[JSON]) -> list[JSON]:
        """``Quotas_Update`` (POST .../locations/{location}/updateQuotas) through the SDK's own model and operation;
        the per-item answers raw (``status`` says whether each limit was applied: Azure answers 200 either way)."""
        with azure_errors():
            body: JSON = await self._client.quotas.update(  # type: ignore[assignment]
                location, quota_update_parameters(items), cls=_raw
            )
        return [item for item in body.get("value") or [] if isinstance(item, dict)]


def quota_update_parameters(items: list[JSON]) -> QuotaUpdateParameters:
    """The ``Quotas_Update`` body as SDK 1.0.1's model (its fields are 2025-12-01's ``QuotaBaseProperties`` too)."""
    return QuotaUpdateParameters(
        value=[
            QuotaBaseProperties(id=i["id"], type=i["type"], limit=i["limit"], unit=i.get("unit", "Count"))
            for i in items
        ]
    )


def _pending(operation: str, poller: AsyncLROPoller[Any]) -> Pending:
    # Never await the result: the engine looks again later, and a restarted operator resumes from the saved
    # token instead of writing a second time.
    token = poller.continuation_token()
    return Pending(operation, token, now_iso())


def _bytes(body: JSON) -> IO[bytes]:
    return io.BytesIO(json.dumps(body).encode())


def _operation_error(method: Any) -> tuple[str, str]:
    try:
        body = method._pipeline_response.http_response.json()  # the last status body the poller read
    except Exception:
        return "OperationFailed", "the Azure operation failed"
    error = body.get("error") or {}
    return str(error.get("code") or "OperationFailed"), arm_error_text(error) or "the Azure operation failed"
