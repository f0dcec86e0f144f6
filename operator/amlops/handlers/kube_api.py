"""A small async Kubernetes client for what the external clients read and delete (``external/ports.py``) and
for the handlers' status writes.

It talks to the same cluster as kopf with the same credentials: :func:`connection_info` is what the
operator's ``@kopf.on.login`` handler uses too (in-cluster service account first, else the kubeconfig).
aiohttp is kopf's own HTTP client, so this adds no dependency where the ``kubernetes`` package added 126 MB
of image for four GETs and one DELETE. A 401 (a rotated service-account token) logs in again once.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import yarl

from amlops import retry_after
from amlops.api.kind import GROUP, VERSION
from amlops.external.ports import SecretVersion
from amlops.reconcile.errors import TerminalError
from amlops.status import REASON_INVALID_SPEC

Login = Callable[[], kopf.ConnectionInfo | None]
THROTTLE_RETRIES = 5
# Connections to the apiserver at most (aiohttp's default is 100). Each TLS connection holds asyncio's 256 KiB
# read buffer: with hundreds of passes writing status at once, an unbounded pool cost ~25 MB at a thousand
# objects (bench/amlcompute_scale.py --trace-memory, asyncio/sslproto.py). Requests past it wait for one.
REQUEST_CONNECTIONS = 24
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
# On a credentials Secret while a resource of its namespace needs it to reach Azure (external/credentials.py).
CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"
MAX_RETRY_AFTER = 10.0


def _retry_after(header: str | None) -> float:
    """The apiserver's Retry-After, at least 0.1 s and at most ``MAX_RETRY_AFTER``; 1 s when absent or garbage."""
    delay = retry_after.seconds(header, MAX_RETRY_AFTER)
    return 1.0 if delay is None else max(0.1, delay)


def connection_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In-cluster when running in a pod, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)


def segment(value: str) -> str:
    """One path segment, percent-encoded. The CRDs already hold every reference field to Kubernetes' name rules;
    this refuses what could still climb out of the segment (``..``, ``/``) whatever the schema said, so a name
    can never make a request reach another namespace or another kind of object."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or any(ord(c) < 0x20 for c in value):
        raise TerminalError(REASON_INVALID_SPEC, f"{value!r} is not a valid Kubernetes object name")
    return quote(value, safe="")


class KubeApiError(Exception):
    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {text[:300]}")
        self.status = status


class KubeApi:
    """Implements ``SecretReader``, ``ObjectReader``, ``ConfigMapReader`` and ``ObjectWriter``, and writes the
    status subresource for the handlers (``bridge.write_outcome``)."""

    def __init__(self, login: Login, timeout: float = 60.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _connect(self) -> aiohttp.ClientSession:
        info = self._login()
        if info is None:
            raise kopf.LoginError("no Kubernetes credentials: neither a service account nor a kubeconfig")
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=REQUEST_CONNECTIONS),
            headers=info.as_http_headers(),  # bearer token or basic auth; client certificates are in the context
            timeout=self._timeout,
            trust_env=info.trust_env,
        )
        return self._session

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """(status, parsed JSON body); 404 and 409 are returned for the caller to judge, others raise.

        A 401 (credentials rotated) logs in again once. A 429 (API priority and fairness, or an apiserver whose
        storage is still initialising) is retried after the Retry-After the apiserver names, a few times. A
        connection the apiserver closed while it sat idle in the pool (``ServerDisconnectedError``, a broken pipe)
        is retried once on a fresh one: every request here may be sent twice (GETs; a status merge-patch of the
        same content; a finalizer strategic-merge patch; a DELETE with a uid precondition, whose repeat is a 404).
        """
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else None
        relogged, throttled, reconnected = False, 0, False
        while True:
            session = self._session or self._connect()
            # encoded=True: the path's segments are escaped already; yarl must neither re-quote nor normalise them.
            url = yarl.URL(self._server + path, encoded=True)
            try:
                request = await session.request(method, url, data=data, headers=headers)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if reconnected:
                    raise
                reconnected = True
                continue
            async with request as response:
                text = await response.text()
                if response.status == 401 and not relogged:
                    relogged = True
                    await self.close()  # credentials rotated: log in again and retry once
                    continue
                if response.status == 429 and throttled < THROTTLE_RETRIES:
                    throttled += 1
                    await asyncio.sleep(_retry_after(response.headers.get("Retry-After")))
                    continue
                if response.status >= 400 and response.status not in (404, 409):
                    raise KubeApiError(method, path, response.status, text)
                return response.status, json.loads(text) if text else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # SecretReader
    async def read(self, namespace: str, name: str, *, protect: bool = False) -> dict[str, str] | None:
        path = _core("secrets", namespace, name)
        status, secret = await self._request("GET", path)
        if status == 404:
            return None
        meta = secret.get("metadata") or {}
        if (
            protect
            and CREDENTIALS_FINALIZER not in (meta.get("finalizers") or [])
            and not meta.get("deletionTimestamp")
        ):
            # Strategic merge adds to metadata.finalizers (a merge list) without replacing the others'. A Secret
            # being deleted cannot take new finalizers, and needs none: its data stays until ours is removed.
            patch = {"metadata": {"finalizers": [CREDENTIALS_FINALIZER]}}
            await self._request("PATCH", path, patch, STRATEGIC_MERGE)
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def version(self, namespace: str, name: str) -> SecretVersion | None:
        status, secret = await self._request("GET", _core("secrets", namespace, name))
        if status == 404:
            return None
        meta = secret.get("metadata") or {}
        return SecretVersion(str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))

    async def release_secret(self, namespace: str, name: str) -> None:
        """Remove the in-use finalizer (no other resource needs the Secret); a Secret being deleted then goes."""
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [CREDENTIALS_FINALIZER]}}
        await self._request("PATCH", _core("secrets", namespace, name), patch, STRATEGIC_MERGE)

    # ConfigMapReader
    async def read_config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        status, found = await self._request("GET", _core("configmaps", namespace, name))
        if status == 404:
            return None
        files = {k: v.encode() for k, v in (found.get("data") or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()})
        return files

    # ObjectReader
    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        status, obj = await self._request("GET", _custom(plural, namespace, name))
        return None if status == 404 else dict(obj)

    async def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        status, result = await self._request("GET", _custom(plural, namespace))
        return [] if status == 404 else [dict(item) for item in result.get("items") or []]

    # ObjectWriter
    async def delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        # 404: already gone; 409: the uid precondition failed, a newer object of that name is not ours to delete.
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        await self._request("DELETE", _custom(plural, namespace, name), options)

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge ``status`` into the object's status subresource (a None value removes a field); the status as
        stored, or None when the object is gone."""
        path = _custom(plural, namespace, name) + "/status"
        code, obj = await self._request("PATCH", path, {"status": status}, "application/merge-patch+json")
        return None if code == 404 else dict(obj.get("status") or {})


def _core(plural: str, namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/{plural}/{segment(name)}"


def _custom(plural: str, namespace: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{segment(namespace)}/{segment(plural)}"
    return f"{path}/{segment(name)}" if name else path
