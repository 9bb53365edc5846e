"""The extractive reader: finds answer spans in passages with an `AutoModelForQuestionAnswering`.

transformers 5 has no question-answering pipeline, so spans are decoded here from the start/end
logits, mapped back to characters with the fast tokenizer's offsets. Scores are per-window
probabilities: a softmax over the window's context tokens *and* its [CLS] "no answer" slot, so a
window that holds no answer pushes its mass to [CLS] and its spans score low. That makes scores
comparable across passages and usable for abstention.

Two ways to run, with the same tokenizing (the `tokenizers` library) and the same decoding (NumPy):
- the fast path: a local model whose ONNX export is cached runs in ONNX Runtime alone, so a cold
  `rag ask` imports neither torch nor transformers;
- otherwise transformers loads the model (and exports it for next time, on CPU), and PyTorch runs it
  where ONNX Runtime is not used (a GPU, bfloat16 or int8 asked for, a model it cannot export).
"""

from __future__ import annotations

import functools
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import READERS, Config, available_device
from .errors import SettingsError
from .low_rank import resolved
from .model_cache import CacheEntry, cache_entry
from .runtime import OnnxModel, cpu_has_avx512_bf16, onnx_for, quantized, session_threads

_OUTPUTS = ["start_logits", "end_logits"]


@dataclass(frozen=True)
class ReaderSpan:
    """A span in one of the passages given to `Reader.read`, in that passage's character offsets."""

    passage: int
    start: int
    end: int
    score: float  # P(start) * P(end) within the window
    no_answer: float  # P([CLS] start) * P([CLS] end) in the same window: "this window holds no answer"


def against_no_answer(p: float, no_answer: float) -> float:
    """p / (p + no_answer): how far the reader prefers an answer of probability `p` to answering nothing
    in the window it came from. A low `p` alone also marks answerable questions whose probability is
    spread over several readings; as the abstention test this separates unanswerable questions better:
    on the tuning split's SQuAD 2.0 questions, SQuAD 2.0 F1 at the best threshold 61.3 -> 64.8 for the
    reader alone and 61.1 -> 64.5 end to end (eval/results/no-answer-2026-12-04.md)."""
    return p / (p + no_answer) if p > 0 else 0.0


@dataclass
class Windows:
    """A batch of (question, passage) windows as the model takes them, with what decoding needs."""

    inputs: dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids: (windows, length) int64
    passage: list[int]  # the passage each window is cut from
    offsets: list[list[tuple[int, int]]]  # each token's characters in its passage
    context: np.ndarray  # (windows, length) bool: the token is the passage's, and may be an answer


