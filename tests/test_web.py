"""The web chat in a real browser (Debian's chromium driven by Playwright) against a real `rag serve`,
and its JSON API under concurrent load."""

import json
import re
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

from conftest import DEFAULT_ENV

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
SEED_DOC = "russia-ukraine-istanbul-talks-2025-07.txt"
ANSWER = 60_000  # ms a question may take, on a slow shared CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    """Where the app's Gradio keeps uploads."""
    return tmp_path_factory.mktemp("web-uploads")


@pytest.fixture(scope="module")
def server(tmp_path_factory, upload_dir):
    port = free_port()
    env = dict(DEFAULT_ENV, RAG_INDEX_DIR=str(tmp_path_factory.mktemp("web-index")),  # the default reader
               GRADIO_TEMP_DIR=str(upload_dir), PYTHONUNBUFFERED="1")
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "ui", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
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
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, server, width: int = 1366, context=None):
    """A page of the chat in a new browser context (another user: its own storage), unless one is given."""
    context = context or browser.new_context(viewport={"width": width, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.rstrip("/"))
    page = context.new_page()
    page.dialogs, page.errors = [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server)
    page.locator("#question").wait_for()
    expect(page.locator("#documents li").first).to_be_visible(timeout=30_000)
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server)
    yield page
    assert page.errors == []  # no script error on the page
    page.context.close()


def ask(page, question: str) -> None:
    page.locator("#question").fill(question)
    page.locator("#ask").click()


def bot(page, n: int = -1):
    """The n-th answer in the chat (the last by default), once it has come."""
    return page.locator("#chat .msg.bot:not(.pending)").nth(n)


def upload(page, *paths) -> None:
    page.locator("#upload-input").set_input_files([str(p) for p in paths])


def test_question_gets_answer_with_highlighted_citation_and_passage(page):
    ask(page, "Who led the Russian delegation?")
    expect(page.locator("#chat mark").first).to_have_text("Vladimir Medinsky", timeout=ANSWER)
    expect(bot(page)).to_contain_text("confidence")
    expect(bot(page)).to_contain_text(SEED_DOC)
    # The first source opens in the sources panel: the sentence in its paragraph, the answer in bold.
    expect(page.locator("#passage mark")).to_contain_text("Russia’s delegation was led by", timeout=30_000)
    expect(page.locator("#passage strong")).to_have_text("Vladimir Medinsky")
    page.wait_for_timeout(500)
    page.screenshot(path=str(RESULTS / "web-chat.png"), full_page=True)  # for the README


def test_on_a_phone_the_sources_come_below_the_chat_and_no_text_says_otherwise(browser, server):
    page = open_page(browser, server, width=390)
    ask(page, "Who is Turkey's foreign minister?")
    expect(page.locator("#passage strong")).to_have_text("Hakan Fidan", timeout=ANSWER)
    chat, sources = page.locator("#chat").bounding_box(), page.locator("#sources-title").bounding_box()
    assert sources["y"] > chat["y"] + chat["height"]  # below, not beside
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the screen
    body = page.locator("body").inner_text()
    assert "on the right" not in body and "&#" not in body
    page.screenshot(path=str(RESULTS / "web-chat-phone.png"), full_page=True)
    page.context.close()


