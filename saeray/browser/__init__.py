"""The feature browser: the queries behind it (features, extractions) and its one page,
a self-contained HTML+JS file that talks to the HTTP API."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def page_html() -> str:
    return files(__package__).joinpath("index.html").read_text(encoding="utf-8")
