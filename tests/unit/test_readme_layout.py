"""README's Layout section names every module of the product, and only modules that exist."""

from __future__ import annotations

import re

from core.config import REPO_ROOT

PACKAGES = ("core", "udfs", "connectors", "jobs", "feedtrends")


def _layout_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ## Layout section with a code block"
    return match.group(1)


def test_every_module_is_in_the_layout() -> None:
    named = set(re.findall(r"[\w/]+\.py\b", _layout_block()))
    modules = {
        path
        for package in PACKAGES
        for path in (REPO_ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    # A module is named by its file name (under its folder's line) or by its path.
    missing = sorted(
        str(p.relative_to(REPO_ROOT)) for p in modules if p.name not in named and str(p.relative_to(REPO_ROOT)) not in named
    )
    assert missing == []


def test_the_layout_names_no_module_that_is_gone() -> None:
    existing = {p.name for package in PACKAGES + ("tests",) for p in (REPO_ROOT / package).rglob("*.py")}
    existing |= {str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*.py") if ".venv" not in p.parts}
    stale = sorted(name for name in set(re.findall(r"[\w/]+\.py\b", _layout_block())) if name not in existing)
    assert stale == []
