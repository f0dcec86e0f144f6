"""``task.environment`` → the pip requirements file the node driver installs (pure).

Batch nodes have no Azure ML image builder: amlops installs pip requirements on each node (once, shared by
the node's mini-batches; see ``runtime/driver.py``). A conda file contributes its ``pip:`` section; ``python``
and ``pip`` entries name the node's own interpreter and are skipped; any other conda package cannot be
installed without conda, so it is refused up front with what to do instead.

``image`` runs every mini-batch in that container (Batch ``containerSettings``; the image needs ``python3``).
Batch pairs the two strictly: a pool with a ``containerConfiguration`` runs only container tasks, a pool
without one none, so a pool amlops creates gets one when an image is asked for, and a given ``poolId`` must
match, else the job is refused before any task is added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from amlops.reconcile.errors import TerminalError
from amlops.status import REASON_INVALID_SPEC

# A conda environment file is a few hundred bytes; the operator reads at most this much of one.
MAX_CONDA_FILE_BYTES = 256 << 10
REASON_CONDA_FILE_TOO_LARGE = "CondaFileTooLarge"
REASON_CONDA_FILE_ALIASES = "CondaFileHasAliases"


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few aliases can stand for billions of nodes (billion laughs) that
    the walk over the dependencies would expand. A conda file has no use for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _AliasFoundError
        return super().compose_node(parent, index)


class _AliasFoundError(Exception):
    pass


def load_yaml(text: str, *, aliases: TerminalError, what: str) -> Any:
    """Tenant YAML (a conda file, an MLTable file) without anchors and aliases: ``aliases`` when it has some,
    ``InvalidSpec`` naming ``what`` when it is not YAML."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader, without aliases
    except _AliasFoundError:
        raise aliases from None
    except (yaml.YAMLError, RecursionError) as e:
        raise TerminalError(REASON_INVALID_SPEC, f"{what} is not YAML: {str(e)[:300]}") from None


def too_large(name: str) -> TerminalError:
    return TerminalError(
        REASON_CONDA_FILE_TOO_LARGE,
        f"condaFile {name!r} is larger than {MAX_CONDA_FILE_BYTES} bytes (MAX_CONDA_FILE_BYTES): a conda "
        "environment file lists packages; put large files elsewhere in task.code",
    )


# Conda entries that describe the interpreter itself, which on a Batch node is the pool's python3.
_INTERPRETER = ("python", "pip")
# A Batch marketplace image with a container runtime, for the pools amlops creates for container jobs.
CONTAINER_HOST_IMAGE = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"}
CONTAINER_HOST_AGENT = "batch.node.ubuntu 22.04"


def container_settings(image: str | None) -> dict[str, Any] | None:
    """A task's ``containerSettings``: the task directory is mounted, so the driver and code are found."""
    return {"imageName": image, "workingDirectory": "taskWorkingDirectory"} if image else None


def container_pool(pool: Mapping[str, Any], image: str) -> dict[str, Any]:
    """A pool body of amlops' own, made able to run ``image``."""
    machine = dict(pool.get("virtualMachineConfiguration") or {})
    machine.update(
        imageReference=dict(CONTAINER_HOST_IMAGE),
        nodeAgentSKUId=CONTAINER_HOST_AGENT,
        containerConfiguration={"type": "dockerCompatible", "containerImageNames": [image]},
    )
    return {**pool, "virtualMachineConfiguration": machine}


def pool_mismatch(pool: Mapping[str, Any], image: str | None) -> str | None:
    """Why tasks of this job cannot run on ``pool`` (a given ``poolId``), or None."""
    containers = bool((pool.get("virtualMachineConfiguration") or {}).get("containerConfiguration"))
    name = pool.get("id")
    if image and not containers:
        return (
            f"pool {name} has no containerConfiguration, so it cannot run environment.image {image}: use a "
            "container-enabled pool, or leave compute.poolId out and amlops creates one"
        )
    if containers and not image:
        return f"pool {name} runs tasks only in containers (containerConfiguration): set task.environment.image"
    return None


def requirements(pip: Sequence[str], conda_file: str | None = None, conda_text: str | None = None) -> str | None:
    """The requirements file's text, or None when the environment asks for no package."""
    lines = [line.strip() for line in pip if line.strip()]
    if conda_file is not None:
        lines += _conda_pip_section(conda_file, conda_text)
    return "".join(f"{line}\n" for line in lines) or None


def _conda_pip_section(name: str, text: str | None) -> list[str]:
    if text is None:
        raise TerminalError(REASON_INVALID_SPEC, f"task.environment.condaFile {name!r} is not in task.code")
    if len(text.encode()) > MAX_CONDA_FILE_BYTES:
        raise too_large(name)
    aliases = TerminalError(
        REASON_CONDA_FILE_ALIASES, f"condaFile {name!r} uses YAML aliases (*name), which amlops does not expand"
    )
    doc = load_yaml(text, aliases=aliases, what=f"condaFile {name!r}")
    dependencies = doc.get("dependencies", []) if isinstance(doc, dict) else None
    if not isinstance(dependencies, list):
        raise TerminalError(REASON_INVALID_SPEC, f"condaFile {name!r} has no dependencies list")
    pip: list[str] = []
    conda: list[str] = []
    for entry in dependencies:
        if isinstance(entry, dict) and isinstance(entry.get("pip"), list):
            pip += [str(p) for p in entry["pip"]]
        elif isinstance(entry, str | int | float):
            package = str(entry).split("::")[-1]
            base = package.split("=")[0].split("<")[0].split(">")[0].split(" ")[0].strip()
            if base not in _INTERPRETER:
                conda.append(package)
        else:
            raise TerminalError(REASON_INVALID_SPEC, f"condaFile {name!r} has an unknown dependency entry {entry!r}")
    if conda:
        raise TerminalError(
            REASON_INVALID_SPEC,
            f"condaFile {name!r} asks for conda packages {conda}: Batch nodes install pip packages only. "
            "Move them under the file's pip: section, or use environment.image with them preinstalled",
        )
    return pip