class Reader:
    """Holds the settings; `load()` (or the first `read`) loads the model, once."""

    def __init__(self, model: str, device: str = "cpu", max_seq_length: int = 384, doc_stride: int = 128,
                 max_answer_tokens: int = 30, max_question_tokens: int = 64, quantize: bool = False,
                 dtype: str = "float32", backend: str = "torch", cache_dir: Path | None = None,
                 rebuilt_dir: Path | None = None):
        self.model_name = model
        # A reader stored as a low-rank change to an encoder (rag/low_rank.py) is rebuilt here once.
        self.rebuilt_dir = rebuilt_dir
        self._source: str | None = None  # the folder or name the model loads from
        self.device = device
        self.backend = backend  # "onnx": run by ONNX Runtime on CPU (faster); "torch": eager PyTorch
        self.cache_dir = cache_dir
        self.max_seq_length = max_seq_length
        self.doc_stride = doc_stride
        self.max_answer_tokens = max_answer_tokens
        self.max_question_tokens = max_question_tokens
        self.quantize = quantize
        self.dtype = dtype  # "float32", "bfloat16", or "auto" (see resolve_dtype)
        self._model = None  # a PyTorch model, when PyTorch runs it
        self._onnx: OnnxModel | None = None
        self._pairs = None  # a tokenizers.Tokenizer cutting (question, passage) pairs into windows
        self._plain = None  # the same tokenizer without truncation, for questions alone
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._onnx is not None or self._model is not None:
                return
            self._source = resolved(self.model_name, self.rebuilt_dir or Config().cache_dir / "readers")
            entry = self._export_entry()
            export = self.cache_dir / f"{entry.name}{'-int8' if self.quantize else ''}.onnx" if entry else None
            if export is not None and export.is_file():
                try:  # the fast path: tokenizer file and cached graph, nothing else
                    self._onnx = OnnxModel(export, session_threads())
                    self._set_tokenizer(_tokenizer_file(Path(self._source)))
                    return
                except Exception:  # a damaged export: load the model, which exports it again
                    self._onnx = None
            self._load_model(entry)

    def _export_entry(self) -> CacheEntry | None:
        """The cached export, when ONNX Runtime is to run this model: on CPU, in float32 (or
        int8, asked for with `quantize`), from a local folder (its files name the export, so it is
        found without loading the model)."""
        folder = Path(self._source)
        if (self.backend != "onnx" or self.device != "cpu" or self.cache_dir is None
                or (not self.quantize and resolve_dtype(self.dtype, self.device) != "float32")
                or not (folder / "tokenizer.json").is_file()):
            return None
        return cache_entry(folder, "reader")

    def _load_model(self, entry: CacheEntry | None) -> None:
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # library code stays quiet; errors still raise
        hf_logging.disable_progress_bar()
        # Offline unless the user opts in with the hub's own HF_HUB_OFFLINE=0: an unknown name then fails
        # at once instead of after a minute of retries against a hub that cannot be reached.
        offline = os.environ.get("HF_HUB_OFFLINE", "1") != "0"
        try:
            tokenizer = AutoTokenizer.from_pretrained(self._source, local_files_only=offline)
        except OSError as exc:  # neither a folder nor a model in the local hub cache
            raise SettingsError(f"Reader {self.model_name!r} could not be loaded: name one of the shipped readers "
                                f"({', '.join(READERS)}), a model folder, or a hub model already in the local cache "
                                f"(HF_HUB_OFFLINE=0 lets it download). ({exc})") from None
        if not tokenizer.is_fast:
            raise ValueError(f"Reader '{self.model_name}' needs a fast tokenizer (for character offsets).")
        # float32 on CPU: the shipped weights are float16 on disk only to keep the package small.
        model = AutoModelForQuestionAnswering.from_pretrained(self._source, dtype=torch.float32, local_files_only=offline)
        model.eval().to(available_device(self.device))
        onnx = self.backend == "onnx" and self.device == "cpu"
        sample = tokenizer(["question"], ["passage"], return_tensors="pt")
        if self.quantize and self.device == "cpu":  # asked for, so it wins over "auto": int8 weights
            if onnx:
                export = onnx_for(model, sample, _OUTPUTS, self.cache_dir, entry)
                try:
                    self._onnx = export and quantized(export)
                except Exception as exc:  # the quantizer could not read the graph: PyTorch's int8 instead
                    warnings.warn(f"int8 in ONNX Runtime not used ({exc}); quantizing in PyTorch.", stacklevel=2)
            if self._onnx is None:
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif resolve_dtype(self.dtype, self.device) == "bfloat16":
            model = model.to(torch.bfloat16)  # run in PyTorch: ONNX Runtime has no fast bf16 on CPU
        elif onnx:
            self._onnx = onnx_for(model, sample, _OUTPUTS, self.cache_dir, entry)
        self._set_tokenizer(tokenizer.backend_tokenizer)
        if self._onnx is None:
            self._model = model

    def _set_tokenizer(self, tokenizer) -> None:
        from tokenizers import Tokenizer

        self._plain = Tokenizer.from_str(tokenizer.to_str())
        self._plain.no_truncation()
        self._plain.no_padding()
        self._pairs = Tokenizer.from_str(self._plain.to_str())
        self._pairs.enable_truncation(self.max_seq_length, stride=self.doc_stride, strategy="only_second")

    def read(self, question: str, passages: list[str], top_n: int = 3,
             exclude: list[list[tuple[int, int]]] | None = None) -> list[ReaderSpan]:
        """The best `top_n` spans of every window of every passage, best first.

        `exclude` gives, per passage, character ranges that are read but cannot hold the answer
        (their tokens leave the softmax, so the probability goes to the rest of the window)."""
        if not passages:
            return []
        self.load()
        windows = self.windows(question, passages, exclude)
        start_logits, end_logits = self._logits(windows.inputs)
        no_answer = no_answer_probs(start_logits, end_logits, windows.context)
        result = []
        for w, s, e, p in decode_spans(start_logits, end_logits, windows.context, self.max_answer_tokens, top_n):
            text, start = passages[windows.passage[w]], windows.offsets[w][s][0]
            end = keep_abbreviation_period(text, start, keep_dotted_word(text, windows.offsets[w][e][1]))
            result.append(ReaderSpan(passage=windows.passage[w], start=start, end=end, score=p,
                                     no_answer=float(no_answer[w])))
        result.sort(key=lambda r: r.score, reverse=True)
        return result

    def windows(self, question: str, passages: list[str],
                exclude: list[list[tuple[int, int]]] | None = None) -> Windows:
        """The question (cut to `max_question_tokens`) paired with each passage, cut into windows of
        `max_seq_length` tokens overlapping by `doc_stride`, padded to the longest: what transformers'
        tokenizer call with truncation="only_second" and return_overflowing_tokens gives."""
        self.load()
        q_ids = self._plain.encode(question, add_special_tokens=False).ids
        if len(q_ids) > self.max_question_tokens:
            question = self._plain.decode(q_ids[: self.max_question_tokens])
        pairs = self._pairs.encode_batch([(question, p) for p in passages])
        encodings = [w for e in pairs for w in [e, *e.overflowing]]
        owners = [i for i, e in enumerate(pairs) for _ in range(1 + len(e.overflowing))]
        width = max(len(e.ids) for e in encodings)
        shape = (len(encodings), width)
        inputs = {"input_ids": np.zeros(shape, np.int64), "attention_mask": np.zeros(shape, np.int64),
                  "token_type_ids": np.zeros(shape, np.int64)}
        context = np.zeros(shape, bool)
        for w, e in enumerate(encodings):
            n = len(e.ids)
            inputs["input_ids"][w, :n] = e.ids
            inputs["attention_mask"][w, :n] = e.attention_mask
            inputs["token_type_ids"][w, :n] = e.type_ids
            context[w, :n] = [s == 1 for s in e.sequence_ids]
            if exclude and exclude[owners[w]]:
                first, last = np.array(e.offsets, dtype=np.int64).T  # each token's characters
                for r0, r1 in exclude[owners[w]]:
                    context[w, :n] &= ~((first >= r0) & (last <= r1))
        return Windows(inputs, owners, [list(e.offsets) for e in encodings], context)

    def _logits(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32, (windows, length)."""
        if self._onnx is not None:
            start, end = self._onnx(**inputs)
            return start.astype(np.float32), end.astype(np.float32)
        import inspect

        import torch

        takes = inspect.signature(self._model.forward).parameters  # MPNet and RoBERTa take no token types
        names = [k for k in inputs if k in takes]
        with torch.inference_mode():
            out = self._model(**{k: torch.from_numpy(inputs[k]).to(self.device) for k in names})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


def _tokenizer_file(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


_DOTTED_END = re.compile(r"(?:\b[A-Za-z]\.)+[A-Za-z]$")  # "a.m", "U.S", "D.C": their last period left out


_DOTTED_TAIL = re.compile(r"(?:\.[a-z0-9][A-Za-z0-9_]*)+")  # ".log", ".5", ".com", ".2.1"


def keep_dotted_word(text: str, end: int) -> int:
    """The span's end, moved past the rest of a word it stops inside at a period: a file name, a
    number or a domain ("/var/log/orbit/access" -> "/var/log/orbit/access.log", "3" -> "3.5").

    A reader trained on SQuAD's prose, where a period mostly ends a sentence, can stop there: one
    trained on all of train-v1.1 answered "Where are the logs written?" with "/var/log/orbit/access"
    (0.61; eval/results/reader-full-cpu-2026-12-03.md). Of the 87,599 SQuAD train answers, 6 end where
    this moves them (5 of them numbers such as "91" of "91.04 percent") and 1,453 hold such a word
    whole. A capital after the period ("Allah.So") is a missing space, and stays a break."""
    if end > 0 and text[end - 1].isalnum() and (tail := _DOTTED_TAIL.match(text, end)):
        return tail.end()
    return end


def keep_abbreviation_period(text: str, start: int, end: int) -> int:
    """The span's end, moved past the final period of a dotted abbreviation ("10 a.m" -> "10 a.m.").

    The tokenizer makes each period a token of its own and the model often ends a span before the
    last one; the period belongs to the answer as written.
    """
    if end < len(text) and text[end] == "." and _DOTTED_END.search(text[start:end]):
        return end + 1
    return end


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto": on a GPU, bfloat16 where it computes it; on a CPU, float32 in ONNX Runtime, which
    starts without importing torch (a cold `rag ask` on such a CPU measured faster that way than
    with PyTorch's bfloat16, whose per-passage speed only pays in a long-running process:
    eval/results/startup-2026-12-03.md). `RAG_READER_DTYPE=bfloat16` chooses PyTorch's."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "float32"


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 natively (so faster than float32): used where the
    process runs long enough for it to pay, such as embedding documents."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_avx512_bf16()


@functools.lru_cache(maxsize=32)
def _band(length: int, max_answer_tokens: int) -> np.ndarray:
    """Pairs (start, end) with start <= end < start + max_answer_tokens; cached per window length."""
    ones = np.ones((length, length), dtype=bool)
    return np.triu(ones) & ~np.triu(ones, max_answer_tokens)


def window_log_probs(logits: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Log-probabilities over each window's context tokens plus [CLS] (token 0, "no answer"); every
    other token (question, separators, padding) gets none. The reader's scores and a teacher's soft
    targets (eval/training/distill.py) both come from this."""
    allowed = context.copy()
    allowed[:, 0] = True
    masked = np.where(allowed, logits.astype(np.float32), np.finfo(np.float32).min)
    top = masked.max(axis=-1, keepdims=True)
    return masked - top - np.log(np.exp(masked - top).sum(axis=-1, keepdims=True))


def no_answer_probs(start_logits: np.ndarray, end_logits: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Each window's probability of "no answer": [CLS] as both start and end, in the same softmax as
    the spans (`window_log_probs`)."""
    return np.exp(window_log_probs(start_logits, context)[:, 0] + window_log_probs(end_logits, context)[:, 0])


def decode_spans(start_logits: np.ndarray, end_logits: np.ndarray, context: np.ndarray,
                 max_answer_tokens: int, top_n: int) -> list[tuple[int, int, int, float]]:
    """(window, start token, end token, probability) of the top spans inside the context of each window.

    Probabilities come from a softmax over the context tokens plus [CLS] (token 0, "no answer").
    """
    windows, length = start_logits.shape
    log_ps, log_pe = window_log_probs(start_logits, context), window_log_probs(end_logits, context)
    with np.errstate(over="ignore"):  # two masked tokens' log-probabilities add up to -inf: never a span
        pair = log_ps[:, :, None] + log_pe[:, None, :]
    valid = _band(length, max_answer_tokens)[None] & context[:, :, None] & context[:, None, :]
    pair = np.where(valid, pair, -np.inf).reshape(windows, -1)
    k = min(top_n, length * length)
    spans = []
    for w in range(windows):
        best = np.argpartition(-pair[w], k - 1)[:k] if k < pair.shape[1] else np.arange(pair.shape[1])
        for index in sorted(best.tolist(), key=lambda i: (-pair[w, i], i)):
            score = pair[w, index]
            if score == -np.inf:
                break
            spans.append((w, index // length, index % length, float(np.exp(score))))
    return spans
