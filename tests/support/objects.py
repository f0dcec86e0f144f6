"""Kubernetes objects in tests: apply a manifest, read a status condition, wait for one (with a deadline).

Conditions are found with the operator's own finder (``amlops.status``): the tests read them as amlops writes
them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import amlops_testbed as testbed
from amlops import status

Object = Mapping[str, Any]


def try_apply(k8s: testbed.Testbed, namespace: str, manifest: str | Object) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` of a manifest (YAML or JSON text, or one object); the answer, accepted or not."""
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-o", "json", "-f", "-"],
        input=text,
        env=k8s.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Refused(subprocess.CalledProcessError):
    """``kubectl apply`` failed; the message carries kubectl's answer (schema, CEL, admission)."""

    def __str__(self) -> str:
        return f"kubectl apply refused the manifest: {self.stderr}"


def apply(k8s: testbed.Testbed, namespace: str, manifest: str | Object) -> dict[str, Any]:
    """``kubectl apply`` that must be accepted (else ``Refused``); what the apiserver stored (a ``List`` for
    several documents)."""
    result = try_apply(k8s, namespace, manifest)
    if result.returncode != 0:
        raise Refused(result.returncode, result.args, result.stdout, result.stderr)
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


def events(k8s: testbed.Testbed, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The namespace's Events (core/v1), those of one ``reason`` when given (a field selector: the apiserver
    filters)."""
    selector = ("--field-selector", f"reason={reason}") if reason else ()
    items: list[dict[str, Any]] = json.loads(k8s.kubectl("get", "events", "-n", namespace, *selector, "-o", "json"))[
        "items"
    ]
    return items


def conditions(obj: Object | None) -> Sequence[Mapping[str, Any]]:
    conditions: Sequence[Mapping[str, Any]] = ((obj or {}).get("status") or {}).get("conditions") or []
    return conditions


def find_condition(obj: Object | None, type_: str) -> Mapping[str, Any] | None:
    """The condition ``type_`` of the object's status, or None (not written yet, or no object)."""
    return status.find(conditions(obj), type_)


def condition(obj: Object | None, type_: str) -> Mapping[str, Any]:
    """The condition ``type_``, which must be there: an assertion names what the status held instead."""
    found = find_condition(obj, type_)
    assert found is not None, f"no {type_} condition in {(obj or {}).get('status')}"
    return found


def is_true(obj: Object | None, type_: str) -> bool:
    return status.is_true(conditions(obj), type_)


def observed(obj: Object | None) -> bool:
    """The status answers for the current spec: amlops has seen this generation."""
    return obj is not None and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


def wait_for(
    k8s: testbed.Testbed,
    resource: str,
    name: str,
    namespace: str,
    ready: Callable[[dict[str, Any]], object],
    *,
    what: str,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Poll the object until ``ready`` says yes (a deadline, never a sleep); the object as it was then."""

    def probe() -> dict[str, Any] | None:
        obj = testbed.get_object(k8s, resource, name, namespace)
        return obj if obj is not None and ready(obj) else None

    return testbed.eventually(probe, timeout=timeout, what=f"{resource}/{name} {what}")


def wait_gone(k8s: testbed.Testbed, resource: str, name: str, namespace: str, *, timeout: float = 60.0) -> None:
    """Until the object is deleted (its finalizer released, or a TTL ran out)."""

    def gone() -> bool:
        return testbed.get_object(k8s, resource, name, namespace) is None

    testbed.eventually(gone, timeout=timeout, what=f"{resource}/{name} gone")


def wait_condition(
    k8s: testbed.Testbed,
    resource: str,
    name: str,
    namespace: str,
    type_: str,
    status: str = "True",
    *,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Until the status of the current generation has condition ``type_`` with ``status``; the object then."""

    def ready(obj: dict[str, Any]) -> bool:
        found = find_condition(obj, type_)
        return observed(obj) and found is not None and found.get("status") == status

    return wait_for(k8s, resource, name, namespace, ready, what=f"{type_}={status}", timeout=timeout)
