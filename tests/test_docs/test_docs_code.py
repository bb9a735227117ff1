"""The docs' code runs: every Python block of every guide, in order, as a reader would paste it.

Pages. Every Markdown page under ``docs/`` is a guide and is tested, except those in ``EXCLUDED``
(each with its reason) and the API reference under ``docs/api/`` (mkdocstrings stubs, no code). A
new page is tested as soon as it exists; nothing here needs editing.

Blocks. The fenced blocks whose language is ``python`` (or ``py``, ``python3``) of one page run
in order in one fresh namespace, each as one paste (``exec``), in a temporary working folder. Other
fences (``text``, ``bash``, ...) are not Python and are not run. One test item per page; a failure
names the page, the block's number and line, and the block's first lines.

Markers. An HTML comment on its own line right before a block's opening fence (blank lines and
other markers may sit in between) tells the test about that block; readers of the Markdown see
it, the rendered page does not (so the prose should say when a block is a fragment):

- ``<!-- docs-test: skip REASON -->``: the block is not run, e.g. a fragment that stands for the
  reader's own objects, or code that needs files the reader must provide. The reason is required.
  Skipped blocks are counted and reported (one ``DocsBlocksNotRun`` warning per page, listing
  each with its reason), never dropped silently.
- ``<!-- docs-test: replace "OLD" -> "NEW" -->``: the smaller-settings switch. Under the test
  suite's default, the block runs with the text ``OLD`` replaced by ``NEW`` (e.g. fewer epochs,
  ``compile=False`` where a page's compile would dominate the run); ``OLD`` must occur in the
  block, so a stale marker fails. Several markers may stack; text after ``"NEW"`` is a note
  for the reader. Set ``TORCHRS_FN_DOCS_FULL=1`` to run every block exactly as written instead
  (slower: full epochs and compiles; minutes on a small CPU).

A marker that is not followed by a Python block, or that is not one of these forms, fails the
page. ``pycon`` / ``ipython`` fences fail too: write the code as ``python`` (outputs go in a
``text`` block after it), so that it is run.

Data. A page that calls ``movielens.load`` gets MovieLens 100K as the other tests do (the
``ml100k_dir`` fixture: the shared copy, or the library's cache): the test points
``$TORCHRS_FN_DATA_DIR`` at a temporary cache holding a link to that folder, so
``movielens.load("100k")`` finds it there. A block that would download anything fails instead.
"""

from __future__ import annotations

import ast
import linecache
import os
import re
import sys
import textwrap
import time
import traceback
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

# Pages that are not guides: their code is not meant to be pasted and run as it stands.
EXCLUDED = {
    "benchmarks.md": (
        "not a guide: measurements and the shell commands that reproduce them (minutes long, some "
        "need TensorFlow or a GPU); the scripts are the benchmarks/ suite's, run by `make bench`"
    ),
}
# Folders of docs/ that hold no guides.
EXCLUDED_FOLDERS = {
    "api": "mkdocstrings stubs (::: directives), generated from the docstrings; no code blocks",
    "hooks": "mkdocs build hooks (Python files), not pages",
}

FULL_ENV = "TORCHRS_FN_DOCS_FULL"
PYTHON_LANGUAGES = {"python", "py", "python3"}
INTERACTIVE_LANGUAGES = {"pycon", "ipython", "python-repl"}

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_MARKER = re.compile(r"^[ \t]*<!--\s*docs-test:(?P<body>.*?)-->[ \t]*$")
_STRING = r"(\"[^\"]*\"|'[^']*')"
_REPLACE = re.compile(rf"^replace\s+(?P<old>{_STRING})\s*->\s*(?P<new>{_STRING})(?:\s+.*)?$")


@dataclass
class Block:
    page: str
    number: int  # 1-based among the page's Python blocks
    line: int  # 1-based line of the opening fence
    source: str
    skip: str | None = None
    replacements: list[tuple[str, str]] = field(default_factory=list)

    def head(self, lines: int = 3) -> str:
        first = [ln for ln in self.source.splitlines() if ln.strip()][:lines]
        return "\n".join("    " + ln for ln in first)

    def where(self) -> str:
        return f"docs/{self.page}, Python block {self.number} (line {self.line})"


