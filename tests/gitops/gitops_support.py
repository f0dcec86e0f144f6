"""Helpers for the GitOps tests: status fixtures, the Argo CD Lua harness, the kstatus probe, live capture.

Also a small command line to refresh a fixture from a live object (see fixtures/README.md)::

    KUBECONFIG=... uv run python tests/gitops/gitops_support.py capture amlcompute/cpu-cluster -n NS -o FILE
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import amlops_testbed as testbed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = HERE / "fixtures"
ARGOCD = REPO / "argocd"
HEALTH_LUA = ARGOCD / "health.lua"
CHART_FILES = REPO / "charts" / "amlops" / "files"
RULES = CHART_FILES / "prometheus-rules.yaml"
DASHBOARD = CHART_FILES / "grafana-dashboard.json"
HARNESS_LUA = ARGOCD / "test_harness.lua"
LUA = "lua5.1"

# Fields the server owns: a captured object keeps only what a user or amlops wrote.
_SERVER_METADATA = ("uid", "resourceVersion", "managedFields", "selfLink", "finalizers")
# kopf's bookkeeping (handlers/app.py stores it under kopf.amlops.io/): marker, diff base and handler progress.
_KOPF_PREFIX = "kopf.amlops.io/"


def _kopf_annotation(key: str) -> bool:
    return key.startswith(("kopf.zalando.org/", _KOPF_PREFIX))


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.yaml") if p.name != "expected.yaml")


def load_fixture(name: str) -> dict[str, Any]:
    obj = yaml.safe_load((FIXTURES / name).read_text())
    assert isinstance(obj, dict)
    return obj


def expected() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((FIXTURES / "expected.yaml").read_text())
    assert isinstance(data, dict)
    return data


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install the Debian package {package} (tools/bootstrap does)")
    return path


# --- Lua -------------------------------------------------------------------------------------------------


def _lua_string(s: str) -> str:
    out = []
    for b in s.encode():
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= b < 127:
            out.append(ch)
        else:  # control characters and UTF-8 bytes as decimal escapes: Lua 5.1 has no \u
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def to_lua(value: Any) -> str:
    """A Lua table literal for a JSON-like value, decoded as Argo CD does (null is nil, lists are 1-based)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua_string(str(k))}] = {to_lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot express {type(value).__name__} in Lua")


def run_lua(script: Path, obj: Mapping[str, Any], workdir: Path) -> Any:
    """Run an Argo CD customization script on ``obj`` with a real Lua 5.1; return its decoded result."""
    lua = require_tool(LUA, "lua5.1")
    # YAML timestamps become strings, as they are in the JSON Argo CD decodes.
    plain = json.loads(json.dumps(obj, default=str))
    obj_file = workdir / "object.lua"
    obj_file.write_text("return " + to_lua(plain) + "\n")
    result = subprocess.run(
        [lua, str(HARNESS_LUA), str(script), str(obj_file)], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed: {result.stderr}")
    return json.loads(result.stdout)


def health(obj: Mapping[str, Any], workdir: Path) -> dict[str, str]:
    result = run_lua(HEALTH_LUA, obj, workdir)
    assert isinstance(result, dict)
    return result


# --- kstatus ---------------------------------------------------------------------------------------------


def build_kstatus() -> Path:
    """``tools/testbed/build kstatus`` (a no-op when cached) and the probe's path."""
    out = subprocess.run(
        [str(REPO / "tools" / "testbed" / "build"), "kstatus"], check=True, stdout=subprocess.PIPE, text=True
    )
    binary = Path(out.stdout.strip().splitlines()[-1]) / "kstatus"
    if not binary.is_file():
        raise RuntimeError(f"{binary} was not built: is tools/testbed/kstatus/main.go present?")
    return binary


def kstatus(binary: Path, obj: Mapping[str, Any]) -> dict[str, str]:
    result = subprocess.run(
        [str(binary)], input=json.dumps(obj, default=str), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kstatus failed: {result.stderr}")
    out = json.loads(result.stdout)
    assert isinstance(out, dict)
    return out


# --- live objects ----------------------------------------------------------------------------------------


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what the server and kopf own, so a captured object reads like a fixture."""
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not _kopf_annotation(k) and k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


def capture(kubectl: Callable[..., str], resource: str, namespace: str) -> dict[str, Any]:
    """The live object ``resource`` (``kind/name``) from the cluster, cleaned for use as a fixture."""
    return clean(json.loads(kubectl("get", resource, "-n", namespace, "-o", "json")))


def write_fixture(path: Path, obj: Mapping[str, Any], comment: str) -> None:
    text = yaml.safe_dump(dict(obj), sort_keys=False, width=120)
    path.write_text("".join(f"# {line}\n" for line in comment.splitlines()) + text)


# --- the rules and the dashboard ------------------------------------------------------------------------


def rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    # label_values(SELECTOR, label) in template variables: the same series as count by (label) (SELECTOR).
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"])
            assert match, var["query"]
            exprs.append(f"count by ({match[2]}) ({match[1]})")
    return exprs


# --- processes: Prometheus (the operator is the test bed's: amlops_testbed.start_operator) ---------------


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@contextlib.contextmanager
def running_prometheus(targets: Sequence[str], workdir: Path, rule_files: Sequence[Path] = ()) -> Iterator[Prometheus]:
    """The real Prometheus server (Debian's) on a free loopback port, scraping ``targets`` every second."""
    binary = require_tool("prometheus", "prometheus")
    port = testbed.free_port()
    work = workdir / f"prometheus-{port}"
    work.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "amlops", "static_configs": [{"targets": list(targets)}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = work / "prometheus.log"
    args = [
        binary,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    proc = testbed.spawn(args, log)
    try:
        url = f"http://127.0.0.1:{port}"
        testbed.wait_up("prometheus", lambda: testbed.http_ok(url + "/-/ready"), proc, log, timeout=60)
        yield Prometheus(proc, url, log)
    finally:
        testbed.terminate(proc, grace=20)


# --- command line ---------------------------------------------------------------------------------------


def _kubectl(*args: str) -> str:
    return subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True, env=os.environ).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="write a live object (KUBECONFIG) to a fixture file")
    cap.add_argument("resource", help="kind/name, e.g. amlcompute/cpu-cluster")
    cap.add_argument("-n", "--namespace", required=True)
    cap.add_argument("-o", "--output", type=Path, required=True)
    cap.add_argument("--comment", default="Captured from a live test bed.")
    args = parser.parse_args(argv)
    write_fixture(args.output, capture(_kubectl, args.resource, args.namespace), args.comment)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
