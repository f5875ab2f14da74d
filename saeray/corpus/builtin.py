"""The built-in offline corpus: Python's own documentation, present wherever Python is.

- ``python-topics``: the help topics of the language reference (``pydoc_data.topics``, what
  ``help("if")`` shows), one document per topic, by topic name (~130k MiniLM tokens).
- ``python-docs`` (the default): those topics, then one document per standard-library module,
  by path: its docstrings (module, classes, functions, methods), each under its qualified
  name, read from the source with ``ast`` (nothing is imported). Over 600k MiniLM tokens.

The order is fixed, so one Python installation always gives the same corpus; other Python
versions give somewhat different text. Test suites (``test``, ``tests``, ``idle_test``) and
installed packages (``site-packages``) are left out.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from functools import cache
from pathlib import Path

BUILTIN_CORPORA = {
    "python-docs": "Python help topics and standard-library docstrings",
    "python-topics": "Python help topics (pydoc_data.topics)",
}
DEFAULT_BUILTIN = "python-docs"
TOPICS_SOURCE = "pydoc-topics"
_MODULE_PREFIX = "stdlib:"
_SKIPPED_FOLDERS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return topics


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@cache
def _stdlib_modules() -> tuple[str, ...]:
    """Relative paths of the standard library's modules, sorted."""
    root = _stdlib_root()
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [
            name for name in subfolders if name not in _SKIPPED_FOLDERS and not name.startswith(".")
        ]
        found += [
            (Path(folder) / name).relative_to(root).as_posix()
            for name in files
            if name.endswith(".py") and not name.startswith(".")
        ]
    return tuple(sorted(found))


def builtin_sources(name: str) -> list[tuple[str, int]]:
    """The corpus's sources in order, each with its number of documents."""
    sources = [(TOPICS_SOURCE, len(_topics()))]
    if name == "python-docs":
        sources += [(_MODULE_PREFIX + path, 1) for path in _stdlib_modules()]
    return sources


def read_builtin_source(source: str) -> Iterator[tuple[str, str]]:
    """The (doc_id, text) pairs of one source."""
    if source == TOPICS_SOURCE:
        topics = _topics()
        for key in sorted(topics):
            yield f"topic:{key}", topics[key]
        return
    path = source.removeprefix(_MODULE_PREFIX)
    module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    yield f"module:{module}", _module_text(path, module)


@cache
def _module_text(path: str, module: str) -> str:
    try:
        tree = ast.parse((_stdlib_root() / path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ""  # a file this Python cannot read or parse counts as an empty document
    sections: list[str] = []

    def visit(node: ast.AST, qualname: str) -> None:
        docstring = ast.get_docstring(node)  # type: ignore[arg-type]
        if docstring:
            sections.append(f"{qualname}\n{docstring}")
        for child in node.body:  # type: ignore[attr-defined]
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{qualname}.{child.name}")

    visit(tree, module)
    return "\n\n".join(sections)
