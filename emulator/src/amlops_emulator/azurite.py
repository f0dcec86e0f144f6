"""Azurite's blob service as a child process: blob storage for tests and the demo is Azurite, not ours.

``azurite_blob(location)`` starts ``azurite-blob`` (npm package pinned in ``tools/node``) on a free loopback
port, waits until it answers HTTP, yields the endpoint and the well-known development account, and always
stops it (its whole process group). ``tools/node/node_modules`` is installed with ``npm ci`` when missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Azurite's documented development account; public, like the Storage Emulator's.
DEVSTORE_ACCOUNT = "devstoreaccount1"
DEVSTORE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# emulator/src/amlops_emulator/azurite.py → repository root → tools/node
DEFAULT_TOOLS_DIR = Path(__file__).resolve().parents[3] / "tools" / "node"
START_SECONDS = 60.0


@dataclass(frozen=True)
class Azurite:
    blob_endpoint: str  # http://127.0.0.1:{port}/devstoreaccount1
    account_name: str = DEVSTORE_ACCOUNT
    account_key: str = DEVSTORE_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )


def ensure_installed(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """The ``azurite-blob`` executable, running ``npm ci`` first if ``node_modules`` is missing."""
    binary = tools_dir / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed; it is needed to install Azurite from tools/node")
        subprocess.run(
            [npm, "ci", "--prefix", str(tools_dir), "--no-audit", "--no-fund"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return binary


@contextlib.contextmanager
def azurite_blob(
    location: Path,
    tools_dir: Path = DEFAULT_TOOLS_DIR,
    *,
    in_memory: bool = False,
    tls: tuple[Path, Path, Path] | None = None,
) -> Iterator[Azurite]:
    """Azurite's blob service on a free port, keeping blobs under ``location`` (its log is there too), or in
    memory with ``in_memory`` (for benches: no disk in the measurement). ``tls`` (certificate, key, CA): serve
    HTTPS with that certificate (Azurite's ``--cert``/``--key``), checked against the CA while waiting."""
    binary = ensure_installed(tools_dir)
    location.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = (location / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *(["--inMemoryPersistence"] if in_memory else ["--location", str(location)]),
            *(["--cert", str(tls[0]), "--key", str(tls[1])] if tls else []),
            *("--skipApiVersionCheck", "--loose", "--silent"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # node may start helpers: stop the whole group
    )
    try:
        endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}/{DEVSTORE_ACCOUNT}"
        context = ssl.create_default_context(cafile=str(tls[2])) if tls else None
        _wait_until_answering(process, f"{endpoint}?comp=list", context)
        yield Azurite(blob_endpoint=endpoint)
    finally:
        _stop(process)
        log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (an unsigned list is refused with 403) means it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"azurite-blob did not answer {url} within {START_SECONDS} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Azurite's graceful shutdown waits for idle keep-alive connections; its data is throwaway, so it gets a
    # second to exit on SIGTERM and is then killed.
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
