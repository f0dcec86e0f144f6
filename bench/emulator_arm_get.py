"""GET compute requests per second over TLS against the ARM emulator (target ≥ 1,000/s).

The emulator runs as its own process (one process = one core), started the way ``amlops emulator`` starts it,
with throttling buckets too large to interfere; this process drives it with keep-alive HTTPS connections.
Prints one JSON object.

    uv run python bench/emulator_arm_get.py [--requests 20000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from amlops_emulator.credentials import EMULATOR_TOKEN
from amlops_emulator.seed import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, DEFAULT_WORKSPACE

COMPUTE = (
    f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{DEFAULT_WORKSPACE}/computes/bench"
)
BODY = {
    "location": "westeurope",
    "properties": {
        "computeType": "AmlCompute",
        "properties": {"vmSize": "Standard_DS2_v2", "scaleSettings": {"minNodeCount": 2, "maxNodeCount": 4}},
    },
}


def start_server(state_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    command = [sys.executable, "-m", "amlops_emulator", "--arm-port", "0", "--no-batch", "--state-dir", str(state_dir)]
    command += ["--speed", "100", "--reads-bucket", "1000000000", "--reads-refill", "1000000000"]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    endpoints = state_dir / "endpoints.json"
    deadline = time.monotonic() + 30
    while not endpoints.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    return server, json.loads(endpoints.read_text())


async def measure(endpoints: dict[str, Any], total: int, concurrency: int) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=endpoints["caFile"])
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    headers = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
    url = f"{endpoints['armUrl']}{COMPUTE}?api-version=2020-08-01"
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.put(url, json=BODY) as response:
            assert response.status == 201, await response.text()
        statuses: dict[int, int] = {}
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with session.get(url) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up: TLS handshakes, caches
        statuses.clear()
        remaining = total
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "bench": "emulator_arm_get",
        "requests_per_second": round(total / elapsed, 1),
        "requests": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "tls": True,
        "target_per_second": 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as tmp:
        server, endpoints = start_server(Path(tmp))
        try:
            result = asyncio.run(measure(endpoints, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(json.dumps(result))
    return 0 if set(result["statuses"]) == {"200"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