def test_citations_are_links_to_their_source_and_to_the_whole_document(page):
    ask(page, "What language were the talks held in?")
    expect(page.locator("#passage strong")).to_have_text("Russian", timeout=ANSWER)
    ask(page, "Who is Turkey's foreign minister?")
    expect(page.locator("#passage strong")).to_have_text("Hakan Fidan", timeout=ANSWER)
    # [1] of the first answer opens its source again.
    bot(page, 0).locator(".cite").first.click()
    expect(page.locator("#passage strong")).to_have_text("Russian", timeout=30_000)
    expect(page.locator("#sources button").first).to_contain_text("[1]")
    # The whole document opens scrolled to the cited sentence, the rest of the document around it.
    page.locator("#view-document").click()
    dialog = page.locator("#doc-view")
    expect(dialog).to_be_visible()
    expect(page.locator("#doc-view-title")).to_have_text(SEED_DOC)
    expect(dialog.locator("mark")).to_contain_text("The talks were held in Russian.")
    expect(dialog.locator("mark")).to_be_in_viewport()
    seed = (ROOT / "seeds" / SEED_DOC).read_text(encoding="utf-8")
    assert dialog.locator("#doc-view-text").inner_text().replace("\n", "") == seed.replace("\n", "")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_apostrophes_show_as_apostrophes_everywhere(page):
    """Text is escaped exactly once: a question with an apostrophe reads as typed in the chat, the
    sources and what a screen reader gets (issue 29, defects 1 and 10)."""
    page.locator("#examples button", has_text="Turkey's").click()
    expect(page.locator("#question")).to_have_value("Who is Turkey's foreign minister?")
    page.locator("#ask").click()
    expect(bot(page)).to_contain_text("Hakan Fidan", timeout=ANSWER)
    expect(page.locator("#chat .msg.user")).to_have_text("Who is Turkey's foreign minister?")
    expect(page.locator("#passage")).to_contain_text("Turkey’s foreign minister")
    for region in ("#chat", "#sources", "#passage"):
        assert "&#" not in page.locator(region).inner_text()
        assert "&#" not in (page.locator(region).get_attribute("aria-label") or "")


