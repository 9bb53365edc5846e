"""docqa: extractive question answering over documents, with cited sentences, offline.

    from rag import ask
    answer = ask("Who led the Russian delegation?")
    answer.text, answer.score, answer.abstained, answer.citations

Heavy libraries (torch, transformers, FAISS) load on the first question, not on import.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .config import Config
from .errors import DocumentError, IndexStoreError, QuestionError, RagError, SettingsError
from .schema import Answer, Chunk, Citation, Document, Passage

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ask", "get_engine", "Config", "Answer", "Citation", "Passage", "Chunk", "Document",
           "RagError", "QuestionError", "DocumentError", "IndexStoreError", "SettingsError"]

_engine: "Engine | None" = None
_engine_lock = threading.Lock()


def get_engine() -> "Engine":
    """The process-wide engine behind `ask`, created on first use with the default Config."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from .engine import Engine

            _engine = Engine(Config())
        return _engine


def ask(question: str, index: str | None = None, top_k: int | None = None, threshold: float | None = None) -> Answer:
    """Answer a question from the documents of `index` (default: the seed article), or abstain."""
    return get_engine().ask(question, index=index, top_k=top_k, threshold=threshold)
