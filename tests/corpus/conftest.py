"""A tiny synthesized corpus (espeak-ng), made once per session."""

import shutil

import pytest

TINY = dict(num_train_sentences=24, num_test_sentences=6, num_qa=6, seed=0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from aura_jax.corpus.make import make_corpus

    out = tmp_path_factory.mktemp("corpus") / "corpus"
    return out, make_corpus(out, **TINY)
