"""Azure Batch data-plane emulator (api-version 2025-06-01, as azure-batch 15.1.x calls it) with a node agent
that really runs tasks as local processes.

``build_batch_app(config, clock, seed)`` returns the aiohttp application; ``config`` is anything with a
``state_dir`` (``BatchEmulatorSettings`` will do). Modules: ``wire`` (OData errors, times, durations),
``auth`` (SharedKey), ``model`` (entities), ``pools`` (allocation on the virtual clock), ``agent`` (scheduling
and processes), ``routes_*`` (the REST surface), ``control`` (``/_emulator/batch/...``), ``app`` (middleware).
"""

from amlops_emulator.batch.app import BatchEmulatorSettings, build_batch_app

__all__ = ["BatchEmulatorSettings", "build_batch_app"]
