"""The `rag` command as a user runs it."""

import json
import os
import subprocess


def run(rag_bin, *args):
    return subprocess.run([rag_bin, *args], capture_output=True, text=True, timeout=300)


def test_cli_ask_prints_answer_confidence_and_citation(rag_bin):
    out = run(rag_bin, "ask", "Who led the Russian delegation?")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[:2]
    assert "Vladimir Medinsky   (confidence " in first
    assert "[russia-ukraine-istanbul-talks-2025-07.txt:" in second
    assert "Russia’s delegation was led by Presidential Aide Vladimir Medinsky" in second


def test_cli_first_start_prints_no_library_warnings(rag_bin, tmp_path):
    """The first `rag ask` on a machine exports the models to ONNX; its tracer's warnings are not the user's."""
    env = dict(os.environ, RAG_CACHE_DIR=str(tmp_path / "fresh-cache"))
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
    from conftest import write_pdf

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
