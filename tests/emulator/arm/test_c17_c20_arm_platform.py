"""C17-C20 and the ARM front door: parent 404s, throttling, request ids, authentication, test controls."""

from __future__ import annotations

import json
import re
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.machinelearningservices.aio import MachineLearningServicesMgmtClient

from amlops_emulator.arm.throttle import BucketLimit, SubscriptionThrottle, ThrottleLimits
from amlops_emulator.instrumentation import OPERATION, FaultSpec, Platform
from amlops_emulator.server import RunningEmulator, batch_error, instrument

from .conftest import BASE, FAST, RG, SUB, WS, Arm, Starter, aml_body, client_for, session_for

pytestmark = pytest.mark.emulator


async def test_c17_missing_workspace_is_parent_resource_not_found(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C17: an unknown workspace: 404 ParentResourceNotFound with ARM's message."""
    with pytest.raises(ResourceNotFoundError) as raised:
        await ml_client.machine_learning_compute.get(RG, "nows", "cpu")
    assert raised.value.error is not None
    assert raised.value.error.code == "ParentResourceNotFound"
    status, headers, body = await arm.call("GET", BASE.replace(WS, "nows") + "/computes/cpu")
    assert status == 404
    assert "Retry-After" not in headers
    assert body["error"]["message"] == (
        "Can not perform requested operation on nested resource. Parent resource 'nows' not found."
    )


async def test_c18_missing_resource_group_is_resource_group_not_found(
    ml_client: MachineLearningServicesMgmtClient, arm: Arm
) -> None:
    """C18: any call under an unknown resource group: 404 ResourceGroupNotFound."""
    with pytest.raises(ResourceNotFoundError) as raised:
        await ml_client.machine_learning_compute.get("norg", WS, "cpu")
    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError, match="ResourceGroupNotFound"):
        [c async for c in ml_client.machine_learning_compute.list_by_workspace("norg", WS)]
    for method, suffix in (("PUT", "/computes/cpu"), ("DELETE", "/computes/cpu"), ("GET", "/whatever/else")):
        status, _, body = await arm.call(
            method, BASE.replace(RG, "norg") + suffix, aml_body(), underlyingResourceAction="Delete"
        )
        assert (status, body["error"]["code"]) == (404, "ResourceGroupNotFound"), (method, suffix)
        assert body["error"]["message"] == "Resource group 'norg' could not be found."


async def test_c19_throttled_reads_get_429_and_the_sdk_retries(start_emulator: Starter) -> None:
    """C19: beyond the bucket: 429 SubscriptionRequestsThrottled + Retry-After; the SDK waits and succeeds."""
    limits = ThrottleLimits(reads=BucketLimit(3, 2.0))
    running = await start_emulator(speed=FAST, throttle=limits)
    async with session_for(running) as session, client_for(running) as client:
        arm = Arm(running, session)
        remaining = []
        for _ in range(3):
            status, headers, _ = await arm.call("GET", f"{BASE}/computes")
            remaining.append(int(headers["x-ms-ratelimit-remaining-subscription-reads"]))
            assert "x-ms-ratelimit-remaining-subscription-global-reads" in headers
        assert remaining == [2, 1, 0]
        status, headers, body = await arm.call("GET", f"{BASE}/computes")
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert body["error"]["code"] == "SubscriptionRequestsThrottled"
        assert "Please try again after '1' seconds" in body["error"]["message"]
        started = time.monotonic()
        assert [c async for c in client.machine_learning_compute.list_by_workspace(RG, WS)] == []
        assert time.monotonic() - started >= 0.5  # it honoured Retry-After
        statuses = [c["status"] for c in (await arm.control("GET", "/stats"))["recent"]]
        assert statuses[-2:] == [429, 200]
        # Writes have their own bucket.
        status, headers, _ = await arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"))
        assert status == 201
        assert headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"


