"""A real Kubernetes control plane on loopback: etcd + kube-apiserver built by ``tools/testbed/build``.

Used by the test suite (one per session) and by ``amlops demo``. Both binaries come from a cache outside the
repository (``~/.cache/amlops-testbed/<version>``; ``AMLOPS_TESTBED_DIR`` overrides it). The apiserver runs with
RBAC and client-certificate authentication; the admin certificate is in ``system:masters``. No
kube-controller-manager runs, so namespaces are never deleted and ownerReference GC does not happen: callers
must not rely on either.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes.util
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amlops_emulator.pki import Authority, cert_pem, key_pem

T = TypeVar("T")

K8S_VERSION = os.environ.get("AMLOPS_K8S_VERSION", "v1.37.2")
REPO_ROOT = Path(__file__).resolve().parents[3]


def cache_dir() -> Path:
    if explicit := os.environ.get("AMLOPS_TESTBED_DIR"):
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "amlops-testbed" / K8S_VERSION


def ensure_built(build_script: Path | None = None) -> Path:
    """Run the build script (a no-op when the cache is complete) and return the binaries' folder."""
    script = build_script or REPO_ROOT / "tools" / "testbed" / "build"
    out = subprocess.run([str(script), "all"], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Pki:
    ca_pem: bytes
    serving_cert: bytes
    serving_key: bytes
    admin_cert: bytes
    admin_key: bytes
    sa_public: bytes
    sa_private: bytes


def _make_pki() -> _Pki:
    authority = Authority.create("amlops-testbed-ca", days=2)
    serving_cert, serving_key = authority.issue("kube-apiserver", server_hosts=["kubernetes.default.svc"])
    # system:masters: the apiserver authorizes this client for everything (RBAC's built-in superuser group).
    admin_cert, admin_key = authority.issue("amlops-admin", organization="system:masters")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _Pki(
        ca_pem=cert_pem(authority.cert),
        serving_cert=serving_cert,
        serving_key=serving_key,
        admin_cert=admin_cert,
        admin_key=admin_key,
        sa_public=sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        sa_private=key_pem(sa_key),
    )


@dataclass
class Testbed:
    """A running etcd + kube-apiserver; ``kubeconfig`` grants cluster-admin."""

    workdir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    client_cert: Path
    client_key: Path
    etcd_data: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            ["kubectl", *args],
            env=self.env(),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """(status, body); (0, b"") when the apiserver does not answer within ``timeout`` (or is not listening:
        the short default serves readiness probes)."""
        try:
            with urllib.request.urlopen(self.server + path, context=self.ssl_context(), timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()
        except OSError:  # not listening yet (URLError is an OSError)
            return 0, b""

    def stop(self) -> None:
        # apiserver first, so it does not log etcd connection errors while shutting down.
        for proc in reversed(self.processes):
            terminate(proc)
        self.processes.clear()
        shutil.rmtree(self.etcd_data, ignore_errors=True)


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group, wait up to ``grace`` seconds, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def peak_rss_mb(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), in MiB."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    """A live process's resident memory now (VmRSS), in MiB."""
    return _status_mb(pid, "VmRSS")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a live process has used so far, in seconds."""
    # /proc/<pid>/stat: the command may contain spaces, so count fields after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


WORKDIR_TAG = "AMLOPS_TESTBED_WORKDIR"


def spawn(args: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` with stdout and stderr appended to ``log``, this environment updated with ``env``."""
    # Own process group: terminate() kills the whole group, so nothing outlives the test session. The work
    # directory in the environment tags every process, so a leak check can find them all.
    full_env = {**os.environ, **(env or {}), WORKDIR_TAG: str(log.parent)}
    with log.open("ab") as out:
        return subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=full_env)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains ``text`` (a work directory): leak checks."""
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if "zombie" in (proc / "status").read_text().lower():
                continue
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(int(proc.name))
    return found


def wait_up(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``ready`` until it is true; fail at once, with the log's tail, if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{_tail(log)}")


def http_ok(url: str) -> bool:
    """``url`` answers 200 now (a liveness or readiness probe); anything else, including no listener, is no."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:  # refused, reset, timed out, or an HTTP error status (HTTPError is an OSError)
        return False


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(bin_dir: Path, workdir: Path | None = None, timeout: float = 120.0) -> Testbed:
    """Start etcd and kube-apiserver on free loopback ports; return once ``/readyz`` answers ok."""
    work = workdir or Path(tempfile.mkdtemp(prefix="amlops-testbed-"))
    work.mkdir(parents=True, exist_ok=True)
    pki = _make_pki()
    files = {
        "ca.crt": pki.ca_pem,
        "serving.crt": pki.serving_cert,
        "serving.key": pki.serving_key,
        "admin.crt": pki.admin_cert,
        "admin.key": pki.admin_key,
        "sa.pub": pki.sa_public,
        "sa.key": pki.sa_private,
    }
    for name, data in files.items():
        (work / name).write_bytes(data)
        (work / name).chmod(0o600)

    # etcd's data on tmpfs when available: the apiserver fsyncs a lot and the tests do not need durability.
    shm = Path("/dev/shm")
    etcd_data = Path(tempfile.mkdtemp(prefix="amlops-etcd-", dir=shm if shm.is_dir() else work))
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    bed = Testbed(
        workdir=work,
        server=f"https://127.0.0.1:{api_port}",
        kubeconfig=work / "kubeconfig",
        ca_file=work / "ca.crt",
        client_cert=work / "admin.crt",
        client_key=work / "admin.key",
        etcd_data=etcd_data,
    )
    try:
        etcd_log = work / "etcd.log"
        etcd = spawn(
            [
                str(bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{client_port}",
                f"--advertise-client-urls=http://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            etcd_log,
        )
        bed.processes.append(etcd)
        wait_up("etcd", lambda: _port_open(client_port), etcd, etcd_log, timeout)

        api_log = work / "kube-apiserver.log"
        api = spawn(
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={work / 'serving.crt'}",
                f"--tls-private-key-file={work / 'serving.key'}",
                f"--client-ca-file={work / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={work / 'sa.pub'}",
                f"--service-account-signing-key-file={work / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                # No controller-manager mints ServiceAccount tokens, so the admission plugin would reject pods.
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                f"--cert-dir={work / 'certs'}",
                "--v=1",
            ],
            api_log,
        )
        bed.processes.append(api)
        _write_kubeconfig(bed, pki)
        wait_up("kube-apiserver", lambda: bed.get("/readyz")[0] == 200, api, api_log, timeout)
    except BaseException:
        bed.stop()
        raise
    return bed


def _write_kubeconfig(bed: Testbed, pki: _Pki) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "amlops-testbed",
                "cluster": {"server": bed.server, "certificate-authority-data": b64(pki.ca_pem)},
            }
        ],
        "users": [
            {
                "name": "amlops-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "amlops-testbed", "context": {"cluster": "amlops-testbed", "user": "amlops-admin"}}],
        "current-context": "amlops-testbed",
    }
    bed.kubeconfig.write_text(yaml.safe_dump(config))
    bed.kubeconfig.chmod(0o600)


def _lists(bed: Testbed, path: str) -> bool:
    return bed.get(path)[0] == 200


def install_crds(bed: Testbed, crd_dir: Path, timeout: float = 60.0) -> list[str]:
    """``kubectl apply`` the CRDs and wait until each is Established and its resource serves a list.

    Established is not enough: the apiserver answers a list of a new resource 429 "storage is (re)initializing"
    until its watch cache is ready, and kopf, started then, retries its watches after a back-off of seconds, so a
    test or bench that applied objects at once would measure that back-off."""
    bed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
    crds = [yaml.safe_load(p.read_text()) for p in sorted(crd_dir.glob("*.yaml"))]
    names = [str(crd["metadata"]["name"]) for crd in crds]
    bed.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", *(f"crd/{n}" for n in names))
    for crd in crds:
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v.get("served"))
        path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}?limit=1"
        eventually(functools.partial(_lists, bed, path), timeout=timeout, interval=0.1, what=f"a list of {path}")
    return names


