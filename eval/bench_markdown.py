"""How much Markdown markup and list layout cost the reader, and how much `reading_view` wins back.

SQuAD 1.1 tuning paragraphs (train articles 28-37, every third question) are marked up at random, as
Markdown documents are: of the capitalised words and names, 15% bold, 10% italic, 10% links with a
URL, 5% code; nothing depends on where the answer is. The reader reads each question's paragraph
plain, marked up, and marked up but blanked by `reading_view` (answers cut from the marked-up text).
The same paragraphs are also laid out as notes are, one sentence to a bullet without its full stop,
and read as they are (the tokenizer reads each line break as a space) and through `reading_view`,
which reads the line break ending each item as a full stop.
Last, each question is read over its answer's sentence alone, as in a note of one line (questions
whose first answer lies in one sentence; "plain, same questions" scores those over the paragraph).
Use a reader that never saw those articles (`eval/training/train_reader.py --without-tuning-articles`):

    .venv/bin/python eval/bench_markdown.py --reader PATH
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval" / "training"))

from rag.config import SHIPPED_READER  # noqa: E402
from rag.documents import reading_view  # noqa: E402
from rag.evaluation.datasets import squad_split  # noqa: E402
from rag.evaluation.metrics import exact_match, f1_score  # noqa: E402
from rag.reader import Reader  # noqa: E402
from rag.sentences import split_sentences  # noqa: E402
from rag.squad import default_data_dir  # noqa: E402
from train_reader import as_list  # noqa: E402  (the layout the reader is trained on with --layouts)

NAMES = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b|\b[A-Z][a-z]{3,}\b")


def marked_up(text: str, seed: int) -> str:
    rng = random.Random(seed)

    def mark(m: re.Match) -> str:
        word, r = m.group(), rng.random()
        if r < 0.15:
            return f"**{word}**"
        if r < 0.25:
            return f"*{word}*"
        if r < 0.35:
            return f"[{word}](https://example.org/wiki/{word.replace(' ', '_')})"
        if r < 0.40:
            return f"`{word}`"
        return word

    return NAMES.sub(mark, text)


def answer_sentence(context: str, answer: str) -> str | None:
    """The first sentence of `context` holding `answer` whole, or None when it runs across sentences."""
    return next((context[s.start:s.end] for s in split_sentences(context) if answer in context[s.start:s.end]), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reader", default=str(SHIPPED_READER))
    p.add_argument("--every", type=int, default=3, help="score every n-th tuning question")
    args = p.parse_args()
    v1, _ = squad_split(default_data_dir(), "tune")
    items = v1.items[::args.every]
    reader = Reader(args.reader, dtype="auto")
    variants: dict[str, list] = {}
    for n, item in enumerate(items):
        md, listed = marked_up(item.context, n), as_list(item.context)[0] + "\n"
        for name, (read, cut) in {"plain": (item.context, item.context), "marked up": (md, md),
                                  "marked up, read blanked": (reading_view("page.md", md), md),
                                  "as a list": (listed, listed),
                                  "as a list, item ends read as full stops": (reading_view("page.md", listed), listed)
                                  }.items():
            spans = reader.read(item.question, [read])
            answer = cut[spans[0].start:spans[0].end] if spans else ""
            variants.setdefault(name, []).append((exact_match(answer, item.answers), f1_score(answer, item.answers)))
        alone = answer_sentence(item.context, item.answers[0])
        if alone:
            for name, read in {"plain, same questions": item.context, "the answer's sentence alone": alone}.items():
                spans = reader.read(item.question, [read])
                answer = read[spans[0].start:spans[0].end] if spans else ""
                variants.setdefault(name, []).append((exact_match(answer, item.answers),
                                                      f1_score(answer, item.answers)))
    result = {"reader": args.reader, "n": len(items),
              **{name: {"n": len(s), "exact_match": round(100 * sum(e for e, _ in s) / len(s), 2),
                        "f1": round(100 * sum(f for _, f in s) / len(s), 2)} for name, s in variants.items()}}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
