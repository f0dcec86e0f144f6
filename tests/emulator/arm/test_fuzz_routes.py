"""Random requests at every route: whatever the body, method, api-version or path, the emulator answers with
an ARM-shaped error (or success), never a crash or a 5xx, and never Retry-After outside a 429."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amlops_emulator.arm.throttle import BucketLimit, ThrottleLimits

from .conftest import BASE, FAST, SUB, Arm, Starter, session_for

pytestmark = pytest.mark.emulator

LOCATION = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/westeurope"
PATHS = [
    f"{BASE}/computes",
    f"{BASE}/computes/cpu",
    f"{BASE}/computes/cpu/listNodes",
    f"{BASE}/computes/cpu/listKeys",
    f"{LOCATION}/computeOperationsStatus/00000000-0000-0000-0000-000000000000",
    f"{LOCATION}/usages",
    f"{LOCATION}/vmSizes",
    f"{LOCATION}/Quotas",
    f"{LOCATION}/updateQuotas",
    BASE.replace("rg-amlops", "norg") + "/computes/cpu",
    BASE.replace("ws-amlops", "nows") + "/computes",
    f"/subscriptions/{SUB}",
    "/",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
compute_like = st.fixed_dictionaries(
    {
        "properties": st.fixed_dictionaries(
            {"computeType": st.sampled_from(["AmlCompute", "Batch", "aks", 3, None])},
            optional={
                "properties": st.fixed_dictionaries(
                    {},
                    optional={
                        "vmSize": st.sampled_from(["Standard_DS2_v2", "STANDARD_NC6", "Standard_Nope", 1]),
                        "vmPriority": st.sampled_from(["dedicated", "LowPriority", "spot", None]),
                        "scaleSettings": st.fixed_dictionaries(
                            {},
                            optional={
                                "maxNodeCount": st.integers(-2, 2000) | st.text(max_size=3),
                                "minNodeCount": st.integers(-2, 20) | st.none(),
                                "nodeIdleTimeBeforeScaleDown": st.sampled_from(
                                    ["PT5M", "P", "PT", "5 minutes", "P1DT2H", 7]
                                ),
                            },
                        ),
                        "subnet": json_values,
                        "userAccountCredentials": json_values,
                    },
                ),
                "resourceId": st.text(max_size=30),
                "scaleSettings": json_values,
            },
        )
    },
    optional={"location": json_values, "tags": json_values, "identity": json_values, "unknownField": json_values},
)
bodies = (
    st.none()
    | json_values.map(lambda v: json.dumps(v).encode())
    | compute_like.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.just(b'{"properties": ')
)
api_versions = st.sampled_from(["2020-08-01", "2024-10-01", "1999-01-01", "", None])
paths = st.sampled_from(PATHS) | st.text(alphabet="abc/%?.-_", max_size=30).map(lambda t: f"{BASE}/computes/{t}")
methods = st.sampled_from(["GET", "PUT", "PATCH", "POST", "DELETE", "HEAD", "OPTIONS"])
queries = st.dictionaries(
    st.sampled_from(["underlyingResourceAction", "$skiptoken", "compute-type", "expandChildren", "x"]),
    st.text(max_size=8),
    max_size=2,
)


@pytest.fixture
async def roomy(start_emulator: Starter) -> AsyncIterator[Arm]:
    """An emulator whose buckets never empty, so every example reaches the routes instead of a 429."""
    big = BucketLimit(100_000, 1000.0)
    running = await start_emulator(speed=FAST, throttle=ThrottleLimits(big, big, big))
    async with session_for(running) as session:
        yield Arm(running, session)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, body=bodies, api_version=api_versions, query=queries)
async def test_random_requests_get_arm_shaped_4xx_never_5xx(
    roomy: Arm, method: str, path: str, body: bytes | None, api_version: str | None, query: dict[str, str]
) -> None:
    """Fuzz (all routes): malformed JSON, unknown fields, wrong api-versions and unknown routes."""
    arm = roomy
    params = dict(query)
    if api_version is not None:
        params["api-version"] = api_version
    url = f"{arm.running.arm_url}{path}"
    headers = {"Content-Type": "application/json"}
    async with arm.session.request(method, url, params=params, data=body, headers=headers) as response:
        text = await response.text()
        assert response.status < 500, (method, path, body, text)
        assert "x-ms-request-id" in response.headers
        if response.status >= 400 and method != "HEAD":
            error: Any = json.loads(text)["error"]
            assert isinstance(error["code"], str)
            assert error["code"]
            assert isinstance(error["message"], str)
            assert "Retry-After" not in response.headers
