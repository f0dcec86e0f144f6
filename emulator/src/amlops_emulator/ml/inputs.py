"""A job's inputs as Azure ML brings them to the nodes: literal values, and data fetched once per run.

The entry point is :func:`fetch_inputs` (command jobs call it from ``ml/jobs.py``; a pipeline's nodes can call it
the same way)::

    fetched = await fetch_inputs(ml, ws, rest_inputs, runs.input_root / run_id)
    command = fetched.render(command)          # literals, direct URIs and the $[[...]] optional blocks
    RunRequest(..., inputs=fetched.data, environment_variables={**env, **fetched.environment})

``rest_inputs`` is the REST ``inputs`` map (name → ``JobInput``); ``target`` a folder of the run's own under the
executor's ``input_root``: the executor removes ``{input_root}/{run}`` when the run ends (no copy outlives it).
Refusals raise :class:`~amlops_emulator.arm.errors.ArmError` before anything is downloaded.

What azure-ai-ml 1.35.2 sends (``_job_operations._resolve_job_input`` and the inputs' ``_to_rest_object``, seen on
the wire against this emulator), each a ``JobInput`` with ``jobInputType`` and, for data, ``uri`` and ``mode``:

- ``literal``: ``{"value": "3"}``, replaced in the command as text.
- a local path (``Input(path="./data")``): uploaded to ``workspaceblobstore`` under ``LocalUpload/{hash}/{name}``
  first, then sent as ``azureml://datastores/workspaceblobstore/paths/LocalUpload/{hash}/{name}`` (a folder with
  a trailing ``/``).
- a data asset (``azureml:<name>:<version>``): resolved by the client to the data version's ARM id
  ``/subscriptions/.../workspaces/{ws}/data/{name}/versions/{v}``; its ``dataUri`` is what is fetched. The
  ``azureml:<name>:<version>`` form itself (and ``azureml:<name>@latest``) is accepted too, for REST callers.
- a datastore URI, short ``azureml://datastores/{store}/paths/{path}`` or long ``azureml://subscriptions/{s}/
  resourcegroups/{rg}/workspaces/{ws}/datastores/{store}/paths/{path}`` (the form azure-ai-ml documents for
  resolved URIs, ``_job_ops_helper.get_job_output_uris_from_dataplane``).
- an ``https://{account}.blob.{suffix}/{container}/{path}`` URL of the workspace's storage account.

``mode`` (the REST ``InputDeliveryMode``; azure-ai-ml's ``INPUT_MOUNT_MAPPING_TO_REST``): ``ReadOnlyMount`` (the
default, ``ro_mount``/``mount``), ``ReadWriteMount``, ``Download``, ``EvalMount``, ``EvalDownload``: all become a
local copy on every node (a mount is not emulated: what a process writes into a ``rw_mount`` input is not written
back to the datastore). ``Direct`` passes the URI itself, fetching nothing.

On the node an input is at ``/mnt/azureml/cr/j/{run}/cap/data-capability/wd/INPUT_{name}`` (``execution.
input_dir``; a ``uri_file`` input is the file of its own name inside that folder): the mount target Azure ML's data
capability names ``UriMountSession:INPUT_{name}`` in its errors. ``${{inputs.<name>}}`` becomes that path (per
node, by the executor) and the process sees it in ``AZURE_ML_INPUT_<name>`` too (user scripts read
``$AZURE_ML_INPUT_<name>`` as the input's folder; a ``direct`` input's variable holds its URI). Literal inputs get
no variable (the emulator's choice: no public source shows one).

Optional inputs: a component's input with ``optional: true`` is written in its command inside ``$[[...]]``; "the
command line at runtime may have different inputs" (Azure ML docs, "Define optional inputs in command line",
``how-to-manage-inputs-outputs-pipeline``): a block whose ``${{inputs.x}}`` are all given is kept without its
brackets, a block naming an input the job does not have is dropped (:func:`resolve_optional`).

Errors (no public recording of a refusal at submission was found; the codes are the emulator's choice unless
said): an unknown datastore or data asset, or a URI the emulator cannot fetch, is refused at submission with 400
``UserError`` naming the input. A path with nothing behind it is found when the run prepares, as on Azure: the run
ends ``Failed`` with ``ScriptExecution.StreamAccess.NotFound`` ("The specified file or folder path doesn't
exist", Azure ML's data-access troubleshooting guide, ``how-to-troubleshoot-data-access``), see
``execution._input_not_found``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from amlops_emulator.arm.errors import bad_request
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import DATASTORES, default_container
from amlops_emulator.ml.execution import RunInput

if TYPE_CHECKING:
    from amlops_emulator.ml.routes import MlRoutes

LITERAL = "literal"
DATA_KINDS = ("uri_file", "uri_folder", "mltable")
DIRECT = "Direct"
DEFAULT_MODE = "ReadOnlyMount"  # the swagger's JobInput mode default; azure-ai-ml's "mount"
MODES = ("ReadOnlyMount", "ReadWriteMount", "Download", "Direct", "EvalMount", "EvalDownload")

_DATASTORE_URI = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/(?:providers/Microsoft\.MachineLearningServices/)?"
    r"workspaces/[^/]+/)?datastores/(?P<store>[^/]+)/paths/(?P<path>.*)$",
    re.IGNORECASE,
)
_DATA_ARM_ID = re.compile(r"^(?:azureml:)?/subscriptions/.+/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")
_DATA_NAME = re.compile(r"^azureml:(?P<name>[^:/@]+)(?::(?P<version>[^:/@]+)|@(?P<label>latest))$")
_PLACEHOLDER = re.compile(r"\$\{\{inputs\.(?P<name>[A-Za-z0-9_]+)\}\}")
_OPTIONAL = re.compile(r"\$\[\[(?P<body>.*?)\]\]", re.DOTALL)


def datastore_path(uri: str) -> tuple[str, str] | None:
    """(datastore, path in it) of an ``azureml://`` datastore URI, short or long form; None for anything else."""
    match = _DATASTORE_URI.match(uri)
    return None if match is None else (match["store"], match["path"])


