"""Which Azure credential a resource acts with, and which Secrets it depends on (issue 13, points 2, 3, 11).

Precedence, after Azure Service Operator's credential scopes: the resource's own ``spec.credentials.secretRef``,
then the namespace's default Secret (``AMLOPS_DEFAULT_CREDENTIALS_SECRET``), then the operator's own identity —
only in the namespaces ``AMLOPS_OPERATOR_IDENTITY_NAMESPACES`` lets it serve. Anything else is ``Stalled``
``CredentialsMissing``: a namespace never acts as the operator by accident.

A credentials Secret a resource uses is protected with the finalizer ``amlops.io/credentials-in-use`` while any
resource of its namespace uses it, so deleting a namespace (which deletes the Secrets and the resources at once)
still lets every resource delete what it owns in Azure with the credentials it was created with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from amlops.azure.clients import DEFAULT_CREDENTIAL, AzureClients, credential_key
from amlops.azure.ml import MlClient
from amlops.external.ports import SecretReader
from amlops.reconcile.errors import TerminalError
from amlops.settings import Settings
from amlops.status import REASON_CREDENTIALS_MISSING


@dataclass(frozen=True)
class Credential:
    """``key`` names the client cache entry; ``secret`` is None for the operator's own identity."""

    key: str
    secret: Mapping[str, str] | None


def namespace_listed(patterns: str, namespace: str) -> bool:
    """Whether ``namespace`` matches one of ``patterns`` (comma-separated globs, ``*`` for all, empty for none):
    how every setting that shares an operator-wide resource with some namespaces names them."""
    return any(fnmatchcase(namespace, p.strip()) for p in patterns.split(",") if p.strip())


def operator_identity_serves(settings: Settings, namespace: str) -> bool:
    """Whether ``namespace`` may act with the operator's own identity."""
    return namespace_listed(settings.operator_identity_namespaces, namespace)


def secret_names(spec: Mapping[str, Any], default_secret: str | None) -> set[str]:
    """The Secrets a resource needs to reach Azure, from its spec as stored (any kind): its ARM credentials
    (its own or the namespace default) and the Batch shared key. Pure: the handlers use it to decide whether a
    Secret is still in use."""
    names: set[str] = set()
    ref = ((spec.get("credentials") or {}).get("secretRef") or {}).get("name")
    if ref:
        names.add(str(ref))
    elif default_secret and "workspace" in spec:
        names.add(default_secret)
    shared_key = ((spec.get("batchCredentials") or {}).get("sharedKeySecretRef") or {}).get("name")
    if shared_key:
        names.add(str(shared_key))
    return names


def in_use(objects: Iterable[Mapping[str, Any]], secret: str, default_secret: str | None, but: str) -> bool:
    """Whether any of ``objects`` (amlops resources of one namespace) other than uid ``but`` needs ``secret``."""
    return any(
        (o.get("metadata") or {}).get("uid") != but and secret in secret_names(o.get("spec") or {}, default_secret)
        for o in objects
    )


async def secret_value(
    secrets: SecretReader, namespace: str, name: str, key: str, reason: str, *, protect: bool = False
) -> str:
    """One key of a Secret the spec names; ``reason`` (Stalled) says which is missing, the Secret or its key."""
    data = await secrets.read(namespace, name, protect=protect)
    if data is None:
        raise TerminalError(reason, f"Secret {namespace}/{name} not found")
    if key not in data:
        raise TerminalError(reason, f"Secret {namespace}/{name} has no key {key!r}")
    return data[key]


async def resolve(clients: AzureClients, secrets: SecretReader, namespace: str, spec: Any) -> Credential:
    settings = clients.settings
    ref = spec.credentials.secret_ref if spec.credentials else None
    if ref is not None:
        data = await secrets.read(namespace, ref.name, protect=True)
        if data is None:
            raise TerminalError(
                REASON_CREDENTIALS_MISSING, f"Secret {namespace}/{ref.name} (spec.credentials) not found"
            )
        return Credential(credential_key(namespace, ref.name, data), data)
    default = settings.default_credentials_secret
    if default:
        data = await secrets.read(namespace, default, protect=True)
        if data is not None:
            return Credential(credential_key(namespace, default, data), data)
    if operator_identity_serves(settings, namespace):
        return Credential(DEFAULT_CREDENTIAL, None)
    choices = "set spec.credentials.secretRef"
    if default:
        choices += f", or create the Secret {default} in namespace {namespace}"
    raise TerminalError(
        REASON_CREDENTIALS_MISSING,
        f"namespace {namespace} has no Azure credentials: {choices} (the operator's own identity does not serve "
        "this namespace: AMLOPS_OPERATOR_IDENTITY_NAMESPACES, chart value azure.operatorIdentityNamespaces)",
    )


async def connect(
    clients: AzureClients, secrets: SecretReader, namespace: str, spec: Any, user: str | None = None
) -> tuple[str, MlClient]:
    """The ML client for a resource's credentials; ``user`` (the object's uid) holds it until the object is gone."""
    credential = await resolve(clients, secrets, namespace, spec)
    return credential.key, clients.ml(credential.key, spec.workspace.subscription_id, credential.secret, user=user)