@contextlib.contextmanager
def running(bin_dir: Path | None = None, workdir: Path | None = None) -> Iterator[Testbed]:
    bed = start(bin_dir or ensure_built(), workdir)
    try:
        yield bed
    finally:
        bed.stop()


def apiserver_requests(bed: Testbed, resources: Sequence[str]) -> dict[str, int]:
    """The apiserver's ``apiserver_request_total`` for ``resources`` (plurals), summed by resource[/subresource]
    and verb since it started: ``{"amlcomputes/status PATCH": 2}``. What a test or bench counts writes by: the
    apiserver's own counter, which a no-op write moves too (a watch would not see one)."""
    _, body = bed.get("/metrics")
    totals: dict[str, int] = {}
    for line in body.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        inner = line[line.index("{") + 1 : line.rindex("}")]
        labels = {k: v.strip('"') for k, v in (part.split("=", 1) for part in inner.split(",") if "=" in part)}
        if labels.get("resource") not in resources:
            continue
        resource = "/".join(filter(None, (labels["resource"], labels.get("subresource"))))
        key = f"{resource} {labels.get('verb', '')}"
        totals[key] = totals.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return totals


def discovery_has(bed: Testbed, group_version: str, plural: str) -> bool:
    status, body = bed.get(f"/apis/{group_version}")
    return status == 200 and any(r["name"] == plural for r in json.loads(body).get("resources", []))


