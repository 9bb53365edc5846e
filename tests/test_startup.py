"""A cold `rag ask` with the models' exports cached: no torch, transformers or sentence-transformers
imported, and the same answers as the PyTorch path (issue 26)."""

import json
import subprocess
import sys

import pytest

from conftest import DEFAULT_ENV
from rag import Config
from rag.engine import Engine

HEAVY = ("torch", "transformers", "sentence_transformers")


def _rag(*args, env, stdin=None):
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "rag.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=600, env=env, check=True)


@pytest.fixture(scope="module")
def cached_env(tmp_path_factory):
    """A cache and index folder of their own, filled by one first `rag ask` (which exports the models)."""
    folder = tmp_path_factory.mktemp("startup")
    env = {**DEFAULT_ENV, "RAG_CACHE_DIR": str(folder / "cache"), "RAG_INDEX_DIR": str(folder / "index")}
    first = _rag("ask", "Who led the Russian delegation?", env=env)
    assert "torch" in first.stderr  # the first start loads the models to export them
    return env


def imported(stderr: str) -> set[str]:
    """Top-level module names in `python -X importtime`'s report."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


def test_a_cold_ask_imports_no_torch_once_the_exports_are_cached(cached_env):
    out = _rag("ask", "Who led the Russian delegation?", "--json", env=cached_env)
    assert json.loads(out.stdout)["text"] == "Vladimir Medinsky"
    modules = imported(out.stderr)
    assert {"rag", "onnxruntime", "tokenizers", "bm25s"} <= modules  # faiss too, for an index of 200k chunks up
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_a_yes_no_question_embeds_its_sentences_without_torch_too(cached_env):
    """A yes/no question is answered by the sentence closest to it, which embeds the retrieved passages'
    sentences (as the relevance gate's sentence test does): in the question's runtime, not PyTorch."""
    out = _rag("ask", "Were the talks held in Russian?", "--json", env=cached_env)
    answer = json.loads(out.stdout)
    assert answer["abstained"] and answer["citations"][0]["sentence"] == "The talks were held in Russian."
    assert not imported(out.stderr) & set(HEAVY), imported(out.stderr) & set(HEAVY)


def test_the_fast_path_answers_the_seed_questions_as_pytorch_does(cached_env, seed_qa):
    questions = [item["question"] for item in seed_qa] + ["Did the talks last about 40 minutes?"]
    out = _rag("ask", "--json", env=cached_env, stdin="\n".join(questions) + "\n")
    assert not imported(out.stderr) & set(HEAVY)
    fast = [json.loads(line) for line in out.stdout.splitlines()]
    reference = Engine(Config(reader_model=None, backend="torch", reader_dtype="float32"))  # the default reader
    assert len(fast) == len(questions)
    for question, got in zip(questions, fast):
        expected = reference.ask(question)
        assert (got["text"], got["abstained"]) == (expected.text, expected.abstained), question
        assert got["score"] == pytest.approx(expected.score, abs=1e-4), question
        assert [c["start"] for c in got["citations"]] == [c.start for c in expected.citations], question
