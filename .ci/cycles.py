#!/usr/bin/env python3
"""Fails when two source files, or two folders, import each other, directly
or around a loop.

Every `crate::...` and `super::...` path in a file under src/ (in `use`
lines and inline) is resolved to the file that defines the module it names;
a strongly connected group of more than one file is a cycle. Folders are
checked the same way, one level at a time: within each folder, its files
and subfolders are the nodes, and a file's import of a file in a sibling
folder is an arrow between the two siblings. A `mod.rs` that
only declares and re-exports its children is not counted as depending on
them, and a child's `super::` path that names an item re-exported there is
resolved to the child that defines it where it can be.

    python3 .ci/cycles.py [src]
"""

import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "src"
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


REEXPORTS = {}


def reexports(path):
    """Items a module file re-exports (`pub use child::Item`), by name, as
    the absolute module path they come from."""
    if path not in REEXPORTS:
        here = module_of(path)
        found = {}
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^pub use (?:self::)?([A-Za-z_][A-Za-z0-9_:]*?)(?:::\{([^}]*)\}|::([A-Za-z_][A-Za-z0-9_]*));", text, re.M):
            module = m.group(1).split("::")
            if module[0] == "crate":
                module = module[1:]
            else:
                module = here + module
            names = re.split(r",\s*", m.group(2)) if m.group(2) else [m.group(3)]
            for name in names:
                if name.strip():
                    found[name.strip()] = module
        REEXPORTS[path] = found
    return REEXPORTS[path]


def file_of(parts):
    """The file defining the longest module prefix of `parts`, following a
    module file's re-export of the item to the module that defines it."""
    for n in range(len(parts), -1, -1):
        base = os.path.join(ROOT, *parts[:n])
        for candidate in (base + ".rs", os.path.join(base, "mod.rs")):
            if n == 0:
                candidate = os.path.join(ROOT, "lib.rs")
            if os.path.isfile(candidate):
                rest = parts[n:]
                if rest and os.path.basename(candidate) in ("mod.rs", "lib.rs"):
                    origin = reexports(candidate).get(rest[0])
                    if origin and origin != parts[:n]:
                        return file_of(origin + rest) or candidate
                return candidate
    return None


def strip_tests(text):
    """Drops `#[cfg(test)] mod tests { ... }`: a file's tests may use anything."""
    at = text.find("#[cfg(test)]\nmod tests")
    return text if at < 0 else text[:at]


def targets(path, text):
    here = module_of(path)
    found = set()
    paths = [(m.group(1), m.group(2)) for m in PATH.finditer(text)]
    for m in USE_GROUP.finditer(text):
        for item in re.split(r",\s*", m.group(3)):
            name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_:]*)", item)
            if name and name.group(1) not in ("self",):
                paths.append((m.group(1), m.group(2) + "::" + name.group(1)))
    for root, rest in paths:
        parts = [p for p in rest.split("::") if p]
        if root == "crate":
            full = parts
        else:
            base = here[:-1]
            while parts and parts[0] == "super":
                base, parts = base[:-1], parts[1:]
            full = base + parts
        target = file_of(full)
        if target and os.path.abspath(target) != os.path.abspath(path):
            found.add(os.path.normpath(target))
    return found


def declares_only(text):
    """A mod.rs whose own code is declarations and re-exports."""
    body = [l for l in text.splitlines() if l.strip() and not l.strip().startswith("//")]
    return all(re.match(r"\s*(pub(\([a-z]+\))?\s+)?(mod|use)\b", l) for l in body)


def strongly_connected(graph):
    """Groups of more than one node that reach each other (Tarjan)."""
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def folder_graphs(graph):
    """For each folder, its children (files and subfolders) and which
    imports which, with the file imports behind each arrow."""
    folders = {}
    for a, targets_of_a in graph.items():
        for b in targets_of_a:
            if b not in graph:
                continue
            pa, pb = a.split(os.sep), b.split(os.sep)
            common = 0
            while common < min(len(pa), len(pb)) - 1 and pa[common] == pb[common]:
                common += 1
            folder = os.sep.join(pa[:common])
            ca, cb = pa[common], pb[common]
            if ca == cb:
                continue
            nodes, why = folders.setdefault(folder, ({}, {}))
            nodes.setdefault(ca, set()).add(cb)
            nodes.setdefault(cb, set())
            why.setdefault((ca, cb), []).append((a, b))
    return folders


def main():
    graph = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.normpath(os.path.join(dirpath, name))
                text = strip_tests(open(path, encoding="utf-8").read())
                edges = targets(path, text)
                if name == "mod.rs" and declares_only(text):
                    edges = set()
                graph[path] = edges
    cycles = strongly_connected(graph)
    for group in cycles:
        print("import cycle:", " <-> ".join(group))
        for a in group:
            for b in sorted(graph[a] & set(group)):
                print(f"  {a} uses {b}")
    folder_cycles = 0
    for folder, (nodes, why) in sorted(folder_graphs(graph).items()):
        for group in strongly_connected(nodes):
            folder_cycles += 1
            print(f"folder import cycle in {folder}:", " <-> ".join(group))
            for ca in group:
                for cb in sorted(nodes[ca] & set(group)):
                    for a, b in why[(ca, cb)]:
                        print(f"  {a} uses {b}")
    if cycles or folder_cycles:
        sys.exit(1)
    print(f"no import cycles among {len(graph)} files or their folders")


main()