def _language(info: str) -> str:
    """The fence's language: ``python`` of ``python title="x"``, ``{.python .x}``, ``py3``..."""
    if not info:
        return ""
    first = info.split()[0]
    if first.startswith("{"):
        classes = re.findall(r"\.([\w+-]+)", info)
        return classes[0].lower() if classes else ""
    return first.lower()


def _parse_marker(body: str, where: str) -> tuple[str, object]:
    body = body.strip()
    if body.startswith("skip"):
        reason = body[len("skip") :].lstrip(" :-—").strip()
        if not reason:
            raise ValueError(f"{where}: 'docs-test: skip' needs a reason")
        return "skip", reason
    m = _REPLACE.match(body)
    if m:
        return "replace", (ast.literal_eval(m["old"]), ast.literal_eval(m["new"]))
    raise ValueError(
        f"{where}: unknown marker 'docs-test:{body}'; the markers are "
        """'skip REASON' and 'replace "OLD" -> "NEW"'"""
    )


def parse_page(page: str, text: str) -> list[Block]:
    """The page's Python blocks in order, with the markers that precede them."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str, object]] = []  # markers waiting for their block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        if marker:
            kind, value = _parse_marker(marker["body"], f"docs/{page}:{i + 1}")
            pending.append((i + 1, kind, value))
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip() and pending:
                raise ValueError(
                    f"docs/{page}:{pending[0][0]}: a docs-test marker must come right before a "
                    f"```python block, but line {i + 1} is text"
                )
            i += 1
            continue
        # A fenced block: find its closing fence (same character, at least as long).
        opening, language = fence["fence"], _language(fence["info"])
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (
                close
                and close["fence"][0] == opening[0]
                and len(close["fence"]) >= len(opening)
                and not close["info"]
            ):
                break
            body.append(lines[j])
            j += 1
        if language in INTERACTIVE_LANGUAGES:
            raise ValueError(
                f"docs/{page}:{i + 1}: a ```{language} block is not run by the docs test; write "
                "it as ```python (and the output as ```text after it)"
            )
        if language in PYTHON_LANGUAGES:
            source = textwrap.dedent("\n".join(body)) + "\n"  # fences may be indented
            block = Block(page, len(blocks) + 1, i + 1, source)
            for _, kind, value in pending:
                if kind == "skip":
                    block.skip = value
                else:
                    block.replacements.append(value)
            blocks.append(block)
        elif pending:
            raise ValueError(
                f"docs/{page}:{pending[0][0]}: a docs-test marker must come right before a "
                f"```python block, but the block at line {i + 1} is ```{language or '(plain)'}"
            )
        pending = []
        i = j + 1
    if pending:
        raise ValueError(f"docs/{page}:{pending[0][0]}: a docs-test marker at the end of the page")
    return blocks


def guide_pages() -> list[str]:
    pages = []
    for path in sorted(DOCS.rglob("*.md")):
        rel = path.relative_to(DOCS)
        if rel.parts[0] in EXCLUDED_FOLDERS or rel.as_posix() in EXCLUDED:
            continue
        pages.append(rel.as_posix())
    return pages


def _runnable(block: Block, full: bool) -> str:
    source = block.source
    for old, new in block.replacements:
        if old not in source:
            raise AssertionError(
                f"{block.where()}: the marker replace {old!r} -> {new!r} is stale: {old!r} is "
                f"not in the block, which begins\n{block.head()}"
            )
        if not full:
            source = source.replace(old, new)
    return source


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchrs_fn.data.datasets import movielens

    def refuse(cache, variant, reporter=None):
        raise AssertionError(
            f"a docs block tried to download MovieLens {variant} into {cache}; the docs test "
            "never downloads (mark the block '<!-- docs-test: skip REASON -->' if it must)"
        )

    monkeypatch.setattr(movielens, "_fetch", refuse)


class DocsBlocksNotRun(UserWarning):
    """Python blocks of a page that the docs test did not run, each with its marker's reason."""


