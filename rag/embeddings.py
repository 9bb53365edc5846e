"""Sentence embeddings for chunks and questions (sentence-transformers), loaded on first use."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from pathlib import Path

import numpy as np

from .config import available_device
from .model_cache import cache_entry

if TYPE_CHECKING:
    from .runtime import OnnxModel


@dataclass
class QueryRuntime:
    """The question encoder in ONNX Runtime. With a `tokenizer` it runs without sentence-transformers
    (a model of plain mean pooling whose export is cached: a cold `rag ask` then skips importing and
    building a SentenceTransformer, about 1 s of its 6); without one, the loaded model's own
    tokenizing and pooling modules run around it."""

    onnx: "OnnxModel"
    tokenizer: Any = None
    max_length: int = 0


class Embedder:
    """Holds the settings; the model loads on the first `encode` and stays loaded."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 16, backend: str = "torch",
                 cache_dir: Path | None = None, dtype: str = "float32"):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype  # "float32", "bfloat16" (autocast), or "auto": bfloat16 where the hardware has it
        self.backend = backend  # "onnx": questions are encoded by ONNX Runtime on CPU (faster)
        self.cache_dir = cache_dir
        self._model = None
        self._onnx: QueryRuntime | None = None
        self._onnx_tried = False
        self._last_query: tuple[str, np.ndarray] | None = None  # (question, vector)
        self._lock = threading.Lock()

    def load(self):
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()
                self._model = SentenceTransformer(self.model_name, device=available_device(self.device))
        return self._model

    def _query_runtime(self) -> QueryRuntime | None:
        """The ONNX Runtime copy of the transformer, made on the first question (indexing never needs it)."""
        with self._lock:
            if self._onnx_tried:  # once: None afterwards means it runs in PyTorch
                return self._onnx
        runtime = None
        if self.backend == "onnx" and self.device == "cpu" and self.cache_dir is not None:
            max_length = plain_mean_pooling(self.model_name)
            entry = cache_entry(Path(self.model_name), "query-embedder") if max_length else None
            if entry is not None and (self.cache_dir / f"{entry.name}.onnx").is_file():
                runtime = self._cached_runtime(self.cache_dir / f"{entry.name}.onnx", max_length)
            if runtime is None:
                model = self.load()
                if hasattr(model[0], "auto_model"):
                    from .runtime import onnx_for

                    # The transformer alone; pooling and normalising stay sentence-transformers' modules.
                    onnx = onnx_for(model[0].auto_model, model.preprocess(["a question"]), ["last_hidden_state"],
                                    self.cache_dir, entry)
                    runtime = QueryRuntime(onnx) if onnx is not None else None
        with self._lock:
            if not self._onnx_tried:
                self._onnx, self._onnx_tried = runtime, True
            return self._onnx

    def _cached_runtime(self, path: Path, max_length: int) -> QueryRuntime | None:
        """The fast path, or None when the cached export cannot be opened (a damaged file: the
        model is then loaded, and onnx_for exports it again)."""
        from tokenizers import Tokenizer

        from .runtime import OnnxModel, session_threads

        try:
            tokenizer = Tokenizer.from_file(str(Path(self.model_name) / "tokenizer.json"))
            tokenizer.enable_padding()  # a batch padded to its longest text; the mask keeps padding out
            tokenizer.enable_truncation(max_length)
            return QueryRuntime(OnnxModel(path, session_threads()), tokenizer, max_length)
        except Exception:  # a damaged file: whatever ONNX Runtime raises for it
            return None

    @property
    def dimension(self) -> int:
        model = self.load()
        return (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()

    def encode(self, texts: list[str], progress: bool = False, dtype: str | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (inner product = cosine), computed in
        `dtype` (default: the embedder's)."""
        import torch

        from .reader import native_bf16

        if dtype is None:
            dtype = self.dtype
        model = self.load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        bf16 = dtype == "bfloat16" or (dtype == "auto" and native_bf16(self.device))
        with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16, enabled=bf16):
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One unit vector for a question: the latency-critical call, so the fastest runtime. The last
        question's vector is kept (read-only): retrieval, the relevance gate and a yes/no question's
        closest sentence all ask for it within one `ask()`."""
        last = self._last_query
        if last is not None and last[0] == text:
            return last[1]
        vector = self.encode_few([text])[0]
        vector.flags.writeable = False
        self._last_query = (text, vector)
        return vector

    def encode_few(self, texts: list[str], batch_size: int = 8) -> np.ndarray:
        """Unit vectors, in float32, for the few texts an answer compares with its question (the
        question itself, the retrieved passages' sentences), in the question's runtime: once the
        export is cached that is ONNX Runtime alone, so no question loads PyTorch (a yes/no question
        did: a cold `rag ask` of one took 4.7 s instead of 0.6)."""
        if not texts:
            raise ValueError("encode_few needs at least one text")
        runtime = self._query_runtime()
        if runtime is None:
            return self.encode(texts, dtype="float32")  # as precise as ONNX Runtime's
        # Shortest first, a few at a time: a batch is padded to its longest text, and that padding is
        # what costs (a news article's 28 sentences: 74 ms so, 128 ms in one batch, on a 2-core Xeon).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = [self._onnx_vectors(runtime, [texts[i] for i in order[j:j + batch_size]])
                 for j in range(0, len(order), batch_size)]
        vectors = np.empty((len(texts), parts[0].shape[1]), np.float32)
        vectors[order] = np.concatenate(parts)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # like encode()

    def _onnx_vectors(self, runtime: QueryRuntime, texts: list[str]) -> np.ndarray:
        """The transformer in ONNX Runtime, then mean pooling: ours over the tokenizer's output when
        the runtime has one (texts padded to the longest, the padding masked out of attention and
        mean), else the loaded model's own tokenizing and pooling modules."""
        if runtime.tokenizer is not None:  # as sentence-transformers tokenizes (stripped) and mean-pools
            encodings = runtime.tokenizer.encode_batch([text.strip() for text in texts])
            features = {name: np.array([getattr(e, field) for e in encodings], np.int64) for name, field in
                        (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))}
            tokens = runtime.onnx(**features)[0]
            mask = features["attention_mask"].astype(np.float32)[:, :, None]
            return ((tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)).astype(np.float32)
        import torch

        model = self.load()
        features = model.preprocess(texts)
        arrays = {k: v.numpy() for k, v in features.items() if isinstance(v, torch.Tensor)}
        features["token_embeddings"] = torch.from_numpy(runtime.onnx(**arrays)[0])
        with torch.inference_mode():
            for module in list(model)[1:]:  # pooling (and whatever else the model has), as encode() does
                features = module(features)
        return features["sentence_embedding"].numpy().astype(np.float32)


MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
           "sentence_transformers.models.Normalize"]


def plain_mean_pooling(model: str) -> int:
    """The model's maximum sequence length if it is a local sentence-transformers folder whose
    modules are a transformer, mean pooling and (optionally) normalising, with no prompt and no
    lower-casing of its own: then tokenizer, ONNX graph and a mean are all of it. 0 otherwise."""
    folder = Path(model)
    try:
        listed = json.loads((folder / "modules.json").read_text())
        modules = [m["type"] for m in listed]
        pooling = json.loads((folder / listed[1]["path"] / "config.json").read_text())
        settings = json.loads((folder / "sentence_bert_config.json").read_text())
        extra = folder / "config_sentence_transformers.json"
        prompts = json.loads(extra.read_text()) if extra.is_file() else {}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return 0
    modes = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_")}
    plain = (modules in (MODULES, MODULES[:2]) and modes.get("pooling_mode_mean_tokens") is True
             and not any(v for k, v in modes.items() if k != "pooling_mode_mean_tokens")
             and not settings.get("do_lower_case") and not prompts.get("default_prompt_name")
             and not any(prompts.get("prompts", {}).values()))
    return int(settings.get("max_seq_length") or 0) if plain else 0
