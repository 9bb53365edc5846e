"""Choose the engine's answering settings on the tuning split, replaying `Engine.ask` from cached model calls.

For each chunking, every question of SQuAD train articles 28-37 (1.1, and 2.0 for abstention) goes
through the real `Engine.ask` under each setting of top_k, early stop, rank decay and similarity gate; the
embedder's and the reader's outputs are memoised, so a setting costs no model time. What a setting
costs is counted as the tokens the reader is given (batch width × windows), which is what latency
follows on CPU. Off-corpus questions (the same questions asked of the seed article) show what the
similarity gate catches. The shipped reader never saw these articles (its training leaves them out).

    .venv/bin/python eval/sweep_engine.py --chunks 800:200 500:100
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.evaluation.datasets import squad_split  # noqa: E402
from rag.evaluation.metrics import best_threshold, score_answer  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from logit_store import LogitStore  # noqa: E402  (eval/, beside this script)
from sweep_retrieval import emit, retriever_for, save  # noqa: E402


class Memo:
    """Memoises the engine's embedder calls and the reader's logits per window (`LogitStore`, on disk
    under `logits` when given), and counts the reader tokens of each ask. Everything after the model
    (windows, decoding, the span rules, the engine's weighting and early stop) runs for real each time."""

    def __init__(self, engine: Engine, logits: Path | None = None):
        self.tokens = 0
        self.reads = 0
        encode_few, read, reader = engine.embedder.encode_few, engine.reader.read, engine.reader
        reader.load()
        self.store = LogitStore(reader.model_name, logits)
        compute = reader._logits
        cache: dict = {}

        def cached_encode_few(texts, batch_size=8):  # questions and sentences, each embedded once
            missing = [t for t in dict.fromkeys(texts) if t not in cache]
            if missing:
                cache.update(zip(missing, encode_few(missing, batch_size)))
            return np.stack([cache[t] for t in texts])

        def counted_read(question, passages, top_n=3, exclude=None):
            self.tokens += reader.windows(question, passages).inputs["input_ids"].size  # as padded
            self.reads += 1
            return read(question, passages, top_n, exclude)

        engine.embedder.encode_few, engine.reader.read = cached_encode_few, counted_read
        reader._logits = lambda inputs: self.store.logits(inputs, compute)


def run(engine: Engine, memo: Memo, items, corpus) -> dict:
    rows = []
    for item in items:
        memo.tokens = memo.reads = 0
        answer = engine.ask(item.question, index=corpus)
        em, f1 = score_answer(answer.text, answer.abstained, item.answers, item.answerable)
        # "score": what the abstention threshold tests (the answer against the reader's "no answer").
        rows.append({"text": answer.text, "em": em, "f1": f1, "score": answer.against_no_answer,
                     "answerable": item.answerable,
                     "abstained": answer.abstained, "tokens": memo.tokens, "reads": memo.reads,
                     "similarity": max((p.similarity for p in answer.passages), default=0.0)})
    return rows


def threshold_within(rows: list[dict], max_cost: float = 5.0) -> tuple[float, float, float]:
    """The highest abstention threshold costing at most `max_cost` answerable F1 (points), with the
    answerable F1 and the unanswerable accuracy (%) at it."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    full = 100 * statistics.mean(r["f1"] for r in answerable)
    best = (0.0, full, 0.0)
    for t in sorted({round(r["score"], 3) for r in rows}):
        f1 = 100 * statistics.mean(r["f1"] if r["score"] >= t else 0.0 for r in answerable)
        if f1 < full - max_cost:
            break
        best = (t, f1, 100 * statistics.mean(r["score"] < t for r in unanswerable))
    return best


def f1_at(rows: list[dict], threshold: float) -> float:
    """F1 (%) abstaining under `threshold`: an answerable question scores its F1 when answered, an
    unanswerable one 1 when abstained (SQuAD 2.0's scoring)."""
    return 100 * statistics.mean((r["f1"] if r["score"] >= threshold else 0.0) if r["answerable"]
                                 else float(r["score"] < threshold) for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", nargs="+", default=["800:200", "500:100"], help="size:overlap in characters")
    # All of them by default: on a 400-question sample of each set the threshold rule gave 0.130, on
    # all of them 0.082 (eval/results/threshold-full-tuning-2026-12-04.md). The model calls are
    # memoised, so each setting after the first costs about half a minute either way.
    p.add_argument("--limit", type=int, default=0, help="questions per set, every k-th (0: all)")
    p.add_argument("--top-k", type=int, nargs="+", default=[1, 2, 3, 5], help="passages read at most")
    p.add_argument("--stops", type=lambda v: math.inf if v == "none" else float(v), nargs="+",
                   default=[math.inf, 0.3, 0.5, 0.7, 0.9],
                   help="early-stop scores to try; 'none' reads all top_k passages at once")
    p.add_argument("--first-reads", type=int, nargs="+", default=[1],
                   help="passages read in the first batch, before the early-stop check")
    p.add_argument("--decays", type=float, nargs="+", default=[1.0],
                   help="rank_decay values to try (weight of later passages' spans per rank)")
    p.add_argument("--overlap-weights", type=float, nargs="+", default=[0.0],
                   help="sentence_overlap_weight values to try (how much a span's sentence sharing the "
                        "question's words counts)")
    p.add_argument("--fusions", nargs="+", default=["convex:0.7"],
                   help="retrieval fusions to try: 'convex:W' (W = the cosine's weight), 'rrf', 'dense' or 'bm25'")
    p.add_argument("--no-gate", action="store_true", help="skip the similarity-gate table")
    p.add_argument("--reader", default=None)
    p.add_argument("--embedding-model", default=None,
                   help="a sentence-transformers name or folder (default: the shipped all-MiniLM-L6-v2)")
    p.add_argument("--whole-articles", action="store_true",
                   help="index each article as one document (chunks then run across paragraphs, as in a "
                        "user's documents) instead of one document per paragraph")
    p.add_argument("--logits", type=Path, default=None,
                   help="a folder keeping the reader's logits per window (resumes a stopped sweep; "
                        "shared with eval/sweep_rules.py --logits for the same reader)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "engine-sweep.json")
    args = p.parse_args()
    v1, v2 = squad_split(args.data, "tune", whole_articles=args.whole_articles)
    def pick(items):  # every k-th question, `limit` in all (0: all)
        return items if args.limit <= 0 else items[:: max(1, len(items) // args.limit)][: args.limit]

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.chunks:
            size, overlap = map(int, spec.split(":"))
            engine = Engine(Config(index_dir=Path(tmp), chunk_size=size, chunk_overlap=overlap,
                                   reader_model=args.reader, embedding_model=args.embedding_model,
                                   min_similarity=-1.0, abstain_threshold=0.0))
            memo = Memo(engine, args.logits)
            corpora = {name: engine.library.build_corpus([make_document(n, t) for n, t in s.documents])
                       for name, s in (("v1", v1), ("v2", v2))}
            seed = engine.index("seed")
            t0 = time.time()
            for fusion, k, stop, decay, first, weight in itertools.product(
                    args.fusions, args.top_k, args.stops, args.decays, args.first_reads, args.overlap_weights):
                read_all = math.isinf(stop)
                if (k == 1 and (not read_all or decay != 1.0)) or (first > 1 and (read_all or first >= k)):
                    continue
                engine.config = engine.config.with_(top_k=k, early_stop_score=stop,
                                                    rank_decay=decay, first_read=first, sentence_overlap_weight=weight)
                engine.retriever = retriever_for(engine, fusion)
                a = run(engine, memo, pick(v1.items), corpora["v1"])
                b = run(engine, memo, pick(v2.items), corpora["v2"])
                thr, v2_f1 = best_threshold([r["score"] for r in b], [r["answerable"] for r in b],
                                            [r["f1"] for r in b])
                t5, ans_f1, unans = threshold_within(b)
                res = {"embedding_model": engine.config.embedding_model_id, "chunk": spec, "fusion": fusion,
                       "top_k": k, "early_stop": None if read_all else stop, "first_read": first, "rank_decay": decay,
                       "overlap_weight": weight,
                       "v1_em": round(100 * statistics.mean(r["em"] for r in a), 1),
                       "v1_f1": round(100 * statistics.mean(r["f1"] for r in a), 1),
                       "v1_f1_at_rule": round(f1_at(a, t5), 1),  # SQuAD 1.1 end to end at the rule's threshold
                       "tokens_p50": statistics.median(r["tokens"] for r in a),
                       "tokens_mean": round(statistics.mean(r["tokens"] for r in a)),
                       "one_read": round(100 * statistics.mean(r["reads"] == 1 for r in a), 1),
                       "v2_best_threshold": round(thr, 3), "v2_f1_at_best": round(v2_f1, 1),
                       "threshold_cost5": t5, "v2_answerable_f1_at_it": round(ans_f1, 1),
                       "v2_unanswerable_accuracy_at_it": round(unans, 1),
                       "v2_f1_at_it": round(f1_at(b, t5), 1)}
                results.append(res)
                memo.store.flush()
                print(json.dumps(res), f"{time.time() - t0:.0f}s", flush=True)
            if args.no_gate:
                continue
            # The similarity gate: best-passage cosine for questions whose article is indexed vs not.
            engine.config = engine.config.with_(top_k=3, early_stop_score=math.inf)
            own = [max(p.similarity for p in engine.retriever.retrieve(corpora["v1"], i.question, 3))
                   for i in pick(v1.items)]
            off = [max(p.similarity for p in engine.retriever.retrieve(seed, i.question, 3)) for i in pick(v1.items)]
            for cut in (0.15, 0.2, 0.25, 0.3, 0.35):
                res = {"chunk": spec, "min_similarity": cut,
                       "answerable_lost": round(100 * statistics.mean(s < cut for s in own), 1),
                       "off_corpus_caught": round(100 * statistics.mean(s < cut for s in off), 1)}
                emit(results, res)
    save(results, args.out)


if __name__ == "__main__":
    main()
