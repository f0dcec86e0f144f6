"""The SAS URLs a ParallelJob's tasks carry: one blob each, least privilege, bounded by the job; and the rule for
the operator's shared storage account. Pure: nothing is sent, the tokens are read back with urllib."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from azure.storage.blob import generate_blob_sas

from amlops.api.paralleljob import ParallelJobSpec
from amlops.azure.blob import BlobFolder, BlobSigner, BlobStore, quote_base64, sas_expiry, sas_protocol
from amlops.external.paralleljob import (
    CODE_FILES_LIMIT,
    INLINE_MANIFEST_BYTES,
    Layout,
    check_code_files,
    input_names,
    shared_storage_refusal,
    task_bodies,
)
from amlops.external.paralleljob_plan import ByteRange, MiniBatch
from amlops.reconcile.errors import TerminalError
from amlops.runtime.command import MINI_BATCH_VARIABLE, ROWS_URL_VARIABLE, SUMMARY_URL_VARIABLE

pytestmark = pytest.mark.unit

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE = f"http://127.0.0.1:10000/{ACCOUNT}"
AZURE = "https://acct.blob.core.windows.net"
EXPIRY = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Token:
    """What a SAS URL grants, read back from the URL alone."""

    blob: str  # container/name
    resource: str  # sr
    permissions: str  # sp
    expiry: str  # se
    protocol: str | None  # spr


def token(url: str, endpoint: str = AZURITE) -> Token:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = urlsplit(endpoint).path.rstrip("/")
    assert parts.path.startswith(f"{base}/"), url
    return Token(
        blob=unquote(parts.path[len(base) + 1 :]),
        resource=query["sr"][0],
        permissions=query["sp"][0],
        expiry=query["se"][0],
        protocol=query.get("spr", [None])[0],
    )


# ----------------------------------------------------------------------------------------------- signer


@dataclass(frozen=True)
class ProtocolCase:
    reason: str
    endpoint: str
    protocol: str | None


PROTOCOL_CASES = [
    ProtocolCase("Azure's https endpoint: tokens refuse plain http", AZURE, "https"),
    ProtocolCase("Azurite over http: an https-only token could never be used", AZURITE, None),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in PROTOCOL_CASES])
def test_protocol(case: ProtocolCase) -> None:
    assert sas_protocol(case.endpoint) == case.protocol, case.reason
    url = BlobSigner(case.endpoint, ACCOUNT, KEY, EXPIRY).url(BlobFolder("c", "p/"), "a.txt")
    assert token(url, case.endpoint).protocol == case.protocol, case.reason


@dataclass(frozen=True)
class ExpiryCase:
    reason: str
    deadline: int | None
    expiry: datetime


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LIFETIME, MARGIN = timedelta(hours=6), timedelta(minutes=30)
EXPIRY_CASES = [
    ExpiryCase("no deadline: the operator's lifetime, not days", None, NOW + LIFETIME),
    ExpiryCase("a short deadline bounds the tokens, plus a margin", 600, NOW + timedelta(seconds=600) + MARGIN),
    ExpiryCase("a long deadline outlives the default lifetime", 86_400, NOW + timedelta(days=1) + MARGIN),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in EXPIRY_CASES])
def test_expiry(case: ExpiryCase) -> None:
    assert sas_expiry(NOW, case.deadline, LIFETIME, MARGIN) == case.expiry, case.reason


def test_a_url_names_one_blob_with_exactly_the_permissions_asked() -> None:
    sign = BlobSigner(AZURE, "acct", KEY, EXPIRY)

    read = token(sign.url(BlobFolder("data", "in/"), "sub dir/a#1.txt"), AZURE)
    write = token(sign.url(BlobFolder("out", "r/"), "0.txt", "cw"), AZURE)

    assert read == Token("data/in/sub dir/a#1.txt", "b", "r", "2026-11-29T18:00:00Z", "https")
    assert write == Token("out/r/0.txt", "b", "cw", "2026-11-29T18:00:00Z", "https")


@dataclass(frozen=True)
class SdkCase:
    reason: str
    endpoint: str
    container: str
    blob: str
    permission: str


SDK_CASES = [
    SdkCase("a plain read", AZURE, "data", "in/a.txt", "r"),
    SdkCase("write only, Azurite over http", AZURITE, "out", "r/0.txt", "cw"),
    SdkCase("read and write", AZURE, "out", "r/0.summary.json", "rcw"),
    SdkCase("spaces, a hash, a plus and a percent sign in the name", AZURE, "data", "in/sub dir/a#1+b%20.txt", "r"),
    SdkCase("a name outside ASCII", AZURE, "data", "in/données/é.csv", "r"),
    SdkCase("a name that holds the placeholder's own text", AZURE, "data", "amlops-sas-placeholder/x", "r"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in SDK_CASES])
def test_every_url_is_the_one_the_sdk_signs(case: SdkCase) -> None:
    """The signer signs each blob itself (HMAC over the SDK's own string to sign, see SasTemplate): each URL must be
    exactly the one azure-storage-blob's generate_blob_sas gives, however many blobs one template signs."""
    sign = BlobSigner(case.endpoint, ACCOUNT, KEY, EXPIRY)
    folder = BlobFolder(case.container, "")
    sign.url(folder, "warm/the/template", case.permission)
    sdk = generate_blob_sas(
        ACCOUNT,
        case.container,
        case.blob,
        account_key=KEY,
        permission=case.permission,
        expiry=EXPIRY,
        protocol=sas_protocol(case.endpoint),
    )
    assert sign.url(folder, case.blob, case.permission) == f"{case.endpoint}/{case.container}/{quote(case.blob)}?{sdk}"


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # no padding
        b"\xfb\xff",  # "+/8=": both characters quote treats differently, and padding
        b"\xfb\xef\xbe",  # "++++"
        *(hashlib.sha256(str(n).encode()).digest() for n in range(64)),  # signatures as SAS tokens carry them
    ],
)
def test_a_signature_is_quoted_as_urllib_quotes_it(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert quote_base64(text) == quote(text)


# ----------------------------------------------------------------------------------------------- tasks


def spec(**task: Any) -> ParallelJobSpec:
    return ParallelJobSpec.model_validate(
        {
            "compute": {"name": "batch", "poolId": "scoring"},
            "inputs": {"data": {"uri": f"{AZURITE}/team-a/inputs"}},
            "outputs": {"scores": {"uri": f"{AZURITE}/team-a/out"}},
            "inputData": "${{inputs.data}}",
            "miniBatchSize": "10",
            "task": {"code": f"{AZURITE}/team-a-code/src", "entryScript": "score.py", **task},
        }
    )


@pytest.fixture
async def layout() -> AsyncIterator[Layout]:
    connection = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={AZURITE};"
    async with BlobStore.from_connection_string(connection) as store:  # nothing is sent: the URL and key only
        yield Layout(
            store=store,
            inputs=BlobFolder("team-a", "inputs/"),
            only=None,
            kind="files",
            output=BlobFolder("team-a", "out/"),
            plan=BlobFolder("team-a", "out/_amlops/pj-1/plan/"),
            results=BlobFolder("team-a", "out/_amlops/pj-1/results/"),
            code=BlobFolder("team-a-code", "src/"),
        )


def environment(task: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in task["environmentSettings"]}


async def test_each_task_reads_only_its_inputs_code_and_driver_and_writes_only_its_results(layout: Layout) -> None:
    sign = BlobSigner(AZURITE, ACCOUNT, KEY, EXPIRY)
    batches = [MiniBatch(0, "files", files=("a.txt", "b.txt")), MiniBatch(1, "files", files=("c.txt",))]

    tasks, documents = task_bodies(
        spec(appendRowTo="${{outputs.scores}}"), layout, sign, ["score.py", "pkg/util.py"], True, batches
    )

    assert documents == {}
    resource = {f["filePath"]: token(f["httpUrl"]) for f in tasks[0]["resourceFiles"]}
    assert resource == {
        "driver.py": Token("team-a/out/_amlops/pj-1/plan/driver.py", "b", "r", "2026-11-29T18:00:00Z", None),
        "code/score.py": Token("team-a-code/src/score.py", "b", "r", "2026-11-29T18:00:00Z", None),
        "code/pkg/util.py": Token("team-a-code/src/pkg/util.py", "b", "r", "2026-11-29T18:00:00Z", None),
        "requirements.txt": Token(
            "team-a/out/_amlops/pj-1/plan/requirements.txt", "b", "r", "2026-11-29T18:00:00Z", None
        ),
    }
    for index, task in enumerate(tasks):
        env = environment(task)
        summary, rows = token(env[SUMMARY_URL_VARIABLE]), token(env[ROWS_URL_VARIABLE])
        assert (summary.blob, summary.permissions) == (f"team-a/out/_amlops/pj-1/results/{index}.summary.json", "rcw")
        assert (rows.blob, rows.permissions) == (f"team-a/out/_amlops/pj-1/results/{index}.txt", "cw")
        manifest = json.loads(env[MINI_BATCH_VARIABLE])
        inputs = {name: token(url) for name, url in manifest["urls"].items()}
        assert {n: (t.blob, t.permissions) for n, t in inputs.items()} == {
            name: (f"team-a/inputs/{name}", "r") for name in batches[index].files
        }
        assert {t.resource for t in [summary, rows, *inputs.values()]} == {"b"}, "never a container token"
        assert "sig=" not in task["commandLine"], "a command line is visible to every task on the node"


async def test_inputs_other_than_input_data_are_read_only_resource_files_named_on_the_command_line(
    layout: Layout,
) -> None:
    """The seed's ``--model ${{inputs.score_model}}``: every blob of the model folder is a resource file of every
    task with its own read-only token (downloaded before the task starts, so before init()), and the command line
    names only its path on the node (the driver makes it absolute), never a token."""
    model = BlobFolder("team-a", "models/m1/")
    lookup = BlobFolder("team-a", "ref/")
    with_model = replace(layout, job_inputs={"score_model": (model, None), "lookup": (lookup, "table.csv")})
    pj = ParallelJobSpec.model_validate(
        {
            **spec().model_dump(by_alias=True, exclude_none=True),
            "inputs": {
                "data": {"uri": f"{AZURITE}/team-a/inputs"},
                "score_model": {"uri": f"{AZURITE}/team-a/models/m1"},
                "lookup": {"uri": f"{AZURITE}/team-a/ref/table.csv", "type": "uri_file"},
                "threshold": {"type": "number", "value": "0.5"},
            },
            "task": {"code": f"{AZURITE}/team-a-code/src", "entryScript": "score.py",
                     "programArguments": "--model ${{inputs.score_model}} --lookup ${{inputs.lookup}} "
                                         "--threshold ${{inputs.threshold}} --data ${{inputs.data}}"},
        }
    )  # fmt: skip
    files = {"score_model": ["model.pkl", "conf/labels.txt"], "lookup": ["table.csv"]}

    tasks, _ = task_bodies(pj, with_model, BlobSigner(AZURITE, ACCOUNT, KEY, EXPIRY), [], False,
                           [MiniBatch(0, "files", files=("a.txt",))], files)  # fmt: skip

    resource = {f["filePath"]: token(f["httpUrl"]) for f in tasks[0]["resourceFiles"]}
    assert {path: (t.blob, t.resource, t.permissions) for path, t in resource.items() if path != "driver.py"} == {
        "job-inputs/score_model/model.pkl": ("team-a/models/m1/model.pkl", "b", "r"),
        "job-inputs/score_model/conf/labels.txt": ("team-a/models/m1/conf/labels.txt", "b", "r"),
        "job-inputs/lookup/table.csv": ("team-a/ref/table.csv", "b", "r"),
    }
    command = tasks[0]["commandLine"]
    assert "sig=" not in command
    assert command.endswith(
        "--path inputs.data=inputs --path inputs.lookup=job-inputs/lookup/table.csv "
        "--path inputs.score_model=job-inputs/score_model -- --model '${{inputs.score_model}}' "
        "--lookup '${{inputs.lookup}}' --threshold 0.5 --data '${{inputs.data}}'"
    ), command


async def test_without_append_row_no_rows_blob_is_writable(layout: Layout) -> None:
    tasks, _ = task_bodies(
        spec(), layout, BlobSigner(AZURITE, ACCOUNT, KEY, EXPIRY), ["score.py"], False, [MiniBatch(0, "files", ("a",))]
    )

    assert ROWS_URL_VARIABLE not in environment(tasks[0])
    assert "requirements.txt" not in {f["filePath"] for f in tasks[0]["resourceFiles"]}


async def test_a_large_manifest_is_a_plan_blob_read_by_its_own_token(layout: Layout) -> None:
    names = tuple(f"file-{i:04d}.txt" for i in range(60))
    tasks, documents = task_bodies(
        spec(), layout, BlobSigner(AZURITE, ACCOUNT, KEY, EXPIRY), [], False, [MiniBatch(7, "files", names)]
    )

    ((name, document),) = documents.items()
    assert name == "minibatches/7.json"
    assert len(document) > INLINE_MANIFEST_BYTES
    assert sorted(json.loads(document)["urls"]) == sorted(names)
    manifest = next(f for f in tasks[0]["resourceFiles"] if f["filePath"] == "minibatch.json")
    assert (token(manifest["httpUrl"]).blob, token(manifest["httpUrl"]).permissions) == (
        "team-a/out/_amlops/pj-1/plan/minibatches/7.json",
        "r",
    )
    assert MINI_BATCH_VARIABLE not in environment(tasks[0])
    assert SUMMARY_URL_VARIABLE in environment(tasks[0])


def test_input_names_are_each_blob_once() -> None:
    csv = [ByteRange("big.csv", start, start + 10, "csv", 5) for start in (5, 15, 25)]
    ranges = (*csv, ByteRange("other.jsonl", 0, 9, "jsonl"))

    assert input_names(MiniBatch(0, "tabular", ranges=ranges)) == ["big.csv", "other.jsonl"]
    assert input_names(MiniBatch(0, "files", files=("a", "b"))) == ["a", "b"]


def test_code_folders_are_bounded() -> None:
    check_code_files(CODE_FILES_LIMIT, "code")
    with pytest.raises(TerminalError) as raised:
        check_code_files(CODE_FILES_LIMIT + 1, "https://acct/c/code/")

    assert raised.value.reason == "CodeFolderTooLarge"


# ----------------------------------------------------------------------------------------------- shared storage


@dataclass(frozen=True)
class SharedCase:
    reason: str
    namespace: str
    allowed: str
    containers: tuple[str, ...]
    refused: str | None  # a fragment of the message, None when allowed


SHARED_CASES = [
    SharedCase("by default no namespace may use it", "team-a", "", ("team-a",), "may not use"),
    SharedCase("a namespace not listed", "team-b", "team-a", ("team-b",), "may not use"),
    SharedCase("its own container", "team-a", "team-a,team-b", ("team-a",), None),
    SharedCase("containers named after it", "team-a", " team-b , team-a ", ("team-a-in", "team-a-out"), None),
    SharedCase("'*' allows every namespace, in its own containers", "x", "*", ("x", "x-code"), None),
    SharedCase("another team's container", "team-a", "*", ("team-a", "team-b"), "not team-b"),
    SharedCase("a prefix without the dash is another name", "team", "*", ("teams",), "not teams"),
    SharedCase("the namespace is a prefix of another namespace's", "team-a", "*", ("team-ab",), "not team-ab"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in SHARED_CASES])
def test_shared_storage(case: SharedCase) -> None:
    refusal = shared_storage_refusal(case.namespace, case.allowed, case.containers)

    if case.refused is None:
        assert refusal is None, case.reason
    else:
        assert refusal is not None, case.reason
        assert case.refused in refusal, case.reason
        assert "spec.storageCredentials" in refusal
