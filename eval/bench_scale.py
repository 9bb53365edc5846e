"""How each store grows: build time, disk size, load time, peak memory, retrieval latency and the
recall of real questions' gold chunks, at 10k, 100k and 1M chunks.

    .venv/bin/python eval/bench_scale.py [--sizes 10000,100000,1000000] [--stores local,milvus]

What is real and what is synthetic:
- Text: SQuAD paragraphs (train-v1.1 and dev articles 0-37, the training side of the split), one
  paragraph a chunk, varied so no two chunks are equal (each copy has its sentences rotated and a
  record number: "Record 123456."). The held-out dev articles 38-47 (421 paragraphs) are in every
  store unchanged: they hold the answers to the benchmark's questions.
- Questions: every k-th of the held-out questions (`--questions`, default 200), embedded for real.
- Vectors: real (all-MiniLM-L6-v2) for the 421 held-out paragraphs and for a sample of the others
  (`--sample`, default 4,000); every other chunk's vector is drawn from a Gaussian with the sample's
  mean and covariance, then normalised: the same distribution, no meaning.
Each store is built in this process; loading and answering run in a fresh process per store and
size, so load time and peak RSS are that process's. Results append to eval/logs/scale/results.jsonl
(a finished size is skipped when run again); the report goes to eval/results/scale-DATE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOGS = ROOT / "eval" / "logs" / "scale"


def corpus_source(data: Path, n_questions: int):
    """(pool of training-side paragraphs, held-out paragraphs, questions as (question, gold paragraph index))."""
    from rag.evaluation.datasets import TRAIN_ARTICLES, load_squad

    pool = [p["context"] for a in load_squad(data / "train-v1.1.json") for p in a["paragraphs"]]
    dev = load_squad(data / "dev-v1.1.json")
    pool += [p["context"] for a in dev[:TRAIN_ARTICLES] for p in a["paragraphs"]]
    held = [p for a in dev[TRAIN_ARTICLES:] for p in a["paragraphs"]]
    questions = [(qa["question"], i) for i, p in enumerate(held) for qa in p["qas"]]
    step = max(1, len(questions) // n_questions)
    return pool, [p["context"] for p in held], questions[::step][:n_questions]


def varied(text: str, copy: int, record: int) -> str:
    """The paragraph with its sentences rotated by `copy` and a record number: unique, still prose."""
    from rag.sentences import split_sentences

    sentences = [text[s.start:s.end] for s in split_sentences(text)] or [text]
    k = copy % len(sentences)
    return f"Record {record}. " + " ".join(sentences[k:] + sentences[:k])


def texts_for(size: int, pool: list[str], held: list[str]) -> list[str]:
    """`size` chunk texts: the held-out paragraphs, then varied pool paragraphs."""
    texts = list(held)
    for i in range(size - len(held)):
        texts.append(varied(pool[i % len(pool)], i // len(pool), i))
    return texts


def vectors_for(size: int, real: np.ndarray, n_held: int, sample: np.ndarray, sample_ids: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """Real vectors for the held-out paragraphs and the sampled ones; Gaussian draws for the rest."""
    rng = np.random.default_rng(seed)
    mean, cov = sample.mean(axis=0), np.cov(sample, rowvar=False) + 1e-6 * np.eye(sample.shape[1])
    out = np.empty((size, real.shape[1]), dtype=np.float32)
    out[:n_held] = real
    for start in range(n_held, size, 100_000):
        stop = min(size, start + 100_000)
        block = rng.multivariate_normal(mean, cov, size=stop - start, method="eigh").astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    keep = sample_ids[sample_ids + n_held < size]  # the sampled pool paragraphs' first copies
    out[keep + n_held] = sample[: len(keep)]
    return out


def embedded(engine, pool: list[str], held: list[str], questions, n_sample: int):
    """Real embeddings, cached in eval/logs/scale/ (they take a minute or two on a CPU)."""
    cache = LOGS / f"embeddings-{n_sample}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["held"], z["sample"], z["sample_ids"], z["questions"]
    ids = np.array(sorted(random.Random(0).sample(range(len(pool)), n_sample)), dtype=np.int64)
    enc = engine.embedder.encode
    held_v = np.vstack([enc(held[i:i + 64]) for i in range(0, len(held), 64)])
    sample_v = np.vstack([enc([pool[j] for j in ids[i:i + 64]]) for i in range(0, len(ids), 64)])
    q_v = np.vstack([engine.embedder.encode_query(q) for q, _ in questions])
    np.savez(cache, held=held_v, sample=sample_v, sample_ids=ids, questions=q_v)
    return held_v, sample_v, ids, q_v


def build(store: str, size: int, texts: list[str], vectors: np.ndarray, engine, where: Path) -> dict:
    from rag.index import build_index, save_index
    from rag.schema import Chunk, Document

    t0 = time.perf_counter()
    docs = [Document(name=f"p{i:07d}", text=t) for i, t in enumerate(texts)]
    chunks = [Chunk(doc_id=i, start=0, end=len(t), text=t) for i, t in enumerate(texts)]
    c = engine.config
    if store == "local":
        from rag.sentences import split_sentences

        for d in docs:
            d.sentences = split_sentences(d.text)
        save_index(build_index(docs, chunks, vectors, c.embedding_model_id, c.chunk_size, c.chunk_overlap),
                   where / f"scale-{size}")
    else:
        from rag.milvus_store import MilvusStore

        store_ = MilvusStore(str(where / "milvus.db"))
        name = f"scale-{size}"
        store_.create(name, vectors.shape[1], c.embedding_model_id, c.chunk_size, c.chunk_overlap)
        for start in range(0, len(docs), 50_000):  # in slices: the store's add takes documents with their chunks
            part = slice(start, start + 50_000)
            part_chunks = [Chunk(doc_id=i, start=0, end=ch.end, text=ch.text) for i, ch in enumerate(chunks[part])]
            store_.add(name, docs[part], part_chunks, vectors[part])
        store_.close()  # Milvus Lite serves one process: the measuring one opens it next
    return {"build_s": time.perf_counter() - t0, "disk_mb": _du(where) / 1e6}


def measure(store: str, size: int, where: Path, questions: list) -> dict:
    """Load and answer in a fresh process: load time, first query, p50/p95, recall@5, peak RSS (of
    that process alone: the questions reach it in a file, not by reading SQuAD there)."""
    env = dict(os.environ, RAG_INDEX_DIR=str(where),
               RAG_STORE=f"milvus:{where / 'milvus.db'}" if store == "milvus" else "local")
    (where / "questions.json").write_text(json.dumps(questions))
    out = subprocess.run([sys.executable, __file__, "--measure", str(size), "--questions-file",
                          str(where / "questions.json")], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_here(size: int, questions_file: Path) -> None:
    """The child process of `measure`."""
    from rag.config import Config
    from rag.engine import Engine

    engine = Engine(Config())
    questions = json.loads(Path(questions_file).read_text())
    engine.embedder.encode_query("warm up")  # the model's load is not the store's
    before_mb = _peak_rss_mb()
    t0 = time.perf_counter()
    corpus = engine.index(f"scale-{size}")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.retriever.retrieve(corpus, questions[0][0], 5)
    first_s = time.perf_counter() - t0
    times, hits = run_questions(engine, corpus, questions)
    peak_mb = _peak_rss_mb()  # before the exact comparison below, which reads every vector
    exact = {}
    if getattr(corpus, "ivf", None) is not None:  # the same questions with exact dense search, to compare
        ivf, corpus.ivf = corpus.ivf, None
        exact_times, exact_hits = run_questions(engine, corpus, questions)
        corpus.ivf = ivf
        exact = {"exact_p50_ms": 1000 * statistics.median(exact_times), "exact_recall@5": 100 * exact_hits / len(questions)}
    print(json.dumps({**exact, "load_s": load_s, "first_query_s": first_s, "p50_ms": 1000 * statistics.median(times),
                      "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))], "recall@5": 100 * hits / len(questions),
                      "peak_rss_mb": peak_mb,
                      "rss_before_index_mb": before_mb}))


def run_questions(engine, corpus, questions) -> tuple[list[float], int]:
    """Each question's retrieval time, sorted, and how many found their gold chunk in the top 5."""
    times, hits = [], 0
    for question, gold in questions:
        t0 = time.perf_counter()
        passages = engine.retriever.retrieve(corpus, question, 5)
        times.append(time.perf_counter() - t0)
        hits += f"p{gold:07d}" in [p.doc for p in passages]
    return sorted(times), hits


