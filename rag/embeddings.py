"""Sentence embeddings for chunks and questions (sentence-transformers), loaded on first use."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

if TYPE_CHECKING:
    from .runtime import OnnxModel


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
        self._onnx = None
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
                self._model = SentenceTransformer(self.model_name, device=self.device)
        return self._model

    def _query_runtime(self) -> "OnnxModel | None":
        """The ONNX Runtime copy of the transformer, made on the first question (indexing never needs it)."""
        model = self.load()
        with self._lock:
            if not self._onnx_tried and self.backend == "onnx" and self.device == "cpu" \
                    and hasattr(model[0], "auto_model"):
                from .runtime import onnx_for

                # The transformer alone; pooling and normalising stay sentence-transformers' own modules.
                self._onnx = onnx_for(model[0].auto_model, model.preprocess(["a question"]), ["last_hidden_state"],
                                      self.cache_dir)
            self._onnx_tried = True  # once: None afterwards means it runs in PyTorch
        return self._onnx

    @property
    def dimension(self) -> int:
        return self.load().get_sentence_embedding_dimension()

    def encode(self, texts: list[str], progress: bool = False, dtype: str | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (inner product = cosine), computed in
        `dtype` (default: the embedder's)."""
        import torch

        from .reader import resolve_dtype

        if dtype is None:
            dtype = self.dtype
        model = self.load()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        bf16 = resolve_dtype(dtype, self.device) == "bfloat16"
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
        vector = self._encode_query(text)
        vector.flags.writeable = False
        self._last_query = (text, vector)
        return vector

    def _encode_query(self, text: str) -> np.ndarray:
        runtime = self._query_runtime()
        if runtime is None:
            return self.encode([text], dtype="float32")[0]  # as precise as ONNX Runtime's
        import torch

        model = self.load()
        features = model.preprocess([text])
        features["token_embeddings"] = torch.from_numpy(runtime(**features)[0])
        with torch.inference_mode():
            for module in list(model)[1:]:  # pooling (and whatever else the model has), as encode() does
                features = module(features)
        vector = features["sentence_embedding"][0].numpy().astype(np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)  # unit length, like encode()
