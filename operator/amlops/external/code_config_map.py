"""A job's code kept in Git: the files of the ConfigMap its spec names (ParallelJob ``task.codeConfigMap`` on both
backends, CommandJob ``codeConfigMap``)."""

from __future__ import annotations

from amlops.external.ports import ConfigMapReader
from amlops.reconcile.errors import TerminalError

REASON_CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"


async def code_files(objects: ConfigMapReader, namespace: str, name: str, field: str) -> dict[str, bytes]:
    """The files (key → bytes) of ConfigMap ``namespace/name``, which the spec's ``field`` names; Stalled
    ``ConfigMapNotFound`` until it exists (an Argo CD sync may apply the job first)."""
    files = await objects.read_config_map(namespace, name)
    if files is None:
        raise TerminalError(REASON_CONFIG_MAP_NOT_FOUND, f"ConfigMap {namespace}/{name} ({field}) does not exist")
    return files
