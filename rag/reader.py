"""The extractive reader: finds answer spans in passages with an `AutoModelForQuestionAnswering`.

transformers 5 has no question-answering pipeline, so spans are decoded here from the start/end
logits, mapped back to characters with the fast tokenizer's offsets. Scores are per-window
probabilities: a softmax over the window's context tokens *and* its [CLS] "no answer" slot, so a
window that holds no answer pushes its mass to [CLS] and its spans score low. That makes scores
comparable across passages and usable for abstention.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import available_device
from .runtime import onnx_for


@dataclass(frozen=True)
class ReaderSpan:
    """A span in one of the passages given to `Reader.read`, in that passage's character offsets."""

    passage: int
    start: int
    end: int
    score: float  # P(start) * P(end) within the window


class Reader:
    """Holds the settings; `load()` (or the first `read`) loads the model, once."""

    def __init__(self, model: str, device: str = "cpu", max_seq_length: int = 384, doc_stride: int = 128,
                 max_answer_tokens: int = 30, max_question_tokens: int = 64, quantize: bool = False,
                 dtype: str = "float32", backend: str = "torch", cache_dir: Path | None = None):
        self.model_name = model
        self.device = device
        self.backend = backend  # "onnx": run by ONNX Runtime on CPU (faster); "torch": eager PyTorch
        self.cache_dir = cache_dir
        self.max_seq_length = max_seq_length
        self.doc_stride = doc_stride
        self.max_answer_tokens = max_answer_tokens
        self.max_question_tokens = max_question_tokens
        self.quantize = quantize
        self.dtype = dtype  # "float32", "bfloat16", or "auto" (bfloat16 where the hardware has it)
        self._model = None
        self._onnx = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # library code stays quiet; errors still raise
            hf_logging.disable_progress_bar()
            tokenizer = AutoTokenizer.from_pretrained(self.model_name)
            if not tokenizer.is_fast:
                raise ValueError(f"Reader '{self.model_name}' needs a fast tokenizer (for character offsets).")
            # float32 on CPU: the shipped weights are float16 on disk only to keep the package small.
            model = AutoModelForQuestionAnswering.from_pretrained(self.model_name, dtype=torch.float32)
            model.eval().to(available_device(self.device))
            if self.quantize and self.device == "cpu":  # asked for explicitly, so it wins over "auto"
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            elif resolve_dtype(self.dtype, self.device) == "bfloat16":
                model = model.to(torch.bfloat16)  # run in PyTorch: ONNX Runtime has no fast bf16 on CPU
            elif self.backend == "onnx" and self.device == "cpu":
                self._onnx = onnx_for(model, tokenizer(["question"], ["passage"], return_tensors="pt"),
                                      ["start_logits", "end_logits"], self.cache_dir)
            self._tokenizer, self._model = tokenizer, model

    def read(self, question: str, passages: list[str], top_n: int = 3,
             exclude: list[list[tuple[int, int]]] | None = None) -> list[ReaderSpan]:
        """The best `top_n` spans of every window of every passage, best first.

        `exclude` gives, per passage, character ranges that are read but cannot hold the answer
        (their tokens leave the softmax, so the probability goes to the rest of the window)."""
        if not passages:
            return []
        self.load()
        tok = self._tokenizer
        q_ids = tok(question, add_special_tokens=False)["input_ids"]
        if len(q_ids) > self.max_question_tokens:
            question = tok.decode(q_ids[: self.max_question_tokens])
        # Pairs: question first, passage second; windows overlap by doc_stride tokens.
        enc = tok(
            [question] * len(passages), passages,
            truncation="only_second", max_length=self.max_seq_length, stride=self.doc_stride,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
        )
        window_passage = enc["overflow_to_sample_mapping"].tolist()
        offsets = enc["offset_mapping"].tolist()
        context = torch.tensor(
            [[sid == 1 for sid in enc.sequence_ids(w)] for w in range(len(window_passage))], dtype=torch.bool
        )
        if exclude:
            first, last = enc["offset_mapping"].unbind(-1)  # each token's characters in its passage
            for w, p in enumerate(window_passage):
                for r0, r1 in exclude[p]:
                    context[w] &= ~((first[w] >= r0) & (last[w] <= r1))
        inputs = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        if self._onnx is not None:
            start_logits, end_logits = (torch.from_numpy(x) for x in self._onnx(**inputs))
        else:
            with torch.inference_mode():
                out = self._model(**inputs)
            start_logits, end_logits = out.start_logits.float().cpu(), out.end_logits.float().cpu()
        spans = decode_spans(start_logits, end_logits, context, self.max_answer_tokens, top_n)
        result = []
        for w, s, e, p in spans:
            text, start = passages[window_passage[w]], offsets[w][s][0]
            end = keep_abbreviation_period(text, start, offsets[w][e][1])
            result.append(ReaderSpan(passage=window_passage[w], start=start, end=end, score=p))
        result.sort(key=lambda r: r.score, reverse=True)
        return result


_DOTTED_END = re.compile(r"(?:\b[A-Za-z]\.)+[A-Za-z]$")  # "a.m", "U.S", "D.C": their last period left out


def keep_abbreviation_period(text: str, start: int, end: int) -> int:
    """The span's end, moved past the final period of a dotted abbreviation ("10 a.m" -> "10 a.m.").

    The tokenizer makes each period a token of its own and the model often ends a span before the
    last one; the period belongs to the answer as written.
    """
    if end < len(text) and text[end] == "." and _DOTTED_END.search(text[start:end]):
        return end + 1
    return end


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" becomes bfloat16 only where it is computed natively, so faster than float32."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device == "cpu" and torch.cpu._is_avx512_bf16_supported() else "float32"


@functools.lru_cache(maxsize=32)
def _band(length: int, max_answer_tokens: int) -> torch.Tensor:
    """Pairs (start, end) with start <= end < start + max_answer_tokens; cached per window length."""
    ones = torch.ones(length, length, dtype=torch.bool)
    return ones.triu() & ~ones.triu(max_answer_tokens)


def window_log_probs(logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over each window's context tokens plus [CLS] (token 0, "no answer"); every
    other token (question, separators, padding) gets none. The reader's scores and a teacher's soft
    targets (eval/training/distill.py) both come from this."""
    allowed = context.clone()
    allowed[:, 0] = True
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min).log_softmax(-1)


def decode_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, context: torch.Tensor,
                 max_answer_tokens: int, top_n: int) -> list[tuple[int, int, int, float]]:
    """(window, start token, end token, probability) of the top spans inside the context of each window.

    Probabilities come from a softmax over the context tokens plus [CLS] (token 0, "no answer").
    """
    windows, length = start_logits.shape
    log_ps, log_pe = window_log_probs(start_logits, context), window_log_probs(end_logits, context)
    pair = log_ps[:, :, None] + log_pe[:, None, :]
    valid = _band(length, max_answer_tokens)[None] & context[:, :, None] & context[:, None, :]
    pair = pair.masked_fill(~valid, float("-inf"))
    k = min(top_n, length * length)
    best, flat = pair.view(windows, -1).topk(k, dim=-1)
    spans = []
    for w in range(windows):
        for score, index in zip(best[w].tolist(), flat[w].tolist()):
            if score == float("-inf"):
                break
            spans.append((w, index // length, index % length, float(torch.tensor(score).exp())))
    return spans
