"""Tests run against scratch index and cache folders, never the checkout's index/ or ~/.cache."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Removed when the session ends: the cache alone holds over 1 GB (rebuilt readers, ONNX exports), and
# runs that left theirs behind once filled CI's disk. A process the tests start that imports a test
# module inherits them (and never removes them: only the session that made them does).
SCRATCH: list[str] = []
if "DOCQA_TEST_SCRATCH" not in os.environ:
    SCRATCH = [tempfile.mkdtemp(prefix="docqa-test-index-"), tempfile.mkdtemp(prefix="docqa-test-cache-")]
    os.environ["RAG_INDEX_DIR"], os.environ["RAG_CACHE_DIR"] = SCRATCH  # the cache so the ONNX export runs too
    os.environ["DOCQA_TEST_SCRATCH"] = "1"
# The engine's behaviour is tested with the small reader: the default (accurate) reads about 4x slower,
# and hundreds of asks on CI's 2 cores would not fit its time. The default reader's own tests use
# `default_engine` here, or DEFAULT_ENV for a subprocess (the CLI's first start and README example,
# the web chat, the cold start).
DEFAULT_ENV = dict(os.environ)
os.environ["RAG_READER_MODEL"] = "small"
ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "russia-ukraine-istanbul-talks-2025-07.txt"


def pytest_sessionfinish(session, exitstatus) -> None:
    for folder in SCRATCH:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def seed_text() -> str:
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_qa() -> list[dict]:
    with open(ROOT / "eval" / "seed_qa.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def default_engine():
    """An engine with the default configuration, as `ask()` has outside the tests."""
    from rag import Config
    from rag.engine import Engine

    return Engine(Config(reader_model=None))


@pytest.fixture(scope="session")
def rag_bin() -> str:
    return str(Path(sys.executable).parent / "rag")


def write_synthetic_squad(folder: Path) -> None:
    """dev-v1.1.json and dev-v2.0.json in SQuAD's layout: 48 articles (so the train/tune/held-out
    split applies) of two paragraphs, one question each, on which annotators disagree about the
    answer's extent; dev-v2.0 adds an unanswerable question per article."""
    v1, v2 = [], []
    for n in range(48):
        first = f"Town {n} lies on the river Num{n}. Its mayor is called Anna Person{n}."
        second = f"Town {n} has a market on Mondays and a school built in 19{n:02d}."
        qa = {"id": f"q{n}", "question": f"Who is the mayor of Town {n}?",
              "answers": [{"text": t, "answer_start": first.index(t)} for t in (f"Anna Person{n}", f"Person{n}")]}
        impossible = {"id": f"u{n}", "question": f"Who founded Town {n}?", "answers": [], "is_impossible": True}
        v1.append({"title": f"Town_{n}", "paragraphs": [{"context": first, "qas": [qa]},
                                                       {"context": second, "qas": []}]})
        v2.append({"title": f"Town_{n}", "paragraphs": [{"context": first, "qas": [qa, impossible]}]})
    (folder / "dev-v1.1.json").write_text(json.dumps({"data": v1}))
    (folder / "dev-v2.0.json").write_text(json.dumps({"data": v2}))


def write_synthetic_train_set(folder: Path, articles: int = 20, paragraphs: int = 2) -> None:
    """train-v1.1.json beside the synthetic dev sets: articles of `paragraphs` paragraphs (the first
    holds the answer; the others share some of the question's words, each a different share), a
    question each, and with more than two paragraphs a second question on the second."""
    data = []
    for n in range(articles):
        first = f"Village {n} grows apples. Its baker is called Boris Maker{n}."
        others = [f"Village {n} holds a fair every spring near the old mill."]
        others += [f"The {'baker ' * (k % 3)}guild {k} of Village {(n + k) % articles} meets at mill {n}."
                   for k in range(2, paragraphs)]
        qa = {"id": f"train-{n}", "question": f"Who is the baker of Village {n}?",
              "answers": [{"text": f"Boris Maker{n}", "answer_start": first.index("Boris")}]}
        fair = [{"id": f"train-{n}-fair", "question": f"When does Village {n} hold its fair?",
                 "answers": [{"text": "every spring", "answer_start": others[0].index("every")}]}]
        data.append({"title": f"Village_{n}", "paragraphs": [{"context": first, "qas": [qa]}]
                     + [{"context": c, "qas": fair if i == 0 and paragraphs > 2 else []}
                        for i, c in enumerate(others[:paragraphs - 1])]})
    (folder / "train-v1.1.json").write_text(json.dumps({"data": data}))


def write_pdf(path: Path, pages: list[list[str]]) -> None:
    """A real (minimal) PDF: each string a line of Helvetica text, top to bottom, one list per page."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        shown = " ".join("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*"
                         for line in lines)
        body = f"BT /F1 11 Tf 14 TL 72 740 Td {shown} ET"
        objects.append(f"<< /Length {len(body.encode('latin-1'))} >>\nstream\n{body}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(len(objects))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
