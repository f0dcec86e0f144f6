"""Which backend runs a ParallelJob, and the ExternalClient the ParallelJob kind registers: it hands every call to
the backend's own client.

The kind of the object ``spec.compute.name`` names in the namespace decides: an AmlCompute → Azure ML
(``paralleljob_azureml``), a BatchCompute → Azure Batch (``paralleljob``). The choice is recorded in
``status.backend`` and never made again: an object of the other kind that later takes that name does not move a
running job (nor its deletion) to another backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from amlops.api.paralleljob import ParallelJobSpec
from amlops.azure.clients import AzureClients
from amlops.external.backends import AZURE_ML, BATCH, Backend, recorded
from amlops.external.ownership import owner_exists
from amlops.external.paralleljob import ParallelJobClient
from amlops.external.paralleljob_azureml import REASON_WAITING_FOR_COMPUTE, AzureMlParallelJobClient
from amlops.external.ports import ClusterObjects, SecretReader
from amlops.reconcile.errors import RetryableError, TerminalError
from amlops.reconcile.external import Observation, Pending
from amlops.reconcile.managed import Managed

Mr = Managed[ParallelJobSpec]
REASON_AMBIGUOUS_COMPUTE = "AmbiguousCompute"
WAIT_FOR_COMPUTE_SECONDS = 5.0


def choose(status: Mapping[str, Any], compute: str, aml: bool, batch: bool) -> Backend | None:
    """The backend of a job: the recorded one, else the kind of compute ``compute`` (``aml``: an AmlCompute of that
    name exists, ``batch``: a BatchCompute). None: neither exists yet. Both: refused, no guess."""
    if (backend := recorded(status)) is not None:
        return backend
    if aml and batch:
        raise TerminalError(
            REASON_AMBIGUOUS_COMPUTE,
            f"both an AmlCompute and a BatchCompute are named {compute}: rename one, or point compute.name at a "
            "name only one kind has",
        )
    if aml:
        return AZURE_ML
    return BATCH if batch else None


class ParallelJobRouter:
    """ParallelJob's ExternalClient: the backend's own client does the work."""

    def __init__(self, clients: AzureClients, secrets: SecretReader, objects: ClusterObjects) -> None:
        self._objects = objects
        self.batch = ParallelJobClient(clients, secrets, objects)
        self.azure_ml = AzureMlParallelJobClient(clients, secrets, objects)

    async def close(self) -> None:
        await self.batch.close()

    async def release(self, uid: str) -> None:
        await self.batch.release(uid)
        await self.azure_ml.release(uid)

    async def owner_exists(self, owner: str) -> bool:
        return await owner_exists(self._objects, owner)

    async def dependents(self, mr: Mr) -> tuple[str, ...]:
        return ()

    async def _backend(self, mr: Mr) -> Backend | None:
        if (backend := recorded(mr.status)) is not None:
            return backend
        name = mr.spec.compute.name
        aml = await self._objects.get("amlcomputes", mr.namespace, name) is not None
        batch = await self._objects.get("batchcomputes", mr.namespace, name) is not None
        return choose(mr.status, name, aml, batch)

    def _client(self, backend: Backend) -> ParallelJobClient | AzureMlParallelJobClient:
        return self.azure_ml if backend == AZURE_ML else self.batch

    async def observe(self, mr: Mr) -> Observation:
        backend = await self._backend(mr)
        if backend is None:
            if mr.deleting:  # no compute was ever found: nothing was created
                return Observation(False)
            raise RetryableError(
                REASON_WAITING_FOR_COMPUTE,
                f"no AmlCompute or BatchCompute {mr.spec.compute.name} in namespace {mr.namespace}",
                WAIT_FOR_COMPUTE_SECONDS,
            )
        observation = await self._client(backend).observe(mr)
        return replace(observation, at_provider={**observation.at_provider, "backend": backend})

    async def create(self, mr: Mr) -> Pending | None:
        backend = await self._backend(mr)
        if backend is None:
            raise RetryableError(REASON_WAITING_FOR_COMPUTE, "the compute is gone", WAIT_FOR_COMPUTE_SECONDS)
        return await self._client(backend).create(mr)

    async def update(self, mr: Mr, observation: Observation) -> Pending | None:
        backend = recorded(observation.at_provider) or await self._backend(mr)
        if backend is None:
            return None
        return await self._client(backend).update(mr, observation)

    async def delete(self, mr: Mr) -> Pending | None:
        backend = await self._backend(mr)
        if backend is None:
            return None
        return await self._client(backend).delete(mr)