def test_copy_copies_the_answer_and_its_citation_as_plain_text(page):
    """The copy button copied markup: `**Alice Smith** … <mark>…</mark> … &#46;` (issue 29, defect 2)."""
    ask(page, "Who led the Russian delegation?")
    bot(page).locator(".copy").click(timeout=ANSWER)
    expect(bot(page).locator(".copy")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Vladimir Medinsky   (confidence")
    assert f'[{SEED_DOC}:2289-2462] "Russia’s delegation was led by' in copied
    for markup in ("<", "**", "&#", "&amp;"):
        assert markup not in copied


def test_the_question_shows_at_once_and_a_second_one_waits_its_turn(page):
    """A second question sent while the first was pending vanished (issue 29, defect 3). The first
    answer is held back in the network, so both are seen pending."""
    held = []

    def hold_asks(route):
        if '"fn_name":"ask"' in (route.request.post_data or "").replace(" ", ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/component_server**", hold_asks)
    page.locator("#question").fill("Who led the Russian delegation?")
    page.locator("#question").press("Enter")
    expect(page.locator("#chat .msg.user")).to_have_text(["Who led the Russian delegation?"])
    expect(page.locator("#chat .msg.pending")).to_have_text("Reading the documents…")
    ask(page, "What language were the talks held in?")
    expect(page.locator("#chat .msg.user")).to_have_count(2)
    expect(page.locator("#chat .msg.pending").nth(1)).to_contain_text("Waiting")
    expect(page.locator("#ask")).to_have_text("Ask (1 waiting)")
    expect(page.locator("#question")).to_have_value("")
    for route in held:
        route.continue_()
    page.unroute("**/component_server**")
    expect(bot(page, 0)).to_contain_text("Vladimir Medinsky", timeout=ANSWER)
    expect(bot(page, 1)).to_contain_text("Russian", timeout=ANSWER)
    expect(page.locator("#chat .msg.pending")).to_have_count(0)
    expect(page.locator("#chat .msg.user")).to_have_text(["Who led the Russian delegation?",
                                                          "What language were the talks held in?"])


def test_a_too_long_question_is_refused_and_kept_in_the_box(page):
    """A 3,000-character question was refused and the box emptied (issue 29, defect 5)."""
    long = "Who led the Russian delegation? " * 94  # 3,008 characters
    page.locator("#question").fill(long)
    expect(page.locator("#counter")).to_have_text("3,008 / 2,000")
    expect(page.locator("#counter")).to_have_class("over")
    page.locator("#ask").click()
    expect(page.locator("#question-error")).to_contain_text("up to 2,000")
    expect(page.locator("#question")).to_have_value(long)
    expect(page.locator("#chat .msg")).to_have_count(0)


def test_history_survives_a_reload_is_not_shared_and_a_new_chat_clears_it(browser, server, page):
    ask(page, "Who is Turkey's foreign minister?")
    expect(bot(page)).to_contain_text("Hakan Fidan", timeout=ANSWER)
    page.reload()
    expect(page.locator("#chat .msg.user")).to_have_text(["Who is Turkey's foreign minister?"])
    expect(bot(page)).to_contain_text("Hakan Fidan")
    bot(page).locator(".cite").first.click()  # its sources open after the reload too
    expect(page.locator("#passage strong")).to_have_text("Hakan Fidan", timeout=30_000)
    other = open_page(browser, server)  # another user, another browser profile
    expect(other.locator("#chat .msg")).to_have_count(0)
    other.context.close()
    # A new chat clears the conversation and the sources panel (issue 29, defect 6), for good.
    page.locator("#new-chat").click()
    expect(page.locator("#chat .msg")).to_have_count(0)
    expect(page.locator("#sources li")).to_have_count(0)
    expect(page.locator("#passage")).to_be_empty()
    page.reload()
    expect(page.locator("#documents li").first).to_be_visible()
    expect(page.locator("#chat .msg")).to_have_count(0)


def test_focus_starts_in_the_question_box_and_documents_are_in_view(page):
    assert page.evaluate("document.activeElement.id") == "question"
    docs = page.locator("#documents")
    expect(docs).to_be_visible()  # without opening anything
    expect(docs.locator("li").first).to_contain_text(SEED_DOC)
    expect(docs.locator("li").first).to_contain_text("2,911 characters")
    expect(docs.locator("li").first).to_contain_text("added")
    expect(page.locator("#docs-summary")).to_contain_text("answers from")


def test_confidence_is_shown_in_words_and_a_low_one_looks_different(page):
    ask(page, "Who led the Russian delegation?")
    expect(bot(page).locator(".confidence")).to_have_text(re.compile(r"confidence.* \(0\.\d\d\)$"), timeout=ANSWER)

    def lower_the_score(route):  # the real answer, its score lowered to 0.12 as a weak reader's would be
        response = route.fetch()
        view = response.json()
        if isinstance(view, dict) and view.get("kind") == "answer":
            view.update(score=0.12, confidence={"level": "low", "words": "Low confidence: check the source "
                                                                      "before relying on it"})
        route.fulfill(response=response, body=json.dumps(view))

    page.route("**/component_server**", lower_the_score)
    ask(page, "Who is Turkey's foreign minister?")
    expect(bot(page).locator(".confidence")).to_have_text(
        "Low confidence: check the source before relying on it (0.12)", timeout=ANSWER)
    assert "low" in bot(page).get_attribute("class") and "low" not in bot(page, 0).get_attribute("class")
    assert bot(page).evaluate("e => getComputedStyle(e).borderStyle") == "dashed"
    page.unroute("**/component_server**")


def test_the_threshold_setting_is_applied(page):
    page.locator("#settings summary").click()
    # The threshold tests the answer against the reader's own "no answer": 0.9998 for this one.
    page.locator("#threshold").fill("1")
    expect(page.locator("#threshold-value")).to_have_text("1.000")
    ask(page, "Who led the Russian delegation?")
    expect(bot(page)).to_contain_text("under the threshold 1.000", timeout=ANSWER)
    page.locator("#threshold").fill("0.1")


def test_the_reader_is_a_setting_and_each_has_its_own_threshold(browser, server, page):
    from rag.config import READERS

    page.locator("#settings summary").click()
    expect(page.locator("#reader")).to_have_value("accurate")
    expect(page.locator("#threshold-value")).to_have_text(f"{READERS['accurate'].threshold:.3f}")
    # The slider holds the reader's threshold itself (a coarser step would round it), so the web chat's
    # default answers as ask() does.
    expect(page.locator("#threshold")).to_have_value(str(READERS["accurate"].threshold))
    page.locator("#reader").select_option("small")
    expect(page.locator("#threshold-value")).to_have_text(f"{READERS['small'].threshold:.3f}")
    expect(page.locator("#threshold")).to_have_value(str(READERS["small"].threshold))
    expect(page.locator("#reader-about")).to_contain_text("fast")
    ask(page, "Who is Turkey's foreign minister?")
    expect(bot(page)).to_contain_text("Hakan Fidan", timeout=ANSWER)
    page.reload()  # the choice is this browser's setting
    expect(page.locator("#reader")).to_have_value("small")
    other = open_page(browser, server)  # another user starts with the default
    expect(other.locator("#reader")).to_have_value("accurate")
    other.context.close()


def test_the_server_answers_with_the_reader_asked_for_and_refuses_others(server):
    import httpx
    from gradio_client import Client

    client = Client(server, verbose=False)
    component = next(c["id"] for c in client.config["components"] if c.get("props", {}).get("elem_id") == "docqa")

    def ask_with(reader):
        return httpx.post(server + "gradio_api/component_server", timeout=120, json={
            "data": {"question": "Who is Turkey's foreign minister?", "top_k": 5, "threshold": 0.1, "reader": reader},
            "component_id": component, "fn_name": "ask", "session_hash": "test"}).json()

    reply = ask_with("small")
    assert reply["reader"] == "small" and reply["text"] == "Hakan Fidan"
    assert ask_with("/etc")["error"].startswith("Unknown reader '/etc'")


def test_unanswerable_question_says_so(page):
    """A question the passages were read for lists them; one no passage is about lists none, rather
    than contradicting itself (issue 29, defect 8)."""
    ask(page, "Which hotel hosted the negotiations?")
    expect(bot(page)).to_contain_text("do not answer this question", timeout=ANSWER)
    expect(bot(page)).to_contain_text("Closest passages")
    ask(page, "What is the boiling point of mercury?")
    expect(bot(page, 1)).to_contain_text("no passage of the documents is about this question", timeout=ANSWER)
    expect(bot(page, 1)).not_to_contain_text("Closest passages")
    expect(page.locator("#sources li")).to_have_count(0)


def test_a_yes_no_question_shows_the_closest_sentence_and_opens_it(page):
    ask(page, "Did the talks take place in Russian?")
    expect(bot(page)).to_contain_text("No span of the documents answers this question", timeout=ANSWER)
    expect(bot(page)).to_contain_text("The talks were held in Russian.")
    expect(page.locator("#passage mark")).to_have_text("The talks were held in Russian.", timeout=30_000)


def test_upload_then_ask_and_document_text_is_never_executed(page, tmp_path, upload_dir):
    doc = tmp_path / "lighthouse-notes.txt"
    doc.write_text(
        "The old lighthouse on Skerry Point was built in 1871 by the engineer Thomas Ogilvie.\n\n"
        "The keeper's password was Marmalade <script>alert(1)</script> <img src=x onerror=alert(2)> *bold*.\n"
    )
    upload(page, doc)
    expect(page.locator("#upload-status")).to_have_text("Added lighthouse-notes.txt.", timeout=120_000)
    expect(page.locator("#documents")).to_contain_text("lighthouse-notes.txt")
    assert not list(upload_dir.rglob("lighthouse-notes.txt"))  # indexed, so no longer kept as an upload
    ask(page, "Who built the lighthouse on Skerry Point?")
    expect(bot(page).locator("mark")).to_have_text("Thomas Ogilvie", timeout=ANSWER)
    ask(page, "What was the keeper's password?")
    expect(bot(page, 1)).to_contain_text("<script>alert(1)</script>", timeout=ANSWER)
    expect(bot(page, 1)).to_contain_text("<img src=x onerror=alert(2)> *bold*")
    expect(page.locator("#passage")).to_contain_text("<img src=x onerror=alert(2)>")
    assert page.locator("#docqa script, #docqa img").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == []


def test_markdown_marks_in_a_plain_text_document_are_not_part_of_the_answer(page, tmp_path):
    """`based in **Oslo**` in a .txt was answered `**Oslo` (issue 29, defect 7)."""
    doc = tmp_path / "team-notes.txt"
    doc.write_text("The Fjordlight analytics team is based in **Oslo**, near the harbour. It has nine members.\n")
    upload(page, doc)
    expect(page.locator("#upload-status")).to_have_text("Added team-notes.txt.", timeout=120_000)
    ask(page, "Where is the Fjordlight analytics team based?")
    expect(bot(page).locator(".answer-text")).to_have_text("Oslo", timeout=ANSWER)
    expect(bot(page).locator("mark")).to_have_text("Oslo")


def test_an_uploaded_document_can_be_removed_and_its_old_sources_say_so(page, tmp_path):
    doc = tmp_path / "canal-notes.txt"
    doc.write_text("The Mirren canal was dug in 1794 by the navvy Josiah Crabtree.\n")
    upload(page, doc)
    item = page.locator("#documents li", has_text="canal-notes.txt")
    expect(item).to_be_visible(timeout=120_000)
    ask(page, "Who dug the Mirren canal?")
    expect(bot(page).locator("mark")).to_contain_text("Josiah Crabtree", timeout=ANSWER)
    item.get_by_role("button", name="Remove canal-notes.txt").click()
    item.get_by_role("button", name="Yes, remove").click()
    expect(page.locator("#upload-status")).to_have_text("Removed canal-notes.txt.", timeout=60_000)
    expect(page.locator("#documents")).not_to_contain_text("canal-notes.txt")
    # The earlier answer's source says its document was removed (issue 29, defect 9), not a blank panel.
    bot(page).locator(".cite").first.click()
    expect(page.locator("#passage")).to_contain_text("“canal-notes.txt” is no longer among the documents")
    expect(page.locator("#passage")).to_contain_text("Josiah Crabtree")  # the sentence as cited
    ask(page, "Who dug the Mirren canal?")
    expect(bot(page, 1)).to_contain_text("do not answer this question", timeout=ANSWER)
    page.reload()  # a new page lists what the index holds now
    expect(page.locator("#documents")).to_contain_text(SEED_DOC)
    expect(page.locator("#documents")).not_to_contain_text("canal-notes.txt")


def test_each_upload_attempt_replaces_the_last_status(page, tmp_path):
    """After a refused upload, a later refused one showed beside the old status line (issue 29, defect 4)."""
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 40)
    upload(page, binary)
    expect(page.locator("#upload-status")).to_contain_text("binary.txt", timeout=60_000)
    expect(page.locator("#upload-status .problem")).to_have_count(1)
    big = tmp_path / "huge.txt"
    big.write_text("word " * (11 * 1024 * 1024 // 5))
    upload(page, big)
    expect(page.locator("#upload-status")).to_have_text("⚠️ huge.txt: larger than the 10 MB limit; not added.")
    wrong = tmp_path / "sheet.xlsx"
    wrong.write_bytes(b"PK\x03\x04")
    upload(page, wrong)
    expect(page.locator("#upload-status")).to_contain_text("sheet.xlsx: unsupported file type '.xlsx'")
    expect(page.locator("#upload-status")).not_to_contain_text("huge.txt")
    expect(page.locator("#documents")).not_to_contain_text("huge.txt")
    expect(page.locator("#upload-limit")).to_contain_text("10 MB")


def test_the_server_indexes_only_what_was_uploaded(server):
    """Any client can call the page's server functions: a path outside the upload folder is refused."""
    from gradio_client import Client

    client = Client(server, verbose=False)
    component = next(c["id"] for c in client.config["components"] if c.get("props", {}).get("elem_id") == "docqa")
    import httpx

    reply = httpx.post(server + "gradio_api/component_server", json={
        "data": {"paths": ["/etc/hostname"]}, "component_id": component, "fn_name": "add_files",
        "session_hash": "test"}).json()
    assert reply["added"] == [] and "not an upload" in reply["problems"][0]


def test_twenty_concurrent_questions_are_all_answered_as_plain_json(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    # The page's own calls are not API endpoints: /ask, plain JSON, is the one (/ask_chat returned markdown).
    assert list(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == ["/ask"]
    questions = [("Who led the Russian delegation?", "Medinsky"), ("What language were the talks held in?", "Russian"),
                 ("Who is Turkey's foreign minister?", "Hakan Fidan"),
                 ("Which news agency gathered the key information about the negotiations?", "TASS")]
    jobs = [questions[i % len(questions)] for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda qa: client.predict(qa[0], api_name="/ask"), jobs))
    assert len(results) == 20
    for (question, expected), result in zip(jobs, results):
        assert not result["abstained"], question
        assert expected in result["text"], (question, result["text"])
        assert expected in result["citations"][0]["sentence"]
        assert result["question"] == question  # plain text, as asked: no escaping, no markdown
        assert "&#" not in json.dumps(result, ensure_ascii=False)
