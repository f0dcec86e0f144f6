"""Shared SDK clients: one per (credential, subscription), closed when no object uses them any more (``user=``
names the object: :mod:`amlops.azure.leases`) or when the operator stops."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from azure.batch.aio import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AioHttpTransport

from amlops.azure import credentials
from amlops.azure.leases import Leases
from amlops.azure.location_reads import LocationReads
from amlops.azure.ml import MlClient, WorkspaceId
from amlops.azure.pacing import READS, buckets
from amlops.azure.pipeline import CappedRetryPolicy, ThrottleBudget, batch_accounting, env_settings_in_use
from amlops.azure.pollers import Listing, Pollers, WorkspacePoller
from amlops.settings import Settings

if TYPE_CHECKING:  # azure-ai-ml is imported only on the way to an Azure ML job (tests/unit/test_lazy_imports.py)
    from amlops.azure.ml_jobs import MlJobs

DEFAULT_CREDENTIAL = "default"
# Connections of the shared transport at most (aiohttp's default is 100). Each TLS connection holds asyncio's
# 256 KiB read buffer; ARM requests are paced to the subscription's budget anyway (pacing.py) and a Batch job's
# tasks go 8 collections at a time (batch_jobs.add_tasks).
ARM_CONNECTIONS = 32
# ("credential", key), ("ml", key, subscription), ("batch", endpoint, key id), ("poller", key, workspace),
# ("ml-jobs", key, workspace), ("job-poller", key, workspace)
Entry = tuple[str, ...]


async def _listed(jobs: Awaitable[list[dict[str, Any]]]) -> Listing:
    return Listing.of(await jobs)


def credential_key(secret_namespace: str, secret_name: str, data: Mapping[str, str]) -> str:
    # The Secret's content is part of the key, so a rotated secret gets a new client.
    digest = hashlib.sha256("\0".join(f"{k}={data[k]}" for k in sorted(data)).encode()).hexdigest()[:16]
    return f"secret:{secret_namespace}/{secret_name}:{digest}"


# Workspaces' compute listings may take this much of the reads amlops may make (its share of the refill of ARM's
# read bucket); the rest is for the passes' own reads (a GET after a write, usages, quotas, nodes).
LISTING_READ_SHARE = 0.5


class AzureClients:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.budget = ThrottleBudget()
        read_refill = buckets(settings.arm_buckets)[READS].refill_per_second * settings.arm_budget_share
        self.pollers = Pollers(settings.poll_floor_seconds, read_refill * LISTING_READ_SHARE)
        # Azure ML jobs of a workspace, listed once for every job object (and AmlCompute activeRuns) that reads it.
        self.job_pollers = Pollers(settings.poll_floor_seconds)
        self.locations = LocationReads(settings)
        self._credentials: dict[str, AsyncTokenCredential] = {}
        self._ml: dict[tuple[str, str], MlClient] = {}
        self._batch: dict[tuple[str, str], BatchClient] = {}
        self._ml_jobs: dict[tuple[str, str], MlJobs] = {}
        self._ml_jobs_lock = asyncio.Lock()
        self._shared_transport: AioHttpTransport | None = None
        self._session: aiohttp.ClientSession | None = None
        self.leases = Leases[Entry]()
        self._unused: list[Entry] = []  # released, closed on the next release() or close()

    def credential(self, key: str, secret: Mapping[str, str] | None = None) -> AsyncTokenCredential:
        cred = self._credentials.get(key)
        if cred is None:
            if secret is None:
                cred = credentials.default(self.settings.static_token)
            else:
                ca = str(self.settings.ca_bundle) if self.settings.ca_bundle else None
                cred = credentials.from_secret(secret, self.settings.authority_host, ca)
            self._credentials[key] = cred
        return cred

    def _transport(self) -> AioHttpTransport | None:
        """One transport trusting ``AMLOPS_CA_BUNDLE``, built once.

        Given ``connection_verify=<path>``, azure-core would build a new SSLContext (and read the CA file)
        for every request; a session whose connector holds one context avoids that. Without a CA bundle the
        SDK's default transport (system trust store) is right.
        """
        if not self.settings.ca_bundle:
            return None
        if self._shared_transport is None:
            context = ssl.create_default_context(cafile=str(self.settings.ca_bundle))
            # A session of our own reads proxy variables and .netrc only when told to (the SDK's transport does it
            # with use_env_settings): a cluster behind a proxy with its own CA must still go through its proxy.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context, limit=ARM_CONNECTIONS), trust_env=env_settings_in_use()
            )
            self._shared_transport = AioHttpTransport(session=session, session_owner=False)
            self._session = session
        return self._shared_transport

    def _hold(self, user: str | None, slot: str, entry: Entry) -> None:
        if user:
            self._unused += self.leases.hold(user, slot, entry)

    async def release(self, user: str) -> None:
        """Object ``user`` is gone: close and drop what only it used."""
        self._unused += self.leases.release(user)
        unused, self._unused = self._unused, []
        for entry in unused:
            if self.leases.holders(entry) == 0:
                await self._evict(entry)

    async def _evict(self, entry: Entry) -> None:
        kind, *key = entry
        closable: MlClient | BatchClient | AsyncTokenCredential | None = None
        if kind == "ml":
            closable = self._ml.pop((key[0], key[1]), None)
        elif kind == "batch":
            closable = self._batch.pop((key[0], key[1]), None)
        elif kind == "credential" and not any(k == key[0] for k, _ in [*self._ml, *self._ml_jobs]):
            closable = self._credentials.pop(key[0], None)
        elif kind == "poller":
            self.pollers.forget((key[0], key[1]))
        elif kind == "ml-jobs":
            self._ml_jobs.pop((key[0], key[1]), None)  # MLClient holds no connection of its own to close
        elif kind == "job-poller":
            self.job_pollers.forget((key[0], key[1]))
        if closable is not None:
            await closable.close()

    def ml(
        self, key: str, subscription_id: str, secret: Mapping[str, str] | None = None, *, user: str | None = None
    ) -> MlClient:
        self._hold(user, "ml", ("ml", key, subscription_id))
        self._hold(user, "credential", ("credential", key))
        client = self._ml.get((key, subscription_id))
        if client is None:
            client = MlClient(
                self.credential(key, secret), subscription_id, self.settings, self.budget, transport=self._transport()
            )
            self._ml[(key, subscription_id)] = client
        return client

    def workspace_poller(self, key: str, ml: MlClient, ws: WorkspaceId, *, user: str | None = None) -> WorkspacePoller:
        """The shared poller of one workspace, as seen with one credential."""
        self._hold(user, "poller", ("poller", key, ws.arm_id))
        return self.pollers.get((key, ws.arm_id), lambda: ml.list_computes(ws))

    async def ml_jobs(
        self, key: str, ws: WorkspaceId, secret: Mapping[str, str] | None = None, *, user: str | None = None
    ) -> MlJobs:
        """The Azure ML jobs adapter (azure-ai-ml's ``MLClient``) of one workspace with one credential, built once
        (building one reads the workspace: a second for the same pair would cost a request and ~1 MB)."""
        self._hold(user, "ml-jobs", ("ml-jobs", key, ws.arm_id))
        self._hold(user, "ml-jobs-credential", ("credential", key))
        jobs = self._ml_jobs.get((key, ws.arm_id))
        if jobs is not None:
            return jobs
        from amlops.azure import ml_jobs  # here, not at the top: azure-ai-ml costs ~2 s and ~80 MB to import

        async with self._ml_jobs_lock:
            jobs = self._ml_jobs.get((key, ws.arm_id))
            if jobs is None:
                jobs = await ml_jobs.connect(self.credential(key, secret), ws, self.settings)
                self._ml_jobs[(key, ws.arm_id)] = jobs
        return jobs

    def job_poller(self, key: str, jobs: MlJobs, ws: WorkspaceId, *, user: str | None = None) -> WorkspacePoller:
        """The shared listing of one workspace's Azure ML jobs (``MlJobs.list_jobs``), as seen with one credential:
        entries by job name, each :func:`~amlops.azure.ml_jobs.job_summary`."""
        self._hold(user, "job-poller", ("job-poller", key, ws.arm_id))
        return self.job_pollers.get((key, ws.arm_id), lambda: _listed(jobs.list_jobs()))

    def batch(
        self,
        endpoint: str,
        account: str,
        shared_key: str | None,
        credential_key: str = DEFAULT_CREDENTIAL,
        secret: Mapping[str, str] | None = None,
        *,
        user: str | None = None,
    ) -> BatchClient:
        """A Batch data-plane client: shared key when the BatchCompute names a key Secret, else Microsoft Entra
        tokens of the credential ``credential_key`` (a Secret's service principal, or the operator's identity)."""
        key_id = hashlib.sha256((shared_key or "").encode()).hexdigest()[:16] if shared_key else credential_key
        self._hold(user, "batch", ("batch", endpoint, key_id))
        if not shared_key:
            self._hold(user, "batch-credential", ("credential", credential_key))
        client = self._batch.get((endpoint, key_id))
        if client is None:
            # Without the shared transport, the SDK's own: trusting the environment only when it says something.
            kwargs: dict[str, object] = {"use_env_settings": env_settings_in_use()}
            if endpoint.startswith("https://") and (transport := self._transport()) is not None:
                # The shared transport's one SSLContext: given connection_verify=<path>, every Batch request
                # built a new one and its own TLS connection (100,000 tasks: 105 → 460 MiB, bench/).
                kwargs["transport"] = transport
            credential: AzureNamedKeyCredential | AsyncTokenCredential = (
                AzureNamedKeyCredential(account, shared_key) if shared_key else self.credential(credential_key, secret)
            )
            client = BatchClient(
                endpoint,
                credential,
                retry_policy=CappedRetryPolicy(),
                per_retry_policies=[batch_accounting(endpoint)],
                **kwargs,
            )
            self._batch[(endpoint, key_id)] = client
        return client

    async def close(self) -> None:
        for batch in self._batch.values():
            await batch.close()
        self._batch.clear()
        for client in self._ml.values():
            await client.close()
        for cred in self._credentials.values():
            await cred.close()
        self._ml.clear()
        self._ml_jobs.clear()
        self._credentials.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._shared_transport = None