def test_the_pages_are_found():
    pages = guide_pages()
    assert "quickstart.md" in pages and "data.md" in pages, pages
    for name in EXCLUDED:
        assert (DOCS / name).is_file(), f"EXCLUDED names docs/{name}, which does not exist"


def test_markers_are_parsed():
    text = (
        "Intro.\n\n<!-- docs-test: skip stands for your own model -->\n```python\nfit(model)\n```\n"
        "\n```text\nout\n```\n\n"
        '<!-- docs-test: replace "epochs=3" -> "epochs=1" -->\n'
        "!!! note\n"
    )
    with pytest.raises(ValueError, match="right before"):
        parse_page("x.md", text)
    text = text.replace("!!! note\n", "    ```py\n    fit(epochs=3)\n    ```\n")
    blocks = parse_page("x.md", text)
    assert [(b.number, b.line, b.skip) for b in blocks] == [
        (1, 4, "stands for your own model"),
        (2, 13, None),
    ]
    assert blocks[1].source == "fit(epochs=3)\n"
    assert blocks[1].replacements == [("epochs=3", "epochs=1")]
    assert _runnable(blocks[1], full=False) == "fit(epochs=1)\n"
    assert _runnable(blocks[1], full=True) == "fit(epochs=3)\n"
    with pytest.raises(ValueError, match="needs a reason"):
        parse_page("x.md", "<!-- docs-test: skip -->\n```python\nx\n```\n")
    with pytest.raises(ValueError, match="unknown marker"):
        parse_page("x.md", "<!-- docs-test: skp why -->\n```python\nx\n```\n")
    with pytest.raises(ValueError, match="pycon"):
        parse_page("x.md", "```pycon\n>>> 1\n```\n")
    stale = Block("x.md", 1, 1, "fit()\n", replacements=[("epochs=3", "epochs=1")])
    with pytest.raises(AssertionError, match="stale"):
        _runnable(stale, full=False)


@pytest.mark.compile
@pytest.mark.parametrize("page", guide_pages())
def test_page_code_runs(page, request, tmp_path, monkeypatch):
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = parse_page(page, text)
    if not blocks:
        return  # a page without Python code (shell commands, prose) has nothing to run
    full = os.environ.get(FULL_ENV, "") not in ("", "0")

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # files a block writes land here
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(cache))
    if "movielens.load(" in text:
        (cache / "ml-100k").symlink_to(request.getfixturevalue("ml100k_dir"), True)
    _no_downloads(monkeypatch)

    name = "docs_" + re.sub(r"\W", "_", page.removesuffix(".md"))
    module = types.ModuleType(name)
    module.__file__ = str(DOCS / page)
    monkeypatch.setitem(sys.modules, name, module)  # torch.compile looks modules up by name

    not_run = []
    for block in blocks:
        if block.skip is not None:
            not_run.append(f"block {block.number} (line {block.line}): {block.skip}")
            continue
        source = _runnable(block, full)
        filename = f"<docs/{page} python block {block.number}, line {block.line}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        start = time.perf_counter()
        failure = None
        try:
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
        except Exception as e:
            # The traceback from the block's own frame on (the test's frames say nothing).
            tb = traceback.TracebackException.from_exception(e)
            tb.stack = traceback.StackSummary.from_list(
                [f for f in tb.stack if f.filename != __file__]
            )
            failure = (
                f"{block.where()} failed with {type(e).__name__}: {e}\n"
                f"The block begins:\n{block.head()}\n\n" + "".join(tb.format())
            )
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        request.node.user_properties.append(
            (f"block {block.number} seconds", round(time.perf_counter() - start, 2))
        )
    if not_run:
        warnings.warn(
            DocsBlocksNotRun(
                f"docs/{page}: {len(not_run)} of {len(blocks)} Python blocks not run, as their "
                "markers say: " + "; ".join(not_run)
            ),
            stacklevel=1,
        )
