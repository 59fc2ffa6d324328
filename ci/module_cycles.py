#!/usr/bin/env python3
"""Fails when paygate's modules import each other in a cycle.

Two levels are checked, the ones a reader navigates:
- top-level modules of `src/` (`crate::payments` using `crate::store` is an edge payments -> store);
- siblings inside one module directory (`src/store/write.rs` using `super::batch` is an edge
  write -> batch).
A child using its parent (`super::Payments`) is not an edge: that is how a module's files share
its types. Unit tests (`#[cfg(test)]` blocks, `tests.rs`, `test_support.rs`) are left out.

    python3 ci/module_cycles.py [SRC_DIR]     # default: src
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")


def module_path(file: pathlib.Path) -> list[str]:
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)]` items (a module block or a single item) and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = j + len("#[cfg(test)]")
        # The item ends at its matching closing brace, or at a `;` before any brace.
        brace, semi = text.find("{", k), text.find(";", k)
        if semi >= 0 and (brace < 0 or semi < brace):
            i = semi + 1
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
            if depth == 0:
                break
        i = k


def first_segments(text: str, prefix: str) -> set[str]:
    """Names right after `prefix::`, including each top-level entry of `prefix::{a::x, b}`."""
    names = set()
    for m in re.finditer(re.escape(prefix) + r"::(\{|[A-Za-z_][A-Za-z0-9_]*)", text):
        if m.group(1) != "{":
            names.add(m.group(1))
            continue
        depth, k, entry = 1, m.end(), ""
        entries = []
        while k < len(text) and depth:
            c = text[k]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and c == ",":
                entries.append(entry)
                entry = ""
            elif depth >= 1 and not (depth == 1 and c == "}"):
                entry += c
            k += 1
        entries.append(entry)
        for e in entries:
            head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", e)
            if head:
                names.add(head.group(1))
    return names


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    files = [
        f
        for f in ROOT.rglob("*.rs")
        if f.name not in ("tests.rs", "test_support.rs")
    ]
    modules = {tuple(module_path(f)) for f in files}
    top = {m[0] for m in modules if m}
    graphs: dict[tuple, dict[str, set[str]]] = {}
    for f in files:
        path = module_path(f)
        if not path:
            continue
        text = strip_tests(f.read_text())
        # Top level: crate::x -> edge path[0] -> x.
        for name in first_segments(text, "crate"):
            if name in top and name != path[0]:
                graphs.setdefault((), {}).setdefault(path[0], set()).add(name)
        # Siblings: a file's `super::x` where x is a sibling module.
        if len(path) >= 2:
            parent = tuple(path[:-1])
            siblings = {m[-1] for m in modules if len(m) == len(path) and m[:-1] == parent}
            for name in first_segments(text, "super"):
                if name in siblings and name != path[-1]:
                    graphs.setdefault(parent, {}).setdefault(path[-1], set()).add(name)
            # `crate::parent::sibling` is the same edge written the long way.
            long_prefix = "crate::" + "::".join(parent)
            for name in first_segments(text, long_prefix):
                if name in siblings and name != path[-1]:
                    graphs.setdefault(parent, {}).setdefault(path[-1], set()).add(name)
    found = []
    for scope, graph in sorted(graphs.items()):
        for comp in cycles(graph):
            where = "::".join(scope) or "crate"
            found.append(f"{where}: {' <-> '.join(comp)}")
    edges = sum(len(v) for g in graphs.values() for v in g.values())
    if found:
        print("module import cycles:")
        for c in found:
            print("  " + c)
        return 1
    print(f"module_cycles: no import cycles ({len(files)} files, {edges} module edges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
