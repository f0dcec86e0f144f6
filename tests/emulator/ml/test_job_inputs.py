"""A command job's inputs (``ml/inputs.py``, ``ml/execution.py``): literal values, and data fetched once per run and
copied to every node, through azure-ai-ml 1.35.2's real ``MLClient``.

Evidence: what azure-ai-ml sends, seen on the wire against the emulator (``_job_operations._resolve_job_input``): a
local path is uploaded to ``workspaceblobstore`` and sent as ``azureml://datastores/workspaceblobstore/paths/
LocalUpload/{hash}/{name}``; ``azureml:<name>:<version>`` becomes the data version's ARM id; ``mode`` in the
REST casing of ``INPUT_MOUNT_MAPPING_TO_REST`` (``ReadOnlyMount``, ``Download``, ``Direct``, ...). On the node:
``/mnt/azureml/cr/j/{run}/cap/data-capability/wd/INPUT_{name}`` (the mount target ``UriMountSession:INPUT_{name}``
in Azure's data errors), also in ``AZURE_ML_INPUT_<name>`` (what user scripts read on Azure ML). Optional blocks
``$[[...]]``: Azure ML docs, "Define optional inputs in command line" (``how-to-manage-inputs-outputs-pipeline``).
A missing path: ``ScriptExecution.StreamAccess.NotFound`` (``how-to-troubleshoot-data-access``). Refusals at
submission (unknown datastore, unknown data asset) are the emulator's wording: no public recording shows Azure's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import Input, MLClient, Output, command
from azure.ai.ml.entities import Data
from azure.ai.ml.exceptions import JobException
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.ml.execution import RunInput, input_dir, node_inputs, render_inputs
from amlops_emulator.ml.inputs import data_asset, datastore_path, input_mode, render_values, resolve_optional
from tests.support.jobs import ENVIRONMENT, blob_text, finished, unique
from tests.support.processes import EmulatorProcess

pytestmark = pytest.mark.emulator

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


# ----------------------------------------------------------------------------------------- pure: the URI forms


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # what azure-ai-ml sends for an uploaded local folder
        (
            "azureml://datastores/workspaceblobstore/paths/LocalUpload/ab/data/",
            ("workspaceblobstore", "LocalUpload/ab/data/"),
        ),
        # the long form the data plane answers (_job_ops_helper.get_job_output_uris_from_dataplane)
        (
            "azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/workspaceblobstore/paths/a/b.csv",
            ("workspaceblobstore", "a/b.csv"),
        ),
        # the same with the provider segment, and resourceGroups capitalised
        (
            "azureml://subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
            "/datastores/other/paths/x",
            ("other", "x"),
        ),
        ("https://acct.blob.core.windows.net/c/p.csv", None),  # not a datastore URI
        ("azureml:data:1", None),  # a data asset, not a datastore path
    ],
)
def test_datastore_uris(uri: str, expected: tuple[str, str] | None) -> None:
    assert datastore_path(uri) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"{WS}/data/rows/versions/3", ("rows", "3")),  # what azure-ai-ml sends for azureml:rows:3
        (f"azureml:{WS}/data/rows/versions/3", ("rows", "3")),  # the azureml: prefixed ARM id
        ("azureml:rows:3", ("rows", "3")),  # the short form a REST caller may send
        ("azureml:rows@latest", ("rows", None)),  # the latest version
        ("azureml://datastores/workspaceblobstore/paths/a", None),  # a datastore path
        (f"{WS}/codes/rows/versions/3", None),  # another asset kind
    ],
)
def test_data_asset_references(uri: str, expected: tuple[str, str | None] | None) -> None:
    assert data_asset(uri) == expected


@pytest.mark.parametrize(
    ("command", "given", "expected"),
    [
        ("python a.py $[[--x ${{inputs.x}}]]", {"x"}, "python a.py --x ${{inputs.x}}"),  # given: brackets go
        ("python a.py $[[--x ${{inputs.x}}]]", set(), "python a.py "),  # not given: the block goes
        ("p $[[--a ${{inputs.a}} --b ${{inputs.b}}]]", {"a"}, "p "),  # a block needs all it names
        ("p $[[--a ${{inputs.a}}]] $[[--b ${{inputs.b}}]]", {"b"}, "p  --b ${{inputs.b}}"),  # each block alone
        ("p $[[--flag]]", set(), "p --flag"),  # names no input: nothing missing
        ("p ${{inputs.a}}", set(), "p ${{inputs.a}}"),  # outside brackets: left as written
    ],
)
def test_optional_blocks(command: str, given: set[str], expected: str) -> None:
    assert resolve_optional(command, given) == expected


def test_values_replace_every_use_and_leave_others() -> None:
    command = "echo ${{inputs.a}} ${{inputs.a}} ${{inputs.data}} ${{outputs.o}}"
    assert render_values(command, {"a": "x"}) == "echo x x ${{inputs.data}} ${{outputs.o}}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "ReadOnlyMount"),  # the swagger's default mode; azure-ai-ml's "mount"
        ({"mode": "Download"}, "Download"),
        ({"mode": "direct"}, "Direct"),  # any casing
        ({"mode": "EvalMount"}, "EvalMount"),
    ],
)
def test_input_modes(value: dict[str, Any], expected: str) -> None:
    assert input_mode("data", value) == expected


def test_an_unknown_mode_is_refused_by_name() -> None:
    with pytest.raises(ArmError) as raised:
        input_mode("data", {"mode": "Teleport"})
    assert (raised.value.status, raised.value.code) == (400, "UserError")
    assert "'data'" in raised.value.message


def test_inputs_live_beside_the_working_directory(tmp_path: Path) -> None:
    """A folder input is its ``INPUT_{name}`` folder, a file input the file of its name inside it."""
    folder, file = tmp_path / "rows", tmp_path / "model.pkl"
    folder.mkdir()
    file.write_text("m")
    workdir = Path("/state/aml/nodes/n0/cr/j/run1/exe/wd")
    paths = node_inputs(workdir, (RunInput("rows", "uri_folder", folder), RunInput("model", "uri_file", file)))
    base = "/state/aml/nodes/n0/cr/j/run1/cap/data-capability/wd"
    assert paths == {"rows": f"{base}/INPUT_rows", "model": f"{base}/INPUT_model/model.pkl"}
    assert input_dir(workdir, "rows") == Path(f"{base}/INPUT_rows")
    assert render_inputs("python s.py ${{inputs.model}}", paths) == f"python s.py {base}/INPUT_model/model.pkl"


# ----------------------------------------------------------------------------------------- through MLClient

SEE = """
import json, os, pathlib, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
seen = {
    "args": args,
    "env": {k: v for k, v in os.environ.items() if k.startswith("AZURE_ML_INPUT_")},
    "folder": sorted(p.name for p in pathlib.Path(args["--folder"]).iterdir()),
    "file": pathlib.Path(args["--file"]).read_text(),
    "asset": pathlib.Path(args["--asset"], "part-0.csv").read_text(),
    "store": pathlib.Path(args["--store"], "part-0.csv").read_text(),
}
out = pathlib.Path(os.environ["AZURE_ML_OUTPUT_seen"])
(out / f"seen-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(seen))
"""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "see.py").write_text(SEE)
    return folder


def _leftovers(azure_ml: EmulatorProcess) -> list[Path]:
    """What the emulator still keeps of ended runs' code and data inputs."""
    aml = azure_ml.run.state_dir / "aml"
    return [p for root in ("inputs", "code") if (aml / root).is_dir() for p in (aml / root).iterdir()]


def test_data_inputs_reach_every_node(
    ml: MLClient, azure_ml: EmulatorProcess, cluster: str, src: Path, tmp_path: Path, blobs: BlobServiceClient
) -> None:
    """Every input form azure-ai-ml sends, on a 2-node PyTorch job: a local folder and a local file (uploaded by
    the client), a data asset (``azureml:<name>:1`` → its ARM id → its ``dataUri``), a datastore path in
    ``download`` mode, a ``direct`` URI (passed as text, not fetched), a literal, and two optional blocks (one
    given, one not). Each rank finds the data at the path it was given, which is also in ``AZURE_ML_INPUT_*``;
    once the job ended, the emulator keeps no copy of the inputs or code."""
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "part-0.csv").write_text("id\n1\n")
    (rows / "part-1.csv").write_text("id\n2\n")
    model = tmp_path / "model.txt"
    model.write_text("weights")
    asset = unique("rows")
    registered = ml.data.create_or_update(Data(name=asset, version="1", path=str(rows), type="uri_folder"))
    name = unique("inputs")
    ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command=(
                "python see.py --folder ${{inputs.folder}} --file ${{inputs.file}} --asset ${{inputs.asset}} "
                "--store ${{inputs.store}} --direct ${{inputs.direct}} --lr ${{inputs.lr}} "
                "$[[--given ${{inputs.lr}}]] $[[--absent ${{inputs.absent}}]]"
            ),
            inputs={
                "folder": Input(type="uri_folder", path=str(rows)),
                "file": Input(type="uri_file", path=str(model)),
                "asset": Input(type="uri_folder", path=f"azureml:{asset}:1"),
                "store": Input(type="uri_folder", path=str(registered.path), mode="download"),
                "direct": Input(type="uri_file", path="https://elsewhere.blob.core.windows.net/c/x.csv", mode="direct"),
                "lr": 0.5,
            },
            outputs={"seen": Output(type="uri_folder")},
            environment=ENVIRONMENT,
            compute=cluster,
            instance_count=2,
            distribution={"type": "pytorch", "process_count_per_instance": 1},
        )
    )

    assert finished(ml, name).status == "Completed"
    seen = [json.loads(blob_text(blobs, ml, f"azureml/{name}/seen/seen-{rank}.json")) for rank in range(2)]
    for rank in seen:
        args = rank["args"]
        assert args["--folder"].endswith(f"/cr/j/{name}/cap/data-capability/wd/INPUT_folder")
        assert args["--file"].endswith("/INPUT_file/model.txt")
        assert args["--direct"] == "https://elsewhere.blob.core.windows.net/c/x.csv"
        assert (args["--lr"], args["--given"]) == ("0.5", "0.5")
        assert "--absent" not in args
        assert rank["folder"] == ["part-0.csv", "part-1.csv"]
        assert rank["file"] == "weights"
        assert rank["asset"] == rank["store"] == "id\n1\n"
        env = rank["env"]
        assert env["AZURE_ML_INPUT_folder"] == args["--folder"]
        assert env["AZURE_ML_INPUT_file"] == args["--file"]
        assert env["AZURE_ML_INPUT_direct"] == args["--direct"]
        assert "AZURE_ML_INPUT_lr" not in env
    assert seen[0]["args"]["--folder"] != seen[1]["args"]["--folder"]  # each node its own copy
    assert _leftovers(azure_ml) == []


