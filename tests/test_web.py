"""The web chat in a real browser (Debian's chromium driven by Playwright) and under concurrent load."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = dict(os.environ, RAG_INDEX_DIR=tempfile.mkdtemp(prefix="docqa-web-"), PYTHONUNBUFFERED="1")
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "ui", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail("the app exited:\n" + log.read())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("the app did not start within 180 s")
    log.seek(0)
    assert f"http://127.0.0.1:{port}" in log.read()  # it prints its URL
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(server)
    page.locator("#question textarea").wait_for()
    yield page
    page.close()


def ask(page, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()


def last_bot_message(page):
    return page.locator("#chat .bot, #chat [data-testid='bot']").last


def test_question_gets_answer_with_highlighted_citation_and_passage(page):
    ask(page, "Who led the Russian delegation?")
    expect(page.locator("#chat mark").first).to_contain_text("Medinsky", timeout=60_000)
    expect(page.locator("#chat")).to_contain_text("confidence")
    expect(page.locator("#chat")).to_contain_text("russia-ukraine-istanbul-talks-2025-07.txt")
    # The first source opens in the side panel: the sentence in its paragraph, the answer marked.
    expect(page.locator("#passage mark")).to_contain_text("Russia’s delegation was led by", timeout=30_000)
    expect(page.locator("#passage strong")).to_contain_text("Medinsky")
    (ROOT / "eval" / "results").mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(2000)  # for the README's picture only: Gradio's loading overlay fades out first
    page.screenshot(path=str(ROOT / "eval" / "results" / "web-chat.png"), full_page=True)


def test_clicking_a_source_or_an_answer_opens_its_passage(page):
    ask(page, "What language were the talks held in?")
    expect(page.locator("#passage strong")).to_contain_text("Russian", timeout=60_000)
    ask(page, "Who is Turkey's foreign minister?")
    expect(page.locator("#passage strong")).to_contain_text("Hakan Fidan", timeout=60_000)
    # Clicking the first answer in the chat brings its sources back.
    page.locator("#chat [data-testid='bot']").first.click()
    expect(page.locator("#passage strong")).to_contain_text("Russian", timeout=30_000)
    expect(page.locator("#sources label").first).to_contain_text("[1]")
    # Choosing another source in the list opens that one.
    labels = page.locator("#sources label")
    if labels.count() > 1:
        labels.nth(1).click()
        expect(page.locator("#passage mark")).not_to_be_empty(timeout=30_000)


def test_apostrophes_show_as_apostrophes(page):
    """Text is escaped exactly once: a question with an apostrophe reads as typed (issue 29, defect 1)."""
    ask(page, "Who is Turkey's foreign minister?")
    expect(page.locator("#chat")).to_contain_text("Hakan Fidan", timeout=60_000)
    expect(page.locator("#chat")).to_contain_text("Who is Turkey's foreign minister?")
    expect(page.locator("#chat")).not_to_contain_text("&#")


def test_example_question_can_be_clicked(page):
    page.get_by_text("Who led the Russian delegation?").first.click()
    expect(page.locator("#question textarea")).to_have_value("Who led the Russian delegation?")
    page.locator("#ask").click()
    expect(page.locator("#chat mark").first).to_contain_text("Medinsky", timeout=60_000)


def test_unanswerable_question_says_so(page):
    """A question the passages were read for lists them; one no passage is about lists none, rather
    than contradicting itself (issue 29, defect 8)."""
    ask(page, "Which hotel hosted the negotiations?")
    expect(page.locator("#chat")).to_contain_text("do not answer this question", timeout=60_000)
    expect(page.locator("#chat")).to_contain_text("Closest passages")
    ask(page, "What is the boiling point of mercury?")
    expect(last_bot_message(page)).to_contain_text("no passage of the documents is about this question",
                                                   timeout=60_000)
    expect(last_bot_message(page)).not_to_contain_text("Closest passages")
    expect(page.locator("#sources label")).to_have_count(0)


def test_a_yes_no_question_shows_the_closest_sentence_and_opens_it(page):
    ask(page, "Did the talks take place in Russian?")
    expect(page.locator("#chat")).to_contain_text("No span of the documents answers this question", timeout=60_000)
    expect(page.locator("#chat")).to_contain_text("The talks were held in Russian.")
    expect(page.locator("#passage strong")).to_contain_text("The talks were held in Russian.", timeout=30_000)


def test_upload_then_ask_and_document_text_is_never_executed(page, tmp_path):
    doc = tmp_path / "lighthouse-notes.txt"
    doc.write_text(
        "The old lighthouse on Skerry Point was built in 1871 by the engineer Thomas Ogilvie.\n\n"
        "The keeper's password was Marmalade <script>alert(1)</script> <img src=x onerror=alert(2)> *bold*.\n"
    )
    page.get_by_text("Documents", exact=True).click()
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    expect(page.locator("#upload-status")).to_contain_text("Added lighthouse-notes.txt", timeout=120_000)
    expect(page.locator("#documents")).to_contain_text("lighthouse-notes.txt")
    ask(page, "Who built the lighthouse on Skerry Point?")
    expect(page.locator("#chat mark").last).to_contain_text("Thomas Ogilvie", timeout=60_000)
    ask(page, "What was the keeper's password?")
    expect(page.locator("#chat")).to_contain_text("<script>alert(1)</script>", timeout=60_000)
    expect(page.locator("#chat")).to_contain_text("<img src=x onerror=alert(2)>")
    expect(page.locator("#chat")).to_contain_text("*bold*")
    assert page.locator("#chat script, #chat img[src=x]").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == []


def test_an_uploaded_document_can_be_removed(page, tmp_path):
    doc = tmp_path / "canal-notes.txt"
    doc.write_text("The Mirren canal was dug in 1794 by the navvy Josiah Crabtree.\n")
    page.get_by_text("Documents", exact=True).click()
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    expect(page.locator("#documents")).to_contain_text("canal-notes.txt", timeout=120_000)
    ask(page, "Who dug the Mirren canal?")
    expect(page.locator("#chat mark").last).to_contain_text("Josiah Crabtree", timeout=60_000)
    page.locator("#remove-docs input").click()
    page.get_by_role("option", name="canal-notes.txt").click()
    page.locator("#remove").click()
    expect(page.locator("#upload-status")).to_contain_text("Removed canal-notes.txt", timeout=60_000)
    expect(page.locator("#documents")).not_to_contain_text("canal-notes.txt")
    ask(page, "Who dug the Mirren canal?")
    expect(page.locator("#chat")).to_contain_text("do not answer this question", timeout=60_000)
    page.reload()  # a new page lists what the index holds now
    page.get_by_text("Documents", exact=True).click()
    expect(page.locator("#documents")).to_contain_text("russia-ukraine-istanbul-talks-2025-07.txt")
    expect(page.locator("#documents")).not_to_contain_text("canal-notes.txt")


def test_oversized_upload_is_refused_with_a_message(page, tmp_path):
    big = tmp_path / "huge.txt"
    big.write_text("word " * (11 * 1024 * 1024 // 5))
    page.get_by_text("Documents", exact=True).click()
    page.locator("#upload input[type=file]").set_input_files(str(big))
    expect(page.locator("body")).to_contain_text("huge.txt", timeout=60_000)
    expect(page.locator("#documents")).not_to_contain_text("huge.txt")
    expect(page.get_by_text("10 MB").first).to_be_visible()


def test_twenty_concurrent_questions_are_all_answered(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    questions = [("Who led the Russian delegation?", "Medinsky"), ("What language were the talks held in?", "Russian"),
                 ("Who is Turkey's foreign minister?", "Hakan Fidan"), ("Which news agency gathered the key information about the negotiations?", "TASS")]
    jobs = [questions[i % len(questions)] for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda qa: client.predict(qa[0], api_name="/ask"), jobs))
    assert len(results) == 20
    for (question, expected), result in zip(jobs, results):
        assert not result["abstained"], question
        assert expected in result["text"], (question, result["text"])
        assert expected in result["citations"][0]["sentence"]
