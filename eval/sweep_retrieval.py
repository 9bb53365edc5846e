"""Compare retrieval fusions on the tuning split: how often the gold paragraph comes first, in the top 2, 3, 5.

Every question of SQuAD 1.1 train articles 28-37 is asked of an index of those articles' paragraphs (one
document each, chunked as the engine chunks) through the real `Retriever`; a question counts as found
at rank r when a chunk of its gold paragraph is the r-th passage (the runner's recall@k and MRR). No reader runs, so this takes minutes.

    .venv/bin/python eval/sweep_retrieval.py --fusions rrf convex:0.5 convex:0.7 dense bm25
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.evaluation.datasets import squad_split  # noqa: E402
from rag.evaluation.metrics import mean_reciprocal_rank, recall_at  # noqa: E402
from rag.retriever import Retriever  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402

DEPTHS = (1, 2, 3, 5, 10)


def retriever_for(engine: Engine, fusion: str) -> Retriever:
    """'rrf', 'convex:W', or one search alone: 'dense' (convex 1) or 'bm25' (convex 0)."""
    kind, _, weight = fusion.partition(":")
    if kind in ("dense", "bm25"):
        kind, weight = "convex", "1" if kind == "dense" else "0"
    if kind not in ("convex", "rrf"):
        raise SystemExit(f"unknown fusion {fusion!r}: use rrf, convex:W, dense or bm25")
    return Retriever(engine.embedder, candidates=engine.config.candidates, fusion=kind,
                     dense_weight=float(weight or engine.config.dense_weight), rrf_k=engine.config.rrf_k)


def emit(results: list[dict], row: dict) -> None:
    """Keep a result row and print it as one JSON line, so progress shows as it comes."""
    results.append(row)
    print(json.dumps(row), flush=True)


def save(results: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fusions", nargs="+", default=["rrf", "convex:0.5", "convex:0.6", "convex:0.7", "convex:0.8"])
    p.add_argument("--split", choices=["tune", "heldout"], default="tune",
                   help="tune (articles 28-37) to choose; heldout (38-47) only to report a choice")
    p.add_argument("--data", type=Path, default=default_data_dir(), help="SQuAD folder (default: ../shared/data/squad)")
    p.add_argument("--candidates", type=int, default=Config().candidates,
                   help="chunks each search (dense, BM25) hands to the fusion")
    p.add_argument("--embedding-model", default=None,
                   help="a sentence-transformers name or folder (default: the shipped all-MiniLM-L6-v2)")
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "retrieval-fusion.json")
    args = p.parse_args()
    if args.data is None:
        raise SystemExit("No SQuAD data: pass --data (the folder with dev-v1.1.json and dev-v2.0.json).")
    v1, _ = squad_split(args.data, args.split)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index_dir=Path(tmp), candidates=args.candidates, embedding_model=args.embedding_model))
        corpus = engine.library.build_corpus([make_document(n, t) for n, t in v1.documents])
        queries = {}
        encode = engine.embedder.encode_query
        engine.embedder.encode_query = lambda q: queries[q] if q in queries else queries.setdefault(q, encode(q))
        for fusion in args.fusions:
            retriever = retriever_for(engine, fusion)
            ranks = []
            for item in v1.items:
                passages = retriever.retrieve(corpus, item.question, max(DEPTHS))
                found = [r for r, p in enumerate(passages, start=1) if p.doc == item.gold_doc]
                ranks.append(found[0] if found else None)
            res = {"split": args.split, "embedding_model": engine.config.embedding_model_id, "fusion": fusion,
                   "candidates": args.candidates, "n": len(ranks),
                   "chunks": len(corpus.chunks)}
            res.update({f"recall@{k}": round(100 * recall_at(ranks, k), 1) for k in DEPTHS})
            res["mrr@10"] = round(mean_reciprocal_rank(ranks), 3)
            emit(results, res)
    save(results, args.out)


if __name__ == "__main__":
    main()
