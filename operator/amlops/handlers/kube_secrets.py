"""Reads Secrets for the external clients (credentials, admin passwords) with the kubernetes client."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from amlops.api.kind import GROUP, VERSION


def load_kube_config() -> None:
    """The same cluster kopf talks to: in-cluster when running in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


class KubernetesSecretReader:
    def __init__(self) -> None:
        self._api = client.CoreV1Api()

    async def read(self, namespace: str, name: str) -> dict[str, str] | None:
        def read_sync() -> Any:
            return self._api.read_namespaced_secret(name, namespace)

        try:
            secret = await asyncio.to_thread(read_sync)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data = secret.data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}


class KubernetesObjectReader:
    """Reads amlops custom resources (a ParallelJob reads the BatchCompute it runs on) and ConfigMaps (a
    ParallelJob's code), and deletes amlops custom resources (ttlSecondsAfterFinished)."""

    def __init__(self) -> None:
        self._api = client.CustomObjectsApi()
        self._core = client.CoreV1Api()

    async def read_config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        def read_sync() -> Any:
            return self._core.read_namespaced_config_map(name, namespace)

        try:
            found = await asyncio.to_thread(read_sync)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        files = {k: v.encode() for k, v in (found.data or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (found.binary_data or {}).items()})
        return files

    async def delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        def delete_sync() -> Any:
            body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
            return self._api.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body=body)

        try:
            await asyncio.to_thread(delete_sync)
        except ApiException as e:
            if e.status not in (404, 409):  # gone, or a newer object of that name (the uid precondition failed)
                raise

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        def read_sync() -> Any:
            return self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

        try:
            obj = await asyncio.to_thread(read_sync)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(obj)

    async def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        def list_sync() -> Any:
            return self._api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)

        result = await asyncio.to_thread(list_sync)
        return [dict(item) for item in result.get("items", [])]
