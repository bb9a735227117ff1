"""mkdocs hook: the composability matrix table, generated from ``tests/composability_cases.py``.

``docs/composability.md`` holds the marker ``<!-- composability-matrix -->``; this hook replaces it
with the Markdown table built from the same list of cases the test suite runs, so the page cannot
drift from the tests. The cases module needs torch and torchrs_fn, not pytest.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MARKER = "<!-- composability-matrix -->"
CASES_FILE = Path(__file__).resolve().parents[2] / "tests" / "composability_cases.py"


def _cases_module():
    name = "composability_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CASES_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    return sys.modules[name]


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, _cases_module().markdown_table())
