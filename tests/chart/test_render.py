"""The chart renders valid Kubernetes objects in every mode, and its values schema rejects bad input.

No cluster needed: ``helm lint`` and ``helm template``, then the Kubernetes 1.37 OpenAPI schemas
(kubernetes-validate). Kinds that are not built in are checked against the CRD rendered with them (kopf's
peering objects) or against a minimal schema of the fields we set (prometheus-operator's kinds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no types and has no stubs
import pytest
import yaml

from amlops.api import KINDS
from amlops.settings import Settings

from .conftest import CHART, KUBE_VERSION, REPO, Helm, by_kind, one

pytestmark = pytest.mark.tools

# The fields of prometheus-operator's kinds that the chart sets, as the operator's CRDs require them.
_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {"interval": _DURATION, "scrapeTimeout": _DURATION},
                        },
                    },
                },
            }
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    },
                                }
                            },
                        },
                    }
                },
            }
        },
    },
}

RULES = """\
# A Prometheus rule file, as files/prometheus-rules.yaml holds it.
groups:
  - name: amlops
    rules:
      - alert: AmlopsResourceNotReady
        expr: amlops_resource_ready == 0
        for: 15m
        annotations:
          summary: "{{ $labels.namespace }}/{{ $labels.name }} is not Ready"
"""
DASHBOARD = {"title": "amlops", "panels": [{"type": "timeseries", "title": "Reconciles"}]}

ALL_TOGGLES: dict[str, Any] = {
    "replicas": 3,
    "watchNamespaces": ["team-a", "team-b"],
    "azure": {
        "workloadIdentity": {"clientId": "11111111-2222-3333-4444-555555555555"},
        "endpoints": {
            "arm": "https://127.0.0.1:8443",
            "batch": "http://127.0.0.1:8444/{account}",
            "blob": "http://127.0.0.1:10000",
        },
        "caBundle": {"configMap": "amlops-emulator-ca", "key": "ca.crt"},
        "defaultCredentialsSecret": "azure-credentials",
        "operatorIdentityNamespaces": ["platform", "team-*"],
        "sharedStorageNamespaces": ["team-a", "team-b"],
    },
    "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
    "grafana": {"dashboard": {"enabled": True}},
    "podDisruptionBudget": {"minAvailable": 1},
}


def validate(docs: list[dict[str, Any]]) -> None:
    crds = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in by_kind(docs, "CustomResourceDefinition")
    }
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if group == "monitoring.coreos.com":
            jsonschema.validate(doc, MONITORING_SCHEMAS[doc["kind"]])
        elif (group, doc["kind"]) in crds:
            jsonschema.validate(doc, crds[group, doc["kind"]])
        else:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {e.message}")


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_helm_lint_is_clean(helm: Helm) -> None:
    for values in ({}, {"replicas": 2, "watchNamespaces": ["a"]}):
        result = helm.run(
            "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "--values", "-", stdin=json.dumps(values)
        )
        assert "0 chart(s) failed" in result.stdout


@dataclass(frozen=True)
class Mode:
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset()


MODES = [
    pytest.param(
        Mode(
            reason="defaults: one replica, cluster-wide RBAC, metrics Service, PDB, deletion protection",
            kinds=frozenset(
                {
                    "ServiceAccount",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "Deployment",
                    "Service",
                    "PodDisruptionBudget",
                    "ValidatingAdmissionPolicy",
                    "ValidatingAdmissionPolicyBinding",
                }
            ),
        ),
        id="Defaults",
    ),
    pytest.param(
        Mode(
            reason="watchNamespaces: a Role and RoleBinding per namespace, no namespaced rule in the ClusterRole",
            values={"watchNamespaces": ["team-a", "team-b"]},
            kinds=frozenset({"Role", "RoleBinding", "ClusterRole"}),
        ),
        id="Namespaced",
    ),
    pytest.param(
        Mode(
            reason="replicas >= 2: kopf's peering CRDs and the peering object the replicas meet in",
            values={"replicas": 2},
            kinds=frozenset({"CustomResourceDefinition", "ClusterKopfPeering"}),
        ),
        id="HighAvailability",
    ),
    pytest.param(
        Mode(
            reason="every toggle on (the monitoring files may not exist yet in the repository)",
            values=ALL_TOGGLES,
            kinds=frozenset({"KopfPeering", "Role"}),
        ),
        id="AllToggles",
    ),
]


@pytest.mark.parametrize("mode", MODES)
def test_renders_valid_kubernetes_objects(helm: Helm, mode: Mode) -> None:
    docs = helm.render(mode.values)
    kinds = {doc["kind"] for doc in docs}
    assert mode.kinds <= kinds, mode.reason
    validate(docs)


def test_monitoring_objects_come_from_the_chart_files(helm: Helm, chart_copy: Path) -> None:
    files = chart_copy / "files"
    files.mkdir()
    (files / "prometheus-rules.yaml").write_text(RULES)
    (files / "grafana-dashboard.json").write_text(json.dumps(DASHBOARD, indent=2))
    docs = helm.render(ALL_TOGGLES, chart=chart_copy)
    validate(docs)

    rule = one(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES), "the rules reach Prometheus unchanged, {{ $labels }} included"
    dashboard = one(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["amlops.json"]) == DASHBOARD
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_a_whole_prometheusrule_file_is_accepted_too(helm: Helm, chart_copy: Path) -> None:
    (chart_copy / "files").mkdir()
    whole = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "spec": yaml.safe_load(RULES)}
    (chart_copy / "files" / "prometheus-rules.yaml").write_text(yaml.safe_dump(whole))
    rule = one(helm.render({"metrics": {"prometheusRule": {"enabled": True}}}, chart=chart_copy), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES)


def test_monitoring_toggles_render_nothing_without_the_files(helm: Helm, chart_copy: Path) -> None:
    docs = helm.render(ALL_TOGGLES, chart=chart_copy)
    assert not by_kind(docs, "PrometheusRule")
    assert not by_kind(docs, "ConfigMap")
    assert by_kind(docs, "ServiceMonitor"), "the ServiceMonitor needs no file"


def test_defaults_run_one_restricted_standalone_replica(helm: Helm) -> None:
    docs = helm.render()
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(docs)
    assert deployment["spec"]["replicas"] == 1
    assert c["args"] == ["run", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9090
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


NAMESPACED_GRANTS = {
    ("amlops.io", "amlcomputes", "patch"),
    ("amlops.io", "paralleljobs/status", "patch"),
    ("amlops.io", "amlcomputes/scale", "get"),
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
    ("", "secrets", "get"),
    ("", "secrets", "patch"),
    ("", "configmaps", "get"),
}


def test_cluster_wide_rbac_is_least_privilege(helm: Helm) -> None:
    rules = _rules(one(helm.render(), "ClusterRole"))
    assert rules >= NAMESPACED_GRANTS
    assert ("", "namespaces", "watch") in rules
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "list") in rules
    # Read one Secret by name, never enumerate them (patch: the in-use finalizer only, held to it by the
    # secret-guard policy); never delete or create what users own, except a finished job (ParallelJob,
    # CommandJob) that asked for it (ttlSecondsAfterFinished).
    assert {verb for group, resource, verb in rules if resource == "secrets"} == {"get", "patch"}
    assert {(group, resource) for group, resource, verb in rules if verb == "delete"} == {
        ("amlops.io", "paralleljobs"),
        ("amlops.io", "commandjobs"),
    }
    # The kinds' rules are generated from the API (templates/_kinds.tpl): every kind, nothing else of the group.
    ours = {resource for group, resource, _ in rules if group == "amlops.io"}
    assert ours == {f"{k.plural()}{sub}" for k in KINDS for sub in ("", "/status")} | {"amlcomputes/scale"}
    assert not {verb for _, _, verb in rules} & {"deletecollection", "escalate", "bind", "impersonate", "*"}
    assert not any(resource.endswith("kopfpeerings") for _, resource, _ in rules), "standalone: no peering"


def test_namespaced_rbac_grants_only_the_watched_namespaces(helm: Helm) -> None:
    docs = helm.render({"watchNamespaces": ["team-a", "team-b"]})
    roles = by_kind(docs, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        assert _rules(role) >= NAMESPACED_GRANTS
    assert _rules(one(docs, "ClusterRole")) == {
        (group, resource, verb)
        for group, resource in (("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"))
        for verb in ("get", "list", "watch")
    }
    for binding in by_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "amlops", "namespace": "amlops-system"}]
    assert container(docs)["args"][-2:] == ["--namespace=team-a", "--namespace=team-b"]


def test_two_replicas_peer_so_that_one_is_active(helm: Helm) -> None:
    cluster = helm.render({"replicas": 2})
    assert "--peering=amlops" in container(cluster)["args"]
    assert {crd["metadata"]["name"] for crd in by_kind(cluster, "CustomResourceDefinition")} == {
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    peering = one(cluster, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "amlops"
    # Created after the CRD: Helm maps every ordinary manifest before creating any.
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in _rules(one(cluster, "ClusterRole"))

    namespaced = helm.render({"replicas": 2, "watchNamespaces": ["team-a"], "peering": {"createCRDs": False}})
    assert not by_kind(namespaced, "CustomResourceDefinition")
    assert [p["metadata"]["namespace"] for p in by_kind(namespaced, "KopfPeering")] == ["team-a"]
    assert ("kopf.dev", "kopfpeerings", "patch") in _rules(one(namespaced, "Role"))


def test_azure_auth_and_endpoint_values_reach_the_pod(helm: Helm) -> None:
    docs = helm.render(ALL_TOGGLES)
    pod = one(docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    sa = one(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555"
    }
    env = {e["name"]: e.get("value") for e in container(docs)["env"]}
    assert env["AMLOPS_ARM_ENDPOINT"] == "https://127.0.0.1:8443"
    assert env["AMLOPS_BATCH_ENDPOINT_TEMPLATE"] == "http://127.0.0.1:8444/{account}"
    assert env["AMLOPS_BLOB_ENDPOINT"] == "http://127.0.0.1:10000"
    assert env["AMLOPS_CA_BUNDLE"] == "/etc/amlops/ca/ca.crt"
    assert env["AMLOPS_DEFAULT_CREDENTIALS_SECRET"] == "azure-credentials"
    assert env["AMLOPS_OPERATOR_IDENTITY_NAMESPACES"] == "platform,team-*"
    assert env["AMLOPS_SHARED_STORAGE_NAMESPACES"] == "team-a,team-b"
    # The names the operator's settings read: a typo would be ignored silently (extra="ignore").
    assert {name for name in env if name.startswith("AMLOPS_")} <= {
        f"AMLOPS_{name.upper()}" for name in Settings.model_fields
    }
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "ca-bundle")
    assert volume["configMap"] == {"name": "amlops-emulator-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}

    default_env = {e["name"]: e.get("value") for e in container(helm.render({}))["env"]}
    assert "AMLOPS_SHARED_STORAGE_NAMESPACES" not in default_env, "no namespace may use the operator's storage"
    assert default_env["AMLOPS_ARM_BUDGET_SHARE"] == "0.8", "a fifth of each ARM bucket is left to other tools"
    half = {e["name"]: e.get("value") for e in container(helm.render({"azure": {"armBudgetShare": 0.5}}))["env"]}
    assert Settings(arm_budget_share=half["AMLOPS_ARM_BUDGET_SHARE"]).arm_budget_share == 0.5
    assert "AMLOPS_ARM_BUCKETS" not in default_env, "the documented buckets unless told otherwise"
    larger = {"azure": {"armBuckets": "reads=500:50,writes=400:20"}}
    told = {e["name"]: e.get("value") for e in container(helm.render(larger))["env"]}
    assert Settings(arm_buckets=told["AMLOPS_ARM_BUCKETS"]).arm_buckets == "reads=500:50,writes=400:20"

    secret = helm.render({"azure": {"existingSecret": "azure-sp"}})
    assert container(secret)["envFrom"] == [{"secretRef": {"name": "azure-sp"}}]
    assert "azure.workload.identity/use" not in one(secret, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not {e["name"] for e in container(secret)["env"]} & {"AMLOPS_ARM_ENDPOINT", "AMLOPS_CA_BUNDLE"}


def _policy(docs: list[dict[str, Any]], suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    (policy,) = [d for d in by_kind(docs, "ValidatingAdmissionPolicy") if d["metadata"]["name"].endswith(suffix)]
    (binding,) = [
        d for d in by_kind(docs, "ValidatingAdmissionPolicyBinding") if d["metadata"]["name"].endswith(suffix)
    ]
    return policy, binding


def test_deletion_protection_policy_covers_every_kind(helm: Helm) -> None:
    policy, binding = _policy(helm.render(), "-deletion-protection")
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["DELETE"]
    assert rule["resources"] == [k.plural() for k in KINDS]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    off = helm.render({"deletionProtection": {"enabled": False}})
    assert not [d for d in by_kind(off, "ValidatingAdmissionPolicy") if "deletion" in d["metadata"]["name"]]


def test_secret_guard_policy_holds_only_the_operators_secret_updates(helm: Helm) -> None:
    policy, binding = _policy(helm.render(), "-secret-guard")
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["resources"], rule["operations"]) == (["secrets"], ["UPDATE"])
    (condition,) = policy["spec"]["matchConditions"]
    assert (
        condition["expression"].strip() == "request.userInfo.username == 'system:serviceaccount:amlops-system:amlops'"
    )
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    off = helm.render({"secretGuard": {"enabled": False}})
    assert not [d for d in by_kind(off, "ValidatingAdmissionPolicy") if "secret" in d["metadata"]["name"]]


@dataclass(frozen=True)
class BadValues:
    reason: str
    values: dict[str, Any]
    error: str


BAD_VALUES = [
    pytest.param(BadValues("negative replicas", {"replicas": -1}, "/replicas"), id="NegativeReplicas"),
    pytest.param(BadValues("a typo must not be silently ignored", {"replica": 2}, "'replica'"), id="UnknownKey"),
    pytest.param(
        BadValues("unknown nested key", {"image": {"repo": "x"}}, "'repo' not allowed"), id="UnknownNestedKey"
    ),
    pytest.param(
        BadValues("namespaces are DNS labels", {"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        id="BadNamespace",
    ),
    pytest.param(
        BadValues("the health endpoint owns 8080", {"metrics": {"port": 8080}}, "/metrics/port"), id="PortClash"
    ),
    pytest.param(
        BadValues(
            "a CA bundle from a ConfigMap or a Secret, not both",
            {"azure": {"caBundle": {"configMap": "a", "secret": "b"}}},
            "/azure/caBundle",
        ),
        id="TwoCaSources",
    ),
    pytest.param(
        BadValues("a client ID is a GUID", {"azure": {"workloadIdentity": {"clientId": "not-a-guid"}}}, "/clientId"),
        id="BadClientId",
    ),
    pytest.param(
        BadValues("endpoints are URLs", {"azure": {"endpoints": {"arm": "localhost:8443"}}}, "/azure/endpoints/arm"),
        id="EndpointNotUrl",
    ),
    pytest.param(
        BadValues("a share of ARM's budget is in (0, 1]", {"azure": {"armBudgetShare": 1.5}}, "/azure/armBudgetShare"),
        id="BudgetShareAboveOne",
    ),
    pytest.param(
        BadValues("buckets as <kind>=<size>:<refill>", {"azure": {"armBuckets": "reads=500"}}, "/azure/armBuckets"),
        id="BucketWithoutRefill",
    ),
    pytest.param(
        BadValues("Kubernetes pull policies only", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        id="BadPullPolicy",
    ),
    pytest.param(
        BadValues(
            "shared storage goes to namespaces (DNS labels) or '*'",
            {"azure": {"sharedStorageNamespaces": ["team_a"]}},
            "/azure/sharedStorageNamespaces/0",
        ),
        id="BadSharedStorageNamespace",
    ),
]


@pytest.mark.parametrize("case", BAD_VALUES)
def test_schema_rejects_bad_values(helm: Helm, case: BadValues) -> None:
    result = helm.template(case.values, check=False)
    assert result.returncode != 0, case.reason
    assert "don't meet the specifications of the schema" in result.stderr, case.reason
    assert case.error in result.stderr, f"{case.reason}: {result.stderr}"


def test_chart_crds_are_the_generated_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert top, "no CRDs generated"
    assert chart == top, "run `make crds`: the chart's crds/ differ from crds/"
