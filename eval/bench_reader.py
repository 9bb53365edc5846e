"""Reader speed on CPU: milliseconds per passage, per runtime and weight format.

Two shapes: the issue's 256-token passages in batches of 8, and what `ask()` mostly runs (one
128-token question + passage). Formats: float32 and int8 (PyTorch), bfloat16, and float32 and int8
under ONNX Runtime (the engine's default backend on CPU).

    .venv/bin/python eval/bench_reader.py [--reader PATH ...] [--repeats 30] [--out FILE]

Several readers are timed side by side in one run, so their ratio holds whatever the machine; a
reader may be a low-rank change to an encoder (rag/low_rank.py), timed as the engine rebuilds it.
Prints one JSON line per reader and format (median and p95 over repeats, after warm-up) and writes
eval/results/reader-speed-DATE.json (or --out). Pair it with `rag eval squad` (RAG_READER_QUANTIZE=1 for int8 in
ONNX Runtime, with RAG_BACKEND=torch in PyTorch) to see what each format costs in F1.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import SHIPPED_READER  # noqa: E402
from rag.evaluation.report import machine  # noqa: E402


def _batch(n: int, tokens: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(1000, 20000, (n, tokens)), "attention_mask": torch.ones(n, tokens, dtype=torch.long),
            "token_type_ids": torch.zeros(n, tokens, dtype=torch.long)}


BATCHES = [_batch(8, 256), _batch(1, 128)]


def load(reader: str, fmt: str):
    """The model in `fmt`, and the inputs it takes (MPNet takes no token types)."""
    from transformers import AutoModelForQuestionAnswering

    from rag.config import Config
    from rag.low_rank import resolved

    model = AutoModelForQuestionAnswering.from_pretrained(resolved(reader, Config().cache_dir / "readers"),
                                                          dtype=torch.float32).eval()
    takes = [k for k in BATCHES[0] if k in inspect.signature(model.forward).parameters]
    if fmt in ("onnx-float32", "onnx-int8"):
        from rag.runtime import onnx_for, quantized

        sample = {k: BATCHES[0][k][:1, :8] for k in takes}
        export = onnx_for(model, sample, ["start_logits", "end_logits"], Config().cache_dir / "onnx")
        return (quantized(export) if fmt == "onnx-int8" else export), takes
    if fmt == "int8-dynamic":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif fmt == "bfloat16":
        model = model.to(torch.bfloat16)
    return model, takes


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reader", nargs="+", default=[str(SHIPPED_READER)])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--formats", default="float32,onnx-float32,onnx-int8,int8-dynamic,bfloat16")
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / f"reader-speed-{time.strftime('%Y-%m-%d')}.json")
    args = p.parse_args()
    results = []
    for fmt in args.formats.split(","):
        for reader in args.reader:
            model, takes = load(reader, fmt)
            for batch in BATCHES:
                n, tokens = batch["input_ids"].shape
                inputs = {k: batch[k] for k in takes}
                times = []
                with torch.inference_mode():
                    for i in range(args.repeats + 3):
                        t0 = time.perf_counter()
                        model(**inputs)
                        if i >= 3:
                            times.append((time.perf_counter() - t0) * 1000 / n)
                row = {"reader": reader, "format": fmt, "ms_per_passage_median": statistics.median(times),
                       "ms_per_passage_p95": sorted(times)[int(0.95 * (len(times) - 1))], "repeats": args.repeats,
                       "batch": n, "tokens": tokens}
                print(json.dumps(row), flush=True)
                results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "readers": args.reader, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
