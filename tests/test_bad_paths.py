"""Local paths the OS cannot hold (a name past its length limit, a NUL byte) are a user's
typo like any missing path: the library answers "not found" with its usual fix, never an
OSError from the file system."""

import pytest

from saeray.corpus import parse_corpus_spec
from saeray.corpus.files import list_files
from saeray.errors import NotFoundError
from saeray.lm import load_model
from saeray.sae import describe_sae, load_sae

UNHOLDABLE = {
    "name too long": "x" * 5000,
    "component too long": "/tmp/" + "y" * 300 + "/sae",
    "NUL byte": "/tmp/a\x00b",
}


@pytest.fixture(params=sorted(UNHOLDABLE))
def path(request):
    return UNHOLDABLE[request.param]


def test_sae(path):
    with pytest.raises(NotFoundError, match="no file or folder"):
        load_sae(path)
    with pytest.raises(NotFoundError, match="no file or folder"):
        describe_sae(path)


def test_model(path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a relative name is tried on the hub
    with pytest.raises(NotFoundError, match="model"):
        load_model(path)


def test_corpus(path):
    with pytest.raises(NotFoundError, match="corpus path"):
        list_files(parse_corpus_spec(path))
