"""Faster CPU inference: a transformers model exported once to ONNX and run by ONNX Runtime.

For the short inputs of a question (one query, one passage) ONNX Runtime is faster than eager
PyTorch in float32: on an AVX2-only EPYC the reader took 27 ms instead of 31 ms for one 128-token
passage and the question embedding 7 ms instead of 15; on an AVX-512 EPYC 18.5 ms instead of 21.5
(eval/results/reader-speed-2026-11-25.json). Above all it starts without torch: an export is
cached on disk under a name made from the model folder's files and the library versions
(`model_cache.py`), so a later process finds it without loading the model, and a cold
`rag ask` imports neither torch nor transformers (eval/results/startup-2026-12-03.md). Only the
first start with a new model pays for the export (about 2 s per model). Nothing here imports
torch except the export itself."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .model_cache import CacheEntry, publish


class OnnxModel:
    """An ONNX Runtime session called like the model it came from, returning numpy outputs."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: library code stays quiet
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs: np.ndarray) -> list[np.ndarray]:
        feed = {name: np.asarray(inputs[name]) for name in self.input_names}
        return self.session.run(None, feed)


def onnx_for(model, sample: dict, outputs: list[str], cache_dir: Path | None,
             entry: CacheEntry | None = None) -> OnnxModel | None:
    """`model` under ONNX Runtime, exported (atomically) into `cache_dir` unless already there.

    `sample` is a tokenizer's output for any input; `outputs` name the fields of the model's
    output to keep; `entry` names the export and the folder it is made from (default: a fingerprint
    of the loaded weights). Batch and sequence length stay dynamic. None (with a warning) when the
    model cannot be exported: it then simply runs in PyTorch.
    """
    if cache_dir is None:
        return None
    try:
        return _export_cached(model, sample, outputs, cache_dir, entry)
    except Exception as exc:  # an architecture the exporter cannot trace, a read-only cache, ...
        warnings.warn(f"ONNX Runtime not used for {type(model).__name__} ({exc}); running it in PyTorch.",
                      stacklevel=2)
        return None


def _export_cached(model, sample: dict, outputs: list[str], cache_dir: Path, entry: CacheEntry | None) -> OnnxModel:
    import torch

    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{entry.name if entry else _fingerprint(model, inputs, outputs)}.onnx"
    if path.is_file():
        try:
            return OnnxModel(path, threads=session_threads())
        except Exception:  # a damaged file ONNX Runtime cannot read: made again, in its place
            pass
    axes = {name: {0: "batch", 1: "sequence"} for name in [*inputs, *outputs]}
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=cache_dir)
    os.close(fd)
    try:
        # The tracer warns about every Python-level branch it freezes (mask shapes, causal flags):
        # expected for these encoders, and nothing a user of `rag ask` can act on.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_named(model, inputs, outputs), tuple(sample[n] for n in inputs), tmp,
                              input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=17,
                              dynamo=False)
        publish(Path(tmp), path, entry)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return OnnxModel(path, threads=session_threads())


def quantized(model: OnnxModel) -> OnnxModel:
    """The int8 form of an exported graph, written beside it once (atomically): the weights of its
    matrix products stored in int8, the activations quantized on the fly (ONNX Runtime's dynamic
    quantization, the counterpart of PyTorch's `quantize_dynamic`)."""
    path = model.path
    out = path.with_name(f"{path.stem}-int8.onnx")
    if not out.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            prepared, quantized_tmp = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
            # The graph fused and its shapes inferred first, as ONNX Runtime advises (its symbolic shape
            # inference does not complete on these encoders).
            quant_pre_process(path, prepared, skip_symbolic_shape=True)
            quantize_dynamic(prepared, quantized_tmp, weight_type=QuantType.QInt8)
            os.replace(quantized_tmp, out)
    return OnnxModel(out, session_threads())


def session_threads() -> int:
    """As many threads as cores this process may run on (what PyTorch takes by default here)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.cache
def cpu_has_avx512_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16), read without importing torch."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512_bf16" in line.split() for line in f)
    except OSError:  # not Linux: ask torch
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported())


def _named(model, inputs: list[str], outputs: list[str]):
    """Positional tensors in, the named output fields out: the plain interface ONNX export needs."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(**dict(zip(inputs, tensors)))
            return tuple(getattr(out, name) for name in outputs)

    return Named()


def _fingerprint(model, inputs: list[str], outputs: list[str]) -> str:
    """Changes with the weights, the architecture, the interface and the exporting libraries."""
    import onnxruntime
    import torch
    import transformers

    h = hashlib.sha256()
    h.update(repr((type(model).__name__, inputs, outputs, torch.__version__, transformers.__version__,
                   onnxruntime.__version__)).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
