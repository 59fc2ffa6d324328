#!/usr/bin/env python3
"""Checks of the paygate Helm chart, with Helm's own engine (no helm binary, no cluster).

Usage (from anywhere; CI runs it from the repository root):

    python3 ci/chart_check.py [--chart DIR] [--no-install] [--show NAME]

Helm itself comes from the PyPI package helm-python-sdk (import name helm_python): Helm 4's Go
library (helm.sh/helm/v4) compiled into a C library inside a binary wheel and called with
ctypes. Its lint and Chart.load(...).render(values) run offline: the render is `helm template`
(values merged with values.yaml, checked against values.schema.json, every template executed,
`fail` included). The packages are pinned in ci/requirements-chart.txt and installed with pip
on the first run when one is missing (--no-install turns that off).

Checks, each failure printed as one line naming the file (or value set) and what to fix:
  chart      Chart.yaml: apiVersion v2, name, SemVer version, appVersion (a string);
             the expected templates and dashboards/paygate.json exist.
  yaml       every YAML file in the chart outside templates/ parses; values.schema.json is JSON.
  schema     values.schema.json is a valid draft-07 JSON Schema, closed at the top level; it
             types and describes every value in values.yaml, names no value values.yaml lacks; Helm
             accepts values.yaml and the valid value sets below, and rejects the invalid ones.
  docs       every key in values.yaml (outside list items) has a comment; every environment
             variable the chart sets is named in values.yaml's comments.
  syntax     templates: balanced {{ }}, blocks closed, every include names a defined template
             (Helm only notices an undefined include in a branch that runs).
  values     every .Values path a template uses exists in values.yaml (and the schema); every
             value in values.yaml is used by some template.
  lint       `helm lint --strict` of the chart with every valid value set.
  render     every valid value set renders; the manifests are asserted on (probes, tokens,
             secrets only in Secrets, monitoring objects, NetworkPolicy, ...).
  fails      value sets that cannot work fail rendering with a message naming the value.
  readme     every environment variable the chart sets is in README's configuration table;
             every metric the PrometheusRule and the dashboard use is in README's Metrics
             paragraph; every alert of README's "Alerts worth setting" has a rule.

Exit status: 0 when all checks pass, 1 when any fails, 2 when it cannot run at all.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-chart.txt"

# ---- dependencies ---------------------------------------------------------------------------

# distribution name -> import name
IMPORTS = {"helm-python-sdk": "helm_python", "PyYAML": "yaml", "jsonschema": "jsonschema"}


def requirement_pins() -> dict[str, str | None]:
    """{distribution: exact version or None} from ci/requirements-chart.txt."""
    pins: dict[str, str | None] = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(==\s*([^,;\s]+))?", line)
        if m:
            pins[m.group(1)] = m.group(3)
    return pins


def missing_requirements() -> list[str]:
    missing = []
    for dist, exact in requirement_pins().items():
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{dist} (not installed)")
            continue
        if exact and version != exact:
            missing.append(f"{dist} {version} (need {exact})")
            continue
        try:
            importlib.import_module(IMPORTS.get(dist, dist))
        except Exception as e:  # an unloadable native library, a broken install
            missing.append(f"{dist} (import failed: {one_line(e)})")
    return missing


def ensure_requirements(install: bool) -> None:
    missing = missing_requirements()
    if missing and install:
        print(f"chart check: installing {REQUIREMENTS.relative_to(HERE.parent)} ({', '.join(missing)})", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            print(done.stdout)
            cannot_run(f"`{' '.join(cmd)}` failed (exit {done.returncode})")
        importlib.invalidate_caches()
        missing = missing_requirements()
    if missing:
        cannot_run("missing Python packages: " + "; ".join(missing) + f" (python3 -m pip install -r {REQUIREMENTS})")


def cannot_run(message: str) -> None:
    """Exit 2: the check could not run (an environment problem, not a chart problem)."""
    print(f"chart check: cannot run: {message}", file=sys.stderr)
    sys.exit(2)


def one_line(x: Any) -> str:
    return " ".join(str(x).split())


# ---- value sets -----------------------------------------------------------------------------

RELEASE = "paygate"
NAMESPACE = "payments"

FARE_TOKEN = "fare-7c1d0e5b9a4f62d8"
EVENTS_TOKEN = "events-3f8a2c6e1b9d4a07"
BACKOFFICE_TOKEN = "backoffice-5e2b7d9c0a1f4836"
DEV_TOKEN = "dev-0a1b2c3d4e5f6a7b8c9d"
PG_URL = "postgres://paygate:Pg-pass-4d1e9f@db.example:5432/paygate?sslmode=require"
VIPPS = {
    "baseUrl": "https://api.vipps.no",
    "clientId": "client-id-8f3e",
    "clientSecret": "Vipps-client-secret-51c2",
    "subscriptionKey": "Vipps-subscription-key-93ad",
    "msn": "123456",
}
EMULATOR = {"vipps": {"emulator": True}}
LEAST_PRIVILEGE_CALLERS = [
    {"name": "fare-system", "token": FARE_TOKEN, "scopes": ["payments"]},
    {"name": "ride-events", "token": EVENTS_TOKEN, "scopes": ["events"]},
    {"name": "backoffice", "token": BACKOFFICE_TOKEN, "scopes": ["payments", "pii", "customers"]},
]


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out = deep_merge(out, part)
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# name -> (values, expectations). Expectations: kinds (exact multiset of rendered kinds),
# readiness ("grpc" or "http"), and set-specific checks in Checker.check_<name>.
VALID_SETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sqlite-emulator": (
        merged(EMULATOR, {"auth": {"apiTokens": f"dev:{DEV_TOKEN}"}}),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
         "readiness": "grpc"},
    ),
    "vipps-postgres-3": (
        {
            "replicaCount": 3,
            "database": {"type": "postgres", "postgres": {"url": PG_URL}},
            "vipps": VIPPS,
            "auth": {"apiTokens": f"fare-system:{FARE_TOKEN}:payments"},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": ["pay.example.com"],
                "tls": [{"secretName": "pay-example-tls", "hosts": ["pay.example.com"]}],
            },
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        },
        {"kinds": ["ConfigMap", "Deployment", "Ingress", "Job", "PodDisruptionBudget", "Secret", "Secret",
                   "Service", "ServiceAccount", "ServiceMonitor"],
         "readiness": "grpc"},
    ),
    "tls-mtls-client-scopes": (
        merged(EMULATOR, {
            "tls": {
                "enabled": True,
                "secretName": "paygate-grpc-tls",
                "clientAuth": True,
                "clientCaSecretName": "paygate-client-ca",
                "clientScopes": [
                    {"name": "fare-system.payments.svc", "scopes": ["payments"]},
                    {"name": "backoffice.internal", "scopes": ["payments", "pii", "customers"]},
                ],
            },
            "networkPolicy": {"enabled": True},
        }),
        {"kinds": ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Secret", "Service",
                   "ServiceAccount"],
         "readiness": "http"},
    ),
    "existing-secret": (
        {
            "existingSecret": "paygate-secrets",
            "database": {"type": "postgres"},
            "vipps": {"baseUrl": "https://apitest.vipps.no", "clientId": "c1d2", "msn": 1234567},
            "webhook": {"publicUrl": "https://pay.example.com/webhooks/vipps"},
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 10},
            "tls": {"enabled": True, "secretName": "paygate-grpc-tls", "clientAuth": True},
            "podDisruptionBudget": {"maxUnavailable": "50%"},
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        },
        {"kinds": ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Service",
                   "ServiceAccount"],
         "readiness": "http"},
    ),
    "emulator-open": (
        merged(EMULATOR, {"auth": {"allowUnauthenticated": True}}),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
         "readiness": "grpc"},
    ),
    "monitoring-all-on": (
        merged(EMULATOR, {
            "auth": {"apiTokens": f"dev:{DEV_TOKEN}"},
            "metrics": {
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                                   "alertLabels": {"team": "payments"}},
                "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                     "annotations": {"grafana_folder": "Payments"}},
            },
            "networkPolicy": {
                "enabled": True,
                "grpc": {"podSelector": {"matchLabels": {"app": "fare-system"}}},
                "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}]}],
            },
        }),
        {"kinds": ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "PrometheusRule",
                   "Secret", "Service", "ServiceAccount", "ServiceMonitor"],
         "readiness": "grpc"},
    ),
    "scoped-tokens": (
        merged(EMULATOR, {"auth": {"apiTokens": f"dev:{DEV_TOKEN}:qr", "callers": LEAST_PRIVILEGE_CALLERS}}),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
         "readiness": "grpc"},
    ),
    "scoped-tokens-env": (
        merged(EMULATOR, {"auth": {"callers": LEAST_PRIVILEGE_CALLERS, "tokensAsFile": False}}),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
         "readiness": "grpc"},
    ),
    "scoped-tokens-existing-secret": (
        merged(EMULATOR, {
            "existingSecret": "paygate-secrets",
            "auth": {
                "tokensAsFile": False,
                "callers": [
                    {"name": "fare-system", "existingSecretKey": "FARE_SYSTEM_TOKEN", "scopes": ["payments"]},
                    {"name": "ride-events", "existingSecretKey": "RIDE_EVENTS_TOKEN", "scopes": ["events"]},
                    {"name": "backoffice", "existingSecretKey": "BACKOFFICE_TOKEN",
                     "scopes": ["payments", "pii", "customers"]},
                ],
            },
        }),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount"],
         "readiness": "grpc"},
    ),
    "readiness-http": (
        merged(EMULATOR, {"auth": {"apiTokens": f"dev:{DEV_TOKEN}"}, "probes": {"readiness": {"type": "http"}}}),
        {"kinds": ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
         "readiness": "http"},
    ),
}

TOKENS = {"auth": {"apiTokens": f"dev:{DEV_TOKEN}"}}

# Value sets that must fail rendering: name -> (values, text the error must contain).
FAILING_SETS: dict[str, tuple[dict[str, Any], str]] = {
    "chart defaults (no Vipps, no emulator)": ({}, "vipps.baseUrl"),
    "empty vipps.baseUrl without vipps.emulator": (TOKENS, "vipps.baseUrl is empty"),
    "vipps.emulator together with vipps.baseUrl": (
        merged(TOKENS, {"vipps": {**VIPPS, "emulator": True}}), "vipps.emulator=true and vipps.baseUrl"),
    "real Vipps without clientId": (merged(TOKENS, {"vipps": {"baseUrl": "https://api.vipps.no"}}), "vipps.clientId"),
    "real Vipps with a hand-registered secret but no public webhook URL": (
        merged(TOKENS, {"vipps": VIPPS, "webhook": {"publicUrl": "", "secret": "whsec-0123456789"},
                        "ingress": {"enabled": False}}), "webhook.publicUrl is required"),
    "replicaCount 3 with SQLite": (
        merged(EMULATOR, TOKENS, {"replicaCount": 3}), "replicaCount > 1 requires database.type=postgres"),
    "autoscaling with SQLite": (
        merged(EMULATOR, TOKENS, {"autoscaling": {"enabled": True}}), "autoscaling.enabled with autoscaling.maxReplicas > 1"),
    "postgres without a URL": (merged(EMULATOR, TOKENS, {"database": {"type": "postgres"}}), "database.postgres.url"),
    "no authentication at all": (EMULATOR, "auth.callers or auth.apiTokens"),
    "existingSecretKey with tokensAsFile": (
        merged(EMULATOR, {"existingSecret": "s", "auth": {"callers": [
            {"name": "a", "existingSecretKey": "A", "scopes": ["payments"]}]}}), "auth.tokensAsFile=false"),
    "existingSecretKey without existingSecret": (
        merged(EMULATOR, {"auth": {"tokensAsFile": False, "callers": [
            {"name": "a", "existingSecretKey": "A", "scopes": ["payments"]}]}}), "existingSecretKey needs existingSecret"),
    "literal caller token with existingSecret": (
        merged(EMULATOR, {"existingSecret": "s", "auth": {"callers": [
            {"name": "a", "token": FARE_TOKEN, "scopes": ["payments"]}]}}), "existingSecretKey"),
    "literal and existingSecretKey callers mixed": (
        merged(EMULATOR, {"existingSecret": "s", "auth": {"tokensAsFile": False, "callers": [
            {"name": "a", "existingSecretKey": "A", "scopes": ["payments"]},
            {"name": "b", "token": FARE_TOKEN, "scopes": ["events"]}]}}), "auth.callers[1] (b): a literal token"),
    "networkPolicy with an empty gRPC namespaceSelector": (
        merged(EMULATOR, TOKENS, {"networkPolicy": {"enabled": True, "grpc": {"namespaceSelector": {"matchLabels": None}}}}),
        "networkPolicy/grpc/namespaceSelector"),
    "tls.clientScopes without tls.clientAuth": (
        merged(EMULATOR, TOKENS, {"tls": {"enabled": True, "secretName": "t",
                                          "clientScopes": [{"name": "a", "scopes": ["qr"]}]}}),
        "tls.clientScopes needs tls.clientAuth"),
    "gRPC readiness probe with TLS": (
        merged(EMULATOR, TOKENS, {"tls": {"enabled": True, "secretName": "t"}, "probes": {"readiness": {"type": "grpc"}}}),
        "probes.readiness.type=grpc"),
    "shutdown grace longer than terminationGracePeriodSeconds": (
        merged(EMULATOR, TOKENS, {"config": {"shutdownGraceMs": 40000}}), "terminationGracePeriodSeconds"),
}

# Overrides the schema (Helm's validation of values.schema.json) must reject.
INVALID_EXAMPLES: dict[str, dict[str, Any]] = {
    'replicaCount "three"': {"replicaCount": "three"},
    "database.type mysql": {"database": {"type": "mysql"}},
    "unknown top-level key": {"replicas": 3},
    "log format xml": {"config": {"logFormat": "xml"}},
    "negative port": {"ports": {"grpc": -1}},
    "webhook URL without a scheme": {"webhook": {"publicUrl": "pay.example.com/webhooks/vipps"}},
    "vipps.emulator as a string": {"vipps": {"emulator": "yes"}},
    "caller scope admin": {"auth": {"callers": [{"name": "a", "token": FARE_TOKEN, "scopes": ["admin"]}]}},
    "caller without scopes": {"auth": {"callers": [{"name": "a", "token": FARE_TOKEN}]}},
    "caller token under 16 characters": {"auth": {"callers": [{"name": "a", "token": "short", "scopes": ["qr"]}]}},
    "caller token with a colon": {"auth": {"callers": [{"name": "a", "token": "abc:defghijklmnopq", "scopes": ["qr"]}]}},
    "caller with token and existingSecretKey": {"auth": {"callers": [
        {"name": "a", "token": FARE_TOKEN, "existingSecretKey": "A", "scopes": ["qr"]}]}},
    "caller name with a colon": {"auth": {"callers": [{"name": "a:b", "token": FARE_TOKEN, "scopes": ["qr"]}]}},
    "TLS client scope unknown": {"tls": {"clientScopes": [{"name": "a", "scopes": ["everything"]}]}},
    "probes.liveness.grpcService (liveness is HTTP now)": {"probes": {"liveness": {"grpcService": "x"}}},
    "probes.readiness.type tcp": {"probes": {"readiness": {"type": "tcp"}}},
    "config.retention forever": {"config": {"retention": "forever"}},
    "config.maxSubscribers 0": {"config": {"maxSubscribers": 0}},
    "networkPolicy.grpc.namespaceSelector empty": {"networkPolicy": {"grpc": {"namespaceSelector": {"matchLabels": None}}}},
    "prometheusRule.errorRatioThreshold 2": {"metrics": {"prometheusRule": {"errorRatioThreshold": 2}}},
}

# Maps and lists whose content is the user's (Kubernetes objects, labels, ...): a template may
# read below them, values.yaml need not list their keys, and the schema leaves them open.
FREE_FORM = {
    "podAnnotations", "podLabels", "annotations", "labels", "resources", "nodeSelector",
    "tolerations", "affinity", "topologySpreadConstraints", "extraEnv", "behavior",
    "podSecurityContext", "securityContext", "imagePullSecrets", "alertLabels",
    "namespaceSelector", "podSelector", "egress",
}

REQUIRED_FILES = [
    "templates/_helpers.tpl", "templates/deployment.yaml", "templates/service.yaml",
    "templates/ingress.yaml", "templates/configmap.yaml", "templates/secret.yaml",
    "templates/hpa.yaml", "templates/pdb.yaml", "templates/servicemonitor.yaml",
    "templates/migration-job.yaml", "templates/pvc.yaml", "templates/NOTES.txt",
    "templates/prometheusrule.yaml", "templates/grafana-dashboard.yaml",
    "templates/networkpolicy.yaml", "dashboards/paygate.json",
]

# Environment variables the chart sets that are not paygate configuration: Kubernetes
# composes PAYGATE_API_TOKENS from them (auth.callers with existingSecretKey).
CHART_HELPER_ENV = re.compile(r"CALLER_TOKEN_[0-9]+")

# Keys that hold secrets: never in a ConfigMap.
SECRET_KEYS = {"VIPPS_CLIENT_SECRET", "VIPPS_SUBSCRIPTION_KEY", "VIPPS_WEBHOOK_SECRET", "PAYGATE_API_TOKENS"}

# Labels Prometheus or the operator add to every series.
TARGET_LABELS = {"namespace", "job", "pod", "instance", "service", "container", "endpoint"}


# ---- the checks -----------------------------------------------------------------------------


class Rendered:
    """One value set rendered by Helm: the parsed objects and the raw text per template."""

    def __init__(self, name: str, values: dict[str, Any], files: dict[str, str]) -> None:
        self.name = name
        self.values = values
        self.files = files
        self.objects: list[tuple[str, dict[str, Any]]] = []  # (template, object)
        self.notes = ""
        self.texts: list[tuple[str, str]] = []  # (template, text of one document)

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for _, o in self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for _, o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any] | None:
        for o in self.of_kind(kind):
            if name is None or o["metadata"]["name"] == name:
                return o
        return None


class Checker:
    def __init__(self, chart: Path, helm: Any, yaml: Any, jsonschema: Any) -> None:
        self.chart = chart
        self.helm = helm
        self.yaml = yaml
        self.jsonschema = jsonschema
        self.errors: list[str] = []
        self.values: dict[str, Any] = {}
        self.schema: dict[str, Any] | None = None
        self.templates: dict[str, str] = {}
        self.value_paths: set[tuple[str, ...]] = set()
        self.rendered: dict[str, Rendered] = {}
        self.readme_keys: set[str] = set()
        self.readme_metrics: dict[str, set[str]] = {}
        self.readme_alerts: list[str] = []
        self.env_keys_seen: set[str] = set()
        self.undocumented: dict[str, list[str]] = {}  # env key -> value sets that set it
        self.helm_chart: Any = None

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.chart.parent))
        except ValueError:
            return str(path)

    # ---- files ------------------------------------------------------------------------------

    def load(self) -> bool:
        if not self.chart.is_dir():
            self.error(str(self.chart), "chart directory not found")
            return False
        tdir = self.chart / "templates"
        if tdir.is_dir():
            for p in sorted(tdir.rglob("*")):
                if p.is_file():
                    self.templates[str(p.relative_to(tdir))] = p.read_text(encoding="utf-8")
        else:
            self.error(self.rel(tdir), "templates/ directory is missing")
        return True

    def check_yaml_files(self) -> None:
        yaml = self.yaml
        for p in sorted(self.chart.rglob("*")):
            if not p.is_file() or "templates" in p.relative_to(self.chart).parts:
                continue
            if p.suffix in (".yaml", ".yml"):
                try:
                    list(yaml.safe_load_all(p.read_text(encoding="utf-8")))
                except yaml.YAMLError as e:
                    self.error(self.rel(p), f"does not parse as YAML: {one_line(e)}")
            elif p.suffix == ".json":
                try:
                    json.loads(p.read_text(encoding="utf-8"))
                except json.JSONDecodeError as e:
                    self.error(self.rel(p), f"is not valid JSON: {e}")
        values_file = self.chart / "values.yaml"
        if not values_file.is_file():
            self.error(self.rel(values_file), "missing")
        else:
            try:
                loaded = yaml.safe_load(values_file.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict):
                    self.error(self.rel(values_file), "must be a YAML mapping")
                else:
                    self.values = loaded
            except yaml.YAMLError:
                pass  # reported above
        schema_file = self.chart / "values.schema.json"
        if not schema_file.is_file():
            self.error(self.rel(schema_file), "missing")
        else:
            try:
                self.schema = json.loads(schema_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                pass  # reported above

    # ---- Chart.yaml ---------------------------------------------------------------------------

    def check_chart_yaml(self) -> None:
        path = self.chart / "Chart.yaml"
        where = self.rel(path)
        if not path.is_file():
            self.error(where, "missing")
            return
        try:
            chart = self.yaml.safe_load(path.read_text(encoding="utf-8"))
        except self.yaml.YAMLError:
            return  # reported by check_yaml_files
        if not isinstance(chart, dict):
            self.error(where, "must be a YAML mapping")
            return
        if chart.get("apiVersion") != "v2":
            self.error(where, f"apiVersion must be v2, found {chart.get('apiVersion')!r}")
        name = chart.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
            self.error(where, f"name must be a lower-case DNS label, found {name!r}")
        version = chart.get("version")
        semver = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
        if not isinstance(version, str) or not re.fullmatch(semver, version):
            self.error(where, f"version must be SemVer 2 like 0.1.0 (quoted if need be), found {version!r}")
        app_version = chart.get("appVersion")
        if not isinstance(app_version, str) or not app_version.strip():
            self.error(where, f"appVersion must be a non-empty string (quote it: \"0.1.0\"), found {app_version!r}")
        if chart.get("type", "application") not in ("application", "library"):
            self.error(where, f"type must be application or library, found {chart.get('type')!r}")
        for name in REQUIRED_FILES:
            if not (self.chart / name).is_file():
                self.error(self.rel(self.chart / name), "expected file is missing")

    # ---- values.schema.json -------------------------------------------------------------------

    def check_schema(self) -> None:
        if self.schema is None or not self.values:
            return
        jsonschema = self.jsonschema
        where = self.rel(self.chart / "values.schema.json")
        schema = self.schema
        if schema.get("$schema", "").rstrip("#") != "http://json-schema.org/draft-07/schema":
            self.error(where, f"$schema must be http://json-schema.org/draft-07/schema#, found {schema.get('$schema')!r}")
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            self.error(where, f"is not a valid draft-07 JSON Schema: {one_line(e.message)} at {path_str(e.path)}")
            return
        if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
            self.error(where, "top level must be type: object with additionalProperties: false, so typos in value names are rejected")
        self._schema_covers(self.values, schema, (), where)
        if self.helm_chart is None:
            return
        # Helm's own schema validation of the merged values, as at install time.
        helm = self.helm
        try:
            self.helm_chart.validate_schema({})
        except helm.HelmError as e:
            self.error(where, f"Helm rejects values.yaml itself: {one_line(e)}")
        for name, override in INVALID_EXAMPLES.items():
            try:
                self.helm_chart.validate_schema(override)  # merges values.yaml itself, as install does
            except helm.HelmValuesError:
                continue
            except helm.HelmError as e:
                self.error(where, f"invalid example '{name}': unexpected Helm error {type(e).__name__}: {one_line(e)}")
                continue
            self.error(where, f"accepts the invalid example '{name}' ({json.dumps(override)})")

    def _schema_covers(self, value: Any, node: dict[str, Any], path: tuple[str, ...], where: str) -> None:
        """Every value has a typed schema node; every schema property exists in values.yaml."""
        if not isinstance(value, dict):
            if not any(k in node for k in ("type", "enum", "const", "oneOf", "anyOf")):
                self.error(where, f"{dotted(path)} has no type (or enum) in the schema")
            if not node.get("description") and path:
                self.error(where, f"{dotted(path)} has no description in the schema")
            return
        if node.get("type") != "object" and "object" not in (node.get("type") or []):
            self.error(where, f"{dotted(path) or '(top level)'} is a map in values.yaml but not type object in the schema")
            return
        props = node.get("properties", {})
        open_map = node.get("additionalProperties", True) is not False
        if path and (path[-1] in FREE_FORM or (open_map and not props)):
            return  # free-form: its content is the user's
        for key, child in value.items():
            if key in props:
                self._schema_covers(child, props[key], path + (key,), where)
            else:
                self.error(where, f"{dotted(path + (key,))} (in values.yaml) is not described in the schema")
        for key in props:
            if key not in value:
                self.error(where, f"{dotted(path + (key,))} is in the schema but not in values.yaml (document its default there)")

    # ---- values.yaml comments -----------------------------------------------------------------

    def check_values_documented(self) -> None:
        path = self.chart / "values.yaml"
        if not path.is_file():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        dashes: list[int] = []  # indents of the list items we are inside
        block_indent: int | None = None  # inside a | or > block scalar
        for n, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            indent = len(line) - len(line.lstrip(" "))
            if block_indent is not None:
                if indent > block_indent:
                    continue
                block_indent = None
            while dashes and indent <= dashes[-1] and not stripped.startswith("-"):
                dashes.pop()
            if stripped.startswith("-"):
                while dashes and indent < dashes[-1]:
                    dashes.pop()
                if not dashes or dashes[-1] != indent:
                    dashes.append(indent)
                continue
            m = re.match(r'(\s*)("[^"]+"|\'[^\']+\'|[A-Za-z0-9_.\-/]+):(\s+(.*))?$', line)
            if not m:
                continue
            rest = m.group(4) or ""
            if re.match(r"[|>][-+0-9]*\s*(#.*)?$", rest):
                block_indent = indent
            if dashes and indent > dashes[-1]:
                continue  # a key of a list item: documented by its list
            inline_comment = re.search(r"\s#", strip_quoted(rest)) is not None
            previous = next((lines[i].strip() for i in range(n - 2, -1, -1) if lines[i].strip()), "")
            if not inline_comment and not (previous.startswith("#") and lines[n - 2].strip()):
                self.error(f"{self.rel(path)}:{n}", f"value '{m.group(2)}' has no comment (add one on the line above saying what it does and why)")

    # ---- template syntax ----------------------------------------------------------------------

    def check_template_syntax(self) -> None:
        defined: dict[str, str] = {}
        used: list[tuple[str, str, int]] = []
        for name, text in self.templates.items():
            where = self.rel(self.chart / "templates" / name)
            stack: list[tuple[str, int]] = []
            for action, line in self._actions(text, where):
                body = action.strip()
                if body.startswith("-"):
                    body = body[1:]
                if body.endswith("-"):
                    body = body[:-1]
                body = body.strip()
                if body.startswith("/*"):
                    continue
                word = re.match(r"[A-Za-z_]*", body).group(0)
                if word in ("if", "with", "range", "define", "block"):
                    if word == "define":
                        if stack:
                            self.error(f"{where}:{line}", f"define inside an open {{{{ {stack[-1][0]} }}}} (line {stack[-1][1]})")
                        m = re.match(r'define\s+"([^"]+)"', body)
                        if not m:
                            self.error(f"{where}:{line}", "define needs a quoted template name")
                        elif m.group(1) in defined:
                            self.error(f"{where}:{line}", f"template {m.group(1)!r} is already defined in {defined[m.group(1)]}")
                        else:
                            defined[m.group(1)] = where
                    stack.append((word, line))
                elif word == "else":
                    if not stack or stack[-1][0] not in ("if", "with", "range"):
                        self.error(f"{where}:{line}", "{{ else }} outside an if/with/range block")
                elif word == "end":
                    if not stack:
                        self.error(f"{where}:{line}", "{{ end }} without an open if/with/range/define block")
                    else:
                        stack.pop()
                for m in re.finditer(r'\b(?:include|template)\s+"([^"]+)"', strip_comments(body)):
                    used.append((m.group(1), where, line))
            for word, line in stack:
                self.error(f"{where}:{line}", f"{{{{ {word} }}}} is never closed by {{{{ end }}}}")
        for tname, where, line in used:
            if tname not in defined:
                self.error(f"{where}:{line}", f"include/template of undefined template {tname!r}")

    def _actions(self, text: str, where: str) -> Iterator[tuple[str, int]]:
        """Yields (action text between the delimiters, line) and reports delimiter errors."""
        pos, n = 0, len(text)
        while True:
            open_at = text.find("{{", pos)
            close_at = text.find("}}", pos)
            if close_at != -1 and (open_at == -1 or close_at < open_at):
                self.error(f"{where}:{line_of(text, close_at)}", "'}}' without a matching '{{'")
                pos = close_at + 2
                continue
            if open_at == -1:
                return
            k = open_at + 2
            if text.startswith("-", k):
                k += 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            if text.startswith("/*", k):
                end = text.find("*/", k + 2)
                if end == -1:
                    self.error(f"{where}:{line_of(text, open_at)}", "comment '{{/*' is never closed by '*/}}'")
                    return
                k = end + 2
                while k < n and text[k] in " \t\r\n-":
                    k += 1
                if not text.startswith("}}", k):
                    self.error(f"{where}:{line_of(text, open_at)}", "a comment must end with '*/}}'")
                    pos = k
                    continue
                yield text[open_at + 2:k], line_of(text, open_at)
                pos = k + 2
                continue
            closed = False
            while k < n:
                c = text[k]
                if c in "\"'`":
                    k = skip_string(text, k)
                    if k < 0:
                        self.error(f"{where}:{line_of(text, open_at)}", "unterminated string inside '{{ }}'")
                        return
                    continue
                if text.startswith("}}", k):
                    closed = True
                    break
                if text.startswith("{{", k):
                    break
                k += 1
            if not closed:
                self.error(f"{where}:{line_of(text, open_at)}", "'{{' is never closed by '}}'")
                pos = open_at + 2
                continue
            yield text[open_at + 2:k], line_of(text, open_at)
            pos = k + 2

    # ---- .Values paths ------------------------------------------------------------------------

    def check_value_paths(self) -> None:
        if not self.values:
            return
        uses: dict[tuple[str, ...], tuple[str, int]] = {}
        for name, text in self.templates.items():
            where = self.rel(self.chart / "templates" / name)
            for m in re.finditer(r"\.Values(?![A-Za-z0-9_])((?:\.[A-Za-z_][A-Za-z0-9_]*)*)((?:\s+\"[^\"]+\")*)", text):
                path = tuple(p for p in m.group(1).split(".") if p)
                index_keys = tuple(re.findall(r'"([^"]+)"', m.group(2)))
                if index_keys and re.search(r"\bindex\s+\S*$", text[max(0, m.start() - 60):m.start() + 1]):
                    path = path + index_keys
                if path:
                    uses.setdefault(path, (where, line_of(text, m.start())))
        self.value_paths = set(uses)
        for path, (where, line) in sorted(uses.items()):
            problem = self._resolve(path)
            if problem:
                self.error(f"{where}:{line}", f".Values.{dotted(path)}: {problem}")
        # The other way round: every value in values.yaml is read by some template.
        for leaf in self._leaves(self.values, ()):
            if not any(leaf[:len(u)] == u or u[:len(leaf)] == leaf for u in uses):
                self.error(self.rel(self.chart / "values.yaml"), f"value {dotted(leaf)} is not used by any template (remove it or use it)")

    def _resolve(self, path: tuple[str, ...]) -> str | None:
        node: Any = self.values
        schema = self.schema or {}
        for i, key in enumerate(path):
            here = dotted(path[:i]) or "(top level)"
            if isinstance(node, dict):
                if key in node:
                    node = node[key]
                    schema = (schema.get("properties") or {}).get(key, {}) if isinstance(schema, dict) else {}
                    continue
                if i > 0 and (path[i - 1] in FREE_FORM or schema_open(schema)):
                    return None  # below a free-form map
                return f"'{key}' is not defined under {here} in values.yaml"
            if i > 0 and path[i - 1] in FREE_FORM:
                return None
            return f"{here} is {yaml_kind(node)} in values.yaml, it has no '{key}'"
        return None

    def _leaves(self, value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(value, dict) and value and not (path and path[-1] in FREE_FORM):
            for key, child in value.items():
                yield from self._leaves(child, path + (key,))
        else:
            yield path


    # ---- README ---------------------------------------------------------------------------------

    def load_readme(self) -> None:
        path = self.chart.parent / "README.md"
        where = self.rel(path)
        if not path.is_file():
            self.error(where, "missing (the configuration table, metrics and alerts are read from it)")
            return
        text = path.read_text(encoding="utf-8")
        section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.S | re.M)
        if not section:
            self.error(where, "no '## Configuration' section")
        else:
            for line in section.group(1).splitlines():
                if line.startswith("| `"):
                    first_cell = line.split("|")[1]
                    self.readme_keys.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
            if not self.readme_keys:
                self.error(where, "no keys found in the configuration table")
        metrics = re.search(r"\*\*Metrics\*\*(.*?)\n\n", text, re.S)
        if not metrics:
            self.error(where, "no **Metrics** paragraph")
        else:
            for name, labels in re.findall(r"`(paygate_[a-z0-9_]+)(?:\{([a-z_,]*)\})?`", metrics.group(1)):
                self.readme_metrics[name] = set(filter(None, labels.split(",")))
            if not self.readme_metrics:
                self.error(where, "no metric names in the **Metrics** paragraph")
        alerts = re.search(r"\*\*Alerts worth setting:\*\*\n(.*?)(?:\n\n|\Z)", text, re.S)
        if not alerts:
            self.error(where, "no **Alerts worth setting:** list")
        else:
            self.readme_alerts = [b.strip() for b in re.findall(r"^- (.*)$", alerts.group(1), re.M)]

    # ---- helm lint ------------------------------------------------------------------------------

    def check_lint(self) -> None:
        helm = self.helm
        for name, (values, _) in VALID_SETS.items():
            with captured_stderr() as err:
                try:
                    report = helm.lint(str(self.chart), values, strict=True, namespace=NAMESPACE)
                except helm.HelmError as e:
                    self.error(f"lint [{name}]", f"helm lint could not run: {one_line(e)}")
                    continue
            for msg in report.get("messages", []):
                if msg.get("severity", 0) >= 2:
                    level = {2: "warning", 3: "error"}.get(msg["severity"], "error")
                    self.error(f"lint [{name}]", f"{level} in {msg.get('path')}: {one_line(msg.get('error'))}")
            for e in report.get("errors", []):
                if not any(one_line(e) == one_line(m.get("error")) for m in report.get("messages", [])):
                    self.error(f"lint [{name}]", one_line(e))
            # In lint mode Helm logs `fail` instead of failing: a valid set must not reach one.
            for line in err.text().splitlines():
                if "fail" in line and "message=" in line:
                    self.error(f"lint [{name}]", f"a template called fail: {one_line(line)}")

    # ---- helm template --------------------------------------------------------------------------

    def render(self, name: str, values: dict[str, Any]) -> Rendered:
        """Renders like `helm template`; raises helm.HelmError when Helm refuses."""
        files = self.helm_chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        r = Rendered(name, values, files)
        for template, text in sorted(files.items()):
            if template.endswith("NOTES.txt"):
                r.notes = text
                continue
            try:
                docs = list(self.yaml.safe_load_all(text))
            except self.yaml.YAMLError as e:
                self.error(f"render [{name}] {template}", f"output is not YAML: {one_line(e)}")
                continue
            for chunk in re.split(r"(?m)^---\s*$", text):
                if chunk.strip() and not all(l.strip().startswith("#") or not l.strip() for l in chunk.splitlines()):
                    r.texts.append((template, chunk))
            for doc in docs:
                if doc is None:
                    continue
                if not isinstance(doc, dict):
                    self.error(f"render [{name}] {template}", f"a document is {yaml_kind(doc)}, not a Kubernetes object")
                    continue
                r.objects.append((template, doc))
        return r

    def check_render(self) -> None:
        helm = self.helm
        for name, (values, expect) in VALID_SETS.items():
            try:
                r = self.render(name, values)
            except helm.HelmError as e:
                self.error(f"render [{name}]", f"Helm refused the valid value set: {one_line(e)}")
                continue
            self.rendered[name] = r
            self.check_objects(r)
            self.check_probes(r, expect["readiness"])
            self.check_env(r)
            self.check_secrets_stay_secret(r)
            if r.kinds() != sorted(expect["kinds"]):
                self.error(f"render [{name}]", f"rendered kinds {r.kinds()}, expected {sorted(expect['kinds'])}")
            monitoring = values.get("metrics", {})
            if not monitoring.get("prometheusRule", {}).get("enabled") and r.of_kind("PrometheusRule"):
                self.error(f"render [{name}]", "a PrometheusRule is rendered although metrics.prometheusRule.enabled is off")
            if not monitoring.get("grafanaDashboard", {}).get("enabled") and self.dashboards(r):
                self.error(f"render [{name}]", "a dashboard ConfigMap is rendered although metrics.grafanaDashboard.enabled is off")
            if not values.get("networkPolicy", {}).get("enabled") and r.of_kind("NetworkPolicy"):
                self.error(f"render [{name}]", "a NetworkPolicy is rendered although networkPolicy.enabled is off")
            specific = getattr(self, "check_" + name.replace("-", "_"), None)
            if specific:
                specific(r)
        # The chart's defaults render nothing of the optional monitoring objects (they fail
        # earlier, on vipps.baseUrl, so look at the smallest working set).
        base = self.rendered.get("sqlite-emulator")
        if base and (base.of_kind("PrometheusRule") or base.of_kind("NetworkPolicy") or self.dashboards(base)):
            self.error("render [sqlite-emulator]", "PrometheusRule, dashboard and NetworkPolicy must be off by default")

    def check_failures(self) -> None:
        helm = self.helm
        for name, (values, needle) in FAILING_SETS.items():
            with captured_stderr():
                try:
                    self.helm_chart.render(values, name=RELEASE, namespace=NAMESPACE)
                except helm.HelmError as e:
                    if needle not in str(e):
                        self.error(f"fails [{name}]", f"fails, but the message does not name {needle!r}: {one_line(e)}")
                    continue
            self.error(f"fails [{name}]", f"renders, but must fail naming {needle!r}")

    # ---- assertions on rendered manifests ---------------------------------------------------

    def check_objects(self, r: Rendered) -> None:
        seen: set[tuple[str, str, str]] = set()
        for template, o in r.objects:
            where = f"render [{r.name}] {template}"
            meta = o.get("metadata") or {}
            if not o.get("apiVersion") or not o.get("kind") or not meta.get("name"):
                self.error(where, "object without apiVersion, kind or metadata.name")
                continue
            name = meta["name"]
            if len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
                self.error(where, f"{o['kind']} name {name!r} is not a DNS name of at most 63 characters")
            key = (o["kind"], meta.get("namespace", NAMESPACE), name)
            if key in seen:
                self.error(where, f"{o['kind']} {name} is rendered twice")
            seen.add(key)
            labels = meta.get("labels") or {}
            if labels.get("app.kubernetes.io/instance") != RELEASE:
                self.error(where, f"{o['kind']} {name} lacks the chart's labels")
            if o["kind"] == "ConfigMap":
                data = o.get("data") or {}
                leaked = SECRET_KEYS & set(data)
                if leaked:
                    self.error(where, f"ConfigMap {name} holds secret keys {sorted(leaked)}: they belong in the Secret")
                if str(data.get("DATABASE_URL", "sqlite:")).startswith("postgres"):
                    self.error(where, f"ConfigMap {name} holds a PostgreSQL DATABASE_URL (with its password)")

    def deployment(self, r: Rendered) -> dict[str, Any] | None:
        d = r.one("Deployment")
        if d is None:
            self.error(f"render [{r.name}]", "no Deployment")
        return d

    def app_container(self, r: Rendered) -> dict[str, Any] | None:
        d = self.deployment(r)
        if d is None:
            return None
        for c in d["spec"]["template"]["spec"]["containers"]:
            if c["name"] == "paygate":
                return c
        self.error(f"render [{r.name}]", "the Deployment has no 'paygate' container")
        return None

    def check_probes(self, r: Rendered, readiness: str) -> None:
        c = self.app_container(r)
        if c is None:
            return
        where = f"render [{r.name}] Deployment"
        ports = {p.get("name") for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe"):
            p = c.get(probe) or {}
            if "grpc" in p:
                self.error(where, f"{probe} uses gRPC health; it must be HTTP GET /healthz (gRPC health follows the database)")
            if (p.get("httpGet") or {}).get("path") != "/healthz" or (p.get("httpGet") or {}).get("port") != "http":
                self.error(where, f"{probe} must be httpGet path /healthz on port http, found {json.dumps(p)}")
        p = c.get("readinessProbe") or {}
        if readiness == "grpc":
            grpc_port = (p.get("grpc") or {}).get("port")
            expected = int(c["ports"][0]["containerPort"]) if c.get("ports") else None
            if grpc_port is None or grpc_port != expected:
                self.error(where, f"readinessProbe must be the native gRPC probe on the gRPC port, found {json.dumps(p)}")
        elif (p.get("httpGet") or {}).get("path") != "/readyz" or (p.get("httpGet") or {}).get("port") != "http":
            self.error(where, f"readinessProbe must be httpGet /readyz on port http, found {json.dumps(p)}")
        if "http" not in ports or "grpc" not in ports:
            self.error(where, f"container ports must be named grpc and http, found {sorted(filter(None, ports))}")

    def containers(self, r: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
        for kind in ("Deployment", "Job"):
            for o in r.of_kind(kind):
                spec = o["spec"]["template"]["spec"]
                for c in spec.get("initContainers", []) + spec.get("containers", []):
                    yield f"{kind} {o['metadata']['name']} container {c['name']}", c

    def env_keys(self, r: Rendered) -> dict[str, str]:
        """Every environment variable the chart sets -> where (extraEnv excluded: the user's)."""
        user = {e["name"] for e in r.values.get("extraEnv", [])}
        keys: dict[str, str] = {}
        config = r.one("ConfigMap", self.fullname())
        if config is None:
            self.error(f"render [{r.name}]", f"no ConfigMap {self.fullname()} (the configuration)")
        else:
            for k in config.get("data") or {}:
                keys.setdefault(k, f"ConfigMap {self.fullname()}")
        for where, c in self.containers(r):
            for e in c.get("env", []):
                if e["name"] not in user:
                    keys.setdefault(e["name"], where)
        return keys

    def check_env(self, r: Rendered) -> None:
        keys = self.env_keys(r)
        self.env_keys_seen.update(keys)
        for key, where in sorted(keys.items()):
            if CHART_HELPER_ENV.fullmatch(key):
                continue
            if self.readme_keys and key not in self.readme_keys:
                self.undocumented.setdefault(key, []).append(f"{r.name} ({where})")
        secret_names = {o["metadata"]["name"] for o in r.of_kind("Secret")}
        external = {r.values.get("existingSecret")} - {None, ""}
        for where, c in self.containers(r):
            for src in c.get("envFrom", []):
                ref = (src.get("configMapRef") or {}).get("name")
                if ref and ref != self.fullname():
                    self.error(f"render [{r.name}] {where}", f"envFrom names ConfigMap {ref}, not the chart's")
            for e in c.get("env", []):
                ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                if ref and ref not in secret_names | external:
                    self.error(f"render [{r.name}] {where}", f"{e['name']} reads Secret {ref}, which is neither rendered nor existingSecret")

    def secrets_of(self, values: dict[str, Any]) -> list[str]:
        """The secret strings of a value set."""
        found = [
            values.get("database", {}).get("postgres", {}).get("url", ""),
            values.get("vipps", {}).get("clientSecret", ""),
            values.get("vipps", {}).get("subscriptionKey", ""),
            values.get("webhook", {}).get("secret", ""),
        ]
        for entry in re.split(r"[,\n]", values.get("auth", {}).get("apiTokens", "")):
            parts = entry.strip().split(":")
            if len(parts) >= 2:
                found.append(parts[1])
        found += [c.get("token", "") for c in values.get("auth", {}).get("callers", [])]
        return [s for s in found if s]

    def check_secrets_stay_secret(self, r: Rendered) -> None:
        secrets = self.secrets_of(r.values)
        for template, text in r.texts + [("NOTES.txt", r.notes)]:
            kind = re.search(r"(?m)^kind:\s*(\S+)", text)
            if kind and kind.group(1) == "Secret":
                continue
            for s in secrets:
                if s in text:
                    self.error(f"render [{r.name}] {template}", f"a secret value ({s[:4]}…) appears outside a Secret")
        if r.values.get("existingSecret"):
            return
        secret = r.one("Secret", self.fullname())
        decoded = " ".join(b64(v) for v in ((secret or {}).get("data") or {}).values())
        for s in secrets:
            if s not in decoded:
                self.error(f"render [{r.name}] Secret", f"the secret value {s[:4]}… is not in the chart's Secret {self.fullname()}")

    def fullname(self) -> str:
        return RELEASE  # release "paygate" with chart "paygate": the fullname is the release name

    def dashboards(self, r: Rendered) -> list[dict[str, Any]]:
        return [o for o in r.of_kind("ConfigMap") if any(k.endswith(".json") for k in (o.get("data") or {}))]

    def secret_value(self, r: Rendered, key: str) -> str | None:
        secret = r.one("Secret", self.fullname())
        data = (secret or {}).get("data") or {}
        return b64(data[key]) if key in data else None

    def env_of(self, c: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in c.get("env", [])}

    def config(self, r: Rendered) -> dict[str, str]:
        return (r.one("ConfigMap", self.fullname()) or {}).get("data") or {}

    def expect(self, r: Rendered, ok: bool, message: str) -> None:
        if not ok:
            self.error(f"render [{r.name}]", message)

    # ---- per value set --------------------------------------------------------------------------

    def check_sqlite_emulator(self, r: Rendered) -> None:
        cfg = self.config(r)
        d = self.deployment(r) or {}
        self.expect(r, "VIPPS_BASE_URL" not in cfg, "emulator mode must leave VIPPS_BASE_URL unset")
        self.expect(r, cfg.get("DATABASE_URL") == "sqlite:///data/paygate.db?mode=rwc", f"DATABASE_URL is {cfg.get('DATABASE_URL')!r}")
        self.expect(r, d.get("spec", {}).get("replicas") == 1, "SQLite must run exactly one replica")
        self.expect(r, d.get("spec", {}).get("strategy", {}).get("type") == "Recreate", "SQLite must use the Recreate strategy")
        self.expect(r, "BUILT-IN VIPPS EMULATOR" in r.notes, "NOTES must warn that the emulator runs")
        self.expect(r, self.secret_value(r, "PAYGATE_API_TOKENS") == f"dev:{DEV_TOKEN}", "the Secret must hold auth.apiTokens unchanged")
        self.expect(r, cfg.get("PAYGATE_API_TOKENS_FILE") == "/etc/paygate/api-tokens/tokens", "tokensAsFile must set PAYGATE_API_TOKENS_FILE")
        defaults = {
            "PAYGATE_MAX_SUBSCRIBERS": "20000", "PAYGATE_HTTP_HEADER_TIMEOUT_MS": "10000",
            "PAYGATE_WEBHOOK_TIMEOUT_MS": "10000", "PAYGATE_HTTP_MAX_CONNECTIONS": "1024",
            "PAYGATE_DB_STATEMENT_TIMEOUT_MS": "10000", "PAYGATE_WRITER_STALL_MS": "15000",
            "PAYGATE_GRPC_KEEPALIVE_MS": "30000", "PAYGATE_RETENTION": "400d",
            "PAYGATE_UNKNOWN_EVENT_RETENTION": "7d",
        }
        for key, value in defaults.items():
            self.expect(r, cfg.get(key) == value, f"{key} must default to paygate's default {value!r}, found {cfg.get(key)!r}")

    def check_vipps_postgres_3(self, r: Rendered) -> None:
        cfg = self.config(r)
        d = self.deployment(r) or {}
        self.expect(r, d.get("spec", {}).get("replicas") == 3, "replicaCount 3 must give 3 replicas")
        self.expect(r, d.get("spec", {}).get("strategy", {}).get("type") == "RollingUpdate", "PostgreSQL must roll (RollingUpdate)")
        self.expect(r, cfg.get("VIPPS_BASE_URL") == VIPPS["baseUrl"] and cfg.get("VIPPS_MSN") == "123456", "VIPPS_BASE_URL / VIPPS_MSN not rendered")
        self.expect(r, cfg.get("PAYGATE_WEBHOOK_PUBLIC_URL") == "https://pay.example.com/webhooks/vipps", "the webhook URL must come from the first Ingress host")
        self.expect(r, "DATABASE_URL" not in cfg, "a PostgreSQL DATABASE_URL must not be in the ConfigMap")
        self.expect(r, self.secret_value(r, "DATABASE_URL") == PG_URL, "the Secret must hold DATABASE_URL")
        self.expect(r, "BUILT-IN VIPPS EMULATOR" not in r.notes, "NOTES must not warn of the emulator with real Vipps")
        ing = r.one("Ingress") or {}
        paths = [(p["path"], p["pathType"]) for rule in ing.get("spec", {}).get("rules", []) for p in rule["http"]["paths"]]
        self.expect(r, paths == [("/webhooks/vipps", "Exact")], f"the Ingress must route only /webhooks/vipps (Exact), found {paths}")
        job = r.one("Job") or {}
        self.expect(r, "pre-install" in job.get("metadata", {}).get("annotations", {}).get("helm.sh/hook", ""), "the migration Job must be a pre-install hook")
        sm = r.one("ServiceMonitor") or {}
        eps = sm.get("spec", {}).get("endpoints", [{}])
        self.expect(r, eps and eps[0].get("port") == "http" and eps[0].get("path") == "/metrics", "the ServiceMonitor must scrape http /metrics")
        self.expect(r, sm.get("metadata", {}).get("labels", {}).get("release") == "prometheus", "serviceMonitor.labels must reach the ServiceMonitor")

    def check_tls_mtls_client_scopes(self, r: Rendered) -> None:
        cfg = self.config(r)
        c = self.app_container(r) or {}
        self.expect(r, cfg.get("PAYGATE_TLS_CLIENT_SCOPES") == "fare-system.payments.svc:payments,backoffice.internal:payments+pii+customers",
                    f"PAYGATE_TLS_CLIENT_SCOPES is {cfg.get('PAYGATE_TLS_CLIENT_SCOPES')!r}")
        for key in ("PAYGATE_TLS_CERT", "PAYGATE_TLS_KEY", "PAYGATE_TLS_CLIENT_CA"):
            self.expect(r, key in cfg, f"{key} must be set with TLS and mutual TLS")
        self.expect(r, "PAYGATE_API_TOKENS_FILE" not in cfg and "PAYGATE_API_TOKENS" not in self.env_of(c),
                    "mutual TLS without tokens must not wire PAYGATE_API_TOKENS")
        vols = {v["name"]: v for v in (self.deployment(r) or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])}
        self.expect(r, vols.get("tls-client-ca", {}).get("secret", {}).get("secretName") == "paygate-client-ca", "the client CA must come from tls.clientCaSecretName")
        self.check_network_policy(r, egress=False)

    def check_existing_secret(self, r: Rendered) -> None:
        c = self.app_container(r) or {}
        env = self.env_of(c)
        for key in ("DATABASE_URL", "VIPPS_CLIENT_SECRET", "VIPPS_SUBSCRIPTION_KEY"):
            ref = ((env.get(key) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            self.expect(r, ref.get("name") == "paygate-secrets" and ref.get("key") == key and not ref.get("optional"),
                        f"{key} must be a required secretKeyRef to existingSecret")
        self.expect(r, self.config(r).get("VIPPS_MSN") == "1234567", "a numeric vipps.msn must render as digits")
        self.expect(r, "replicas" not in (self.deployment(r) or {}).get("spec", {}), "with the HPA the Deployment must not fix replicas")
        self.expect(r, env.get("RUST_BACKTRACE", {}).get("value") == "1", "extraEnv must reach the container")
        vols = {v["name"]: v for v in (self.deployment(r) or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])}
        tokens = vols.get("api-tokens", {}).get("secret", {})
        self.expect(r, tokens.get("secretName") == "paygate-secrets" and tokens.get("optional") is True,
                    "the token file must come from existingSecret, optional with mutual TLS")

    def check_emulator_open(self, r: Rendered) -> None:
        cfg = self.config(r)
        self.expect(r, cfg.get("PAYGATE_ALLOW_UNAUTHENTICATED") == "true", "allowUnauthenticated must reach PAYGATE_ALLOW_UNAUTHENTICATED")
        self.expect(r, "PAYGATE_API_TOKENS_FILE" not in cfg, "no tokens: no token file")
        self.expect(r, "auth.allowUnauthenticated=true" in r.notes, "NOTES must warn of the open API")

    def check_scoped_tokens(self, r: Rendered) -> None:
        expected = (f"dev:{DEV_TOKEN}:qr,fare-system:{FARE_TOKEN}:payments,ride-events:{EVENTS_TOKEN}:events,"
                    f"backoffice:{BACKOFFICE_TOKEN}:payments+pii+customers")
        got = self.secret_value(r, "PAYGATE_API_TOKENS")
        self.expect(r, got == expected, f"PAYGATE_API_TOKENS in the Secret is {got!r}, expected {expected!r}")
        self.expect(r, self.config(r).get("PAYGATE_API_TOKENS_FILE") == "/etc/paygate/api-tokens/tokens", "the tokens must be a file")

    def check_scoped_tokens_env(self, r: Rendered) -> None:
        expected = (f"fare-system:{FARE_TOKEN}:payments,ride-events:{EVENTS_TOKEN}:events,"
                    f"backoffice:{BACKOFFICE_TOKEN}:payments+pii+customers")
        got = self.secret_value(r, "PAYGATE_API_TOKENS")
        self.expect(r, got == expected, f"PAYGATE_API_TOKENS in the Secret is {got!r}, expected {expected!r}")
        env = self.env_of(self.app_container(r) or {})
        ref = ((env.get("PAYGATE_API_TOKENS") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        self.expect(r, ref.get("name") == self.fullname() and ref.get("key") == "PAYGATE_API_TOKENS",
                    "tokensAsFile=false must read PAYGATE_API_TOKENS from the chart's Secret")
        self.expect(r, "PAYGATE_API_TOKENS_FILE" not in self.config(r), "tokensAsFile=false must not set PAYGATE_API_TOKENS_FILE")

    def check_scoped_tokens_existing_secret(self, r: Rendered) -> None:
        c = self.app_container(r) or {}
        names = [e["name"] for e in c.get("env", [])]
        env = self.env_of(c)
        expected = ("fare-system:$(CALLER_TOKEN_0):payments,ride-events:$(CALLER_TOKEN_1):events,"
                    "backoffice:$(CALLER_TOKEN_2):payments+pii+customers")
        got = (env.get("PAYGATE_API_TOKENS") or {}).get("value")
        self.expect(r, got == expected, f"PAYGATE_API_TOKENS is {got!r}, expected {expected!r}")
        for i, key in enumerate(("FARE_SYSTEM_TOKEN", "RIDE_EVENTS_TOKEN", "BACKOFFICE_TOKEN")):
            ref = ((env.get(f"CALLER_TOKEN_{i}") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            self.expect(r, ref.get("name") == "paygate-secrets" and ref.get("key") == key,
                        f"CALLER_TOKEN_{i} must read {key} from existingSecret")
            if f"CALLER_TOKEN_{i}" in names and "PAYGATE_API_TOKENS" in names:
                self.expect(r, names.index(f"CALLER_TOKEN_{i}") < names.index("PAYGATE_API_TOKENS"),
                            f"CALLER_TOKEN_{i} must come before PAYGATE_API_TOKENS (Kubernetes expands only earlier variables)")

    def check_readiness_http(self, r: Rendered) -> None:
        self.expect(r, "PAYGATE_TLS_CERT" not in self.config(r), "readiness over HTTP must not need TLS")

    def check_monitoring_all_on(self, r: Rendered) -> None:
        self.check_prometheus_rule(r)
        self.check_dashboard(r)
        self.check_network_policy(r, egress=True)

    def check_prometheus_rule(self, r: Rendered) -> None:
        where = f"render [{r.name}] PrometheusRule"
        rule_obj = r.one("PrometheusRule")
        if rule_obj is None:
            self.error(where, "missing with metrics.prometheusRule.enabled")
            return
        if rule_obj.get("apiVersion") != "monitoring.coreos.com/v1":
            self.error(where, f"apiVersion must be monitoring.coreos.com/v1, found {rule_obj.get('apiVersion')}")
        if rule_obj["metadata"].get("labels", {}).get("release") != "prometheus":
            self.error(where, "metrics.prometheusRule.labels must reach the object")
        rules = [rule for g in rule_obj.get("spec", {}).get("groups", []) for rule in g.get("rules", [])]
        groups = rule_obj.get("spec", {}).get("groups", [])
        if not groups or any(not g.get("name") for g in groups):
            self.error(where, "every group needs a name")
        names = [rule.get("alert") for rule in rules]
        if len(set(names)) != len(names):
            self.error(where, f"alert names repeat: {names}")
        for rule in rules:
            alert = rule.get("alert") or "(unnamed)"
            if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", alert):
                self.error(where, f"{alert}: not a valid alert name")
            if not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", str(rule.get("for", ""))):
                self.error(where, f"{alert}: needs a for: duration")
            labels = rule.get("labels") or {}
            if labels.get("severity") not in ("warning", "critical", "info"):
                self.error(where, f"{alert}: needs a severity label (warning or critical)")
            if labels.get("team") != "payments":
                self.error(where, f"{alert}: metrics.prometheusRule.alertLabels must reach every alert")
            ann = rule.get("annotations") or {}
            if not ann.get("summary") or not ann.get("description"):
                self.error(where, f"{alert}: needs summary and description annotations")
            expr = str(rule.get("expr", ""))
            problem = promql_problem(expr)
            if problem:
                self.error(where, f"{alert}: expr {problem}: {one_line(expr)}")
            for text in (ann.get("summary", ""), ann.get("description", "")):
                if text.count("{{") != text.count("}}"):
                    self.error(where, f"{alert}: unbalanced {{{{ }}}} in an annotation")
            self.check_metric_names(where + f" {alert}", expr, allow={"kube_pod_status_ready"})
            if "kube_pod_status_ready" not in expr and f'namespace="{NAMESPACE}"' not in expr:
                self.error(where, f"{alert}: expr must select this release's series (namespace=\"{NAMESPACE}\")")
        # README's "Alerts worth setting": each has a rule.
        for bullet in self.readme_alerts:
            exprs = re.findall(r"`([^`]+)`", bullet)
            if not exprs:
                if "eadiness" in bullet:
                    ok = any(("kube_pod_status_ready" in str(x.get("expr")) or re.search(r"\bup\{", str(x.get("expr"))))
                             and duration_seconds(str(x.get("for", "0s"))) >= 60 for x in rules)
                    if not ok:
                        self.error(where, f"no rule for README's alert '{bullet}' (kube_pod_status_ready or up, for: >= 1m)")
                else:
                    self.error(where, f"cannot read README's alert '{bullet}' (no expression in backticks)")
                continue
            want = exprs[0]
            metrics = set(re.findall(r"\b(paygate_[a-z0-9_]+)", want))
            matchers = {f'{k}{op}"{v}"' for k, op, v in re.findall(r'([a-z_]+)(=~|!=|=)"([^"]*)"', want)}
            threshold = re.search(r">\s*([0-9.]+)\s*$", want)
            ok = False
            for x in rules:
                e = str(x.get("expr", ""))
                if all(m in e for m in metrics) and all(m in e for m in matchers):
                    if threshold and not re.search(r">\s*" + re.escape(threshold.group(1)) + r"(?![0-9.])", e):
                        continue
                    ok = True
            if not ok:
                self.error(where, f"no rule implements README's alert `{want}` (same metrics, matchers and threshold)")

    def check_metric_names(self, where: str, expr: str, allow: set[str] = frozenset()) -> None:
        """Every paygate metric (and label in its selector) is one README documents."""
        for m in re.finditer(r"\b([a-z_:][a-z0-9_:]*)(\{([^}]*)\})?", expr):
            name = m.group(1)
            if not (name.startswith("paygate_") or name in allow):
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in self.readme_metrics else name
            if name in allow:
                continue
            if self.readme_metrics and base not in self.readme_metrics:
                self.error(where, f"uses metric {name}, which README's Metrics paragraph does not list")
                continue
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", m.group(3) or ""))
            allowed = self.readme_metrics.get(base, set()) | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
            for label in sorted(labels - allowed):
                self.error(where, f"selects {name} by label {label!r}, which README does not list for it")

    def check_dashboard(self, r: Rendered) -> None:
        where = f"render [{r.name}] dashboard"
        boards = self.dashboards(r)
        if len(boards) != 1:
            self.error(where, f"expected one dashboard ConfigMap, found {len(boards)}")
            return
        cm = boards[0]
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            self.error(where, "the ConfigMap must carry the sidecar label grafana_dashboard: \"1\"")
        if cm["metadata"].get("namespace") != "monitoring":
            self.error(where, "metrics.grafanaDashboard.namespace must set the ConfigMap's namespace")
        if cm["metadata"].get("annotations", {}).get("grafana_folder") != "Payments":
            self.error(where, "metrics.grafanaDashboard.annotations must reach the ConfigMap")
        (key, text), = cm["data"].items()
        try:
            board = json.loads(text)
        except json.JSONDecodeError as e:
            self.error(where, f"{key} is not JSON: {e}")
            return
        source = json.loads((self.chart / "dashboards" / "paygate.json").read_text(encoding="utf-8"))
        if board != source:
            self.error(where, "the ConfigMap's JSON differs from dashboards/paygate.json")
        for field in ("title", "uid", "panels", "schemaVersion"):
            if not board.get(field):
                self.error(where, f"dashboard JSON lacks {field}")
        panels = board.get("panels", [])
        ids = [p.get("id") for p in panels]
        if len(set(ids)) != len(ids) or None in ids:
            self.error(where, f"panel ids must be unique and present: {ids}")
        exprs = []
        for p in panels:
            if p.get("type") == "row":
                continue
            if not p.get("title") or not p.get("gridPos") or not p.get("targets"):
                self.error(where, f"panel {p.get('id')} needs a title, gridPos and targets")
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                exprs.append(expr)
                problem = promql_problem(expr)
                if problem:
                    self.error(where, f"panel {p.get('title')!r}: expr {problem}: {expr}")
                self.check_metric_names(f"{where} panel {p.get('title')!r}", expr)
        everything = "\n".join(exprs)
        wanted = {
            "request rate per RPC": r"paygate_grpc_requests_total\{[^}]*\}.*by \(method, code\)|by \(method, code\) \(rate\(paygate_grpc_requests_total",
            "latency per RPC": r"by \(le, method\) \(rate\(paygate_grpc_request_duration_seconds_bucket",
            "webhooks accepted": r"paygate_webhooks_accepted_total",
            "webhooks rejected by reason": r"by \(reason\) \(rate\(paygate_webhooks_rejected_total",
            "reconciler outcomes": r"by \(result\) \(rate\(paygate_reconciliations_total",
            "subscribers": r"paygate_stream_subscribers",
            "Vipps latency per api": r"by \(le, api\) \(rate\(paygate_vipps_request_duration_seconds_bucket",
            "Vipps 429s": r'paygate_vipps_requests_total\{status="429"',
        }
        for what, pattern in wanted.items():
            if not re.search(pattern, everything):
                self.error(where, f"no panel shows {what} (/{pattern}/)")

    def check_network_policy(self, r: Rendered, egress: bool) -> None:
        where = f"render [{r.name}] NetworkPolicy"
        np_obj = r.one("NetworkPolicy")
        if np_obj is None:
            self.error(where, "missing with networkPolicy.enabled")
            return
        spec = np_obj.get("spec", {})
        service = r.one("Service") or {}
        if spec.get("podSelector", {}).get("matchLabels") != service.get("spec", {}).get("selector"):
            self.error(where, "podSelector must select exactly the Service's pods")
        types = spec.get("policyTypes", [])
        if types != (["Ingress", "Egress"] if egress else ["Ingress"]):
            self.error(where, f"policyTypes {types}: Egress only when networkPolicy.egress is set")
        if egress and not spec.get("egress"):
            self.error(where, "networkPolicy.egress must reach spec.egress")
        values = deep_merge(self.values.get("networkPolicy", {}), r.values.get("networkPolicy", {}))
        rules = spec.get("ingress", [])
        by_port: dict[str, list[dict[str, Any]]] = {}
        for rule in rules:
            if not rule.get("from"):
                self.error(where, "an ingress rule without 'from' admits everyone")
            for port in rule.get("ports", []):
                by_port.setdefault(str(port.get("port")), []).extend(rule.get("from", []))
        if set(by_port) != {"grpc", "http"}:
            self.error(where, f"ingress must cover exactly the grpc and http ports, found {sorted(by_port)}")

        def peer(conf: dict[str, Any]) -> dict[str, Any]:
            return {"namespaceSelector": conf["namespaceSelector"], "podSelector": conf.get("podSelector") or {}}

        if by_port.get("grpc") != [peer(values["grpc"])]:
            self.error(where, f"the grpc port must admit only networkPolicy.grpc's peers, found {by_port.get('grpc')}")
        http = by_port.get("http", [])
        for what in ("webhooks", "metrics"):
            if peer(values[what]) not in http:
                self.error(where, f"the http port must admit networkPolicy.{what}'s peers")
        if len(http) != 2:
            self.error(where, f"the http port must admit only the ingress controller and monitoring, found {http}")

    # ---- docs -----------------------------------------------------------------------------------

    def check_values_mention_env(self) -> None:
        readme = self.rel(self.chart.parent / "README.md")
        for key, sets in sorted(self.undocumented.items()):
            self.error(readme, f"the chart sets {key} (e.g. {sets[0]}; {len(sets)} value set(s)), but README's configuration table has no row for it: a typo in the chart, or README needs the row")
        text = (self.chart / "values.yaml").read_text(encoding="utf-8") if (self.chart / "values.yaml").is_file() else ""
        for key in sorted(self.env_keys_seen):
            probe = "CALLER_TOKEN_" if CHART_HELPER_ENV.fullmatch(key) else key
            if probe not in text:
                self.error(self.rel(self.chart / "values.yaml"), f"the chart sets {key}, but no value's comment names it")

    # ---- run ----------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        if not self.load():
            return self.report(started)
        self.check_yaml_files()
        self.check_chart_yaml()
        try:
            self.helm_chart = self.helm.Chart.load(str(self.chart))
        except self.helm.HelmError as e:
            self.error(self.rel(self.chart), f"Helm cannot load the chart: {one_line(e)}")
        self.check_schema()
        self.check_values_documented()
        self.check_template_syntax()
        self.check_value_paths()
        self.load_readme()
        if self.helm_chart is not None:
            self.check_lint()
            self.check_render()
            self.check_failures()
            self.check_values_mention_env()
            self.helm_chart.close()
        return self.report(started)

    def report(self, started: float) -> int:
        for name, r in self.rendered.items():
            print(f"chart check: [{name}] {', '.join(count_kinds(r.kinds()))}")
        seconds = time.monotonic() - started
        summary = (f"{len(self.value_paths)} value paths, {len(self.rendered)} value sets rendered, "
                   f"{len(FAILING_SETS)} refused as expected" if not self.errors else "")
        if self.errors:
            for e in self.errors:
                print(f"chart check: FAIL {e}")
            print(f"chart check: {len(self.errors)} problem(s) ({seconds:.1f}s, Helm {self.helm.helm_sdk_version()})")
            return 1
        print(f"chart check: all ok: {summary} ({seconds:.1f}s, Helm {self.helm.helm_sdk_version()} via helm-python-sdk {self.helm.__version__})")
        return 0


# ---- helpers ------------------------------------------------------------------------------------


class _Captured:
    def __init__(self, path: str) -> None:
        self.path = path
        self.content: str | None = None

    def text(self) -> str:
        if self.content is not None:
            return self.content
        try:
            return Path(self.path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def captured_stderr() -> Iterator[_Captured]:
    """Collects what the Go library writes to file descriptor 2 (its log) while inside."""
    sys.stderr.flush()
    fd, path = tempfile.mkstemp(prefix="chart-check-", suffix=".log")
    saved = os.dup(2)
    os.dup2(fd, 2)
    captured = _Captured(path)
    try:
        yield captured
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
        captured.content = captured.text()
        os.unlink(path)


def b64(value: str) -> str:
    try:
        return base64.b64decode(value).decode("utf-8")
    except Exception:
        return ""


def count_kinds(kinds: list[str]) -> list[str]:
    out = []
    for kind in sorted(set(kinds)):
        n = kinds.count(kind)
        out.append(f"{kind} x{n}" if n > 1 else kind)
    return out


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text))


def promql_problem(expr: str) -> str | None:
    """A cheap sanity check of a PromQL expression: brackets and quotes balance."""
    if not expr.strip():
        return "is empty"
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    quote = None
    for ch in expr:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return f"has an unbalanced {ch!r}"
    if quote:
        return "has an unterminated string"
    if stack:
        return f"has an unclosed {stack[-1]!r}"
    if "{{" in expr or "}}" in expr:
        return "still contains template braces"
    return None

def schema_open(node: Any) -> bool:
    """A schema object node that allows keys it does not list (a free-form map)."""
    return isinstance(node, dict) and node.get("additionalProperties", True) is not False and not node.get("properties")


def yaml_kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def skip_string(text: str, k: int) -> int:
    """Index just past the Go string/char/raw literal starting at k, or -1 if unterminated."""
    quote = text[k]
    k += 1
    while k < len(text):
        c = text[k]
        if quote != "`" and c == "\\":
            k += 2
            continue
        if quote != "`" and c == "\n":
            return -1
        if c == quote:
            return k + 1
        k += 1
    return -1


def strip_quoted(s: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', s)


def strip_comments(s: str) -> str:
    return re.sub(r"/\*.*?\*/", "", s, flags=re.S)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def dotted(path: tuple[str, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in path)


def path_str(path: Any) -> str:
    return dotted(list(path)) or "(top level)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_chart = HERE.parent / "helm"
    parser.add_argument("--chart", type=Path, default=default_chart, help=f"chart directory (default {default_chart})")
    parser.add_argument("--no-install", action="store_true", help=f"do not pip install {REQUIREMENTS.name} when a package is missing")
    parser.add_argument("--show", metavar="SET", help="print what Helm renders for one value set (" + ", ".join(VALID_SETS) + ") and stop")
    args = parser.parse_args()
    ensure_requirements(install=not args.no_install)
    import helm_python
    import jsonschema
    import yaml

    chart = args.chart.resolve()
    if args.show:
        if args.show not in VALID_SETS:
            cannot_run(f"no value set {args.show!r}; one of: {', '.join(VALID_SETS)}")
        with helm_python.Chart.load(str(chart)) as loaded:
            files = loaded.render(VALID_SETS[args.show][0], name=RELEASE, namespace=NAMESPACE, is_install=True)
        for template, text in sorted(files.items()):
            if text.strip():
                print(f"# Source: {template}\n{text.strip()}\n---")
        return 0
    return Checker(chart, helm_python, yaml, jsonschema).run()


if __name__ == "__main__":
    sys.exit(main())