def data_asset(uri: str) -> tuple[str, str | None] | None:
    """(name, version) of a data asset reference: a data version's ARM id or ``azureml:<name>:<version>``; the
    version is None for ``azureml:<name>@latest``. None for anything else."""
    match = _DATA_ARM_ID.match(uri)
    if match is not None:
        return match["name"], match["version"]
    match = _DATA_NAME.match(uri)
    if match is not None:
        return match["name"], match["version"]
    return None


def resolve_optional(command: str, given: Collection[str]) -> str:
    """``command`` with each ``$[[...]]`` block kept (brackets removed) when every input it names is ``given``,
    dropped otherwise."""

    def block(match: re.Match[str]) -> str:
        body = match["body"]
        names = {m["name"] for m in _PLACEHOLDER.finditer(body)}
        return body if names <= set(given) else ""

    return _OPTIONAL.sub(block, command)


def render_values(command: str, values: Mapping[str, str]) -> str:
    """``command`` with each ``${{inputs.<name>}}`` of ``values`` replaced by its value (others kept)."""
    for name, value in values.items():
        command = command.replace("${{inputs." + name + "}}", value)
    return command


def input_mode(name: str, value: Mapping[str, Any]) -> str:
    mode = str(value.get("mode") or DEFAULT_MODE)
    for known in MODES:
        if mode.lower() == known.lower():
            return known
    raise bad_request(f"Input '{name}': mode '{mode}' is not one of {', '.join(MODES)}.", code="UserError")


@dataclass(frozen=True)
class BlobSource:
    """Where a data input's content is in the workspace's storage account."""

    name: str
    kind: str
    uri: str  # as the job gave it, for errors
    container: str
    path: str  # a blob name (uri_file) or a prefix (folders)


@dataclass(frozen=True)
class FetchedInputs:
    """What :func:`fetch_inputs` answers: the data inputs (fetched) and the values known at submission."""

    data: tuple[RunInput, ...] = ()
    values: dict[str, str] = field(default_factory=dict)  # literal values and direct URIs, by input name
    given: frozenset[str] = frozenset()  # every input the job has (for the $[[...]] blocks)
    literals: frozenset[str] = frozenset()  # which of ``values`` are literals

    @property
    def environment(self) -> dict[str, str]:
        """``AZURE_ML_INPUT_<name>`` of the inputs whose value is known before the nodes (``direct``)."""
        return {f"AZURE_ML_INPUT_{n}": v for n, v in self.values.items() if n not in self.literals}

    def render(self, command: str) -> str:
        """The command with optional blocks resolved and literal/direct values in; data inputs are left for the
        executor, which knows each node's path."""
        return render_values(resolve_optional(command, self.given), self.values)


