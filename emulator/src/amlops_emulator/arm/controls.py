"""``/_emulator/arm/`` routes that drive the cluster simulator: the workload a cluster runs, and preemption.

The ARM surface runs no jobs, so a test says how many nodes are busy; the autoscaler reacts to that as it would
to queued runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amlops_emulator.arm.errors import ArmError
from amlops_emulator.arm.state import ArmState

_COMPUTE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/"
    r"workspaces/(?P<ws>[^/]+)/computes/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


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
        match = _COMPUTE_ID.match(compute_id)
        if match is None:
            raise ArmError(400, "BadRequest", f"'{compute_id}' is not a compute id.")
        record = state.get(state.workspace(match["sub"], match["rg"], match["ws"]), match["name"])
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
