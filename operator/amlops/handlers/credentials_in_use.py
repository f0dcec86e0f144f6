"""The in-use protection of credentials Secrets (``external/credentials.py``): released once the last resource
of the namespace that needs a Secret has let go of Azure."""

from __future__ import annotations

import logging

import kopf

from amlops.api import KINDS
from amlops.external.credentials import in_use, secret_names
from amlops.handlers.kube_api import KubeApi

log = logging.getLogger(__name__)


async def release_unused(kube: KubeApi, body: kopf.Body, default_secret: str | None) -> None:
    """After ``body`` released its finalizer: remove the in-use finalizer from each Secret it needed that no
    other resource of its namespace needs. A resource created meanwhile protects the Secret again on its pass."""
    namespace, uid = body.metadata.namespace or "", body.metadata.uid or ""
    wanted = secret_names(body.get("spec") or {}, default_secret)
    if not wanted:
        return
    others = [obj for kind in KINDS for obj in await kube.list(kind.plural(), namespace)]
    for name in sorted(wanted):
        if not in_use(others, name, default_secret, but=uid):
            await kube.release_secret(namespace, name)
            log.debug("Secret %s/%s is no longer in use by amlops", namespace, name)