def plan_inputs(ml: MlRoutes, ws: Workspace, inputs: Mapping[str, Any]) -> tuple[list[BlobSource], FetchedInputs]:
    """Every input checked and located, nothing fetched: (what to download, the values known now). Pure but for
    reading the workspace's data assets."""
    sources: list[BlobSource] = []
    values: dict[str, str] = {}
    literals: set[str] = set()
    for name, raw in inputs.items():
        value = dict(raw or {})
        kind = str(value.get("jobInputType", "")).lower()
        if kind == LITERAL:
            values[name] = str(value.get("value", ""))
            literals.add(name)
            continue
        if kind not in DATA_KINDS:
            raise bad_request(
                f"Input '{name}': jobInputType '{kind}' is not one of literal, {', '.join(DATA_KINDS)}.",
                code="UserError",
            )
        uri = str(value.get("uri") or "")
        if not uri:
            raise bad_request(f"Input '{name}': 'uri' is required for a {kind} input.", code="UserError")
        if input_mode(name, value) == DIRECT:
            values[name] = uri
            continue
        sources.append(_locate(ml, ws, name, kind, uri))
    return sources, FetchedInputs(values=values, given=frozenset(inputs), literals=frozenset(literals))


def _locate(ml: MlRoutes, ws: Workspace, name: str, kind: str, uri: str) -> BlobSource:
    target = uri
    asset = data_asset(uri)
    if asset is not None:
        asset_name, version = asset
        found = None
        if version is not None:
            found = ml.assets.find(ws, "data", asset_name, version)
        elif versions := ml.assets.all_versions(ws, "data", asset_name):
            found = versions[-1]
        if found is None:
            raise bad_request(
                f"Input '{name}': the data asset '{asset_name}' version '{version or 'latest'}' was not found in "
                f"the workspace.",
                code="UserError",
            )
        target = str(found.body["properties"].get("dataUri") or "")
    store = datastore_path(target)
    if store is not None:
        if store[0] not in DATASTORES:
            raise bad_request(
                f"Input '{name}': the datastore '{store[0]}' was not found in the workspace.", code="UserError"
            )
        return BlobSource(name, kind, uri, default_container(ws), store[1].strip("/"))
    if target.startswith("https://"):
        try:
            container, path = ml.storage.locate(target.split("?", 1)[0])
        except ValueError:
            pass
        else:
            return BlobSource(name, kind, uri, container, path)
    raise bad_request(
        f"Input '{name}': the emulator fetches data from the workspace's datastores and storage account only, not "
        f"'{target}'.",
        code="UserError",
    )


async def fetch_inputs(ml: MlRoutes, ws: Workspace, inputs: Mapping[str, Any], target: Path) -> FetchedInputs:
    """Check every input, then download each data input once into ``target/{name}`` (a ``uri_file`` as the file
    of its blob's name inside). A path with nothing behind it gives a :class:`RunInput` whose ``source`` does
    not exist: the run fails when it prepares (``execution._input_not_found``), as Azure's data capability does.
    ``target`` is removed first and on failure."""
    sources, fetched = plan_inputs(ml, ws, inputs)
    if not sources:
        return fetched
    storage = ml.storage
    shutil.rmtree(target, ignore_errors=True)
    data: list[RunInput] = []
    try:
        for source in sources:
            folder = target / source.name
            if source.kind == "uri_file":
                file = folder / (PurePosixPath(source.path).name or source.name)
                found = await storage.download_file(source.container, source.path, file)
                data.append(RunInput(source.name, source.kind, file if found else folder / "missing", source.uri))
            else:
                count = await storage.download(source.container, source.path, folder)
                data.append(RunInput(source.name, source.kind, folder if count else folder / "missing", source.uri))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return FetchedInputs(tuple(data), fetched.values, fetched.given, fetched.literals)
