"""Does each rule that cuts, moves or drops the reader's spans still help? Each is switched off in turn.

The engine carries rules added for a weaker reader (each names the measurement that justified it);
the reader issue asks that a rule which no longer helps a better reader go. For each rule, every
question of the tuning split (SQuAD train articles 28-37: 1.1 for answers, 2.0 for abstention) goes
through the real `Engine.ask` with the configured settings, once with all rules and once with that
rule replaced by a no-op; the table gives the scores and how many answers the rule changes. Use a
reader that never saw those articles (`eval/training/train_reader.py --without-tuning-articles`).
A rule that changes no tuning answer is judged by the behaviour test that named it, not here.

    .venv/bin/python eval/sweep_rules.py --reader accurate --logits /tmp/logits-accurate
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import Config  # noqa: E402
from rag.documents import make_document  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.evaluation.datasets import squad_split  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from sweep_engine import Memo, run, threshold_within  # noqa: E402  (eval/, beside this script)
from sweep_retrieval import save  # noqa: E402

# Each rule and the no-op that replaces it (the names the code looks it up by).
RULES = {
    "answer stays in its sentence (citations.answer_end)":
        {"rag.citations.answer_end": lambda doc, start, end: end},
    "no answer from a question sentence (citations.question_ranges)":
        {"rag.engine.question_ranges": lambda doc, passage: []},
    "a word cut at a period is kept whole (reader.keep_dotted_word)":
        {"rag.reader.keep_dotted_word": lambda text, end: end},
    "an abbreviation keeps its last period (keep_abbreviation_period)":
        {"rag.reader.keep_abbreviation_period": lambda text, start, end: end,
         "rag.citations.keep_abbreviation_period": lambda text, start, end: end},
    "emphasis marks at an answer's edges dropped (citations.inside_marks)":
        {"rag.citations.inside_marks": lambda text, start, end: (start, end)},
}


@contextmanager
def switched_off(patches: dict):
    with ExitStack() as stack:
        for target, replacement in patches.items():
            stack.enter_context(mock.patch(target, replacement))
        yield


def scores(engine: Engine, memo: Memo, corpora: dict, v1_items, v2_items) -> tuple[dict, list[str]]:
    """Scores of one run. The rules act after the model, on its logits, so every run shares the memo's
    forward passes: the first run reads, the others decode."""
    a = run(engine, memo, v1_items, corpora["v1"])
    b = run(engine, memo, v2_items, corpora["v2"])
    memo.store.flush()
    threshold, answerable_f1, unanswerable = threshold_within(b)
    result = {"v1_em": round(100 * statistics.mean(r["em"] for r in a), 2),
              "v1_f1": round(100 * statistics.mean(r["f1"] for r in a), 2),
              "v2_threshold_cost5": threshold, "v2_answerable_f1_at_it": round(answerable_f1, 2),
              "v2_unanswerable_accuracy_at_it": round(unanswerable, 2)}
    return result, [r["text"] for r in a + b]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default=None)
    p.add_argument("--limit", type=int, default=0, help="questions per set (every k-th; 0: all)")
    p.add_argument("--logits", type=Path, default=None,
                   help="a folder keeping the reader's logits per window (resumes a stopped sweep; "
                        "shared with eval/sweep_engine.py --logits for the same reader)")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "rules-sweep.json")
    args = p.parse_args()
    v1, v2 = squad_split(args.data, "tune")

    def pick(items):
        return items if args.limit <= 0 else items[:: max(1, len(items) // args.limit)][: args.limit]

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Config(index_dir=Path(tmp), reader_model=args.reader, min_similarity=-1.0,
                               abstain_threshold=0.0))
        corpora = {name: engine.library.build_corpus([make_document(n, t) for n, t in s.documents])
                   for name, s in (("v1", v1), ("v2", v2))}
        memo = Memo(engine, args.logits)
        base, base_texts = scores(engine, memo, corpora, pick(v1.items), pick(v2.items))
        results.append({"rules": "all on", **base})
        print(results[-1], flush=True)
        for name, patches in RULES.items():
            with switched_off(patches):
                off, texts = scores(engine, memo, corpora, pick(v1.items), pick(v2.items))
            changed = sum(x != y for x, y in zip(base_texts, texts))
            results.append({"rules": f"without: {name}", **off, "answers_changed": changed})
            print(results[-1], flush=True)
    save(results, args.out)


if __name__ == "__main__":
    main()