def test_a_path_with_nothing_behind_it_fails_the_run(
    ml: MLClient, azure_ml: EmulatorProcess, cluster: str, src: Path
) -> None:
    """A datastore path that holds no blob is found when the run prepares, as Azure's data capability finds it:
    the job ends ``Failed`` and ``jobs.stream`` raises with ``ScriptExecution.StreamAccess.NotFound`` naming
    the input (Azure: "The specified file or folder path doesn't exist", target ``UriMountSession:INPUT_x``)."""
    name = unique("missing")
    ml.jobs.create_or_update(
        command(
            name=name,
            code=str(src),
            command="python see.py --folder ${{inputs.gone}}",
            inputs={"gone": Input(type="uri_folder", path="azureml://datastores/workspaceblobstore/paths/no/such/")},
            environment=ENVIRONMENT,
            compute=cluster,
        )
    )

    assert finished(ml, name).status == "Failed"
    with pytest.raises(JobException) as raised:
        ml.jobs.stream(name)
    assert "doesn't exist" in str(raised.value)
    assert "'gone'" in str(raised.value)
    assert _leftovers(azure_ml) == []


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("azureml://datastores/nosuchstore/paths/a/", "nosuchstore"),  # an unknown datastore
        (f"{WS}/data/nosuchdata/versions/1", "nosuchdata"),  # a data version's ARM id that does not exist
        ("https://elsewhere.blob.core.windows.net/c/x/", "elsewhere"),  # not the workspace's storage account
    ],
)
def test_inputs_the_emulator_cannot_fetch_are_refused_by_name(
    ml: MLClient, azure_ml: EmulatorProcess, cluster: str, src: Path, path: str, what: str
) -> None:
    """Refused at submission with 400 ``UserError`` naming the input and what is wrong (the emulator's wording),
    nothing left behind."""
    with pytest.raises(HttpResponseError) as raised:
        ml.jobs.create_or_update(
            command(
                code=str(src),
                command="python see.py --folder ${{inputs.data}}",
                inputs={"data": Input(type="uri_folder", path=path)},
                environment=ENVIRONMENT,
                compute=cluster,
            )
        )
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "UserError"
    assert "'data'" in str(raised.value.message)
    assert what in str(raised.value.message)
    assert _leftovers(azure_ml) == []
