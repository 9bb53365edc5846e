"""Tests run against scratch index and cache folders, never the checkout's index/ or ~/.cache."""

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["RAG_INDEX_DIR"] = tempfile.mkdtemp(prefix="docqa-test-index-")
os.environ["RAG_CACHE_DIR"] = tempfile.mkdtemp(prefix="docqa-test-cache-")  # so the ONNX export runs too
ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "russia-ukraine-istanbul-talks-2025-07.txt"


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_qa() -> list[dict]:
    with open(ROOT / "eval" / "seed_qa.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def rag_bin() -> str:
    return str(Path(sys.executable).parent / "rag")
