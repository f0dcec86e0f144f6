"""Workspace asset versions (code, environment, data) and the default datastore, as the ML RP stores them.

A version is stored as its PUT body's ``properties`` with the ARM envelope added (``id``, ``name``, ``type``,
``systemData``), as ``stable/2024-10-01/examples/CodeVersion/get.json`` shows it; a container (``codes/{name}``)
exists once a version of it does and reports ``latestVersion``/``nextVersion``
(``examples/CodeContainer/get.json``). Versions are immutable where Azure says so: a second PUT of an existing
version with a different asset path is refused with 400 ``UserError`` "Asset paths cannot be updated." (the
service's text as azure-ai-ml 1.35.2 quotes it in ``_artifacts/_constants.py`` ``ASSET_PATH_ERROR``, which it
matches to raise ``AssetPathException``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from amlops_emulator.arm.state import PROVIDER, Workspace

# The asset kinds, as their path segment under the workspace, and the type names ARM gives their resources.
KINDS = ("codes", "environments", "data", "components")
DEFAULT_DATASTORE = "workspaceblobstore"
# Where Azure ML keeps a run's logs and ``outputs/`` (a job's ``outputs.default``: "azureml://datastores/
# workspaceartifactstore/ExperimentRun/dcid.{job}", Azure/azure-powershell ``Get-AzMLWorkspaceJob.md``). On Azure
# its container is ``azureml``; the emulator's shares the default container (the emulator's choice: one container
# holds what a run wrote, as before this datastore was served).
ARTIFACT_DATASTORE = "workspaceartifactstore"
DATASTORES = (DEFAULT_DATASTORE, ARTIFACT_DATASTORE)
# The service's refusal of a changed path, as azure-ai-ml quotes it (_artifacts/_constants.py ASSET_PATH_ERROR).
ASSET_PATH_CODE = "UserError"
ASSET_PATH_MESSAGE = "Asset paths cannot be updated."


def workspace_guid(ws: Workspace) -> str:
    """A workspace's ``workspaceId`` (a GUID, stable for the workspace's ARM id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ws.arm_id.lower()))


def default_container(ws: Workspace) -> str:
    """The default blob container Azure creates with a workspace: ``azureml-blobstore-{workspaceId}`` (a real
    code URI, ``https://<account>.blob.core.windows.net/azureml-blobstore-<GUID>/code``, in Azure/azure-powershell
    ``src/MachineLearningServices/MachineLearningServices.Autorest/examples/Get-AzMLWorkspaceCodeVersion.md``)."""
    return f"azureml-blobstore-{workspace_guid(ws)}"


@overload
def stamp(moment: datetime) -> str: ...
@overload
def stamp(moment: None) -> None: ...
def stamp(moment: datetime | None) -> str | None:
    """A time as Azure ML writes it (``2024-01-01T00:00:00Z``)."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def system_data(now: datetime) -> dict[str, str]:
    return {
        "createdAt": stamp(now),
        "createdBy": "amlops emulator",
        "createdByType": "User",
        "lastModifiedAt": stamp(now),
        "lastModifiedBy": "amlops emulator",
        "lastModifiedByType": "User",
    }


def job_resource(
    arm_id: str,
    properties: dict[str, Any],
    status: str,
    times: tuple[datetime | None, datetime | None],
    created: datetime,
) -> dict[str, Any]:
    """A workspace job's ARM body (command and pipeline jobs alike): its properties with ``status``, and the
    emulator's ``StartTimeUtc``/``EndTimeUtc`` (``times``) in the ``properties`` string map (ml/jobs.py says why)."""
    extra = dict(properties.get("properties") or {})
    for key, moment in zip(("StartTimeUtc", "EndTimeUtc"), times, strict=True):
        if moment is not None:
            extra[key] = stamp(moment)
    return {
        "id": arm_id,
        "name": arm_id.rsplit("/", 1)[-1],
        "type": f"{PROVIDER}/workspaces/jobs",
        "properties": {**properties, "status": status, "properties": extra},
        "systemData": system_data(created),
    }


@dataclass
class Version:
    body: dict[str, Any]  # the resource as GET answers it
    created: datetime


@dataclass
class Assets:
    """Every workspace's asset versions: (workspace id, kind, name) → version → resource."""

    versions: dict[tuple[str, str, str], dict[str, Version]] = field(default_factory=dict)

    def reset(self) -> None:
        self.versions.clear()

    def _key(self, ws: Workspace, kind: str, name: str) -> tuple[str, str, str]:
        # Asset names are case-sensitive in the ML RP's asset store; the workspace part of the id is not.
        return (ws.arm_id.lower(), kind, name)

    def all_versions(self, ws: Workspace, kind: str, name: str) -> list[Version]:
        return sorted(self.versions.get(self._key(ws, kind, name), {}).values(), key=lambda v: v.created)

    def find(self, ws: Workspace, kind: str, name: str, version: str) -> Version | None:
        return self.versions.get(self._key(ws, kind, name), {}).get(version)

    def put(
        self, ws: Workspace, kind: str, name: str, version: str, properties: dict[str, Any], now: datetime
    ) -> tuple[Version, bool]:
        """Store a version; (the stored version, whether it was created)."""
        versions = self.versions.setdefault(self._key(ws, kind, name), {})
        existing = versions.get(version)
        body = {
            "id": f"{ws.arm_id}/{kind}/{name}/versions/{version}",
            "name": version,
            "type": f"{PROVIDER}/workspaces/{kind}/versions",
            "properties": {**properties, "provisioningState": "Succeeded"},
            "systemData": system_data(existing.created if existing else now),
        }
        stored = Version(body, existing.created if existing else now)
        versions[version] = stored
        return stored, existing is None

    def container(self, ws: Workspace, kind: str, name: str) -> dict[str, Any] | None:
        versions = self.all_versions(ws, kind, name)
        if not versions:
            return None
        latest = versions[-1]
        numeric = [int(v.body["name"]) for v in versions if str(v.body["name"]).isdigit()]
        return {
            "id": f"{ws.arm_id}/{kind}/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/{kind}",
            "properties": {
                "isArchived": False,
                "latestVersion": latest.body["name"],
                "nextVersion": str(max(numeric) + 1) if numeric else "1",
                "provisioningState": "Succeeded",
            },
            "systemData": system_data(versions[0].created),
        }
