"""Every relative link, every `configs/...` file and every class path named in the README, the docs
and the configs exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CONFIG = re.compile(r"configs/[\w.-]+\.yaml")
# A dotted path into the package ending in a class name, as a config's class_path names it.
CLASS_PATH = re.compile(r"\bminigpt(?:\.[a-z_]\w*)+\.[A-Z]\w*")
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# Class paths the pages name on purpose though they do not exist.
NOT_CLASSES = {
    "minigpt.data.MyCorpus",  # extending.md: the data set a reader adds
    "minigpt.data.TinyShakspeare",  # troubleshooting.md: a misspelling and its error
}


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors: headings lowercased, punctuation dropped, spaces turned into hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_lead_somewhere(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_named_configs_exist(page: Path) -> None:
    missing = sorted({name for name in CONFIG.findall(page.read_text(encoding="utf-8")) if not (REPO / name).exists()})
    assert not missing, missing


def test_the_package_map_names_every_module() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    package_map = readme[readme.index("## Package map") :].split("```")[1]
    package = REPO / "minigpt"
    names = [path.name for path in package.iterdir() if path.suffix == ".py" and path.name != "__init__.py"]
    names += [f"{path.name}/" for path in package.iterdir() if (path / "__init__.py").is_file()]
    names += [path.name for sub in package.iterdir() if sub.is_dir() for path in sub.glob("*.py")]
    unnamed = sorted(name for name in names if name not in package_map and name not in ("__init__.py", "__main__.py"))
    assert not unnamed, f"add these to the README's package map: {unnamed}"


@pytest.mark.parametrize("page", PAGES + CONFIGS, ids=lambda page: str(page.relative_to(REPO)))
def test_named_class_paths_exist(page: Path) -> None:
    missing = []
    for class_path in sorted(set(CLASS_PATH.findall(page.read_text(encoding="utf-8"))) - NOT_CLASSES):
        module, _, name = class_path.rpartition(".")
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError:
            found = False
        if not found:
            missing.append(class_path)
    assert not missing, missing
