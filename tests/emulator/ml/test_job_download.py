"""``MLClient.jobs.download`` of a finished command job, through azure-ai-ml 1.35.2's real client.

Evidence: azure-ai-ml's ``_job_operations.download`` and ``_get_named_output_uri`` (run history ``rundata``, the
data plane's ``dataversion/batchGetResolvedUris``, the job's ``outputs.default``, then each datastore path
downloaded into ``{download_path}/named-outputs/{output}/`` and ``{download_path}/artifacts/``); the ``default``
output as Azure reports it, ``azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{job}``
(Azure/azure-powershell ``src/MachineLearningServices/MachineLearningServices.Autorest/examples/
Get-AzMLWorkspaceJob.md``); a named output's asset id ``azureml://locations/{location}/workspaces/{id}/data/
azureml_{job}_output_data_{output}/versions/1`` (the pattern Azure/azureml-assets parses). ``ml/history.py`` says
how the emulator serves each call.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml import MLClient, Output, command

from tests.support.jobs import ENVIRONMENT, client, create_cluster, finished, unique
from tests.support.processes import EmulatorProcess

pytestmark = pytest.mark.emulator

SCRIPT = (
    "mkdir -p outputs && echo metrics > outputs/metrics.txt && "
    "echo weights > ${{outputs.model}}/model.txt && mkdir -p ${{outputs.model}}/sub && "
    "echo more > ${{outputs.model}}/sub/more.txt && echo report > ${{outputs.report}}/report.txt && echo logged"
)


@pytest.fixture(scope="module")
def completed(azure_ml: EmulatorProcess) -> str:
    """One completed job with two named outputs, an ``outputs/`` file and a log, shared by the module's tests."""
    ml = client(azure_ml)
    name = unique("download")
    ml.jobs.create_or_update(
        command(
            name=name,
            command=SCRIPT,
            outputs={"model": Output(type="uri_folder"), "report": Output(type="uri_folder")},
            environment=ENVIRONMENT,
            compute=create_cluster(azure_ml),
        )
    )
    assert finished(ml, name).status == "Completed"
    return name


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_download_all_lays_out_named_outputs_and_artifacts(ml: MLClient, completed: str, tmp_path: Path) -> None:
    """``all=True``: every named output under ``named-outputs/{name}/`` and the artifact folder (``user_logs/``,
    ``outputs/``) under ``artifacts/``, as ``_job_operations.download`` lays them out."""
    ml.jobs.download(completed, download_path=tmp_path, all=True)

    files = _files(tmp_path)
    assert files["named-outputs/model/model.txt"] == "weights\n"
    assert files["named-outputs/model/sub/more.txt"] == "more\n"
    assert files["named-outputs/report/report.txt"] == "report\n"
    assert files["artifacts/outputs/metrics.txt"] == "metrics\n"
    assert "logged" in files["artifacts/user_logs/std_log.txt"]


def test_download_one_output(ml: MLClient, completed: str, tmp_path: Path) -> None:
    """``output_name="report"``: that output only."""
    ml.jobs.download(completed, download_path=tmp_path, output_name="report")

    assert _files(tmp_path) == {"named-outputs/report/report.txt": "report\n"}


def test_download_by_default_is_the_artifacts(ml: MLClient, completed: str, tmp_path: Path) -> None:
    """Neither ``output_name`` nor ``all``: the artifact folder only (the ``default`` output)."""
    ml.jobs.download(completed, download_path=tmp_path)

    assert sorted(_files(tmp_path)) == ["artifacts/outputs/metrics.txt", "artifacts/user_logs/std_log.txt"]


def test_the_job_names_its_artifact_folder(ml: MLClient, completed: str) -> None:
    """``jobs.get``: the ``default`` output Azure adds, a ``uri_folder`` in ``rw_mount`` at
    ``azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{job}``, a datastore the workspace has."""
    default = ml.jobs.get(completed).outputs["default"]
    assert default.path == f"azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{completed}"
    assert (default.type, default.mode) == ("uri_folder", "rw_mount")
    assert ml.datastores.get("workspaceartifactstore").name == "workspaceartifactstore"
