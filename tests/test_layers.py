"""The package's shape: each folder is one layer, imports flow one way, there is no import cycle, and the method and
records layers stay pure. Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hf_twophase"

# lowest first; a module may import its own layer or a lower one, never a higher one
LAYERS = [
    {"errors", "atomic", "paths", "version", "cache", "tasks", "proxy_names"},
    {"records"},
    {"method"},
    {"hub", "inputs"},
    {"proxy", "trainer"},
    {"matrix_build"},
    {"selector"},
    {"cli", "__main__"},
    {"__init__"},  # the front door's lazy exports
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
PURE = ("records", "method")
HEAVY = ("torch", "transformers", "accelerate", "huggingface_hub", "timm", "datasets")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports_of(path: Path) -> set[str]:
    """Every hf_twophase module a file imports, anywhere in it (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` names a module too
                candidate = f"{base}.{alias.name}"
                out.add(candidate if _is_module(candidate) else base)
    return {m for m in out if m == "hf_twophase" or m.startswith("hf_twophase.")}


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    assert {layer_of(m) for m in graph()} <= set(RANK), "a new folder needs its place in LAYERS"


def test_imports_never_climb_a_layer():
    upward = [f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})" for m, targets in graph().items() for t in targets
              if RANK[layer_of(t)] > RANK[layer_of(m)]]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_method_and_records_import_no_deep_learning_stack():
    direct = []
    for path in PACKAGE.rglob("*.py"):
        if layer_of(module_name(path)) not in PURE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            direct += [f"{module_name(path)} imports {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not direct, "\n".join(direct)
    # and nothing drags them in: import every pure module in a fresh process
    modules = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) in PURE)
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing the pure layers loaded {loaded}"
