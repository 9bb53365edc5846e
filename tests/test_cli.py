"""The `rag` command as a user runs it."""

import json
import os
import subprocess

from conftest import DEFAULT_ENV, write_pdf


def run(rag_bin, *args):
    return subprocess.run([rag_bin, *args], capture_output=True, text=True, timeout=300)


def test_cli_ask_prints_answer_confidence_and_citation(rag_bin):
    out = subprocess.run([rag_bin, "ask", "Who led the Russian delegation?"], capture_output=True, text=True,
                         timeout=300, env=DEFAULT_ENV)  # the README's example, with the default reader
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert "Vladimir Medinsky   (confidence " in first
    assert "[russia-ukraine-istanbul-talks-2025-07.txt:" in second
    assert "Russia’s delegation was led by Presidential Aide Vladimir Medinsky" in second


def test_cli_first_start_prints_no_library_warnings(rag_bin, tmp_path):
    """The first `rag ask` on a machine rebuilds the default reader from its change and exports the models
    to ONNX; the tracer's and the loaders' warnings are not the user's."""
    env = dict(DEFAULT_ENV, RAG_CACHE_DIR=str(tmp_path / "fresh-cache"))
    out = subprocess.run([rag_bin, "ask", "Who is Turkey's foreign minister?"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0 and "Hakan Fidan" in out.stdout
    assert list((tmp_path / "fresh-cache").rglob("*.onnx"))  # the export did run
    assert out.stderr == ""


def test_cli_ask_json(rag_bin):
    out = run(rag_bin, "ask", "Who is Turkey's foreign minister?", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"text", "score", "abstained", "citations", "question", "passages"}
    assert data["text"] == "Hakan Fidan" and data["abstained"] is False
    c = data["citations"][0]
    assert set(c) >= {"doc", "sentence", "start", "end", "answer_start", "answer_end"}


def test_cli_chooses_the_reader_by_name_and_refuses_an_unknown_one(rag_bin):
    out = run(rag_bin, "ask", "--reader", "small", "--json", "Who is Turkey's foreign minister?")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"] == "Hakan Fidan"
    out = run(rag_bin, "ask", "--reader", "no-such-reader", "Who is Turkey's foreign minister?")
    assert out.returncode == 2 and "shipped readers (small, accurate)" in out.stderr and "Traceback" not in out.stderr


def test_cli_yes_no_question_prints_the_closest_sentence(rag_bin):
    out = run(rag_bin, "ask", "Was the meeting delayed?")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert first.startswith("No span of the documents answers this (a yes/no question")
    assert second.startswith("  [russia-ukraine-istanbul-talks-2025-07.txt:") and "was delayed by more than an hour" in second


def test_cli_errors_are_clear_and_nonzero(rag_bin):
    out = run(rag_bin, "ask", "   ")
    assert out.returncode == 2 and "error: The question is empty" in out.stderr
    out = run(rag_bin, "ask", "anything", "--index", "no-such-index")
    assert out.returncode == 2 and "rag index" in out.stderr


def test_cli_prints_a_hard_wrapped_citation_on_one_line(rag_bin, tmp_path):
    doc = tmp_path / "report.txt"
    doc.write_text("The club was founded in 1921 by a group of students from the local\n"
                   "college. Its boathouse stands on the northern shore of Lake Mirren.\n")
    index_dir = str(tmp_path / "indexes")
    assert run(rag_bin, "--index-dir", index_dir, "index", str(doc), "--name", "wrapped").returncode == 0
    out = run(rag_bin, "--index-dir", index_dir, "ask", "When was the club founded?", "--index", "wrapped")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == ('  [report.txt:0-75] "The club was founded in 1921 by a group of students '
                                          'from the local college."')
    data = json.loads(run(rag_bin, "--index-dir", index_dir, "ask", "When was the club founded?", "--index", "wrapped",
                          "--json").stdout)
    assert data["citations"][0]["sentence"] == doc.read_text()[0:75]  # JSON keeps the document's own text


def test_cli_indexes_a_pdf_and_cites_its_wrapped_sentences(rag_bin, tmp_path):
    """A PDF's text comes line by line, with no blank line between paragraphs and a footer per page:
    sentences are joined across the wrapped lines, and pages are read in order."""
    write_pdf(tmp_path / "railway.pdf", [
        ["Kestrel Valley Railway: a short history",
         "The Kestrel Valley Railway opened in 1887 to carry slate from the quarries at",
         "Brynmor to the harbour at Porth Ddu. The line is 14 miles long and was built to",
         "a gauge of two feet. Today the railway owns six steam locomotives; the oldest,",
         "Countess, was built by Hunslet in 1893.", "Page 1"],
        ["Trains run daily from April to October. An adult return ticket costs 24 pounds",
         "and children under five travel free.", "Page 2"]])
    env = dict(os.environ, RAG_INDEX_DIR=str(tmp_path / "indexes"))
    indexed = subprocess.run([rag_bin, "index", str(tmp_path / "railway.pdf"), "--name", "rail"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert indexed.returncode == 0, indexed.stderr
    for question, answer, sentence in [
            ("Who built Countess?", "Hunslet",
             "Today the railway owns six steam locomotives; the oldest,\nCountess, was built by Hunslet in 1893."),
            ("How much is an adult return ticket?", "24 pounds",
             "An adult return ticket costs 24 pounds\nand children under five travel free.")]:
        out = subprocess.run([rag_bin, "ask", "--index", "rail", "--json", question], capture_output=True, text=True,
                             timeout=300, env=env)
        data = json.loads(out.stdout)
        assert data["text"] == answer and data["citations"][0]["sentence"] == sentence
        assert data["citations"][0]["doc"] == "railway.pdf"


def test_cli_answers_questions_from_stdin_one_per_line(rag_bin):
    """Without a question, `rag ask` reads one per line (models loaded once); a bad one is reported and
    the others are still answered."""
    questions = "Who is Turkey's foreign minister?\n\n" + "x" * 2001 + "\nWho led the Russian delegation?\n"
    out = subprocess.run([rag_bin, "ask", "--json"], input=questions, capture_output=True, text=True, timeout=300)
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["text"] for a in answers] == ["Hakan Fidan", "Vladimir Medinsky"]
    assert out.returncode == 2 and "2,001 characters" in out.stderr


def test_cli_adds_documents_to_an_index_and_lists_indexes(rag_bin, tmp_path):
    env = dict(os.environ, RAG_INDEX_DIR=str(tmp_path / "indexes"))
    (tmp_path / "garden.txt").write_text("The garden committee is chaired by Maria Lopez. Tom Becker is the treasurer.\n")
    (tmp_path / "railway.md").write_text("# Railway\n\nThe Kestrel Valley Railway opened in 1887 to carry slate.\n")

    def rag(*args):
        return subprocess.run([rag_bin, *args], capture_output=True, text=True, timeout=300, env=env)

    assert rag("index", str(tmp_path / "garden.txt"), "--name", "notes").returncode == 0
    added = rag("index", "--add", str(tmp_path / "railway.md"), "--name", "notes")
    assert added.returncode == 0 and "now holds 2 document(s)" in added.stdout
    listed = rag("list").stdout
    assert "notes  2 document(s)" in listed and "garden.txt" in listed and "railway.md" in listed
    for question, answer, doc in [("When did the railway open?", "1887", "railway.md"),
                                  ("Who is the treasurer?", "Tom Becker", "garden.txt")]:
        data = json.loads(rag("ask", "--index", "notes", "--json", question).stdout)
        assert data["text"] == answer and data["citations"][0]["doc"] == doc
    missing = rag("index", "--add", str(tmp_path / "railway.md"), "--name", "other")
    assert missing.returncode == 2 and "rag index PATH... --name other" in missing.stderr
    # Removing: by the names `rag list` shows; what is left still answers, what was removed is gone.
    removed = rag("remove", "railway.md", "--index", "notes")
    assert removed.returncode == 0 and "now holds 1 document(s)" in removed.stdout
    assert "railway.md" not in rag("list").stdout
    data = json.loads(rag("ask", "--index", "notes", "--json", "When did the railway open?").stdout)
    assert all(c["doc"] == "garden.txt" for c in data["citations"]) and "1887" not in data["text"]
    unknown = rag("remove", "railway.md", "--index", "notes")
    assert unknown.returncode == 2 and "no document named 'railway.md'" in unknown.stderr and "garden.txt" in unknown.stderr
    last = rag("remove", "garden.txt", "--index", "notes")
    assert last.returncode == 2 and "empty" in last.stderr
    seed = rag("remove", "russia-ukraine-istanbul-talks-2025-07.txt", "--index", "seed")
    assert seed.returncode == 2 and "take the file out of that folder" in seed.stderr
    seed = rag("index", "--add", str(tmp_path / "railway.md"), "--name", "seed")
    assert seed.returncode == 2 and "put documents there" in seed.stderr
