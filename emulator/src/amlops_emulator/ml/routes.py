"""Routes of the workspace's datastores and asset versions, as azure-ai-ml 1.35.2 calls them.

Each handler's docstring names the operation id of the 2024-10-01 swagger and the example its answer follows
(``specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2024-10-01/
examples/...``, or ``preview/2024-10-01-preview/...`` for ``startPendingUpload``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from amlops_emulator.arm.errors import ArmError, bad_request, resource_not_found
from amlops_emulator.arm.state import PROVIDER, ArmState, Workspace
from amlops_emulator.ml.assets import (
    ASSET_PATH_CODE,
    ASSET_PATH_MESSAGE,
    DATASTORES,
    DEFAULT_DATASTORE,
    Assets,
    default_container,
    system_data,
)
from amlops_emulator.ml.components import check_component
from amlops_emulator.ml.storage import StorageAccount

if TYPE_CHECKING:
    from amlops_emulator.arm.routes import Dispatcher, Params, Route, RouteHandler

_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/workspaces/(?P<ws>[^/]+)"
)
# The asset kinds (their path segment) and the swagger's operation-id prefix of each.
_OPERATION_PREFIX = {"codes": "Code", "environments": "Environment", "data": "Data", "components": "Component"}
STORAGE_UNAVAILABLE = "WorkspaceStorageUnavailable"  # ours: no Azure counterpart
# The field of each kind's version properties that names its content (immutable once the version exists). A
# component version has no asset path: its content is its ``componentSpec`` (ml/components.py checks it).
_PATH_FIELD = {"codes": "codeUri", "environments": "image", "data": "dataUri"}


class MlRoutes:
    def __init__(self, state: ArmState, storage: StorageAccount | None, assets: Assets) -> None:
        self.state = state
        self._storage = storage
        self.assets = assets

    @property
    def storage(self) -> StorageAccount:
        """The storage account, or a clear refusal when the emulator runs without one (no ``--azurite``): 409,
        never a 5xx that azure-core would retry."""
        if self._storage is None:
            raise ArmError(409, STORAGE_UNAVAILABLE, "The emulator serves no storage account: start it with --azurite.")
        return self._storage

    def routes(self, dispatcher: Dispatcher) -> list[Route]:
        route = dispatcher._route
        self._dispatcher = dispatcher
        routes = [
            route(_WS + r"/datastores", GET=("Datastores_List", self.list_datastores)),
            route(_WS + r"/datastores/(?P<name>[^/]+)", GET=("Datastores_Get", self.get_datastore)),
            route(_WS + r"/datastores/(?P<name>[^/]+)/listSecrets", POST=("Datastores_ListSecrets", self.list_secrets)),
            route(
                _WS + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/startPendingUpload",
                POST=("CodeVersions_CreateOrGetStartPendingUpload", self.start_pending_upload),
            ),
        ]
        for kind, operation in _OPERATION_PREFIX.items():
            # One route per kind (not one with a group): the dispatcher derives the resource type that
            # NoRegisteredProviderFound names from the pattern, e.g. 'workspaces/codes/versions'.
            versions = f"{operation}Versions"
            routes += [
                route(
                    _WS + rf"/{kind}/(?P<name>[^/]+)",
                    GET=(f"{operation}Containers_Get", _of_kind(kind, self.get_container)),
                ),
                route(
                    _WS + rf"/{kind}/(?P<name>[^/]+)/versions",
                    GET=(f"{versions}_List", _of_kind(kind, self.list_versions)),
                ),
                route(
                    _WS + rf"/{kind}/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
                    GET=(f"{versions}_Get", _of_kind(kind, self.get_version)),
                    PUT=(f"{versions}_CreateOrUpdate", _of_kind(kind, self.put_version)),
                ),
            ]
        return routes

    def _workspace(self, p: Params) -> Workspace:
        return self.state.workspace(p["sub"], p["rg"], p["ws"])

    # -- datastores -----------------------------------------------------------------------------------------
    def _datastore(self, ws: Workspace, name: str = DEFAULT_DATASTORE) -> dict[str, Any]:
        """The default ``workspaceblobstore`` (or ``workspaceartifactstore``, where run artifacts are):
        ``examples/Datastore/get.json`` (AzureBlob, AccountKey), ``isDefault`` true for the default one, the
        workspace's storage account and default container."""
        return {
            "id": f"{ws.arm_id}/datastores/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/datastores",
            "properties": {
                "description": None,
                "tags": {},
                "isDefault": name == DEFAULT_DATASTORE,
                "properties": {},
                "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}},
                "datastoreType": "AzureBlob",
                "accountName": self.storage.name,
                "containerName": default_container(ws),
                "endpoint": self.storage.suffix,
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "resourceGroup": ws.resource_group,
                "subscriptionId": ws.subscription,
            },
            "systemData": system_data(self.state.clock.now()),
        }

    async def list_datastores(self, request: web.Request, p: Params) -> web.Response:
        """``Datastores_List`` (``examples/Datastore/list.json``); azure-ai-ml's ``get_default`` asks
        ``isDefault=true``."""
        ws = self._workspace(p)
        wanted = request.query.get("isDefault")
        items = [self._datastore(ws, name) for name in DATASTORES]
        if wanted is not None:
            items = [item for item in items if item["properties"]["isDefault"] == (wanted.lower() == "true")]
        return web.json_response({"value": items, "nextLink": None})

    def _named_datastore(self, p: Params) -> dict[str, Any]:
        ws = self._workspace(p)
        if p["name"] not in DATASTORES:
            raise resource_not_found(f"{PROVIDER}/workspaces/datastores", f"{ws.name}/{p['name']}", ws.resource_group)
        return self._datastore(ws, p["name"])

    async def get_datastore(self, request: web.Request, p: Params) -> web.Response:
        """``Datastores_Get`` (``examples/Datastore/get.json``)."""
        return web.json_response(self._named_datastore(p))

    async def list_secrets(self, request: web.Request, p: Params) -> web.Response:
        """``Datastores_ListSecrets`` (``examples/Datastore/listSecrets.json``): ``{secretsType, key}``."""
        self._named_datastore(p)
        return web.json_response({"secretsType": "AccountKey", "key": self.storage.key})

    # -- asset versions -------------------------------------------------------------------------------------
    def _missing(self, ws: Workspace, p: Params) -> ArmError:
        what = f"{ws.name}/{p['name']}" + (f"/{p['version']}" if "version" in p else "")
        return resource_not_found(f"{PROVIDER}/workspaces/{p['kind']}", what, ws.resource_group)

    async def get_container(self, request: web.Request, p: Params) -> web.Response:
        """``CodeContainers_Get`` / ``EnvironmentContainers_Get`` / ``DataContainers_Get``
        (``examples/CodeContainer/get.json``: ``latestVersion``, ``nextVersion``)."""
        ws = self._workspace(p)
        container = self.assets.container(ws, p["kind"], p["name"])
        if container is None:
            raise self._missing(ws, p)
        return web.json_response(container)

    async def list_versions(self, request: web.Request, p: Params) -> web.Response:
        """``*Versions_List`` (``examples/CodeVersion/list.json``): newest first with ``$orderBy=createdtime
        desc``; codes filter on ``hash``/``hashVersion`` (azure-ai-ml looks up an upload it already made)."""
        ws = self._workspace(p)
        versions = self.assets.all_versions(ws, p["kind"], p["name"])
        # azure-ai-ml keeps a code's content hash in its version's properties (hash_sha256, hash_version).
        for query, key in (("hash", "hash_sha256"), ("hashVersion", "hash_version")):
            wanted = request.query.get(query)
            if wanted is not None:
                versions = [v for v in versions if (v.body["properties"].get("properties") or {}).get(key) == wanted]
        if "desc" in request.query.get("$orderBy", "").lower():
            versions = list(reversed(versions))
        top = request.query.get("$top")
        if top is not None and top.isdigit():
            versions = versions[: int(top)]
        return web.json_response({"value": [v.body for v in versions], "nextLink": None})

    async def get_version(self, request: web.Request, p: Params) -> web.Response:
        """``*Versions_Get`` (``examples/CodeVersion/get.json``, ``EnvironmentVersion/get.json``,
        ``DataVersionBase/get.json``)."""
        ws = self._workspace(p)
        found = self.assets.find(ws, p["kind"], p["name"], p["version"])
        if found is None:
            raise self._missing(ws, p)
        return web.json_response(found.body)

    async def put_version(self, request: web.Request, p: Params) -> web.Response:
        """``*Versions_CreateOrUpdate``: 201 with the resource on create, 200 on update
        (``examples/CodeVersion/createOrUpdate.json`` documents both)."""
        ws = self._workspace(p)
        body = await self._dispatcher._body(request)
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise bad_request("'properties' is required.", code="InvalidRequestContent")
        tags = properties.get("properties")
        if isinstance(tags, dict):
            # ResourceBase.properties is a string map in the swagger: what a client sends as a number is stored
            # (and filtered on, e.g. hashVersion) as its text.
            properties = {**properties, "properties": {k: v if isinstance(v, str) else str(v) for k, v in tags.items()}}
        kind = p["kind"]
        field = _PATH_FIELD.get(kind)
        existing = self.assets.find(ws, kind, p["name"], p["version"])
        if (
            field is not None
            and existing is not None
            and existing.body["properties"].get(field) != properties.get(field)
        ):
            raise bad_request(ASSET_PATH_MESSAGE, code=ASSET_PATH_CODE)
        if kind == "components":
            check_component(properties)
        stored, created = self.assets.put(ws, kind, p["name"], p["version"], properties, self.state.clock.now())
        return web.json_response(stored.body, status=201 if created else 200)

    async def start_pending_upload(self, request: web.Request, p: Params) -> web.Response:
        """``CodeVersions_CreateOrGetStartPendingUpload`` (``preview/2024-10-01-preview/examples/Workspace/
        CodeVersion/createOrGetStartPendingUpload.json``): a blob reference with a SAS credential. The blob URI
        is a fresh container of the workspace's storage account (azure-ai-ml opens it with
        ``ContainerClient.from_container_url`` and uploads at its root), created here as the service would."""
        ws = self._workspace(p)
        body = await self._dispatcher._body(request)
        upload_id = str(body.get("pendingUploadId") or uuid.uuid4())
        container = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ws.arm_id.lower()}/codes/{p['name']}/{p['version']}"))
        await self.storage.create_container(container)
        blob_uri = f"{self.storage.blob_url}/{container}"
        return web.json_response(
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": self.storage.arm_id(ws.subscription, ws.resource_group),
                    "credential": {
                        "credentialType": "SAS",
                        "sasUri": f"{blob_uri}?{self.storage.container_sas(container)}",
                    },
                },
                "pendingUploadId": upload_id,
                "pendingUploadType": "TemporaryBlobReference",
            }
        )


def _of_kind(kind: str, handler: RouteHandler) -> RouteHandler:
    """``handler`` with the route's asset kind in its parameters, as ``p["kind"]``."""

    async def handle(request: web.Request, p: Params) -> web.StreamResponse:
        return await handler(request, {**p, "kind": kind})

    return handle
