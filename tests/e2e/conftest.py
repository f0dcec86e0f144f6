"""e2e fixtures beyond tests/conftest.py: Azurite for the ParallelJob tests' blobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amlops_emulator.azurite import Azurite, azurite_blob


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the session; every test uses containers of its own."""
    with azurite_blob(tmp_path_factory.mktemp("azurite")) as running:
        yield running
