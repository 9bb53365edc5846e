"""`rag eval`: a question set, `squad` (the reader alone on held-out SQuAD) or `squad-open` (the whole
pipeline over the held-out SQuAD paragraphs as a corpus). Writes JSON, markdown and plots."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..cli import reader_option
from ..config import PROJECT_DIR, Config
from ..errors import RagError
from ..squad import default_data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a .jsonl or SQuAD .json file, 'squad', or 'squad-open'")
    p.add_argument("--index", help="index to ask (JSONL sets; default: the seed article)")
    p.add_argument("--data", type=Path, help="SQuAD folder or file (default: ../shared/data/squad)")
    reader_option(p)
    p.add_argument("--top-k", type=int, help="passages read per question")
    p.add_argument("--threshold", type=float, help="abstention threshold (default: the configured one)")
    p.add_argument("--early-stop", type=_early_stop, metavar="SCORE|none",
                   help="stop after the first passage when its best span scores at least this; "
                        "'none' reads all top-k passages (default: the configured one)")
    p.add_argument("--first-read", type=int, metavar="N",
                   help="passages read in the first batch, before the early-stop check (default: the configured one)")
    p.add_argument("--rank-decay", type=_weight(low_open=True, example="0.8"), metavar="W",
                   help="weight of the spans of the passage at retrieval rank r: W**r, W in (0, 1]; "
                        "1 weighs all passages alike (default: the configured one)")
    p.add_argument("--overlap-weight", type=_weight(low_open=False, example="0.7"), metavar="W",
                   help="how much a span's sentence sharing the question's words counts, in [0, 1]; "
                        "0 turns it off (default: the configured one)")
    p.add_argument("--fusion", choices=["convex", "rrf"],
                   help="how dense and BM25 rankings combine (default: the configured one)")
    p.add_argument("--dense-weight", type=_weight(low_open=False, example="0.7"), metavar="W",
                   help="the cosine's weight in the convex fusion, in [0, 1] (default: the configured one)")
    p.add_argument("--chunk-size", type=int, help="characters per chunk, for indexes this run builds")
    p.add_argument("--chunk-overlap", type=int, help="characters shared by consecutive chunks")
    p.add_argument("--limit", type=int, default=0, help="evaluate every k-th question, N in all (0: all)")
    p.add_argument("--tune-limit", type=int, default=3000,
                   help="SQuAD 2.0 train-title questions used to choose the no-answer threshold")
    p.add_argument("--split", choices=["heldout", "tune", "dev"], default="heldout",
                   help="squad, squad-open: held-out articles 38-47 (report) or train articles 28-37 (tuning); "
                        "squad: 'dev', all of dev-v1.1 (10,570 questions), the setting of published results, "
                        "fair only to a reader trained on train-v1.1 alone")
    p.add_argument("--whole-articles", action="store_true",
                   help="squad-open: index each article as one document (chunks then run across paragraphs, "
                        "as in a user's documents) instead of one document per paragraph")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: eval/results)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the new-process cold-start timing")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the headline numbers")
    p.add_argument("--min-f1", type=float, help="exit 1 when F1 is below this")
    p.add_argument("--min-recall", type=float, help="exit 1 when recall@5 is below this")


def _early_stop(value: str) -> float:
    """A score, or 'none': never stop early (math.inf, as Config takes it)."""
    if value.lower() == "none":
        return math.inf
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score such as 0.3, or 'none', not {value!r}") from None


def _weight(low_open: bool, example: str):
    """An argparse type for a weight in [0, 1], or in (0, 1] with `low_open`."""
    def parse(value: str) -> float:
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not (0.0 < weight <= 1.0 if low_open else 0.0 <= weight <= 1.0):
            interval = "(0, 1]" if low_open else "[0, 1]"
            raise argparse.ArgumentTypeError(f"expected a weight in {interval} such as {example}, not {value!r}")
        return weight
    return parse


def run(args: argparse.Namespace, config: Config) -> int:
    from ..engine import Engine

    changes = {}
    if args.reader is not None:
        changes["reader_model"] = args.reader
    if args.top_k is not None:
        changes["top_k"] = args.top_k
    if args.threshold is not None:
        changes["abstain_threshold"] = args.threshold
    if args.early_stop is not None:
        changes["early_stop_score"] = args.early_stop
    if args.first_read is not None:
        changes["first_read"] = args.first_read
    if args.rank_decay is not None:
        changes["rank_decay"] = args.rank_decay
    if args.overlap_weight is not None:
        changes["sentence_overlap_weight"] = args.overlap_weight
    if args.fusion is not None:
        changes["fusion"] = args.fusion
    if args.dense_weight is not None:
        changes["dense_weight"] = args.dense_weight
    if args.chunk_size is not None:
        changes["chunk_size"] = args.chunk_size
    if args.chunk_overlap is not None:
        changes["chunk_overlap"] = args.chunk_overlap
    config = config.with_(**changes)
    engine = Engine(config)
    out_dir = args.out or (PROJECT_DIR / "eval" / "results" if (PROJECT_DIR / "eval").is_dir()
                           else Path.cwd() / "eval" / "results")
    command = "rag eval " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("eval") + 1:]) \
        if "eval" in sys.argv else "rag eval " + args.target
    # The settings given by environment change results as much as the arguments: the report names them.
    settings = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("RAG_")]
    command = " ".join(settings + [command])
    if args.target == "squad":
        headline = _squad_reader(args, engine, out_dir, command)
    elif args.target == "squad-open":
        if args.split == "dev":
            raise RagError("--split dev scores the reader alone (`rag eval squad`); squad-open takes heldout or tune.")
        headline = _squad_open(args, engine, out_dir, command)
    else:
        headline = _eval_file(args, engine, out_dir, command)
    if args.json:
        print(json.dumps(headline))
    failed = []
    if args.min_f1 is not None and headline.get("f1", 0) < args.min_f1:
        failed.append(f"F1 {headline.get('f1', 0):.1f} < {args.min_f1}")
    if args.min_recall is not None and (headline.get("recall@5") or 0) < args.min_recall:
        failed.append(f"recall@5 {headline.get('recall@5') or 0:.1f} < {args.min_recall}")
    for why in failed:
        print(f"below target: {why}", file=sys.stderr)
    return 1 if failed else 0


def _bar(total: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, unit="q")
    return bar, (lambda: bar.update(1))


def _subsample(items: list, limit: int) -> list:
    if not limit or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _data_dir(args) -> Path:
    data = args.data or default_data_dir()
    if data is None:
        raise RagError("SQuAD data not found: pass --data PATH (the folder holding dev-v1.1.json and dev-v2.0.json).")
    data = Path(data)
    return data.parent if data.is_file() else data


def _ask_run(engine, items, index, label: str, top_k: int):
    from .runner import run_ask, summarize

    bar, tick = _bar(len(items), label)
    records = run_ask(engine, items, index=index, tick=tick)
    bar.close()
    return records, summarize(records, top_k)


def _plots(out_dir: Path, name: str, records, title: str) -> list[str]:
    from .report import plot_latency, plot_reliability

    out_dir.mkdir(parents=True, exist_ok=True)
    answered = [r for r in records if not r.abstained]
    files = []
    if answered:
        files.append(plot_reliability(out_dir / f"{name}-reliability.png", [r.score for r in answered],
                                      [r.exact_match for r in answered], f"{title}: confidence vs EM").name)
    files.append(plot_latency(out_dir / f"{name}-latency.png", [r.seconds for r in records],
                              f"{title}: warm ask() latency").name)
    return files


def _eval_file(args, engine, out_dir: Path, command: str) -> dict:
    from ..documents import make_document
    from ..index import save_index
    from .datasets import load_eval_set
    from .report import machine, stem, table, write_json, write_markdown
    from .runner import cold_start_seconds

    evalset = load_eval_set(Path(args.target))
    items = _subsample(evalset.items, args.limit)
    if not items:
        raise RagError(f"{args.target}: the eval set has no questions.")
    index_name = args.index
    t0 = time.perf_counter()
    if evalset.documents:  # a SQuAD-format file brings its own corpus
        index_name = f"eval-{evalset.name}"[:64]
        corpus = engine.library.index_documents([make_document(n, t) for n, t in evalset.documents], index_name)
        build_s = time.perf_counter() - t0
    else:
        corpus = engine.index(index_name)
        t0 = time.perf_counter()  # time a fresh build of the same documents, into a scratch folder
        with tempfile.TemporaryDirectory() as tmp:
            save_index(engine.library.build_corpus(corpus.documents), Path(tmp) / "scratch")
        build_s = time.perf_counter() - t0
    records, totals = _ask_run(engine, items, corpus, evalset.name, engine.config.top_k)
    totals["index_build_s"] = build_s
    totals["documents"], totals["chunks"] = len(corpus.document_names), corpus.manifest.chunks
    if not args.no_cold_start:
        totals["cold_start_s"] = cold_start_seconds(items[0].question, index_name or engine.config.index_name,
                                                    str(engine.config.index_dir))
    name = stem(evalset.name)
    plots = _plots(out_dir, name, records, evalset.name)
    write_json(out_dir, name, {"set": evalset.name, "command": command, "machine": machine(),
                               "config": {k: str(v) for k, v in asdict(engine.config).items()},
                               "totals": totals, "records": [asdict(r) for r in records]})
    misses = [r for r in records if r.exact_match < 1]
    miss_lines = "\n".join(f"- `{r.id}` {r.question} → {'(abstained)' if r.abstained else repr(r.prediction)} "
                           f"(score {r.score:.2f}; gold: {r.answers[:2] or 'unanswerable'})" for r in misses[:40])
    write_markdown(out_dir, name, f"Evaluation: {evalset.name}", command, {
        "Totals": table(totals),
        "Plots": "\n".join(f"![{p}]({p})" for p in plots),
        f"Questions not exactly right ({len(misses)})": miss_lines or "None.",
    })
    return {"set": evalset.name, **totals}


def without_dataset_text(record) -> dict:
    """A SQuAD record as results keep it: ids, predictions, offsets and scores, but not the dataset's own
    text (questions, gold answers, cited sentences), which stays in ../shared rather than the repository."""
    row = {k: v for k, v in asdict(record).items() if k not in ("question", "answers")}
    row["citations"] = [{k: v for k, v in c.items() if k != "sentence"} for c in row["citations"]]
    return row


def _squad_reader(args, engine, out_dir: Path, command: str) -> dict:
    from .datasets import squad_dev, squad_split, squad_v2_tuning
    from .gold import gold_scores, read_gold, reader_totals
    from .report import machine, stem, table, write_json, write_markdown

    data = _data_dir(args)
    reader = engine.reader
    if args.split == "dev":  # SQuAD 1.1 alone: dev-v2.0's titles are all dev-v1.1's, none left to tune on
        sets = {"v1": _subsample(squad_dev(data).items, args.limit)}
    else:
        v1, v2 = squad_split(data, args.split)
        tuning = squad_v2_tuning(data, args.tune_limit, without_tuning=args.split == "tune")
        sets = {"v1": _subsample(v1.items, args.limit), "tune": tuning.items, "v2": _subsample(v2.items, args.limit)}
    results = {}
    for label, items in sets.items():
        bar, tick = _bar(len(items), f"reader on {label}")
        results[label] = read_gold(reader, items, tick)
        bar.close()
    if args.split == "dev":
        headline = {"reader": engine.config.reader_model_id, **gold_scores(results["v1"]), "split": args.split}
    else:
        headline = {"reader": engine.config.reader_model_id, **reader_totals(results, args.threshold),
                    "threshold_tuned_on": f"{len(sets['tune'])} SQuAD 2.0 train-title questions",
                    "split": args.split}
    name = stem("squad-reader" if args.split == "heldout" else f"squad-reader-{args.split}")
    write_json(out_dir, name, {"command": command, "machine": machine(), "totals": headline,
                               "v1_predictions": results["v1"], "v2_predictions": results.get("v2", [])})
    articles = {"heldout": "articles 38-47 (held out from training)",
                "tune": "train articles 28-37 (the tuning slice: unseen by a reader trained with "
                        "`train_reader.py`'s defaults, which leave them out)",
                "dev": "articles 0-47, the whole set (the published setting: fair only to a reader trained "
                       "on train-v1.1 alone, `train_reader.py --sources squad-train`)"}[args.split]
    v2_note = ("" if args.split == "dev" else
               " SQuAD 2.0: the same titles; the reader abstains when its best span's probability p, against its "
               "window's no-answer probability (p / (p + p_null)), is under the threshold chosen on other SQuAD 2.0 "
               "*train* titles only.")
    write_markdown(out_dir, name, f"Reader on SQuAD, split '{args.split}' (gold paragraph)", command, {
        "Totals": table(headline),
        "How it is measured": (
            f"SQuAD 1.1 dev {articles}, the reader given the gold paragraph, official normalisation, best "
            f"over gold answers.{v2_note}"),
    })
    return headline


def _squad_open(args, engine, out_dir: Path, command: str) -> dict:
    from ..documents import make_document
    from .datasets import squad_split
    from .report import machine, stem, table, write_json, write_markdown
    from .gold import gold_scores, read_gold

    data = _data_dir(args)
    v1, v2 = squad_split(data, args.split, whole_articles=args.whole_articles)
    kind = "squad-open-articles" if args.whole_articles else "squad-open"
    totals, runs = {}, {}
    for label, evalset in (("v1", v1), ("v2", v2)):
        t0 = time.perf_counter()
        corpus = engine.library.index_documents([make_document(n, t) for n, t in evalset.documents], f"{kind}-{args.split}-{label}")
        build_s = time.perf_counter() - t0
        records, summary = _ask_run(engine, _subsample(evalset.items, args.limit), corpus, f"squad-open {label}",
                                    engine.config.top_k)
        runs[label] = records
        totals[label] = {**summary, "index_build_s": build_s, "documents": len(corpus.document_names),
                         "chunks": corpus.manifest.chunks}
    bar, tick = _bar(len(runs["v1"]), "reader on gold paragraphs")
    gold = gold_scores(read_gold(engine.reader, _subsample(v1.items, args.limit), tick))
    bar.close()
    t1 = totals["v1"]
    headline = {
        "recall@1": t1["recall@1"], "recall@5": t1["recall@5"], "recall@10": t1["recall@10"], "mrr": t1["mrr"],
        "exact_match": t1["exact_match"], "f1": t1["f1"], "gold_paragraph_f1": gold["f1"],
        "gold_paragraph_exact_match": gold["exact_match"], "citation_accuracy": t1["citation_accuracy"],
        "abstained": t1["abstained"], "latency_p50_ms": t1["latency_p50_ms"], "latency_p95_ms": t1["latency_p95_ms"],
        "latency_max_ms": t1["latency_max_ms"], "n": t1["n"], "index_build_s": t1["index_build_s"],
        "v2_f1": totals["v2"]["f1"], "v2_answerable_f1": totals["v2"]["answerable_f1"],
        "v2_unanswerable_accuracy": totals["v2"]["unanswerable_accuracy"], "v2_n": totals["v2"]["n"],
        "fusion": engine.config.fusion, "dense_weight": engine.config.dense_weight,
        "top_k": engine.config.top_k,
        "early_stop": None if math.isinf(engine.config.early_stop) else engine.config.early_stop,
        "first_read": engine.config.first_read,
        "rank_decay": engine.config.rank_decay, "sentence_overlap_weight": engine.config.sentence_overlap_weight,
        "threshold": engine.config.threshold, "split": args.split, "whole_articles": args.whole_articles,
        "chunk_size": engine.config.chunk_size, "chunk_overlap": engine.config.chunk_overlap,
    }
    if engine.config.threshold == 0 and args.split == "tune":
        # Nothing abstained, so every score and answer is known: the threshold that would have been best.
        from .metrics import best_threshold

        recs = runs["v2"]
        headline["suggested_threshold"], headline["v2_f1_at_suggested"] = best_threshold(
            [r.against_no_answer for r in recs], [r.answerable for r in recs], [r.f1 for r in recs])
    name = stem(kind if args.split == "heldout" else f"{kind}-tune")
    plots = _plots(out_dir, name, runs["v1"], f"{kind} v1.1 held-out")
    write_json(out_dir, name, {"command": command, "machine": machine(),
                               "config": {k: str(v) for k, v in asdict(engine.config).items()},
                               "totals": headline, "v1": t1, "v2": totals["v2"],
                               "records_v1": [without_dataset_text(r) for r in runs["v1"]],
                               "records_v2": [without_dataset_text(r) for r in runs["v2"]]})
    write_markdown(out_dir, name, "Open-corpus SQuAD (held-out articles)", command, {
        "Headline": table(headline),
        "SQuAD 1.1 held-out, every total": table(t1),
        "SQuAD 2.0 held-out titles, every total": table(totals["v2"]),
        "Plots": "\n".join(f"![{p}]({p})" for p in plots),
        "How it is measured": (
            (f"Each of the {len(v1.documents)} SQuAD 1.1 dev articles of split '{args.split}' (heldout: 38-47; "
             "tune: 28-37) is a document, its paragraphs on lines of their own, in one index; every question goes "
             "through `ask()`. recall@k: a passage of the gold article holding a gold answer is among the first "
             "k retrieved" if args.whole_articles else
             f"Each of the {len(v1.documents)} paragraphs of the SQuAD 1.1 dev articles of split '{args.split}' "
             "(heldout: 38-47; tune: 28-37) is a document in one index; every question goes through `ask()`. "
             "recall@k: the gold paragraph is among the first k retrieved") +
            " passages (k=10 retrieved apart from the timed call). gold_paragraph_f1: the same reader given "
            "the gold paragraph alone. Latency: warm `ask()`, after one warm-up question."),
    })
    return headline
