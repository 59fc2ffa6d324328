#!/usr/bin/env python3
"""Static checks of the paygate Helm chart, for machines without a helm binary.

Usage: python3 ci/chart_check.py [--chart DIR]        (default: helm/ beside ci/)

Checks, each failure printed as one line naming the file (and line) and what to fix:
  chart      Chart.yaml: apiVersion v2, name, SemVer version, appVersion (a string);
             the expected templates exist.
  yaml       every YAML file in the chart outside templates/ parses; values.schema.json is JSON.
  schema     values.schema.json is a valid draft-07 JSON Schema, closed at the top level
             (additionalProperties: false); it types every value in values.yaml and names no
             value that values.yaml lacks; it accepts values.yaml and the example overrides
             below, and rejects the invalid ones.
  docs       every key in values.yaml (outside list items) has a comment: on the line above
             or at the end of its line.
  syntax     templates: balanced {{ }} (strings and {{/* comments */}} understood), every
             if/with/range/define/block closed by {{ end }}, no stray else/end, every
             include/template names a defined template.
  values     every .Values.a.b path used in a template ($.Values, $root.Values and
             `index .Values "a" "b"` included) exists in values.yaml; below a free-form map
             (podAnnotations, resources, nodeSelector, ... or any map the schema leaves open)
             a path may go deeper. Every value in values.yaml is used by some template.
  guards     the templates still refuse SQLite with more than one replica.

Needs PyYAML and jsonschema (CI runs `pip install pyyaml jsonschema` first).
Exit status: 0 when all checks pass, 1 when any fails, 2 when it cannot run at all.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, not a chart problem
    sys.exit("chart check: PyYAML is missing (pip install pyyaml jsonschema)")
try:
    import jsonschema
except ImportError:  # pragma: no cover
    sys.exit("chart check: jsonschema is missing (pip install pyyaml jsonschema)")

# Maps and lists whose content is the user's (Kubernetes objects, labels, ...): a template may
# read below them, values.yaml need not list their keys, and the schema leaves them open.
FREE_FORM = {
    "podAnnotations", "podLabels", "annotations", "labels", "resources", "nodeSelector",
    "tolerations", "affinity", "topologySpreadConstraints", "extraEnv", "behavior",
    "podSecurityContext", "securityContext", "imagePullSecrets",
}

REQUIRED_TEMPLATES = [
    "_helpers.tpl", "deployment.yaml", "service.yaml", "ingress.yaml", "configmap.yaml",
    "secret.yaml", "hpa.yaml", "pdb.yaml", "servicemonitor.yaml", "migration-job.yaml",
    "pvc.yaml", "NOTES.txt",
]

# Overrides the schema must accept (merged over values.yaml the way helm merges -f files).
VALID_EXAMPLES: dict[str, dict[str, Any]] = {
    "postgres with 3 replicas": {
        "replicaCount": 3,
        "database": {
            "type": "postgres",
            "postgres": {"url": "postgres://paygate:pw@db.example:5432/paygate?sslmode=require"},
        },
        "vipps": {
            "baseUrl": "https://api.vipps.no",
            "clientId": "c1d2",
            "clientSecret": "s3cret",
            "subscriptionKey": "k3y",
            "msn": "123456",
        },
        "auth": {"apiTokens": "shop:t0ken,admin:t0ken2"},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": ["pay.example.com"],
            "tls": [{"secretName": "pay-example-tls", "hosts": ["pay.example.com"]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    },
    "existingSecret with autoscaling and mutual TLS": {
        "existingSecret": "paygate-secrets",
        "database": {"type": "postgres"},
        "vipps": {"baseUrl": "https://apitest.vipps.no", "clientId": "c1d2", "msn": 1234567},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 10},
        "tls": {"enabled": True, "secretName": "paygate-grpc-tls", "clientAuth": True},
        "podDisruptionBudget": {"maxUnavailable": "50%"},
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    },
}

# Overrides the schema must reject.
INVALID_EXAMPLES: dict[str, dict[str, Any]] = {
    'replicaCount "three"': {"replicaCount": "three"},
    "database.type mysql": {"database": {"type": "mysql"}},
    "unknown top-level key": {"replicas": 3},
    "log format xml": {"config": {"logFormat": "xml"}},
    "negative port": {"ports": {"grpc": -1}},
    "webhook URL without a scheme": {"webhook": {"publicUrl": "pay.example.com/webhooks/vipps"}},
}


class Checker:
    def __init__(self, chart: Path) -> None:
        self.chart = chart
        self.errors: list[str] = []
        self.values: dict[str, Any] = {}
        self.schema: dict[str, Any] | None = None
        self.templates: dict[str, str] = {}
        self.value_paths: set[tuple[str, ...]] = set()

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
        for p in sorted(self.chart.rglob("*")):
            if not p.is_file() or "templates" in p.relative_to(self.chart).parts:
                continue
            if p.suffix in (".yaml", ".yml"):
                try:
                    list(yaml.safe_load_all(p.read_text(encoding="utf-8")))
                except yaml.YAMLError as e:
                    self.error(self.rel(p), f"does not parse as YAML: {one_line(e)}")
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
            except json.JSONDecodeError as e:
                self.error(self.rel(schema_file), f"is not valid JSON: {e}")

    # ---- Chart.yaml ---------------------------------------------------------------------------

    def check_chart_yaml(self) -> None:
        path = self.chart / "Chart.yaml"
        where = self.rel(path)
        if not path.is_file():
            self.error(where, "missing")
            return
        try:
            chart = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return  # reported by check_yaml_files
        if not isinstance(chart, dict):
            self.error(where, "must be a YAML mapping")
            return
        if chart.get("apiVersion") != "v2":
            self.error(where, f"apiVersion must be v2 (Helm 3), found {chart.get('apiVersion')!r}")
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
        for name in REQUIRED_TEMPLATES:
            if name not in self.templates:
                self.error(self.rel(self.chart / "templates" / name), "expected template is missing")

    # ---- values.schema.json -------------------------------------------------------------------

    def check_schema(self) -> None:
        if self.schema is None or not self.values:
            return
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
        validator = jsonschema.Draft7Validator(schema)
        for e in sorted(validator.iter_errors(self.values), key=lambda e: list(e.path)):
            self.error(where, f"rejects values.yaml: {path_str(e.path)}: {one_line(e.message)}")
        for name, override in VALID_EXAMPLES.items():
            merged = helm_merge(self.values, override)
            for e in sorted(validator.iter_errors(merged), key=lambda e: list(e.path)):
                self.error(where, f"rejects the valid example '{name}': {path_str(e.path)}: {one_line(e.message)}")
        for name, override in INVALID_EXAMPLES.items():
            merged = helm_merge(self.values, override)
            if validator.is_valid(merged):
                self.error(where, f"accepts the invalid example '{name}' ({json.dumps(override)})")
        self._schema_covers(self.values, schema, (), where)

    def _schema_covers(self, value: Any, node: dict[str, Any], path: tuple[str, ...], where: str) -> None:
        """Every value has a typed schema node; every schema property exists in values.yaml."""
        if not isinstance(value, dict):
            if not any(k in node for k in ("type", "enum", "const", "oneOf", "anyOf")):
                self.error(where, f"{dotted(path)} has no type (or enum) in the schema")
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

    # ---- guards -------------------------------------------------------------------------------

    def check_guards(self) -> None:
        text = "\n".join(self.templates.values())
        where = self.rel(self.chart / "templates")
        if not re.search(r'fail\s+"[^"]*(replicaCount|replicas)[^"]*SQLite', text):
            self.error(where, "no {{ fail }} refuses SQLite with more than one replica (replicaCount > 1 needs database.type=postgres)")
        if not re.search(r'fail\s+"[^"]*(autoscaling|maxReplicas)[^"]*SQLite', text):
            self.error(where, "no {{ fail }} refuses SQLite with autoscaling to more than one replica")

    # ---- run ----------------------------------------------------------------------------------

    def run(self) -> int:
        if self.load():
            self.check_yaml_files()
            self.check_chart_yaml()
            self.check_schema()
            self.check_values_documented()
            self.check_template_syntax()
            self.check_value_paths()
            self.check_guards()
        files = sum(1 for p in self.chart.rglob("*") if p.is_file()) if self.chart.is_dir() else 0
        if self.errors:
            for e in self.errors:
                print(f"chart check: FAIL {e}")
            print(f"chart check: {files} files, {len(self.value_paths)} value paths, {len(self.errors)} problem(s)")
            return 1
        print(f"chart check: {files} files, {len(self.value_paths)} value paths, all ok")
        return 0


# ---- helpers ------------------------------------------------------------------------------------


def helm_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merges an override into values as `helm -f` does: maps merge, null deletes a key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = helm_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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


def one_line(x: Any) -> str:
    return " ".join(str(x).split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_chart = Path(__file__).resolve().parent.parent / "helm"
    parser.add_argument("--chart", type=Path, default=default_chart, help=f"chart directory (default {default_chart})")
    args = parser.parse_args()
    return Checker(args.chart.resolve()).run()


if __name__ == "__main__":
    sys.exit(main())