def test_c19_token_bucket_refills_continuously() -> None:
    """C19: reads 250 + 25/s by default; the bucket refills with time and never beyond its size."""
    now = [0.0]
    throttle = SubscriptionThrottle(ThrottleLimits(), monotonic=lambda: now[0])
    verdicts = [throttle.take(SUB, "reads") for _ in range(251)]
    assert verdicts[0].remaining == 249
    assert verdicts[249].remaining == 0
    assert not verdicts[250].allowed
    assert verdicts[250].retry_after == 1
    now[0] = 2.0
    assert throttle.take(SUB, "reads").remaining == 49
    now[0] = 1000.0
    assert throttle.take(SUB, "reads").remaining == 249
    assert throttle.take(SUB, "deletes").remaining == 199


async def test_c20_request_ids_on_every_response(arm: Arm) -> None:
    """C20: x-ms-request-id, correlation (echoed or new), routing id, client id only when asked to echo."""
    url = arm.url(f"{BASE}/computes")
    async with arm.session.get(url, headers={"x-ms-client-request-id": "client-1"}) as response:
        headers = response.headers
        assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-ms-request-id"])
        assert headers["x-ms-correlation-request-id"]
        assert re.fullmatch(r"WESTEUROPE:\d{8}T\d{6}Z:[0-9a-f-]{36}", headers["x-ms-routing-request-id"])
        assert "x-ms-client-request-id" not in headers
    echo = {
        "x-ms-client-request-id": "client-2",
        "x-ms-return-client-request-id": "true",
        "x-ms-correlation-request-id": "corr-9",
    }
    async with arm.session.get(arm.url(f"{BASE}/computes/nope"), headers=echo) as response:
        assert response.status == 404  # errors carry them too
        assert response.headers["x-ms-client-request-id"] == "client-2"
        assert response.headers["x-ms-correlation-request-id"] == "corr-9"
        assert response.headers["x-ms-request-id"]


async def test_requests_without_a_bearer_token_get_arms_401(emulator: RunningEmulator) -> None:
    """Authentication: no header, a malformed one, or a wrong token: 401 in ARM's shape."""
    async with session_for(emulator, token=None) as session:
        arm = Arm(emulator, session)
        status, headers, body = await arm.call("GET", f"{BASE}/computes")
        assert (status, body["error"]["code"]) == (401, "AuthenticationFailed")
        assert headers["WWW-Authenticate"].startswith("Bearer ")
        async with session.get(arm.url(f"{BASE}/computes"), headers={"Authorization": "Basic abc"}) as response:
            assert response.status == 401
    async with session_for(emulator, token="not-the-token") as session:
        status, _, body = await Arm(emulator, session).call("GET", f"{BASE}/computes")
        assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    from amlops_emulator.credentials import EmulatorCredential

    async with MachineLearningServicesMgmtClient(
        EmulatorCredential("wrong"), SUB, base_url=emulator.arm_url, connection_verify=str(emulator.tls.ca)
    ) as client:
        with pytest.raises(ClientAuthenticationError):
            await client.machine_learning_compute.get(RG, WS, "cpu")


async def test_tls_is_verified_against_the_generated_ca(emulator: RunningEmulator) -> None:
    """TLS: the server certificate chains to ca.pem; a client without that CA refuses the connection."""
    assert {p.name for p in emulator.tls.ca.parent.iterdir()} >= {
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "endpoints.json",
    }
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"{emulator.arm_url}/_emulator/health")


async def test_faults_inject_status_then_run_out(ml_client: MachineLearningServicesMgmtClient, arm: Arm) -> None:
    """Faults: a 500 for GET compute, twice: the SDK's retries absorb it; statistics count per operation."""
    await arm.call("PUT", f"{BASE}/computes/cpu", aml_body("Standard_DS2_v2"))
    added = await arm.control(
        "POST", "/faults", {"method": "GET", "path": r"/computes/cpu$", "status": 500, "count": 2}
    )
    assert added["faults"][0]["remaining"] == 2
    await arm.control("DELETE", "/stats")
    compute = await ml_client.machine_learning_compute.get(RG, WS, "cpu", retry_backoff_factor=0.01)
    assert compute.name == "cpu"
    stats = await arm.control("GET", "/stats")
    assert stats["operations"]["MachineLearningCompute_Get"] == {"count": 3, "statuses": {"200": 1, "500": 2}}
    assert (await arm.control("GET", "/faults"))["faults"] == []
    # A 409 fault is not retried (no Retry-After) and reaches the caller as the ARM error it is.
    await arm.control(
        "POST", "/faults", {"path": "/computes/cpu$", "status": 409, "code": "AnotherOperationInProgress"}
    )
    with pytest.raises(HttpResponseError, match="AnotherOperationInProgress"):
        await ml_client.machine_learning_compute.get(RG, WS, "cpu")
    await arm.control("POST", "/reset")
    status, _, _ = await arm.call("GET", f"{BASE}/computes/cpu")
    assert status == 404  # reset drops faults, statistics and computes


