"""Choose the relevance gate on the tuning split: which questions abstain without reading.

The engine skips the reader when no retrieved passage is about the question (`Engine.related`:
cosine at least `min_similarity`, or at least `min_word_overlap` of the question's content words in
a passage). This counts, for each setting, the share of questions stopped there:
- own: tuning questions (SQuAD train articles 28-37) asked of their own articles: should be ~0;
- off-seed: the same questions asked of the seed article;
- off-articles: questions of articles 28-32 asked of the paragraphs of articles 33-37;
- seed-off: the seed set's questions (eval/seed_qa.jsonl) asked of articles 28-37.
No reader runs: a few minutes.

    .venv/bin/python eval/sweep_gate.py --similarities 0.15 0.2 0.25 --overlaps 0.5 0.66 1.01
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.evaluation.datasets import load_eval_set, squad_split  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from sweep_retrieval import emit, save  # noqa: E402  (eval/, beside this script)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--similarities", type=float, nargs="+", default=[0.15, 0.2, 0.25])
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 0.66, 1.01],
                   help="min_word_overlap values (above 1 turns the word test off)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "gate.json")
    args = p.parse_args()
    v1, _ = squad_split(args.data, "tune")
    articles = list(dict.fromkeys(doc.split("/")[0] for doc, _ in v1.documents))
    first, second = set(articles[:5]), set(articles[5:])
    seed_questions = [i.question for i in load_eval_set(ROOT / "eval" / "seed_qa.jsonl").items]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index_dir=Path(tmp)))
        tune = engine.build_corpus([make_document(n, t) for n, t in v1.documents])
        later = engine.build_corpus([make_document(n, t) for n, t in v1.documents if n.split("/")[0] in second])
        seed = engine.index("seed")
        k = engine.config.top_k
        sets = {
            "own": [(i.question, engine.retriever.retrieve(tune, i.question, k)) for i in v1.items],
            "off-seed": [(i.question, engine.retriever.retrieve(seed, i.question, k)) for i in v1.items],
            "off-articles": [(i.question, engine.retriever.retrieve(later, i.question, k)) for i in v1.items
                             if i.gold_doc.split("/")[0] in first],
            "seed-off": [(q, engine.retriever.retrieve(tune, q, k)) for q in seed_questions],
        }
        base = engine.config
        results = []
        for cut in args.similarities:
            for overlap in args.overlaps:
                engine.config = base.with_(min_similarity=cut, min_word_overlap=overlap)
                res = {"min_similarity": cut, "min_word_overlap": overlap}
                for name, asked in sets.items():
                    res[f"{name}_stopped"] = round(100 * statistics.mean(not engine.related(q, ps) for q, ps in asked), 1)
                    res[f"{name}_n"] = len(asked)
                emit(results, res)
    save(results, args.out)


if __name__ == "__main__":
    main()
