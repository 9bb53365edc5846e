"""Choose the relevance gate on the tuning split: which questions abstain without reading.

The engine skips the reader when no retrieved passage is about the question (`Engine.related`:
cosine at least `min_similarity`, or at least `min_word_overlap` of the question's content words in
a passage, or a sentence of one with `sentence_word_overlap` of them and cosine `sentence_similarity`).
This counts, for each setting, the share of questions stopped there:
- own: tuning questions (SQuAD train articles 28-37) asked of their own articles: should be ~0;
- own-mixed: the same asked of documents whose chunks mix topics (the sentences of six paragraphs
  of different articles, interleaved), like a FAQ or a page of notes: should be ~0;
- off-seed: the same questions asked of the seed article;
- off-articles: questions of articles 28-32 asked of the paragraphs of articles 33-37;
- seed-off: the seed set's questions (eval/seed_qa.jsonl) asked of articles 28-37.
No reader runs: a few minutes.

    .venv/bin/python eval/sweep_gate.py --similarities 0.15 0.2 0.25 --overlaps 0.5 0.66 1.01 \
        --sentence-similarities 0.25 0.35 0.45 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.schema import Document  # noqa: E402
from rag.sentences import split_sentences  # noqa: E402
from rag.evaluation.datasets import load_eval_set, squad_split  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from sweep_retrieval import emit, save  # noqa: E402  (eval/, beside this script)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--similarities", type=float, nargs="+", default=[0.15, 0.2, 0.25])
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.5, 0.66, 1.01],
                   help="min_word_overlap values (above 1 turns the word test off)")
    p.add_argument("--sentence-similarities", type=float, nargs="+", default=[Config.sentence_similarity],
                   help="sentence_similarity values (above 1 turns the sentence test off)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "gate.json")
    args = p.parse_args()
    v1, _ = squad_split(args.data, "tune")
    articles = list(dict.fromkeys(doc.split("/")[0] for doc, _ in v1.documents))
    first, second = set(articles[:5]), set(articles[5:])
    seed_questions = [i.question for i in load_eval_set(ROOT / "eval" / "seed_qa.jsonl").items]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index_dir=Path(tmp)))
        tune = engine.library.build_corpus([make_document(n, t) for n, t in v1.documents])
        later = engine.library.build_corpus([make_document(n, t) for n, t in v1.documents if n.split("/")[0] in second])
        mixed = engine.library.build_corpus(mixed_topics(v1.documents))
        seed = engine.index("seed")
        k = engine.config.top_k

        def asked(corpus, questions):
            return [(q, corpus, engine.retriever.retrieve(corpus, q, k)) for q in questions]
        questions = [i.question for i in v1.items]
        sets = {
            "own": asked(tune, questions),
            "own-mixed": asked(mixed, questions),
            "off-seed": asked(seed, questions),
            "off-articles": asked(later, [i.question for i in v1.items if i.gold_doc.split("/")[0] in first]),
            "seed-off": asked(tune, seed_questions),
        }
        base = engine.config
        results = []
        for cut in args.similarities:
            for overlap in args.overlaps:
                for sentence in args.sentence_similarities:
                    engine.config = base.with_(min_similarity=cut, min_word_overlap=overlap, sentence_similarity=sentence)
                    res = {"min_similarity": cut, "min_word_overlap": overlap, "sentence_similarity": sentence}
                    for name, rows in sets.items():
                        res[f"{name}_stopped"] = round(100 * statistics.mean(not engine.related(*row) for row in rows), 1)
                        res[f"{name}_n"] = len(rows)
                    emit(results, res)
    save(results, args.out)


def mixed_topics(paragraphs: list[tuple[str, str]], group: int = 6) -> list[Document]:
    """Documents of `group` paragraphs of different articles (when there are), their sentences
    interleaved: each chunk then holds sentences of several topics."""
    by_article: dict[str, list[str]] = {}
    for name, text in paragraphs:
        by_article.setdefault(name.split("/")[0], []).append(text)
    # round-robin over the articles, so neighbouring paragraphs come from different ones
    order = [t for row in itertools.zip_longest(*by_article.values()) for t in row if t is not None]
    docs = []
    for g in range(0, len(order), group):
        sentences = [[t[s.start:s.end] for s in split_sentences(t)] for t in order[g:g + group]]
        text = " ".join(s for row in itertools.zip_longest(*sentences) for s in row if s)
        docs.append(make_document(f"mixed-{g // group}.txt", text))
    return docs


if __name__ == "__main__":
    main()
