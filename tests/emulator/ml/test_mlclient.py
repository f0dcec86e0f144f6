"""azure-ai-ml 1.35.2's real ``MLClient`` against the emulator: workspace, computes, datastores, uploads, assets.

Evidence, all in Azure/azure-rest-api-specs under ``specification/machinelearningservices/resource-manager/
Microsoft.MachineLearningServices/`` (``stable/2024-10-01/examples/`` unless said otherwise), cited per test. The
api-versions are those azure-ai-ml sends (arm/versions.py lists what each call uses).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import AmlCompute, AzureBlobDatastore, Data, Environment
from azure.ai.ml.entities._assets import Code
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from amlops_emulator.azurite import DEVSTORE_ACCOUNT, DEVSTORE_KEY
from amlops_emulator.seed import DEFAULT_LOCATION, DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE
from tests.support.processes import EmulatorProcess

pytestmark = pytest.mark.emulator

WS_ID = (
    f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{DEFAULT_WORKSPACE}"
)
DEADLINE_SECONDS = 60.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _blob_text(blobs: BlobServiceClient, container: str, name: str) -> str:
    return blobs.get_blob_client(container, name).download_blob().readall().decode()


def test_workspace_get_as_azure_ai_ml_reads_it(ml: MLClient) -> None:
    """``workspaces.get()`` (GET at 2024-10-01-preview): ``Workspace/get.json`` — location, ``storageAccount`` as
    a Microsoft.Storage ARM id, ``discoveryUrl``, ``hbiWorkspace``; ``workspaceId`` is the swagger's read-only
    GUID."""
    ws = ml.workspaces.get()
    assert ws.name == DEFAULT_WORKSPACE
    assert ws.location == DEFAULT_LOCATION
    assert ws.storage_account == (
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
        f"/providers/Microsoft.Storage/storageAccounts/{DEVSTORE_ACCOUNT}"
    )
    assert ws.discovery_url is not None
    assert ws.discovery_url.endswith("/discovery")
    assert ws.hbi_workspace is False
    assert uuid.UUID(str(ws._workspace_id))


def test_compute_create_get_list_and_nodes(ml: MLClient) -> None:
    """``compute.begin_create_or_update`` / ``get`` / ``list`` / ``list_nodes`` (2023-08-01-preview):
    ``Compute/createOrUpdate/BasicAmlCompute.json`` and ``Compute/get/AmlCompute.json`` give the AmlCompute azure-ai-ml
    turns into its entity (vmSize, scaleSettings, vmPriority); ``Compute/listNodes.json`` the nodes; a cluster with
    ``minNodeCount`` 1 gets that node (waited for, with a deadline: the emulator's clock runs 60x; the example's
    node port is 50000)."""
    name = _unique("cpu")
    ml.compute.begin_create_or_update(
        AmlCompute(name=name, size="Standard_DS3_v2", min_instances=1, max_instances=2, idle_time_before_scale_down=180)
    ).result()

    compute = ml.compute.get(name)
    assert isinstance(compute, AmlCompute)
    assert (str(compute.size).lower(), compute.min_instances, compute.max_instances) == ("standard_ds3_v2", 1, 2)
    assert compute.idle_time_before_scale_down == 180
    assert compute.tier == "dedicated"
    assert compute.provisioning_state == "Succeeded"
    assert compute.location == DEFAULT_LOCATION
    assert name in [c.name for c in ml.compute.list()]

    deadline = time.monotonic() + DEADLINE_SECONDS
    nodes = list(ml.compute.list_nodes(name))
    while not nodes and time.monotonic() < deadline:
        time.sleep(0.2)
        nodes = list(ml.compute.list_nodes(name))
    assert len(nodes) == 1
    # azure-ai-ml 1.35.2 copies the REST model's as_dict() into its entity, which keeps the wire's camelCase
    # names: node_id & co. stay None whatever the service answers; only ``port`` has the same name on both sides.
    node = vars(nodes[0])
    assert node["nodeId"]
    assert node["privateIpAddress"]
    assert node["nodeState"] in ("preparing", "idle")
    assert nodes[0].port == 50000


def test_compute_sizes_and_usage(ml: MLClient) -> None:
    """``compute.list_sizes`` and ``list_usage`` (a workspace GET for its location, then ``vmSizes`` and
    ``usages`` at 2023-08-01-preview): ``VirtualMachineSize/list.json`` (``value``, vCPUs per size) and
    ``Usage/list.json`` (rows named "Standard DSv2 Family Cluster Dedicated vCPUs", unit Count, a limit)."""
    # azure-ai-ml 1.35.2 copies each REST model's as_dict() into its VmSize and Usage entities, which keeps the
    # wire's camelCase names (vCPUs, currentValue) and leaves name a dict; its own snake_case fields stay None.
    sizes = {s.name: vars(s) for s in ml.compute.list_sizes()}
    assert sizes["Standard_DS3_v2"]["vCPUs"] == 4
    assert sizes["Standard_DS3_v2"]["family"] == "standardDSv2Family"
    family = "Standard DSv2 Family Cluster Dedicated vCPUs"
    usage = [vars(u) for u in ml.compute.list_usage() if vars(u)["name"]["value"] == family]
    assert usage, "the DSv2 family's subscription row"
    assert usage[0]["unit"] == "Count"
    assert usage[0]["limit"] > 0
    assert usage[0]["currentValue"] >= 0


def test_unknown_compute_is_arms_resource_not_found(ml: MLClient) -> None:
    """An unknown compute: ARM's 404 ``ResourceNotFound`` "The Resource '{type}/{name}' under resource group
    '{rg}' was not found. ..." (quoted from the service in Azure/azqr#263; shared/reference/azure-api-fidelity.md),
    which azure-ai-ml surfaces as azure-core's ``ResourceNotFoundError`` carrying the code and message."""
    with pytest.raises(ResourceNotFoundError) as raised:
        ml.compute.get("no-such-cluster")
    assert raised.value.status_code == 404
    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceNotFound"
    assert raised.value.error.message == (
        "The Resource 'Microsoft.MachineLearningServices/workspaces/computes/"
        f"{DEFAULT_WORKSPACE}/no-such-cluster' under resource group '{DEFAULT_RESOURCE_GROUP}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    )


def test_default_datastore_is_azurite(ml: MLClient, azure_ml: EmulatorProcess) -> None:
    """``datastores.get_default()`` (list with ``isDefault=true``), ``datastores.get`` and ``listSecrets``
    (2024-10-01-preview): ``Datastore/get.json`` (AzureBlob, AccountKey credentials whose secrets are not in the
    GET, ``endpoint``, ``protocol`` https) and ``Datastore/listSecrets.json`` (``{secretsType: AccountKey, key}``):
    the workspace's ``workspaceblobstore`` is the Azurite account's ``azureml-blobstore-{workspaceId}``, the
    default container a real workspace's code URI shows (``https://<account>.blob.core.windows.net/
    azureml-blobstore-<GUID>/code`` in Azure/azure-powershell ``src/MachineLearningServices/
    MachineLearningServices.Autorest/examples/Get-AzMLWorkspaceCodeVersion.md``)."""
    default = ml.datastores.get_default()
    assert isinstance(default, AzureBlobDatastore)
    assert default.name == "workspaceblobstore"
    assert default.account_name == DEVSTORE_ACCOUNT
    assert default.container_name == f"azureml-blobstore-{ml.workspaces.get()._workspace_id}"
    assert default.endpoint == azure_ml.run.endpoints["storage"]["storageEndpointSuffix"]
    assert default.protocol == "https"
    assert ml.datastores.get("workspaceblobstore").id == f"{WS_ID}/datastores/workspaceblobstore"
    secrets = ml.datastores._list_secrets("workspaceblobstore")  # what azure-ai-ml's uploads call
    assert secrets.key == DEVSTORE_KEY
    with pytest.raises(ResourceNotFoundError):
        ml.datastores.get("no-such-datastore")


def test_data_from_a_local_folder_is_uploaded_and_registered(
    ml: MLClient, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    """``data.create_or_update(Data(path=<local folder>, type="uri_folder"))``: azure-ai-ml reads the default
    datastore and its key, uploads to ``https://devstoreaccount1.blob.core.localhost:{port}`` (Azurite) under
    ``LocalUpload/{hash}/{folder}``, then PUTs the data version (2023-04-01-preview) with an ``azureml://`` path:
    ``DataVersionBase/createOrUpdate.json`` and ``get.json`` (``dataType`` uri_folder, ``dataUri``)."""
    folder = tmp_path / "rows"
    folder.mkdir()
    (folder / "part-0.csv").write_text("id,value\n1,a\n")
    name = _unique("rows")

    data = ml.data.create_or_update(Data(name=name, version="1", path=str(folder), type="uri_folder"))

    assert data.id == f"{WS_ID}/data/{name}/versions/1"
    prefix = "azureml://datastores/workspaceblobstore/paths/"
    assert data.path is not None
    assert data.path.startswith(prefix + "LocalUpload/")
    blob = data.path.removeprefix(prefix).rstrip("/") + "/part-0.csv"
    container = ml.datastores.get_default().container_name
    assert _blob_text(blobs, str(container), blob) == "id,value\n1,a\n"
    fetched = ml.data.get(name, version="1")
    assert (fetched.path, fetched.type) == (data.path, "uri_folder")
    with pytest.raises(ResourceNotFoundError):
        ml.data.get(name, version="2")


def test_code_upload_through_a_pending_upload(
    ml: MLClient, azure_ml: EmulatorProcess, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    """Code versions (2023-04-01): azure-ai-ml lists versions by content ``hash``, asks ``startPendingUpload``
    (``preview/2024-10-01-preview/examples/Workspace/CodeVersion/createOrGetStartPendingUpload.json``: a
    ``blobReferenceForConsumption`` with ``blobUri`` and a SAS ``credential``), uploads there, and PUTs the
    version with that ``codeUri`` (``CodeVersion/createOrUpdate.json``). The same folder again finds the
    version by its hash and uploads nothing. Anonymous code ids: Azure/azure-powershell
    ``src/MachineLearningServices/MachineLearningServices.Autorest/examples/New-AzMLWorkspaceBatchDeployment.md``."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('train')\n")
    name = _unique("train-src")
    before = azure_ml.operations().get("CodeVersions_CreateOrGetStartPendingUpload", 0)

    code = ml._code.create_or_update(Code(name=name, version="1", path=str(src)))

    assert code.id == f"{WS_ID}/codes/{name}/versions/1"
    storage = azure_ml.run.endpoints["storage"]
    assert code.path is not None
    assert code.path.startswith(storage["blobUrl"] + "/")
    container = code.path.removeprefix(storage["blobUrl"] + "/").split("/")[0]
    assert _blob_text(blobs, container, "src/train.py") == "print('train')\n"
    assert ml._code.get(name, "1").path == code.path

    again = ml._code.create_or_update(Code(name=name, version="1", path=str(src)))
    assert again.id == code.id
    assert azure_ml.operations()["CodeVersions_CreateOrGetStartPendingUpload"] == before + 1

    # Anonymous code (what a job's local ``code=`` becomes): a GUID name, version 1, as real ids show it
    # (``codes/bd430754-fba7-4a63-a6b8-8ea8635767f3/versions/1`` in the same azure-powershell example).
    anonymous = ml._code.create_or_update(Code(path=str(src)))
    assert anonymous.version == "1"
    assert uuid.UUID(str(anonymous.name))
    assert anonymous.id == f"{WS_ID}/codes/{anonymous.name}/versions/1"


def test_environment_versions_named_and_anonymous(ml: MLClient) -> None:
    """Environment versions (2023-04-01-preview): ``EnvironmentVersion/createOrUpdate.json`` and ``get.json``
    (``image``). An environment without a name is registered as azure-ai-ml registers anonymous ones: name
    ``CliV2AnonymousEnvironment``, version its content hash, so the same image twice is the same version (real
    ids of that form: ``environments/CliV2AnonymousEnvironment/versions/<hash>`` in Azure/azure-powershell
    ``src/MachineLearningServices/MachineLearningServices.Autorest/examples/New-AzMLWorkspaceBatchDeployment.md``)."""
    name = _unique("env")
    image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
    created = ml.environments.create_or_update(Environment(name=name, version="1", image=image))
    assert created.id == f"{WS_ID}/environments/{name}/versions/1"
    assert ml.environments.get(name, version="1").image == image

    anonymous = ml.environments.create_or_update(Environment(image="python:3.11-slim"))
    assert anonymous.name == "CliV2AnonymousEnvironment"
    assert anonymous.version is not None
    assert len(anonymous.version) == 64
    assert ml.environments.create_or_update(Environment(image="python:3.11-slim")).id == anonymous.id
    assert ml.environments.get("CliV2AnonymousEnvironment", version=anonymous.version).image == "python:3.11-slim"


def test_a_versions_path_cannot_change(ml: MLClient) -> None:
    """A second PUT of an existing data version with another path: 400 ``UserError`` "Asset paths cannot be
    updated." — the service's text as azure-ai-ml 1.35.2 quotes it (``_artifacts/_constants.py``
    ``ASSET_PATH_ERROR``); the same path again is an update (200, ``DataVersionBase/createOrUpdate.json``)."""
    name = _unique("moved")
    first = ml.data.create_or_update(
        Data(name=name, version="1", path="azureml://datastores/workspaceblobstore/paths/a/")
    )
    again = ml.data.create_or_update(
        Data(name=name, version="1", path="azureml://datastores/workspaceblobstore/paths/a/")
    )
    assert again.id == first.id
    with pytest.raises(HttpResponseError) as raised:
        ml.data.create_or_update(Data(name=name, version="1", path="azureml://datastores/workspaceblobstore/paths/b/"))
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert (raised.value.error.code, raised.value.error.message) == ("UserError", "Asset paths cannot be updated.")
    assert ml.data.get(name, version="1").path == first.path


def _kind(path: str) -> str:
    """The asset kind an asset route's path names ('codes', 'environments', 'data'), else ''."""
    parts = path.split("/")
    return next((p for p in ("codes", "environments", "data") if p in parts), "")


def test_the_api_versions_azure_ai_ml_sends(ml: MLClient, azure_ml: EmulatorProcess, tmp_path: Path) -> None:
    """What azure-ai-ml 1.35.2 sends, read from the emulator's record of each call (``/_emulator/stats``): the
    facts arm/versions.py documents (its ``_ml_client.py`` picks one generated client per api-version). If a new
    azure-ai-ml changes them, this says which to add."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "job.py").write_text("pass\n")
    ml.workspaces.get()
    list(ml.compute.list())
    list(ml.compute.list_sizes())
    ml.datastores.get_default()
    ml.environments.create_or_update(Environment(name=_unique("env"), version="1", image="python:3.11-slim"))
    ml.data.create_or_update(
        Data(name=_unique("d"), version="1", path="azureml://datastores/workspaceblobstore/paths/x/")
    )
    ml._code.create_or_update(Code(name=_unique("c"), version="1", path=str(tmp_path / "src")))

    seen: dict[tuple[str, str], set[str]] = {}
    for call in azure_ml.control("GET", "/stats")["recent"]:
        seen.setdefault((call["operation"], _kind(call["path"])), set()).add(call["apiVersion"])
    expected = {
        # workspaces.get; the compute operations read the workspace's location with their own client first.
        ("Workspaces_Get", ""): {"2024-10-01-preview", "2023-08-01-preview"},
        ("MachineLearningCompute_ListByWorkspace", ""): {"2023-08-01-preview"},
        ("VirtualMachineSizes_List", ""): {"2023-08-01-preview"},
        ("Datastores_List", ""): {"2024-10-01-preview"},
        ("EnvironmentVersions_CreateOrUpdate", "environments"): {"2023-04-01-preview"},
        ("DataVersions_CreateOrUpdate", "data"): {"2023-04-01-preview"},
        ("CodeVersions_List", "codes"): {"2023-04-01"},
        ("CodeVersions_CreateOrGetStartPendingUpload", "codes"): {"2023-04-01"},
        ("CodeVersions_CreateOrUpdate", "codes"): {"2023-04-01"},
    }
    assert {key: seen.get(key) for key in expected} == expected


def test_data_versions_without_a_version_count_up(ml: MLClient) -> None:
    """A data asset created without a version: azure-ai-ml reads the container (``DataContainer/get.json``:
    ``latestVersion``, ``nextVersion``; 404 before the first version) and PUTs ``nextVersion``; ``label="latest"``
    reads ``latestVersion``; ``list(name)`` lists every version (``DataVersionBase/list.json``)."""
    name = _unique("counted")
    paths = [f"azureml://datastores/workspaceblobstore/paths/{p}/" for p in ("a", "b")]
    versions = [ml.data.create_or_update(Data(name=name, path=path)).version for path in paths]
    assert versions == ["1", "2"]
    latest = ml.data.get(name, label="latest")
    assert (latest.version, latest.path) == ("2", paths[1])
    assert sorted(str(d.version) for d in ml.data.list(name)) == ["1", "2"]
