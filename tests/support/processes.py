"""The operator and the Azure emulator as the tests' fixtures hand them out (``start_operator``, ``azure``,
``start_azure`` in tests/conftest.py), typed so that a test's use of them is checked."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

import amlops_testbed as testbed


def scrape(url: str, prefix: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The operator's /metrics samples of the families whose names start with ``prefix``: (name, labels) → value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith(prefix)
        for sample in family.samples
    }


class StartOperator(Protocol):
    """``start_operator(*namespaces)``: ``amlops run`` watching them, live when it returns."""

    def __call__(
        self, *namespaces: str, extra_env: dict[str, str] | None = None, verbose: bool = True
    ) -> testbed.OperatorRun: ...


class EmulatorProcess:
    """An emulator process (``amlops_testbed.start_emulator``) with raw HTTPS helpers for assertions and faults."""

    def __init__(self, run: testbed.EmulatorRun) -> None:
        self.run = run
        self.proc = run.proc
        self.log = run.log
        endpoints = run.endpoints
        self.arm_url: str = endpoints["armUrl"]
        self.batch_url: str | None = endpoints.get("batchUrl")
        self.control_url: str = endpoints["controlUrl"]
        self.ca_file: str = endpoints["caFile"]
        self.token: str = endpoints["token"]

    def operator_env(self) -> dict[str, str]:
        return self.run.operator_env(
            AMLOPS_POLL_FLOOR_SECONDS="0.5",
            AMLOPS_POLL_CEILING_SECONDS="5",
            AMLOPS_REQUEUE_SECONDS="1",
            AMLOPS_STALLED_RECHECK_SECONDS="5",
        )

    def request(self, method: str, url: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def arm(self, method: str, path: str, body: Any = None, api_version: str = "2020-08-01") -> tuple[int, Any]:
        sep = "&" if "?" in path else "?"
        return self.request(method, f"{self.arm_url}{path}{sep}api-version={api_version}", body)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.request(method, f"{self.control_url}{path}", body, auth=False)
        assert status < 300, (status, answer)
        return answer

    def operations(self) -> dict[str, int]:
        """Calls per SDK operation id since the last reset of the statistics."""
        stats = self.control("GET", "/stats")
        return {name: op["count"] for name, op in stats["operations"].items()}

    def stop(self) -> None:
        self.run.stop()


class StartAzure(Protocol):
    """``start_azure(speed, *flags)``: one more emulator process, its clock ``speed`` times real time."""

    def __call__(self, speed: float = 60.0, *extra_args: str) -> EmulatorProcess: ...
