"""The web chat: one page over the same `Engine.ask` as the Python API and the CLI.

Gradio serves the page, its uploads (with their size bound) and a JSON API (`/ask`). The chat
itself is one `gr.HTML` component whose script (`chat.js`) calls the functions below as
`server.*`: Gradio's Chatbot keeps markdown strings, which made the copy button copy markup,
screen readers read entity codes, and a second question sent while one was pending vanish. Here the
page builds its DOM from plain-text JSON with text nodes, keeps the conversation in the browser
(localStorage: per user, kept across reloads), queues questions visibly, and turns each `[n]` into a
link to its source.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gradio as gr

from rag.config import READERS, Config
from rag.documents import SUPPORTED_SUFFIXES, read_document
from rag.engine import SEED_INDEX, Engine
from rag.errors import RagError, SettingsError
from rag.reader import native_bf16

from . import render

CHAT_INDEX = "chat"  # the web chat's own index: starts as the seed corpus, grows with uploads
HERE = Path(__file__).resolve().parent
TEMPLATE = (HERE / "chat.html").read_text(encoding="utf-8")
STYLE = (HERE / "chat.css").read_text(encoding="utf-8")
SCRIPT = (HERE / "chat.js").read_text(encoding="utf-8")


def chat_index(engine: Engine, name: str | None) -> str:
    """The index the app works on; by default a copy of the seed corpus that uploads can extend."""
    if name:
        engine.index(name)  # fail early, with the engine's message, if it is missing or corrupt
        return name
    if engine.library.exists(CHAT_INDEX):
        engine.index(CHAT_INDEX)  # a damaged one is an error to read, never silently replaced: it holds uploads
    else:
        engine.library.copy(SEED_INDEX, CHAT_INDEX)
    return CHAT_INDEX


def example_questions(engine: Engine, index: str) -> list[str]:
    """Example questions shipped beside the seed documents (seeds/examples.json), for the seed corpus."""
    path = engine.config.seeds_dir / "examples.json"
    seed_names = set(engine.index(SEED_INDEX).document_names) if path.is_file() else set()
    names = set(engine.index(index).document_names)
    if not path.is_file() or not seed_names <= names:
        return []
    return [q for q in json.loads(path.read_text(encoding="utf-8")) if isinstance(q, str)]


class ChatServer:
    """What the page may ask of the server, each call one JSON object in and one out. Errors come
    back as {"error": message}; input is checked, since any client can call these."""

    def __init__(self, engine: Engine, index: str, max_upload_mb: float, concurrency: int = 2):
        self.engine = engine
        self.reader = engine.config.reader_name
        self._engines = {self.reader: engine}  # one per reader chosen, sharing the embedder and indexes
        self._engines_lock = threading.Lock()
        self.index = index
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb = max_upload_mb
        # Answers run on the server's CPU: two at a time (as the queue ran them before), the rest wait.
        self.slots = threading.BoundedSemaphore(concurrency)

    def readers(self) -> list[dict]:
        """The readers the page offers: the shipped ones, and the one the server started with."""
        names = list(READERS) + ([self.reader] if self.reader not in READERS else [])
        return [{"name": n, "about": READERS[n].about if n in READERS else "the reader this server was started with",
                 "threshold": self.engine.config.with_(reader_model=n).threshold} for n in names]

    def engine_for(self, reader: str) -> Engine:
        """The engine reading with `reader` (one the page offers), made on first use."""
        with self._engines_lock:
            if reader not in self._engines:
                if reader not in READERS:
                    raise SettingsError(f"Unknown reader {reader!r}: choose one of {', '.join(READERS)}.")
                self._engines[reader] = self.engine.with_reader(reader)
            return self._engines[reader]

    def ask(self, request: dict) -> dict:
        try:
            question, top_k, threshold = request["question"], request["top_k"], request["threshold"]
            reader = str(request.get("reader", self.reader))
            engine = self.engine_for(reader)
            with self.slots:
                answer = engine.ask(question, index=self.index, top_k=top_k, threshold=threshold)
        except (KeyError, TypeError, IndexError):
            return {"error": "The request needs a question, top_k and threshold."}
        except RagError as exc:
            return {"error": str(exc)}
        return {**render.answer_view(answer), "reader": reader}

    def _cited(self, request: dict, view) -> dict:
        """A view of the document `request` names around its range, or why there is none."""
        try:
            name, start, end = request["doc"], int(request["start"]), int(request["end"])
            a_start, a_end = request.get("answer_start"), request.get("answer_end")
        except (KeyError, TypeError, ValueError, AttributeError):
            return {"error": "The request needs a document name and a range."}
        doc = self.engine.index(self.index).by_name.get(name)
        if doc is None:
            return {"removed": True, "doc": name}
        if not 0 <= start <= end <= len(doc.text):
            return {"error": f"{name} has changed since this answer: its text no longer has that range."}
        return view(doc, start, end, a_start, a_end)

    def source(self, request: dict) -> dict:
        """The paragraph around a cited sentence (or a passage read)."""
        return self._cited(request, render.passage_view)

    def document(self, request: dict) -> dict:
        """The whole document, for the view that scrolls to the cited sentence."""
        return self._cited(request, lambda doc, start, end, *_: render.document_view(doc, start, end))

    def documents(self, _request: dict | None = None) -> dict:
        """The documents the chat answers from, with their size and when they were added."""
        return {"index": self.index, "documents": [
            {"name": d.name, "chars": d.chars, "added": d.added} for d in self.engine.index(self.index).manifest.documents]}

    def add_files(self, request: dict) -> dict:
        """Index files the page uploaded (into Gradio's upload folder, which bounds their size), then
        remove them there: the index keeps their text, and the folder would otherwise grow forever."""
        uploads = Path(gr.utils.get_upload_folder()).resolve()
        docs, problems, seen = [], [], []
        for path in request.get("paths", []) if isinstance(request, dict) else []:
            path = Path(str(path)).resolve()
            if not path.is_relative_to(uploads):  # only what was uploaded, never a file of the server's
                problems.append(f"{path.name}: not an upload; not added.")
                continue
            seen.append(path)
            if not path.is_file():
                problems.append(f"{path.name}: the upload is no longer on the server; upload it again.")
            elif path.stat().st_size > self.max_bytes:
                problems.append(f"{path.name}: larger than the {self.max_upload_mb:g} MB limit; not added.")
            elif any(d.name == path.name for d in docs):
                problems.append(f"{path.name}: another file of this name is in the same upload; not added.")
            else:
                try:
                    docs.append(read_document(path, limits=self.engine.config.document_limits))
                except RagError as exc:
                    problems.append(str(exc).replace(str(path), path.name))
        if docs:
            try:
                self.engine.library.add_documents(self.index, docs)
            except RagError as exc:  # e.g. the app serves the seed index, which is rebuilt from seeds/
                docs, problems = [], problems + [str(exc)]
        for path in seen:
            remove_upload(path, uploads)
        return {"added": [d.name for d in docs], "problems": problems, **self.documents()}

    def remove_document(self, request: dict) -> dict:
        name = request.get("name") if isinstance(request, dict) else None
        if not isinstance(name, str):
            return {"error": "The request needs a document name."}
        try:
            self.engine.remove([name], self.index)
        except RagError as exc:
            return {"error": str(exc), **self.documents()}
        return {"removed": name, **self.documents()}


def remove_upload(path: Path, uploads: Path) -> None:
    """Delete an uploaded file and the folder Gradio made for it, once that folder is empty."""
    if not path.is_file():
        return
    path.unlink()
    if path.parent != uploads:
        try:
            path.parent.rmdir()
        except OSError:  # not empty: another upload shares it
            pass


def build_app(engine: Engine, index: str | None = None, max_upload_mb: float = 10.0) -> gr.Blocks:
    name = chat_index(engine, index)
    chat = ChatServer(engine, name, max_upload_mb)
    settings = {"index": name, "examples": example_questions(engine, name), "top_k": engine.config.top_k,
                "reader": chat.reader, "readers": chat.readers(), "max_question_chars": engine.config.max_question_chars,
                "max_upload_mb": max_upload_mb, "suffixes": sorted(SUPPORTED_SUFFIXES)}
    # Functions the page calls as server.ask(...) etc.; their names are what the script uses.
    calls = [chat.ask, chat.source, chat.document, chat.documents, chat.add_files, chat.remove_document]
    functions = [_named(call) for call in calls]

    # Uploads that never reach add_files (a tab closed mid-upload) are deleted after a day.
    with gr.Blocks(title="docqa", delete_cache=(3600, 86400)) as app:
        gr.HTML(elem_id="docqa", html_template=TEMPLATE, css_template=STYLE, js_on_load=SCRIPT,
                server_functions=functions, settings=json.dumps(settings), apply_default_css=True)

        def api_ask(q: str) -> dict:
            """The answer as JSON (plain text; offsets into the documents), for programmatic clients."""
            return engine.ask(q, index=name).to_dict()

        gr.api(api_ask, api_name="ask")
    app.queue(default_concurrency_limit=2, max_size=512)
    return app


def _named(method):
    """A bound method as a plain function of the same name (Gradio calls server functions by name)."""
    def call(request=None):
        return method(request if request is not None else {})
    call.__name__ = method.__name__
    return call


def serve(config: Config | None = None, host: str = "127.0.0.1", port: int = 7860, index: str | None = None,
          max_upload_mb: float = 10.0, block: bool = True) -> gr.Blocks:
    """Load the models, then start the app (printing its URL). Binds to loopback unless `host` says otherwise."""
    config = config or Config()
    if config.reader_dtype == "auto" and native_bf16(config.device):
        # A server starts once and answers many questions: on a CPU with AVX-512 BF16, PyTorch's
        # bfloat16 reader answers faster (warm p50 20 vs 28 ms, p95 64 vs 144 ms) for 3 s more at
        # start (6.8 vs 3.6 s to the first answer): eval/results/startup-worktree-2026-12-03.md.
        config = config.with_(reader_dtype="bfloat16")
    engine = Engine(config)
    app = build_app(engine, index=index, max_upload_mb=max_upload_mb)
    engine.warm_up(chat_index(engine, index))
    print(f"docqa web chat on http://{host}:{port}", flush=True)
    app.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 1024 * 1024),
               prevent_thread_lock=not block, show_error=True, quiet=True)
    return app
