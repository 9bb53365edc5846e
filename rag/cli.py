"""The `rag` command: ask, index, remove, list, eval, serve. Heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import DEFAULT_READER, READERS, Config
from .errors import RagError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Ask questions about your documents; "
                                     "get the exact answer span with the sentences it came from.")
    parser.add_argument("--index-dir", type=Path, help="where indexes live (default: $RAG_INDEX_DIR or ./index)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ask", help="answer a question from an index (no question: one per line from stdin)")
    p.add_argument("question", nargs="?", help="the question; without it, questions are read line by line "
                   "from standard input (a prompt when it is a terminal), the models loaded once")
    p.add_argument("--index", help="index name (default: the seed article)")
    p.add_argument("--top-k", type=int, help="passages to read (default: %d)" % Config.top_k)
    p.add_argument("--threshold", type=float,
                   help="abstain when the answer, against the reader's own \"no answer\", scores under this (0-1)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON (one object per line)")
    reader_option(p)

    p = sub.add_parser("index", help="build an index from files and folders (txt, md, html, pdf, docx)")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--name", help="index name (default: the first path's name)")
    p.add_argument("--add", action="store_true",
                   help="add the documents to the existing index NAME (a document of the same name is replaced)")

    p = sub.add_parser("remove", help="remove documents from an index")
    p.add_argument("documents", nargs="+", help="the documents' names, as `rag list` shows them")
    p.add_argument("--index", required=True, help="the index to remove them from")

    sub.add_parser("list", help="list the indexes with their documents")

    p = sub.add_parser("eval", help="evaluate on a question set (JSONL or SQuAD JSON), 'squad' or 'squad-open'")
    from .evaluation.cli import add_arguments

    add_arguments(p)

    p = sub.add_parser("serve", help="start the web chat")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--index", help="index to chat with (default: the seed article)")
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    reader_option(p, "the reader the chat starts with; the page's settings offer the others")
    return parser


def reader_option(p: argparse.ArgumentParser, purpose: str = "the reader") -> None:
    choices = "; ".join(f"'{name}': {r.about}" for name, r in READERS.items())
    p.add_argument("--reader", metavar="NAME|PATH",
                   help=f"{purpose} (default: $RAG_READER_MODEL or '{DEFAULT_READER}'). {choices}; "
                        "or a model folder")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config() if args.index_dir is None else Config(index_dir=args.index_dir)
        return COMMANDS[args.command](args, config)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_ask(args, config: Config) -> int:
    from .engine import Engine

    engine = Engine(config if args.reader is None else config.with_(reader_model=args.reader))

    def answer(question: str, end: str = "\n") -> None:
        found = engine.ask(question, index=args.index, top_k=args.top_k, threshold=args.threshold)
        print(json.dumps(found.to_dict(), ensure_ascii=False) if args.json else found, end=end, flush=True)

    if args.question is not None:
        answer(args.question)
        return 0
    # One question per line, the models and index loaded once; a bad question is reported, not fatal,
    # and so is a line that is not UTF-8 (its bad bytes read as U+FFFD instead of ending the loop).
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    failed = False
    for question in _questions(sys.stdin):
        try:
            answer(question, end="\n" if args.json else "\n\n")
        except RagError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            failed = True
    return 2 if failed else 0


def _questions(stream):
    """Non-blank lines of `stream`, with a prompt on a terminal."""
    interactive = stream.isatty()
    while True:
        if interactive:
            print("question> ", end="", file=sys.stderr, flush=True)
        line = stream.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def cmd_index(args, config: Config) -> int:
    from tqdm import tqdm

    from .engine import Engine

    name = args.name or (args.paths[0].resolve().stem or "default")
    bar = None

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=stage, unit="chunk", file=sys.stderr)
        bar.update(done - bar.n)

    engine = Engine(config)
    corpus, notes = (engine.add(args.paths, name, progress) if args.add else engine.build(args.paths, name, progress))
    if bar is not None:
        bar.close()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{'The index now holds' if args.add else 'Indexed'} {len(corpus.document_names)} document(s), "
          f"{corpus.manifest.chunks} chunks, {'in' if args.add else 'into'} {engine.library.location(name)}.\n"
          f"Ask it: rag ask --index {name} \"your question\"")
    return 0


def cmd_remove(args, config: Config) -> int:
    from .engine import Engine

    engine = Engine(config)
    corpus = engine.remove(args.documents, args.index)
    print(f"Removed {', '.join(dict.fromkeys(args.documents))}; the index {args.index} now holds "
          f"{len(corpus.document_names)} document(s), {corpus.manifest.chunks} chunks.")
    return 0


def cmd_list(args, config: Config) -> int:
    from .engine import Engine

    library = Engine(config).library
    found = library.manifests()
    if not found:
        print(f"No indexes in {library.milvus.uri if library.milvus else config.index_dir}. "
              f"Build one: rag index PATH... --name NAME")
    for name, m in found:
        if isinstance(m, RagError):
            print(f"{name}  (unreadable: {m})")
            continue
        print(f"{name}  {len(m.documents)} document(s), {m.chunks} chunks, built {m.created}")
        for d in m.documents:
            print(f"  {d.name}  ({d.chars:,} characters)")
    return 0


def cmd_eval(args, config: Config) -> int:
    from .evaluation.cli import run

    return run(args, config)


def cmd_serve(args, config: Config) -> int:
    from ui.app import serve

    if args.reader is not None:
        config = config.with_(reader_model=args.reader)
    serve(config, host=args.host, port=args.port, index=args.index, max_upload_mb=args.max_upload_mb)
    return 0


COMMANDS = {"ask": cmd_ask, "index": cmd_index, "remove": cmd_remove, "list": cmd_list, "eval": cmd_eval,
            "serve": cmd_serve}

if __name__ == "__main__":
    sys.exit(main())
