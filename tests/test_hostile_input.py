"""Careless and hostile input: no hang, no unbounded memory, no file from outside the folder, no
index lost to a crash. Each test failed before the fix it guards (issue 28)."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SEED
from rag import Config
from rag.cli import main as cli
from rag.documents import read_document
from rag.engine import Engine
from rag.errors import DocumentError, IndexStoreError, QuestionError, RagError
from rag.index import build_index, load_index, save_index
from rag.schema import Chunk, Document, Sentence


def best_time(action, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def grows_linearly(make, small: int) -> bool:
    """Whether four times the input costs well under the sixteen times a quadratic step would."""
    a, b = make(small), make(4 * small)
    return best_time(b) < 8 * max(best_time(a), 1e-3)


def test_one_long_line_of_sentences_is_split_in_linear_time(tmp_path):
    def make(n):
        path = tmp_path / f"line-{n}.txt"
        path.write_text("The mayor (Dr. J. Smith) spoke at 6 p.m. on Monday. It rained. " * (n // 64))
        return lambda: read_document(path)
    assert grows_linearly(make, 50_000)
    doc = read_document(tmp_path / "line-50000.txt")
    assert doc.text[doc.sentences[0].start:doc.sentences[0].end] == "The mayor (Dr. J. Smith) spoke at 6 p.m. on Monday."


@pytest.mark.parametrize("tag", ["<div>", "<table>", "<table><tr><td>"])
def test_deeply_nested_html_is_read_in_linear_time(tmp_path, tag):
    def make(n):
        path = tmp_path / f"nested-{n}.html"
        closing = "".join(f"</{name}>" for name in reversed(tag[1:-1].split("><")))
        path.write_text(tag * n + "The vault is under the old mill." + closing * n)
        return lambda: read_document(path)
    assert grows_linearly(make, 8_000)
    assert read_document(tmp_path / "nested-32000.html").text == "The vault is under the old mill."


def test_a_long_table_header_is_not_repeated_in_every_row(tmp_path):
    """Rows are read with their header ("Price: €9"), but a header cell too long to be a column's name
    is not repeated: 10,000 short rows under a 100,000-character header would make a gigabyte of text."""
    path = tmp_path / "wide.html"
    path.write_text("<table><tr><th>" + "header " * 14_000 + "</th><th>Price</th></tr>"
                    + "<tr><td>a</td><td>1</td></tr>" * 10_000 + "</table>")
    text = read_document(path).text
    assert len(text) < 300_000 and text.count("Price: 1") == 10_000


def test_links_out_of_an_indexed_folder_are_not_followed(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The root password is hunter2.")
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("The library opens at nine in the morning.")
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    (folder / "linked-folder").symlink_to(outside, target_is_directory=True)
    (folder / "sub" / "again.txt").symlink_to(folder / "notes.txt")  # inside the folder: read once
    (folder / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(folder / "pipe.txt")  # reading it would block forever
    assert cli(["index", str(folder), "--name", "links"]) == 0
    err = capsys.readouterr().err
    assert "secret.txt: skipped (a link to a place outside the folder)" in err
    assert "linked-folder: skipped (a link to a place outside the folder)" in err
    assert "dangling.txt: skipped (a link to nothing)" in err
    assert "pipe.txt: skipped (not a regular file)" in err
    corpus = Engine(Config()).index("links")
    assert corpus.document_names == ["notes.txt"]
    assert not any("hunter2" in d.text for d in corpus.documents)


def test_what_one_document_may_cost_is_bounded_before_it_is_read(tmp_path, monkeypatch):
    sparse = tmp_path / "huge.txt"
    with open(sparse, "wb") as f:  # 3 GB on paper, nothing on disk: refused before a byte is read
        f.truncate(3 * 10**9)
    start = time.perf_counter()
    with pytest.raises(DocumentError, match=r"3,000\.0 MB, over the limit of 50 MB .* RAG_MAX_DOCUMENT_MB"):
        read_document(sparse)
    assert time.perf_counter() - start < 1

    bomb = tmp_path / "bomb.docx"  # a Word file whose parts unpack to far more than it weighs
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\0" * 30_000_000)
    assert bomb.stat().st_size < 100_000
    monkeypatch.setenv("RAG_MAX_UNPACKED_MB", "20")
    with pytest.raises(DocumentError, match=r"unpacks to 30 MB, over the limit of 20 MB .* RAG_MAX_UNPACKED_MB"):
        read_document(bomb)

    long = tmp_path / "long.txt"
    long.write_text("Word " * 1000)
    monkeypatch.setenv("RAG_MAX_DOCUMENT_CHARS", "4000")
    with pytest.raises(DocumentError, match=r"5,000 characters .* limit of 4,000 .* RAG_MAX_DOCUMENT_CHARS"):
        read_document(long)
    monkeypatch.setenv("RAG_MAX_DOCUMENT_CHARS", "lots")
    with pytest.raises(RagError, match="RAG_MAX_DOCUMENT_CHARS='lots' is not a number"):
        read_document(long)


def test_one_bad_file_in_a_folder_is_skipped_with_a_note(tmp_path, capsys):
    import docx
    from pypdf import PdfWriter

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("The ferry leaves the harbour at seven.")
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    with open(folder / "locked.pdf", "wb") as f:
        writer.write(f)
    huge = docx.Document()
    huge.add_paragraph("x" * 11_000_000)  # one text node past lxml's 10 MB limit
    huge.save(folder / "huge.docx")
    (folder / os.fsdecode(b"caf\xe9-menu.txt")).write_text("The cafe serves lentil soup on Fridays.")
    assert cli(["index", str(folder), "--name", "mixed"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "locked.pdf: the PDF is protected by a password" in err
    assert "huge.docx: not a readable Word document" in err
    names = Engine(Config()).index("mixed").document_names
    assert names == ["caf\ufffd-menu.txt", "good.txt"]


def _tiny_index(texts: list[str], names: list[str] | None = None):
    """An index of short documents with made-up unit vectors: no embedding model needed."""
    names = names or [f"doc{i}.txt" for i in range(len(texts))]
    docs = [Document(name=n, text=t, sentences=[Sentence(0, len(t))]) for n, t in zip(names, texts)]
    chunks = [Chunk(doc_id=i, start=0, end=len(t), text=t) for i, t in enumerate(texts)]
    vectors = np.eye(len(texts), 8, dtype=np.float32)
    return build_index(docs, chunks, vectors, Config().embedding_model_id, 800, 200)


KILL_AT = """
import os, sys
from pathlib import Path
import rag.index as ix
sys.path.insert(0, {tests!r})
from test_hostile_input import _tiny_index
ix._after_step = lambda step: os._exit(9) if step == {step!r} else None
ix.save_index(_tiny_index(["The new text."]), Path({folder!r}))
"""


@pytest.mark.parametrize("step", ["written", "moved aside", "swapped"])
def test_a_writer_killed_at_any_step_of_the_swap_leaves_an_index(tmp_path, step):
    folder = tmp_path / "swap"
    save_index(_tiny_index(["The old text."]), folder)
    code = KILL_AT.format(tests=os.path.dirname(__file__), step=step, folder=str(folder))
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9
    text = load_index(folder, Config().embedding_model_id).documents[0].text
    assert text == ("The old text." if step == "written" else "The new text.")


def _rag(*args, stdin: bytes | None = None, env: dict | None = None):
    rag = os.path.join(os.path.dirname(sys.executable), "rag")
    return subprocess.run([rag, *args], input=stdin, capture_output=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_questions_that_are_not_utf8_are_answered(tmp_path):
    out = _rag("ask", os.fsdecode(b"Who led the Russian delegation? \xff"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["question"].endswith("\ufffd")
    lines = b"Who led the Russian delegation?\n\xff\xfe caf\xe9 talks?\nWhere were the talks held?\n"
    out = _rag("ask", "--json", stdin=lines)
    answers = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(answers) == 3 and out.returncode == 0, out.stderr
    assert answers[2]["question"] == "Where were the talks held?"


def test_a_damaged_manifest_is_reported_and_list_goes_on(tmp_path, capsys):
    index_dir = tmp_path / "indexes"
    for name in ("broken", "fine"):
        save_index(_tiny_index(["Some text."]), index_dir / name)
    manifest = json.loads((index_dir / "broken" / "manifest.json").read_text())
    manifest["documents"] = ["doc0.txt"]
    (index_dir / "broken" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="manifest.json is malformed: each of its documents should have"):
        Engine(Config(index_dir=index_dir)).index("broken")
    assert cli(["--index-dir", str(index_dir), "list"]) == 0
    out = capsys.readouterr().out
    assert "broken  (unreadable:" in out and "fine  1 document(s)" in out


def test_an_index_folder_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    doc = tmp_path / "doc.txt"
    doc.write_text("The bridge was finished in 1932.")
    assert cli(["--index-dir", str(blocker / "indexes"), "index", str(doc), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "Cannot write the index" in err and "--index-dir" in err and "Traceback" not in err


def _nan_vectors(folder: Path) -> None:
    vectors = np.load(folder / "vectors.npy")
    vectors[1] = np.nan
    np.save(folder / "vectors.npy", vectors)


def _chunk_before_its_document(folder: Path) -> None:
    chunks = np.load(folder / "chunks.npy")
    chunks[0, 1] = -5
    np.save(folder / "chunks.npy", chunks)


def _one_name_twice(folder: Path) -> None:
    names = (folder / "names.bin").read_bytes()
    assert names == b"doc0.txtdoc1.txt"
    (folder / "names.bin").write_bytes(b"doc0.txtdoc0.txt")


@pytest.mark.parametrize("damage, message", [
    (_nan_vectors, "not finite"),
    (_chunk_before_its_document, "chunk offsets fall outside"),
    (_one_name_twice, "have the same name"),
])
def test_damage_is_refused_on_load(tmp_path, damage, message):
    """Damage that keeps every file readable, its checksums written again to match (as a careless
    tool would), so the checks of the contents are what stops it."""
    import rag.index as ix

    save_index(_tiny_index(["First text.", "Second text."]), tmp_path / "damaged")
    damage(tmp_path / "damaged")
    manifest = json.loads((tmp_path / "damaged" / "manifest.json").read_text())
    manifest["files"] = {name: ix._file_sha256(tmp_path / "damaged" / name) for name in manifest["files"]}
    (tmp_path / "damaged" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match=message):
        load_index(tmp_path / "damaged", Config().embedding_model_id)


def test_shifted_vectors_fail_their_checksum(tmp_path):
    save_index(_tiny_index(["First text.", "Second text."]), tmp_path / "shifted")
    vectors = np.load(tmp_path / "shifted" / "vectors.npy")
    np.save(tmp_path / "shifted" / "vectors.npy", vectors[::-1].copy())
    with pytest.raises(IndexStoreError, match="vectors.npy is not the file the index was written with"):
        load_index(tmp_path / "shifted", Config().embedding_model_id)


def test_an_index_name_with_a_newline_is_refused(tmp_path, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("The bridge was finished in 1932.")
    assert cli(["index", str(doc), "--name", "evil\n"]) == 2
    assert "Invalid index name 'evil\\n'" in capsys.readouterr().err
    assert not any("\n" in p.name for p in Config().index_dir.iterdir())


def test_careless_settings_and_questions_get_clear_errors(tmp_path):
    utf16 = tmp_path / "notes.txt"
    utf16.write_bytes("The meeting moved to Thursday.".encode("utf-16"))
    assert read_document(utf16).text == "The meeting moved to Thursday."

    engine = Engine(Config())
    with pytest.raises(QuestionError, match="must be text"):
        engine.ask(12345)
    with pytest.raises(QuestionError, match="3,002 characters long"):
        engine.ask("a" + " " * 3000 + "b")
    with pytest.raises(ValueError, match="threshold must be a confidence between 0 and 1"):
        engine.ask("Who led the Russian delegation?", threshold=float("nan"))
    for option, value, message in (("--threshold", "nan", "threshold must be"), ("--top-k", "-1", "top_k must be")):
        out = _rag("ask", "Who led the Russian delegation?", option, value)
        assert out.returncode == 2 and message in out.stderr.decode() and b"Traceback" not in out.stderr
    for env, message in (({"RAG_DEVICE": "cuda"}, "no CUDA device"), ({"RAG_READER_DTYPE": "fp16"}, "reader_dtype")):
        out = _rag("ask", "Who led the Russian delegation?", env=env)
        assert out.returncode == 2 and message in out.stderr.decode() and b"Traceback" not in out.stderr, out.stderr
    assert SEED.exists()
