"""The web chat: Gradio over the same `Engine.ask` as the Python API and the CLI.

Layout: the chat and question box on the left, with example questions, settings and uploads;
the sources of the last answer on the right, where choosing one opens its paragraph.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from rag.config import Config
from rag.documents import SUPPORTED_SUFFIXES, read_document
from rag.engine import SEED_INDEX, UNRELATED, Engine
from rag.reader import native_bf16
from rag.errors import RagError

from . import render

CHAT_INDEX = "chat"  # the web chat's own index: starts as the seed corpus, grows with uploads
CSS = """
.passage { font-size: 0.95rem; line-height: 1.5; }
.passage-doc { color: #666; font-size: 0.8rem; margin-bottom: 0.4rem; }
mark { background: #ffe58a; padding: 0 2px; border-radius: 2px; }
"""


def chat_index(engine: Engine, name: str | None) -> str:
    """The index the app works on; by default a copy of the seed corpus that uploads can extend."""
    if name:
        engine.index(name)  # fail early, with the engine's message, if it is missing or corrupt
        return name
    try:
        engine.index(CHAT_INDEX)
    except RagError:
        engine.library.save(engine.index(SEED_INDEX), CHAT_INDEX)
    return CHAT_INDEX


def example_questions(engine: Engine, index: str) -> list[str]:
    """Example questions shipped beside the seed documents (seeds/examples.json), for the seed corpus."""
    path = engine.config.seeds_dir / "examples.json"
    seed_names = {d.name for d in engine.index(SEED_INDEX).documents} if path.is_file() else set()
    names = set(engine.index(index).document_names)
    if not path.is_file() or not seed_names <= names:
        return []
    return [q for q in json.loads(path.read_text(encoding="utf-8")) if isinstance(q, str)]


def build_app(engine: Engine, index: str | None = None, max_upload_mb: float = 10.0) -> gr.Blocks:
    name = chat_index(engine, index)
    max_bytes = int(max_upload_mb * 1024 * 1024)

    def documents_markdown() -> str:
        docs = engine.index(name).documents
        return f"**{len(docs)} document(s) indexed**\n\n" + "\n".join(f"- {render.text(d.name)}" for d in docs)

    def documents_shown():
        """The list of documents and the removal choices, as the index holds them now."""
        return documents_markdown(), gr.update(choices=engine.index(name).document_names, value=[])

    def respond(question: str, history: list, top_k: float, threshold: float, by_message: dict):
        history = list(history or [])
        by_message = dict(by_message or {})
        if not question or not question.strip():
            return history, gr.update(), [], gr.update(choices=[], value=None), "", by_message
        try:
            answer = engine.ask(question, index=name, top_k=int(top_k), threshold=float(threshold))
        except RagError as exc:
            history += [{"role": "user", "content": render.text(question)},
                        {"role": "assistant", "content": f"⚠️ {render.text(str(exc))}"}]
            return history, "", [], gr.update(choices=[], value=None), "", by_message
        history += [{"role": "user", "content": render.text(question)},
                    {"role": "assistant", "content": render.answer_markdown(answer)}]
        if not answer.citations:  # the passages read; none when none was about the question
            read = [] if answer.reason == UNRELATED else answer.passages
            sources = [{"doc": p.doc, "start": p.start, "end": p.end} for p in read]
            labels = [render.passage_label(i, p) for i, p in enumerate(read, start=1)]
        else:
            sources = [{"doc": c.doc, "start": c.start, "end": c.end, "answer_start": c.answer_start,
                        "answer_end": c.answer_end} for c in answer.citations]
            labels = [render.citation_label(i, c) for i, c in enumerate(answer.citations, start=1)]
        by_message[str(len(history) - 1)] = {"sources": sources, "labels": labels, "abstained": answer.abstained}
        return (history, "", *show_sources(sources, labels, open_first=bool(answer.citations)), by_message)

    def show_sources(sources: list, labels: list, open_first: bool):
        choices = [(label, i) for i, label in enumerate(labels)]
        first = open_source(0, sources) if sources and open_first else ""
        return sources, gr.update(choices=choices, value=0 if first else None), first

    def message_clicked(by_message: dict, event: gr.SelectData):
        """Clicking an answer in the chat brings back its sources and opens the first one."""
        entry = (by_message or {}).get(str(event.index if isinstance(event.index, int) else event.index[0]))
        if entry is None:
            return gr.update(), gr.update(), gr.update()
        return show_sources(entry["sources"], entry["labels"], open_first=True)

    def open_source(choice, sources: list) -> str:
        if choice is None or not sources or int(choice) >= len(sources):
            return ""
        s = sources[int(choice)]
        doc = engine.index(name).by_name.get(s["doc"])
        if doc is None:
            return ""
        return render.passage_html(doc, s["start"], s["end"], s.get("answer_start"), s.get("answer_end"))

    def upload(files: list | None, progress=gr.Progress()):
        if not files:
            return gr.update(), *documents_shown(), None
        docs, problems = [], []
        for f in files:
            path = Path(f if isinstance(f, str) else f.name)
            if path.stat().st_size > max_bytes:
                problems.append(f"{path.name}: larger than the {max_upload_mb:g} MB limit; not added.")
                continue
            if any(d.name == path.name for d in docs):
                problems.append(f"{path.name}: another file of this name is in the same upload; not added.")
                continue
            try:
                docs.append(read_document(path, limits=engine.config.document_limits))
            except RagError as exc:
                problems.append(str(exc).replace(str(path), path.name))
        if docs:
            progress(0, desc="Indexing")
            try:
                engine.library.add_documents(name, docs, progress=lambda stage, done, total: progress(
                    done / max(total, 1), desc=f"Indexing ({stage})"))
            except RagError as exc:  # e.g. the app serves the seed index, which is rebuilt from seeds/
                docs, problems = [], problems + [str(exc)]
        lines = [f"Added {render.text(d.name)}." for d in docs] + [f"⚠️ {render.text(p)}" for p in problems]
        return "\n\n".join(lines), *documents_shown(), None

    def remove(chosen: list | None):
        if not chosen:
            return gr.update(), *documents_shown()
        try:
            engine.remove(list(chosen), name)
        except RagError as exc:
            return f"⚠️ {render.text(str(exc))}", *documents_shown()
        return "\n\n".join(f"Removed {render.text(n)}." for n in chosen), *documents_shown()

    with gr.Blocks(title="docqa") as app:
        gr.Markdown("# docqa\nAsk a question about the documents. Answers are exact spans from the text, "
                    "with the sentences they come from.")
        sources_state = gr.State([])
        by_message = gr.State({})  # chat message index → that answer's sources
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(elem_id="chat", height=520, label="Chat", sanitize_html=True)
                with gr.Row():
                    question = gr.Textbox(elem_id="question", show_label=False, scale=5,
                                          placeholder="Ask about the documents, e.g. who, when, where, how many…")
                    ask_btn = gr.Button("Ask", variant="primary", elem_id="ask", scale=1)
                examples = example_questions(engine, name)
                if examples:
                    gr.Examples(examples=[[q] for q in examples], inputs=[question], label="Examples",
                                elem_id="examples")
                with gr.Accordion("Settings", open=False):
                    top_k = gr.Slider(1, 20, value=engine.config.top_k, step=1, label="Passages retrieved")
                    threshold = gr.Slider(0.0, 1.0, value=engine.config.abstain_threshold, step=0.01,
                                          label="Abstention threshold (answer only above this confidence)")
                with gr.Accordion("Documents", open=False):
                    files = gr.File(file_count="multiple", type="filepath", elem_id="upload",
                                    file_types=sorted(SUPPORTED_SUFFIXES),
                                    label=f"Add documents ({', '.join(sorted(SUPPORTED_SUFFIXES))}; "
                                          f"up to {max_upload_mb:g} MB each)")
                    upload_status = gr.Markdown(elem_id="upload-status")
                    doc_list = gr.Markdown(documents_markdown(), elem_id="documents")
                    with gr.Row():
                        to_remove = gr.Dropdown(choices=engine.index(name).document_names, value=[], multiselect=True,
                                                label="Remove documents", elem_id="remove-docs", scale=4)
                        remove_btn = gr.Button("Remove", elem_id="remove", scale=1)
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.Radio(choices=[], label="Open a source in its paragraph", elem_id="sources",
                                   type="value")
                passage = gr.HTML(elem_id="passage")

        outputs = [chatbot, question, sources_state, sources, passage, by_message]
        inputs = [question, chatbot, top_k, threshold, by_message]
        ask_btn.click(respond, inputs, outputs, api_name="ask_chat")
        question.submit(respond, inputs, outputs, api_name=False)
        sources.change(open_source, [sources, sources_state], passage, api_name=False)
        chatbot.select(message_clicked, [by_message], [sources_state, sources, passage], api_name=False)
        files.upload(upload, files, [upload_status, doc_list, to_remove, files], api_name=False)
        remove_btn.click(remove, to_remove, [upload_status, doc_list, to_remove], api_name=False)
        app.load(documents_shown, None, [doc_list, to_remove], api_name=False)  # another process may have changed it

        def api_ask(q: str) -> dict:
            """Plain JSON answer, for programmatic clients (gradio_client)."""
            return engine.ask(q, index=name).to_dict()

        gr.api(api_ask, api_name="ask")
    app.queue(default_concurrency_limit=2, max_size=512)
    return app


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
               prevent_thread_lock=not block, css=CSS, show_error=True, quiet=True)
    return app
