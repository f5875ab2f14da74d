"""The known SAE formats, and how a folder's format is recognised.

To add a format: write a module under ``saeray/sae/formats/`` exposing ``FORMAT`` (an
``SAEFormat``: its files, ``detect`` and ``load``) and list it here.
"""

from __future__ import annotations

from saeray.errors import InvalidInputError, NotFoundError
from saeray.sae.files import SAEFiles
from saeray.sae.formats import (
    dictionary_learning,
    gemma_scope,
    gemma_scope_2,
    llama_scope,
    saelens,
    saeray_format,
    sparsify,
)
from saeray.sae.formats.common import SAEFormat

FORMATS: dict[str, SAEFormat] = {
    fmt.name: fmt
    for fmt in (
        saeray_format.FORMAT,
        saelens.FORMAT,
        sparsify.FORMAT,
        dictionary_learning.FORMAT,
        llama_scope.FORMAT,
        gemma_scope_2.FORMAT,
        gemma_scope.FORMAT,
    )
}
# A saeray folder is also a valid SAELens folder; the more specific reading wins.
_SUBSUMES = {"saeray": "saelens"}
SHOWN_CANDIDATES = 8


def known_files() -> set[str]:
    return {name for fmt in FORMATS.values() for name in fmt.files}


def get_format(name: str) -> SAEFormat:
    key = name.strip().lower().replace("-", "_")
    if key not in FORMATS:
        raise InvalidInputError(f"unknown SAE format {name!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[key]


def detect_format(files: SAEFiles) -> SAEFormat:
    """The one format whose files are in the folder; a clear error for none or several."""
    matches = [fmt.name for fmt in FORMATS.values() if fmt.detect(files)]
    for specific, general in _SUBSUMES.items():
        if specific in matches and general in matches:
            matches.remove(general)
    if len(matches) == 1:
        return FORMATS[matches[0]]
    if matches:
        raise InvalidInputError(
            f"{files.label} holds files of several SAE formats ({', '.join(matches)}); pass "
            "format= to say which one to load"
        )
    folders = files.sae_folders_below(known_files())
    if folders:
        shown = ", ".join(folders[:SHOWN_CANDIDATES])
        more = (
            f" and {len(folders) - SHOWN_CANDIDATES} more"
            if len(folders) > SHOWN_CANDIDATES
            else ""
        )
        raise InvalidInputError(
            f"{files.label} holds several SAEs, in folders {shown}{more}; load one of them, "
            f"e.g. {files.label.rstrip('/')}/{folders[0]}"
        )
    expected = "; ".join(f"{fmt.name}: {', '.join(fmt.files)}" for fmt in FORMATS.values())
    offline = (
        " (offline: only files already in the Hugging Face cache count)" if files.offline else ""
    )
    raise NotFoundError(
        f"no SAE found at {files.label}{offline}: it has none of the files a known format "
        f"uses ({expected}). Point at the folder holding the SAE's files"
    )
