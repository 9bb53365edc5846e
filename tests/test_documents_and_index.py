"""Reading documents, offsets, building and loading indexes, and refusing bad input clearly."""

import json
import subprocess
import sys
import time

import pytest

from rag import Config, IndexStoreError, ask, get_engine
from rag.cli import main as cli
from rag.engine import Engine

from conftest import write_pdf


@pytest.fixture(scope="module")
def engine():
    return get_engine()


def test_seed_sentence_and_chunk_offsets_are_exact(engine, seed_text):
    corpus = engine.index()  # the seed index, built on first use
    doc = corpus.documents[0]
    assert doc.text == seed_text.replace("\r\n", "\n")
    assert len(doc.sentences) > 20
    previous_end = 0
    for s in doc.sentences:
        sentence = doc.text[s.start:s.end]
        assert sentence == sentence.strip() and sentence
        assert s.start >= previous_end  # ordered, not overlapping
        previous_end = s.end
    assert "Russia’s delegation was led by Presidential Aide Vladimir Medinsky" in [
        doc.text[s.start:s.end][:66] for s in doc.sentences]
    for chunk in corpus.chunks:
        assert doc.text[chunk.start:chunk.end] == chunk.text
    covered = set()
    for chunk in corpus.chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i in range(len(doc.text)) if not doc.text[i].isspace())


def test_index_round_trip(tmp_path, engine):
    (tmp_path / "a.md").write_text("# Zebras\n\nZebras live in Africa. They have black and white stripes.\n")
    (tmp_path / "b.html").write_text("<html><head><title>t</title><script>var x=1;</script></head>"
                                     "<body><p>The <b>Eiffel Tower</b> is in Paris.</p><p>It opened in 1889.</p></body></html>")
    built, notes = engine.build([tmp_path], "roundtrip")
    assert notes == []
    fresh = Engine(Config())  # a new engine reads it back from disk
    loaded = fresh.index("roundtrip")
    assert loaded.document_names == ["a.md", "b.html"] == built.document_names
    assert [(c.doc_id, c.start, c.end, c.text) for c in loaded.chunks] == \
           [(c.doc_id, c.start, c.end, c.text) for c in built.chunks]
    assert "The Eiffel Tower is in Paris." in loaded.documents[1].text  # inline tags do not split sentences
    assert "var x" not in loaded.documents[1].text
    fresh.embedder = engine.embedder
    q = engine.embedder.encode(["Where is the Eiffel Tower?"])[0]
    assert loaded.search_dense(q, 2).ids == built.search_dense(q, 2).ids


def _build(name, path, capsys):
    paths = path if isinstance(path, list) else [path]
    code = cli(["index", *map(str, paths), "--name", name])
    return code, capsys.readouterr()