def get_object(bed: Testbed, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    out = bed.kubectl("get", resource, name, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; a deadline, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout:.0f}s (last: {last!r})")


def offline_azure_env() -> dict[str, str]:
    """Azure endpoints on a closed loopback port and a static token: an operator started for a test never
    leaves this machine. Unconfigured, it would use DefaultAzureCredential, which probes the instance
    metadata address, and the public Azure endpoints."""
    closed = f"https://127.0.0.1:{free_port()}"
    return {
        "AMLOPS_ARM_ENDPOINT": closed,
        "AMLOPS_BATCH_ENDPOINT_TEMPLATE": closed,
        "AMLOPS_BLOB_ENDPOINT": closed,
        "AMLOPS_STATIC_TOKEN": "offline",
        # Tests and the demo are one tenant: their resources may act with the operator's (static) identity.
        "AMLOPS_OPERATOR_IDENTITY_NAMESPACES": "*",
    }


def ml_storage_env(endpoints: Mapping[str, Any]) -> dict[str, str]:
    """What a process's environment must say for azure-ai-ml's storage clients, which it builds without the
    MLClient's keyword arguments (the operator's code upload, a test's MLClient): reach the emulator's storage
    account, ``https://{account}.blob.{suffix}:{port}``, through its loopback proxy (ARM calls to 127.0.0.1 go
    direct) and trust the emulator's CA, which signed Azurite's certificate."""
    storage = endpoints.get("storage") or {}
    if not storage.get("proxyUrl"):
        raise ValueError("the emulator runs without --azurite: it has no storage account to reach")
    return {"HTTPS_PROXY": storage["proxyUrl"], "NO_PROXY": "127.0.0.1", "REQUESTS_CA_BUNDLE": endpoints["caFile"]}


@dataclass
class EmulatorRun:
    """``amlops emulator`` as a child process (ARM over HTTPS + Batch), as tests, the demo and benches use it."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    log: Path
    endpoints: dict[str, Any]

    def operator_env(self, **overrides: str) -> dict[str, str]:
        """Everything an operator needs to use this emulator, on top of endpoints that lead nowhere, so nothing
        left unset reaches the network."""
        return {
            **offline_azure_env(),
            "AMLOPS_ARM_ENDPOINT": self.endpoints["armUrl"],
            "AMLOPS_CA_BUNDLE": self.endpoints["caFile"],
            "AMLOPS_STATIC_TOKEN": self.endpoints["token"],
            "AMLOPS_AUTHORITY_HOST": self.endpoints["authorityHost"],
            # The https site: bearer (Microsoft Entra) tokens go only over TLS, as on Azure.
            "AMLOPS_BATCH_ENDPOINT_TEMPLATE": f"{self.endpoints['batchTlsUrl']}/{{account}}",
            **overrides,
        }

    def control(self, method: str, path: str) -> Any:
        """A call to the emulator's ``/_emulator`` control API (statistics, faults, clock)."""
        request = urllib.request.Request(self.endpoints["controlUrl"] + path, method=method)
        context = ssl.create_default_context(cafile=self.endpoints["caFile"])
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None

    def operations(self) -> dict[str, int]:
        """Calls per operation since the statistics were last reset."""
        return {name: op["count"] for name, op in self.control("GET", "/stats")["operations"].items()}

    def stop(self) -> None:
        terminate(self.proc, grace=15)


def start_emulator(state_dir: Path, *extra_args: str, speed: float = 60.0, timeout: float = 30.0) -> EmulatorRun:
    """Start the emulator on free ports; return once ``endpoints.json`` says it listens."""
    log = state_dir.with_suffix(".log")
    args = [sys.executable, "-m", "amlops_emulator", "--arm-port", "0", "--batch-port", "0", "--batch-tls-port", "0"]
    args += ["--state-dir", str(state_dir), "--speed", str(speed), *extra_args]
    proc = spawn(args, log)
    endpoints_file = state_dir / "endpoints.json"
    try:
        wait_up("the emulator", endpoints_file.exists, proc, log, timeout)
        endpoints = json.loads(endpoints_file.read_text())
    except BaseException:
        terminate(proc)
        raise
    return EmulatorRun(proc, state_dir, log, endpoints)


OPERATOR_COMMAND = (sys.executable, "-m", "amlops", "run")
# The memory allocator the operator's image runs with: its Dockerfile sets these (tests/unit/test_image_env.py
# holds the two together). An operator started here runs with it too where this machine has jemalloc
# (tools/debian-packages installs it), so that tests and benches run the operator as it ships.
IMAGE_ALLOCATOR_ENV = {
    "LD_PRELOAD": "libjemalloc.so.2",
    "PYTHONMALLOC": "malloc",
    "MALLOC_CONF": "background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0",
}


@functools.cache
def _has_jemalloc() -> bool:
    # find_library runs `ldconfig -p`: once a process, not once an operator started.
    return ctypes.util.find_library("jemalloc") is not None


def allocator_env() -> dict[str, str]:
    """``IMAGE_ALLOCATOR_ENV`` if this machine has jemalloc, else nothing (CPython's allocator and glibc's malloc,
    as an operator installed with pip runs)."""
    return dict(IMAGE_ALLOCATOR_ENV) if _has_jemalloc() else {}


def allocator_name() -> str:
    """Which allocator an operator started here runs on, for a bench's JSON."""
    return "jemalloc" if allocator_env() else "CPython and glibc"


@dataclass
class OperatorRun:
    """``amlops run`` as a child process against a test bed, as tests, the demo and benches run it."""

    proc: subprocess.Popen[bytes]
    log: Path
    liveness: str | None
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_live(self, timeout: float = 60.0) -> None:
        """Until kopf serves liveness (its startup handlers are done); at once if the operator exits."""
        if self.liveness is not None:
            liveness = self.liveness
            wait_up("the operator", lambda: http_ok(liveness), self.proc, self.log, timeout)

    def stop(self, sig: int = signal.SIGTERM, *, grace: float = 30.0) -> int:
        """``sig`` to its process group (SIGKILL: a crash), SIGKILL after ``grace`` seconds; its exit code."""
        terminate(self.proc, grace=grace, sig=sig)
        return self.proc.returncode

    def __enter__(self) -> OperatorRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_operator(
    bed: Testbed,
    log: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    liveness: bool = True,
    metrics: bool = True,
    wait: bool = True,
    command: Sequence[str] = OPERATOR_COMMAND,
) -> OperatorRun:
    """Start the operator against ``bed`` with ``args`` (namespaces, ``--verbose`` ...), its log in ``log``.

    Azure is out of reach (``offline_azure_env``) unless ``env`` says otherwise (``EmulatorRun.operator_env``).
    Liveness and /metrics listen on free loopback ports (``liveness``/``metrics`` False: off), so operators
    of concurrent runs never collide. ``wait``: return once live. ``command``: how to run ``amlops run``
    (the image test runs it inside a container)."""
    liveness_url = f"http://127.0.0.1:{free_port()}/healthz" if liveness else None
    metrics_port = free_port() if metrics else 0
    argv = [*command, "--liveness", liveness_url or "off", "--metrics-port", str(metrics_port), *args]
    allocator = allocator_env() if command[0] == sys.executable else {}  # a container has its image's own
    proc = spawn(argv, log, {**bed.env(), **allocator, **offline_azure_env(), **(env or {})})
    run = OperatorRun(proc, log, liveness_url, metrics_port)
    if wait:
        try:
            run.wait_live()
        except BaseException:
            run.stop()
            raise
    return run
