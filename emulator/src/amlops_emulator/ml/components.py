"""Component versions (``.../workspaces/{ws}/components/{name}/versions/{version}``), as azure-ai-ml 1.35.2
registers the components of a pipeline's nodes.

Each node built from an inline component (``command(...)`` or ``parallel_run_function(...)`` called inside a
``@pipeline`` function) is registered before the pipeline job is PUT: azure-ai-ml uploads the component's
``code`` folder (a code version, ``startPendingUpload``), registers its inline environment
(``environments/CliV2AnonymousEnvironment/versions/{hash}``), then PUTs the component at 2024-01-01-preview as
``components/azureml_anonymous/versions/{hash}`` (``_component_operations.py``: ``_version_operation`` of
``service_client_01_2024_preview``; the version is ``Component._get_anonymous_hash()``, a UUID-shaped hash of the
component's content). The body is the swagger's ``ComponentVersion``: ``properties.componentSpec`` (the
component's YAML form with resolved ARM ids, e.g. ``"code": "azureml:/subscriptions/.../codes/{name}/versions/1"``,
``"environment": "azureml:/subscriptions/.../environments/{name}/versions/{v}"``), ``isAnonymous``,
``isArchived``, ``properties``, ``tags``. azure-ai-ml reads the answer back with ``Component._from_rest_object``
(the ``componentSpec`` as it was sent) and puts the version's ARM ``id`` in the node's ``componentId``.

The store, routes and answers are those of the other asset versions (``ml/assets.py``, ``ml/routes.py``:
``ComponentVersions_CreateOrUpdate``/``_Get``/``_List``, ``ComponentContainers_Get``; ``stable/2024-10-01/
examples/Workspace/ComponentVersion/createOrUpdate.json`` and ``get.json``: 201 on create, 200 on update,
``provisioningState``). The recording ``sdk/ml/azure-ai-ml/tests/recordings/pipeline_job/e2etests/
test_pipeline_job.pyTestPipelineJobLongRunningtest_pipeline_job_get_child_run.json`` shows the
``components/azureml_anonymous/versions/{uuid}`` ids in a pipeline's nodes.

What a component version must hold to be stored: a ``componentSpec`` object with a ``type`` (400 ``UserError``
otherwise: the emulator's wording). Only ``command`` and ``parallel`` components can run here (ml/pipelines.py
refuses a node of any other type when the pipeline is submitted, not when the component is registered: Azure
registers pipeline, spark, ... components too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from amlops_emulator.arm.errors import bad_request
from amlops_emulator.arm.state import Workspace
from amlops_emulator.ml.assets import Assets

KIND = "components"
_COMPONENT_ID = re.compile(r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)


def check_component(properties: dict[str, Any]) -> None:
    """Refuse a component version without a ``componentSpec`` that names its ``type``."""
    spec = properties.get("componentSpec")
    if not isinstance(spec, dict):
        raise bad_request("'componentSpec' is required.", code="UserError")
    if not isinstance(spec.get("type"), str) or not spec["type"]:
        raise bad_request("The component's 'componentSpec.type' is required.", code="UserError")


@dataclass(frozen=True)
class Component:
    """A registered component version: its ARM id and its ``componentSpec``."""

    arm_id: str
    spec: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.spec.get("type", "")).lower()

    @property
    def code_id(self) -> str | None:
        """The ``code`` of a command component, or of a parallel component's ``task``: a code version's ARM id
        (``azureml:`` prefix removed), or None."""
        holder = self.spec.get("task") if self.type == "parallel" else self.spec
        code = (holder or {}).get("code")
        return str(code).removeprefix("azureml:") if code else None


def find_component(assets: Assets, ws: Workspace, component_id: str) -> Component | None:
    """The component version a node's ``componentId`` names (an ARM id, with or without ``azureml:``)."""
    match = _COMPONENT_ID.search(component_id.removeprefix("azureml:"))
    if match is None:
        return None
    version = assets.find(ws, KIND, match["name"], match["version"])
    if version is None:
        return None
    return Component(str(version.body["id"]), dict(version.body["properties"]["componentSpec"]))