def test_bad_documents_are_refused_with_clear_messages(tmp_path, capsys):
    cases = {
        "empty.txt": (b"  \n\n ", "empty"),
        "binary.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", "binary"),
        "slides.pptx": (b"PK\x03\x04", "unsupported file type"),
        "notes.docx": (b"PK\x03\x04", "not a readable Word document"),
        "broken.pdf": (b"%PDF-1.4 not really", "PDF"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        code, out = _build("bad", tmp_path / name, capsys)
        assert code == 2, name
        assert message.lower() in out.err.lower(), (name, out.err)
    code, out = _build("bad", tmp_path / "missing.txt", capsys)
    assert code == 2 and "no such file" in out.err
    write_pdf(tmp_path / "scanned.pdf", [[]])  # a page with no text layer, as a scan gives
    code, out = _build("bad", tmp_path / "scanned.pdf", capsys)
    assert code == 2 and "no text layer" in out.err and "OCR" in out.err
    from pypdf import PdfWriter

    write_pdf(tmp_path / "plain.pdf", [["The vault code is 4711."]])
    for password, name in (("secret", "locked.pdf"), ("", "owner-only.pdf")):
        locked = PdfWriter(clone_from=tmp_path / "plain.pdf")
        locked.encrypt(password, "owner")
        locked.write(tmp_path / name)
    code, out = _build("bad", tmp_path / "locked.pdf", capsys)
    assert code == 2 and "protected by a password" in out.err
    code, out = _build("owner-only", tmp_path / "owner-only.pdf", capsys)  # opens without one: read as usual
    assert code == 0 and "4711" in Engine(Config()).index("owner-only").documents[0].text


def test_a_folder_is_indexed_without_its_unreadable_files(tmp_path, capsys):
    """One empty file or scanned PDF in a folder of documents is skipped with a note, not fatal; a
    folder of nothing readable is refused."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("The lighthouse keeper was named Ada Harlow.")
    (folder / "empty.md").write_text("  \n")
    write_pdf(folder / "scanned.pdf", [[]])
    code, out = _build("folder", folder, capsys)
    assert code == 0, out.err
    assert "skipped empty.md" in out.err and "skipped scanned.pdf" in out.err
    assert Engine(Config()).index("folder").document_names == ["good.txt"]
    (folder / "good.txt").unlink()
    code, out = _build("folder2", folder, capsys)
    assert code == 2 and "No readable documents" in out.err


def test_non_utf8_text_is_decoded_with_replacement(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("Café crème is served in Lyon.".encode("latin-1"))
    code, out = _build("latin", tmp_path / "latin1.txt", capsys)
    assert code == 0
    assert "U+FFFD" in out.err
    doc = Engine(Config()).index("latin").documents[0]
    assert "Caf\ufffd cr\ufffdme is served in Lyon." == doc.text


def test_an_html_page_is_read_in_the_encoding_it_declares(tmp_path, capsys):
    page = ('<html><head><meta charset="windows-1252"><title>Menu</title></head>'
            "<body><p>The café serves crème brûlée for €4.</p></body></html>")
    (tmp_path / "menu.html").write_bytes(page.encode("cp1252"))
    code, out = _build("menu", tmp_path / "menu.html", capsys)
    assert code == 0 and "U+FFFD" not in out.err
    assert "The café serves crème brûlée for €4." in Engine(Config()).index("menu").documents[0].text


def test_failed_index_keeps_the_previous_one(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("The lighthouse keeper was named Ada Harlow.")
    assert _build("keep", good, capsys)[0] == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01\x02")
    assert _build("keep", bad, capsys)[0] == 2
    assert Engine(Config()).index("keep").document_names == ["good.txt"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "chunks.npy").write_bytes(b"[[0, 0,"), "chunks.npy is not the file the index was written with"),
    (lambda d: (d / "vectors.npy").write_bytes(b"garbage"), "vectors.npy is not the file the index was written"),
    (lambda d: (d / "names.bin").unlink(), "names.bin is missing"),
])
def test_corrupt_index_names_rag_index(tmp_path, capsys, damage, message):
    doc = tmp_path / "doc.txt"
    doc.write_text("Mount Kosciuszko is the highest mountain in Australia.")
    assert _build("fragile", doc, capsys)[0] == 0
    damage(Config().index_dir / "fragile")
    with pytest.raises(IndexStoreError) as err:
        Engine(Config()).index("fragile")
    assert message in str(err.value) and "rag index" in str(err.value)


def test_index_built_with_another_embedding_model_is_refused(tmp_path, capsys):
    doc = tmp_path / "doc.txt"
    doc.write_text("Lake Baikal is the deepest lake in the world.")
    assert _build("other-model", doc, capsys)[0] == 0
    manifest = Config().index_dir / "other-model" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["embedding_model"] = "some/other-model"
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexStoreError) as err:
        Engine(Config()).index("other-model")
    assert "some/other-model" in str(err.value) and "rag index" in str(err.value)


def test_folder_indexing_skips_unsupported_files_and_reports_them(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("Wombats produce cube-shaped droppings.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    code, out = _build("folder", tmp_path, capsys)
    assert code == 0 and "image.png: skipped" in out.err and "rag ask --index folder" in out.out


def test_files_of_one_name_in_different_folders_are_cited_apart(tmp_path, capsys):
    """Both were "notes.txt": the red team's answer was cited from the blue team's text."""
    for team, prize in (("red", "cup"), ("blue", "shield")):
        (tmp_path / team).mkdir()
        (tmp_path / team / "notes.txt").write_text(f"The {team} team won the {prize} in 1999.")
    red, blue = tmp_path / "red" / "notes.txt", tmp_path / "blue" / "notes.txt"
    code, _ = _build("twins", [red, blue, red], capsys)  # a file named twice counts once
    assert code == 0
    corpus = get_engine().index("twins")
    assert corpus.document_names == ["red/notes.txt", "blue/notes.txt"]
    answer = ask("What did the red team win?", index="twins")
    # The span's extent is the reader's ("the cup", or "the cup in 1999"), measured in eval/; the
    # document it is cited from is what this test is about.
    assert "cup" in answer.text and "shield" not in answer.text and answer.citations[0].doc == "red/notes.txt"
    assert answer.citations[0].sentence == red.read_text()
    # Two folders that each hold a notes.txt: the folders' names tell them apart.
    assert _build("twin-folders", [tmp_path / "red", tmp_path / "blue"], capsys)[0] == 0
    assert get_engine().index("twin-folders").document_names == ["red/notes.txt", "blue/notes.txt"]


def test_help_imports_no_heavy_library():
    code = ("import sys; from rag.cli import build_parser; build_parser(); import rag; "
            "heavy = [m for m in ('torch', 'transformers', 'faiss', 'sentence_transformers', 'gradio') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hard_wrapped_text_keeps_whole_sentences(tmp_path, engine):
    # Plain text wrapped at a fixed width, as PDF extraction and many .txt files give it: a line
    # break inside a sentence must not cut the sentence (citations would show half of it).
    (tmp_path / "wrapped.txt").write_text(
        "Harbour Report\n\n"
        "The new lighthouse on the northern pier was designed by the engineer\n"
        "Margaret Olsen and was finished in the spring of 1911. It stands\n"
        "thirty metres tall and its lamp can be seen from twenty miles away.\n"
        "- open daily\n"
        "- closed in storms\n")
    (tmp_path / "page.html").write_text("<h2>A heading long enough to look like a wrapped line</h2>"
                                        "<p>The paragraph under it.</p>")
    corpus, _ = engine.build([tmp_path], "wrapped")
    page, doc = corpus.documents
    assert [page.text[s.start:s.end] for s in page.sentences] == [
        "A heading long enough to look like a wrapped line", "The paragraph under it."]
    sentences = [doc.text[s.start:s.end] for s in doc.sentences]
    assert sentences == [
        "Harbour Report",
        "The new lighthouse on the northern pier was designed by the engineer\n"
        "Margaret Olsen and was finished in the spring of 1911.",
        "It stands\nthirty metres tall and its lamp can be seen from twenty miles away.",
        "- open daily",
        "- closed in storms",
    ]
    answer = ask("Who designed the lighthouse?", index="wrapped")
    assert not answer.abstained and "Olsen" in answer.text
    assert answer.citations[0].sentence == sentences[1]


def test_a_title_above_wrapped_text_is_a_sentence_of_its_own(tmp_path, engine):
    # PDF extraction often leaves no blank line under a title: a line much shorter than the text
    # below it was not wrapped, so it must not run into the first sentence.
    text = ("Annual report of the Lakeside Rowing Club\n"
            "The club was founded in 1921 by a group of students from the local\n"
            "college. Its boathouse stands on the northern shore of Lake Mirren.\n")
    (tmp_path / "report.txt").write_text(text)
    corpus, _ = engine.build([tmp_path], "titled")
    doc = corpus.documents[0]
    assert [doc.text[s.start:s.end] for s in doc.sentences] == [
        "Annual report of the Lakeside Rowing Club",
        "The club was founded in 1921 by a group of students from the local\ncollege.",
        "Its boathouse stands on the northern shore of Lake Mirren.",
    ]
    answer = ask("When was the club founded?", index="titled")
    assert answer.text == "1921" and answer.citations[0].sentence == doc.text[doc.sentences[1].start:doc.sentences[1].end]


def test_text_without_full_stops_is_cited_in_readable_pieces(tmp_path, engine):
    # A transcript with no punctuation is one "sentence" of 10,000 characters; a citation of it all
    # would be useless, so long runs are cut at spaces into pieces of at most 600.
    filler = " ".join(["and then we talked about the budget for next year which is going to be tight"] * 60)
    text = filler + " the new treasurer is Linda Park who was elected by the members " + filler + "\n"
    (tmp_path / "transcript.txt").write_text(text)
    corpus, _ = engine.build([tmp_path], "transcript")
    doc = corpus.documents[0]
    assert all(0 < s.end - s.start <= 600 for s in doc.sentences) and len(doc.sentences) > 10
    assert all(not text[a.end:b.start].strip() for a, b in zip(doc.sentences, doc.sentences[1:]))  # nothing lost
    answer = ask("Who is the new treasurer?", index="transcript")
    c = answer.citations[0]
    assert answer.text == "Linda Park" and len(c.sentence) <= 1200 and text[c.start:c.end] == c.sentence


def test_html_tables_and_page_furniture_read_as_separate_text(tmp_path, engine):
    (tmp_path / "library.html").write_text(
        "<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav><main><h1>Loans</h1>"
        "<table><tr><th>Item</th><th>Loan period</th></tr><tr><td>Books</td><td>3 weeks</td></tr>"
        "<tr><td>DVDs</td><td>1 week</td></tr></table></main>")
    corpus, _ = engine.build([tmp_path], "table")
    doc = corpus.documents[0]
    assert [doc.text[s.start:s.end] for s in doc.sentences] == [
        "Home | About", "Loans", "Item | Loan period", "Item: Books | Loan period: 3 weeks",
        "Item: DVDs | Loan period: 1 week"]


def test_a_page_laid_out_in_a_table_keeps_its_paragraphs(tmp_path, engine):
    """Old pages put their whole body in one table cell; its headings, paragraphs and list items stay apart."""
    (tmp_path / "club.html").write_text(
        "<table><tr><td><h1>Club news</h1><p>The club meets on Tuesdays.</p><ul><li>Bring boots</li>"
        "<li>Pay dues</li></ul></td><td>Links</td></tr></table>")
    corpus, _ = engine.build([tmp_path], "layout")
    doc = corpus.documents[0]
    assert [doc.text[s.start:s.end] for s in doc.sentences] == [
        "Club news", "The club meets on Tuesdays.", "Bring boots", "Pay dues | Links"]


def test_the_rows_of_a_table_and_the_items_of_a_list_are_read_apart(tmp_path, engine):
    """The reader's tokenizer reads a line break as a space: a price table's rows ran together as
    "Adult | 12 euros Child | 5 euros" and a child ticket was answered "12 euros". Each row is read with
    its header: the row "Student | 9 euros" alone held too few of the question's words, and "What does a
    student ticket cost?" was refused as unrelated to the page."""
    (tmp_path / "museum.html").write_text(
        "<h1>Harbour Museum</h1><h2>Tickets</h2><table><tr><th>Ticket</th><th>Price</th></tr>"
        "<tr><td>Adult</td><td>12 euros</td></tr><tr><td>Student</td><td>9 euros</td></tr>"
        "<tr><td>Child</td><td>5 euros</td></tr></table>")
    corpus, _ = engine.build([tmp_path / "museum.html"], "museum")
    for question, expected, row in [("How much is a child ticket?", "5 euros", "Ticket: Child | Price: 5 euros"),
                                    ("How much does an adult ticket cost?", "12 euros",
                                     "Ticket: Adult | Price: 12 euros"),
                                    ("What does a student ticket cost?", "9 euros",
                                     "Ticket: Student | Price: 9 euros")]:
        answer = ask(question, index=corpus)
        assert (answer.text, answer.citations[0].sentence) == (expected, row), question


def test_offsets_index_the_file_as_read_text_returns_it(tmp_path, engine):
    # A byte-order mark, Windows line endings, accents, an emoji and a character outside the BMP:
    # the README promises offsets into Path(f).read_text(encoding="utf-8-sig").
    path = tmp_path / "cafe.txt"
    path.write_bytes("\ufeffCafé Zürich 🎉\r\n\r\nThe café was founded in 1897 by Jürgen Müller.\r\n"
                     "Its first cook was 𝒜nna Weiß.\r\n".encode("utf-8"))
    engine.build([path], "offsets")
    text = path.read_text(encoding="utf-8-sig")
    answer = ask("Who founded the café?", index="offsets")
    assert not answer.abstained and "Müller" in answer.text
    c = answer.citations[0]
    assert text[c.answer_start:c.answer_end] == answer.text
    assert text[c.start:c.end] == c.sentence == "The café was founded in 1897 by Jürgen Müller."


def test_an_index_changed_by_another_process_is_read_again_and_added_to_not_overwritten(tmp_path, engine, rag_bin):
    """A long-running engine (the web chat) and `rag index --add` in another process share an index:
    the engine answers from what the other process added, and its own addition keeps it."""
    texts = {"lighthouse.txt": "The Skerry lighthouse was built in 1838 by the engineer Alan Stevenson.\n",
             "bakery.txt": "The Crumb bakery on Mill Lane opens at six. Its owner is Marta Lindqvist.\n",
             "ferry.txt": "The island ferry leaves the harbour at noon. Its captain is Tomas Berg.\n"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    engine.build([tmp_path / "lighthouse.txt"], "shared")
    assert engine.ask("Who built the Skerry lighthouse?", index="shared").text == "Alan Stevenson"
    other = subprocess.run([rag_bin, "index", str(tmp_path / "bakery.txt"), "--name", "shared", "--add"],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stderr
    answer = engine.ask("Who owns the Crumb bakery?", index="shared")
    assert answer.text == "Marta Lindqvist" and answer.citations[0].doc == "bakery.txt"
    engine.add([tmp_path / "ferry.txt"], "shared")
    assert Engine(Config()).index("shared").document_names == ["lighthouse.txt", "bakery.txt", "ferry.txt"]


def test_each_document_records_when_it_was_added(tmp_path, engine):
    """The web chat lists when each document was added: kept through later additions and removals,
    new for a document added again."""
    for name in ("owls.txt", "bees.txt"):
        (tmp_path / name).write_text(f"The {name[:-4]} of the valley were counted in 1990 by Ada Pike.\n")
    engine.build([tmp_path / "owls.txt"], "dated")
    first = {d.name: d.added for d in engine.index("dated").manifest.documents}
    time.sleep(1.1)
    engine.add([tmp_path / "bees.txt"], "dated")
    engine.remove(["bees.txt"], "dated")
    engine.add([tmp_path / "bees.txt"], "dated")
    added = {d.name: d.added for d in Engine(Config()).index("dated").manifest.documents}
    assert added["owls.txt"] == first["owls.txt"] and added["bees.txt"] > first["owls.txt"]


def test_an_index_of_format_2_still_answers_and_keeps_its_dates(tmp_path, engine):
    """Format 2 (until 2026-12-03) listed the documents in manifest.json and their names and notes in
    documents.json; such an index keeps answering, and its next change writes the current format."""
    import hashlib
    from datetime import datetime

    from conftest import SEED
    from rag.catalog import FILES as CATALOG_FILES
    from rag.index import FORMAT_VERSION, read_manifest

    def same_time(a: str, b: str) -> bool:
        return datetime.strptime(a, "%Y-%m-%dT%H:%M:%S%z") == datetime.strptime(b, "%Y-%m-%dT%H:%M:%S%z")

    engine.build([SEED], "format-2")
    folder = engine.config.index_dir / "format-2"
    manifest = engine.index("format-2").manifest
    written = read_manifest(folder).files
    documents = [{"name": d.name, "sha256": d.sha256, "chars": d.chars, "added": "2026-12-01T09:30:00+0000"}
                 for d in manifest.documents]
    (folder / "documents.json").write_text(json.dumps({"names": [d["name"] for d in documents],
                                                       "notes": json.loads((folder / "notes.json").read_text())}))
    for name in (*CATALOG_FILES, "notes.json"):
        (folder / name).unlink()
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
             for name in [*written, "documents.json"] if (folder / name).is_file()}
    (folder / "manifest.json").write_text(json.dumps({**manifest.to_json(), "format_version": 2, "files": files,
                                                      "documents": documents}))
    assert ask("Who led the Russian delegation?", index="format-2").text == "Vladimir Medinsky"
    extra = tmp_path / "bakery.txt"
    extra.write_text("The Crumb bakery on Mill Lane opens at six. Its owner is Marta Lindqvist.\n")
    Engine(Config()).add([extra], "format-2")
    rewritten = read_manifest(folder)
    assert rewritten.format_version == FORMAT_VERSION and not (folder / "documents.json").exists()
    assert same_time(rewritten.documents[0].added, "2026-12-01T09:30:00+0000")
    assert ask("Who owns the Crumb bakery?", index="format-2").text == "Marta Lindqvist"


def test_an_index_of_the_previous_format_still_answers_and_is_rewritten_when_changed(tmp_path, engine):
    """Indexes written before the memory-mapped format (JSON documents and chunks, FAISS flat
    vectors) keep answering; the next change writes them in the current format, losing nothing."""
    import faiss
    import numpy as np

    from conftest import SEED
    from rag.index import FORMAT_VERSION, read_manifest

    engine.build([SEED], "current")
    now = engine.index("current")
    old = engine.config.index_dir / "old-format"
    old.mkdir()
    (old / "documents.json").write_text(json.dumps([
        {"name": d.name, "text": d.text, "notes": d.notes, "sentences": [[x.start, x.end] for x in d.sentences]}
        for d in now.documents]))
    (old / "chunks.json").write_text(json.dumps([[c.doc_id, c.start, c.end] for c in now.chunks]))
    flat = faiss.IndexFlatIP(now.manifest.dimension)
    flat.add(np.asarray(now.vectors))
    faiss.write_index(flat, str(old / "vectors.faiss"))
    (old / "manifest.json").write_text(json.dumps({
        **now.manifest.to_json(), "format_version": 1, "files": None,
        "documents": [{"name": d.name, "sha256": d.sha256, "chars": d.chars} for d in now.manifest.documents]}))
    assert ask("Who led the Russian delegation?", index="old-format").text == "Vladimir Medinsky"
    extra = tmp_path / "bakery.txt"
    extra.write_text("The Crumb bakery on Mill Lane opens at six. Its owner is Marta Lindqvist.\n")
    engine.add([extra], "old-format")
    assert read_manifest(old).format_version == FORMAT_VERSION and (old / "vectors.npy").is_file()
    assert ask("Who owns the Crumb bakery?", index="old-format").text == "Marta Lindqvist"
    assert ask("Who led the Russian delegation?", index="old-format").text == "Vladimir Medinsky"


def test_two_processes_adding_to_one_index_at_once_lose_nothing(tmp_path, rag_bin):
    first, second = tmp_path / "owls.txt", tmp_path / "bees.txt"
    first.write_text("Barn owls hunt at night by sound alone.\n")
    second.write_text("A honey bee colony has one queen.\n")
    base = tmp_path / "base.txt"
    base.write_text("Otters hold hands while they sleep.\n")
    assert subprocess.run([rag_bin, "index", str(base), "--name", "race"], capture_output=True).returncode == 0
    adders = [subprocess.Popen([rag_bin, "index", str(doc), "--name", "race", "--add"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for doc in (first, second)]
    for adder in adders:
        _, err = adder.communicate(timeout=300)
        assert adder.returncode == 0, err
    assert sorted(Engine(Config()).index("race").document_names) == ["base.txt", "bees.txt", "owls.txt"]


def test_a_word_document_is_read_with_its_tables_and_without_its_header(tmp_path, engine):
    import docx
    from docx.oxml import OxmlElement

    word = docx.Document()
    word.sections[0].header.paragraphs[0].text = "Confidential draft"
    word.add_heading("Staff handbook", level=1)
    word.add_paragraph("New staff get 25 days of paid leave a year. Leave is booked through the HR portal.")
    table = word.add_table(rows=3, cols=2)
    for row, cells in zip(table.rows, [("Office", "Manager"), ("Leeds", "Priya Shah"), ("York", "Owen Hart")]):
        for cell, value in zip(row.cells, cells):
            cell.text = value
    table.rows[0]._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))  # "repeat as header row"
    merged = word.add_table(rows=1, cols=2)
    merged.rows[0].cells[0].merge(merged.rows[0].cells[1]).text = "Updated in March"
    word.add_paragraph("Expenses are repaid within ten working days.")
    word.save(tmp_path / "handbook.docx")
    corpus, _ = engine.build([tmp_path / "handbook.docx"], "word")
    doc = corpus.documents[0]
    assert [doc.text[s.start:s.end] for s in doc.sentences] == [
        "Staff handbook", "New staff get 25 days of paid leave a year.", "Leave is booked through the HR portal.",
        "Office | Manager", "Office: Leeds | Manager: Priya Shah", "Office: York | Manager: Owen Hart",
        "Updated in March", "Expenses are repaid within ten working days."]
    answer = ask("How many days of paid leave do new staff get?", index="word")
    assert answer.text.startswith("25") and answer.citations[0].sentence == "New staff get 25 days of paid leave a year."


def test_markdown_markup_does_not_mislead_the_reader(tmp_path, engine):
    """Emphasis, code marks and link targets are read as the rendered page shows them, while offsets
    and answers stay the file's own."""
    text = ("# Orbit API\n\n"
            "The **Orbit API** was released in *March 2024* by [Helio Labs](https://helio.example.com/about).\n\n"
            "## Limits\n\n"
            "- Free plan: **100 requests** per minute\n"
            "- Pro plan: `1,000 requests` per minute\n\n"
            "Contact [support](mailto:help@helio.example.com) for higher limits. "
            "The API is maintained by __Priya Nair__.\n")
    (tmp_path / "guide.md").write_text(text)
    engine.build([tmp_path / "guide.md"], "markdown")
    answer = ask("Who maintains the API?", index="markdown")
    c = answer.citations[0]
    assert answer.text == "Priya Nair" and text[c.answer_start:c.answer_end] == "Priya Nair"
    # Each plan's figure comes from its own list item, not the other's; whether the reader's span
    # stops at the number or takes in "requests per minute" too is its extent, measured in eval/.
    for question, item, figure in [("How many requests per minute does the free plan allow?", "- Free plan", "100"),
                                   ("How many requests per minute does the pro plan allow?", "- Pro plan", "1,000")]:
        answer = ask(question, index="markdown")
        c = answer.citations[0]
        line = text.index(item), text.index("\n", text.index(item))
        assert answer.text.split()[0] == figure and text[c.answer_start:c.answer_end] == answer.text, (question, answer.text)
        assert line[0] <= c.answer_start and c.answer_end <= line[1], (question, answer.text)
        assert text[c.start:c.end] == c.sentence