def _peak_rss_mb() -> float:
    """This process's peak resident memory since it started (VmHWM: unlike ru_maxrss, it does not
    count the parent's memory the process held between fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def report(results: list[dict]) -> Path:
    from rag.evaluation.report import write_markdown

    rows = ["| store | chunks | build | disk | load | first query | retrieval p50 / p95 | recall@5 | exact search: p50, recall@5 "
            "| peak RSS (models alone) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["store"], r["size"])):
        if "error" in r:
            rows.append(f"| {r['store']} | {r['size']:,} | {r.get('build_s', 0):.0f} s | – | failed: {r['error']} | | | | | |")
            continue
        rows.append(f"| {r['store']} | {r['size']:,} | {r['build_s']:.0f} s | {r['disk_mb']:,.0f} MB | {r['load_s']:.1f} s | "
                    f"{r['first_query_s']:.1f} s | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms | {r['recall@5']:.1f} | "
                    + (f"{r['exact_p50_ms']:.1f} ms, {r['exact_recall@5']:.1f} | " if "exact_p50_ms" in r else "(it is exact) | ")
                    + f"{r['peak_rss_mb']:,.0f} MB ({r['rss_before_index_mb']:,.0f} MB) |")
    plot = _plot(results)
    return write_markdown(ROOT / "eval" / "results", f"scale-{time.strftime('%Y-%m-%d')}",
                          "Stores at scale", "python eval/bench_scale.py " + " ".join(sys.argv[1:]), {
        "Results": "\n".join(rows) + f"\n\n![how each grows]({plot.name})",
        "What is measured": __doc__.split("What is real and what is synthetic:")[1].strip(),
    })


def _plot(results: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for store in sorted({r["store"] for r in results}):
        done = sorted((r for r in results if r["store"] == store and "error" not in r), key=lambda r: r["size"])
        sizes = [r["size"] for r in done]
        for ax, key, label in zip(axes, ("p50_ms", "load_s", "peak_rss_mb"),
                                  ("retrieval p50 (ms)", "load (s)", "peak RSS (MB)")):
            ax.plot(sizes, [r[key] for r in done], marker="o", label=store)
            ax.set_xscale("log"), ax.set_xlabel("chunks"), ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    path = ROOT / "eval" / "results" / f"scale-{time.strftime('%Y-%m-%d')}.png"
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--stores", default="local,milvus")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--sample", type=int, default=4000)
    parser.add_argument("--data", type=Path, help="the SQuAD folder (default: ../shared/data/squad)")
    parser.add_argument("--results", type=Path, default=LOGS / "results.jsonl",
                        help="where results append (a size already there is skipped)")
    parser.add_argument("--keep", action="store_true", help="keep each store built under eval/logs/scale/ (to profile it)")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--questions-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from rag.squad import default_data_dir

    data = args.data or default_data_dir()
    if args.measure:
        measure_here(args.measure, args.questions_file)
        return
    from rag.config import Config
    from rag.engine import Engine

    LOGS.mkdir(parents=True, exist_ok=True)
    results_file = args.results
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.is_file() else []
    engine = Engine(Config())
    pool, held, questions = corpus_source(data, args.questions)
    held_v, sample_v, sample_ids, _ = embedded(engine, pool, held, questions, args.sample)
    for store in args.stores.split(","):
        for size in map(int, args.sizes.split(",")):
            if any(r["store"] == store and r["size"] == size for r in results):
                continue
            where = LOGS / f"{store}-{size}"
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir(parents=True)
            texts = texts_for(size, pool, held)
            vectors = vectors_for(size, held_v, len(held), sample_v, sample_ids)
            result = {"store": store, "size": size, **build(store, size, texts, vectors, engine, where)}
            del texts, vectors
            result.update(measure(store, size, where, questions))
            results.append(result)
            with results_file.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
            if not args.keep:
                shutil.rmtree(where, ignore_errors=True)
    print(report(results))


if __name__ == "__main__":
    main()
