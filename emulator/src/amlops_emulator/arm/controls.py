"""``/_emulator/arm/`` routes that drive the cluster simulator: the workload a cluster runs, and preemption.

``workload`` sets the simulator's synthetic busy nodes (no process behind them), kept for the tests written
before runs existed; real work reaches a cluster as runs (``amlops_emulator.ml.execution``), which this adds to.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import ArmState


class _Workload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    compute_id: str = Field(alias="computeId")
    busy_nodes: int = Field(alias="busyNodes", ge=0, le=10_000)


class _Preempt(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    compute_id: str = Field(alias="computeId")
    count: int = Field(default=1, ge=1, le=10_000)


def add_simulator_controls(app: web.Application, state: ArmState) -> None:
    def cluster_of(compute_id: str) -> Any:
        record = state.find_by_id(compute_id)
        if record is None:
            raise ArmError(404, "ResourceNotFound", f"The compute '{compute_id}' was not found.")
        if record.cluster is None:
            raise ArmError(409, "Conflict", f"The compute '{record.name}' has no cluster.")
        return record

    async def parse(request: web.Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(json.loads(await request.read()))
        except (ValueError, ValidationError) as exc:
            raise ArmError(400, "BadRequest", str(exc)) from None

    def answer(record: Any) -> web.Response:
        return web.json_response(state.render(record))

    async def workload(request: web.Request) -> web.Response:
        body: _Workload = await parse(request, _Workload)
        record = cluster_of(body.compute_id)
        record.cluster.set_busy(state.clock.now(), body.busy_nodes)
        return answer(record)

    async def preempt(request: web.Request) -> web.Response:
        body: _Preempt = await parse(request, _Preempt)
        record = cluster_of(body.compute_id)
        record.cluster.preempt(state.clock.now(), body.count)
        return answer(record)

    app.router.add_post("/_emulator/arm/workload", workload)
    app.router.add_post("/_emulator/arm/preempt", preempt)
