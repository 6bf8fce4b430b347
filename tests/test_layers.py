"""The package's layers point one way, every module imports on its own, the lower layers (the
model, tokenizers, generation, checkpoints) load without Lightning, the command line's parsers
load without torch, and every package the code imports is a declared dependency."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minigpt

PACKAGE = Path(minigpt.__file__).parent

# Each module's layer: a module may import only from its own layer or the ones below it.
LAYERS = [
    ["errors", "constants", "sampling", "files", "allocator", "cpu_registry", "field_docs"],
    ["lora", "model", "bigram", "muon", "optim", "threads"],
    ["tokenizers"],
    ["prompts", "corpus"],
    ["generation"],
    ["huggingface"],
    ["checkpoint"],
    ["pretrained"],
    ["data"],
    ["module", "callbacks", "strategies", "atomic_io"],
    # The Lightning wiring: the LightningCLI subclass and the entry that runs a fit.
    ["lightning_cli"],
    # Programs built on the layers below: a sweep runs fits, a server generates.
    ["sweep", "serving"],
    ["commands", "cli", "__main__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
WITHOUT_LIGHTNING = [
    "minigpt",
    "minigpt.model",
    "minigpt.tokenizers",
    "minigpt.prompts",
    "minigpt.corpus.cache",
    "minigpt.generation",
    "minigpt.checkpoint",
    "minigpt.pretrained",
    "minigpt.threads",
]
WITHOUT_TORCH = [
    "minigpt.cli",
    "minigpt.cpu_registry",
    "minigpt.sampling",
    "minigpt.commands.arguments",
    "minigpt.commands.tokenizer",
]


def module_names() -> list[str]:
    return ["minigpt"] + [info.name for info in pkgutil.walk_packages([str(PACKAGE)], prefix="minigpt.")]


def source_of(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.is_file() else (PACKAGE / relative).with_suffix(".py")


def top_level_part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def minigpt_imports(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minigpt"):
            found.append((node, node.module))
        elif isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names if alias.name.startswith("minigpt")]
    return found


def test_every_module_belongs_to_a_layer() -> None:
    parts = {top_level_part(name) for name in module_names() if name != "minigpt"}
    assert parts <= RANK.keys(), f"add {sorted(parts - RANK.keys())} to a layer in LAYERS"


def test_imports_point_down_and_sit_at_the_top_of_the_module() -> None:
    problems = []
    for module in module_names():
        if module == "minigpt":
            continue
        tree = ast.parse(source_of(module).read_text())
        own = RANK[top_level_part(module)]
        top_level = set(map(id, tree.body))
        for node, target in minigpt_imports(tree):
            where = f"{module} line {node.lineno} imports {target}"
            if id(node) not in top_level:
                problems.append(f"{where} inside a function or block (a hidden cycle?)")
            elif target != "minigpt" and RANK[top_level_part(target)] > own:
                problems.append(f"{where}, a higher layer")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    # One interpreter, but minigpt's modules are forgotten before each import, so each is
    # imported first: an import cycle shows up whichever module starts it. (`__main__` runs the CLI.)
    names = [name for name in module_names() if name != "minigpt.__main__"]
    script = f"""
import importlib, json, sys
failures = {{}}
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "minigpt" or m.startswith("minigpt.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failures[name] = f"{{type(error).__name__}}: {{error}}"
print(json.dumps(failures))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == {}


def heavy_imports(modules: list[str], heavy: set[str]) -> list[str]:
    """Which of the `heavy` top-level packages importing `modules` loads, in a fresh interpreter."""
    script = f"""
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
print(sorted({{m.split(".")[0] for m in sys.modules}} & {heavy!r}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.slow
def test_the_lower_layers_load_without_lightning() -> None:
    assert heavy_imports(WITHOUT_LIGHTNING, {"lightning", "pytorch_lightning", "torchmetrics"}) == []


@pytest.mark.slow
def test_the_command_line_parsers_load_without_torch() -> None:
    assert heavy_imports(WITHOUT_TORCH, {"torch", "lightning"}) == []


def distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_package_imported_is_a_declared_dependency() -> None:
    # What `pip install minigpt` installs (the installed metadata, which `make` refreshes whenever
    # pyproject.toml changes), not the dev extra: the package must import without it.
    required = [r for r in importlib.metadata.requires("minigpt") or [] if "extra ==" not in r]
    declared = {distribution_name(re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0]) for requirement in required}
    owners = importlib.metadata.packages_distributions()
    undeclared = set()
    for module in module_names():
        for node in ast.walk(ast.parse(source_of(module).read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - {"minigpt", "__future__"}:
                if top in sys.stdlib_module_names:
                    continue
                if not {distribution_name(d) for d in owners.get(top, [top])} & declared:
                    undeclared.add(f"{top} (imported by {module})")
    assert not undeclared, f"declare in pyproject.toml's dependencies: {sorted(undeclared)}"