async def test_faults_add_latency_and_honour_probability(arm: Arm) -> None:
    """Faults: latencyMs delays the answer; probability 0 never fires."""
    await arm.control(
        "POST",
        "/faults",
        [
            {"path": "/vmSizes", "latencyMs": 150, "count": 1},
            {"path": "/usages", "status": 503, "probability": 0.0},
        ],
    )
    started = time.monotonic()
    status, _, _ = await arm.call(
        "GET", f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope/vmSizes"
    )
    assert status == 200
    assert time.monotonic() - started >= 0.15
    status, _, _ = await arm.call(
        "GET", f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope/usages"
    )
    assert status == 200
    async with arm.session.post(f"{arm.running.control_url}/faults", json={"path": "(", "status": 500}) as response:
        assert response.status == 400


async def test_clock_advance_moves_virtual_time(frozen_arm: Arm) -> None:
    """Control: the frozen clock moves only when advanced."""
    before = await frozen_arm.control("GET", "/clock")
    after = await frozen_arm.control("POST", "/clock/advance", {"seconds": 90})
    assert before["speed"] == 0.0
    assert after["now"] > before["now"]


async def test_fault_and_stats_middleware_is_route_agnostic() -> None:
    """The same middleware on a foreign app (as the Batch half gets it): faults by method+path, stats by name."""
    platform = Platform()

    async def pools(request: web.Request) -> web.Response:
        request[OPERATION] = "Pool_Get"
        return web.json_response({"id": "p1"})

    app = web.Application()
    app.router.add_get("/pools/{id}", pools)
    instrument(app, platform, batch_error)
    platform.faults.add(FaultSpec(path="^/pools/p1$", status=503, code="ServerBusy", count=1))
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/pools/p1")
        body = await first.json()
        assert first.status == 503
        assert body["code"] == "ServerBusy"
        assert body["message"]["lang"] == "en-US"
        assert "RequestId:" in body["message"]["value"]
        assert (await client.get("/pools/p1")).status == 200
    snapshot = platform.stats.snapshot()
    # The faulted call never reached the handler that names it: it is counted under method and path.
    assert snapshot["operations"]["Pool_Get"]["statuses"] == {"200": 1}
    assert snapshot["operations"]["GET /pools/p1"]["statuses"] == {"503": 1}


async def test_endpoints_file_and_the_batch_half_share_faults(start_emulator: Starter) -> None:
    """run_emulator: endpoints.json names both servers; a fault set on the ARM control port hits the Batch port."""
    pytest.importorskip("amlops_emulator.batch")
    running = await start_emulator(speed=FAST, serve_batch=True)
    endpoints = json.loads(running.endpoints_file.read_text())
    assert endpoints["armUrl"] == running.arm_url
    assert endpoints["caFile"] == str(running.tls.ca)
    assert endpoints["batchUrl"] == running.batch_url
    assert running.batch_url is not None
    async with session_for(running) as session:
        arm = Arm(running, session)
        await arm.control(
            "POST", "/faults", {"path": "^/amlopsbatch/pools", "status": 503, "code": "ServerBusy", "count": 1}
        )
        async with session.get(f"{running.batch_url}/amlopsbatch/pools?api-version=2025-06-01") as response:
            body = await response.json()
            assert (response.status, body["code"]) == (503, "ServerBusy")
        stats = await arm.control("GET", "/stats")
        assert stats["operations"]["GET /amlopsbatch/pools"]["statuses"] == {"503": 1}
