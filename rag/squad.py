"""SQuAD data and the project's train/held-out split by article (see ../shared/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

# dev-v1.1 articles 0-37 train the reader and tune thresholds; 38-47 are held out for reporting.
TRAIN_ARTICLES = 38
# The last ten train articles: for choosing settings without touching the held-out ones. A reader
# trained with `eval/training/train_reader.py --without-tuning-articles` has not seen them either.
TUNING_ARTICLES = range(TRAIN_ARTICLES - 10, TRAIN_ARTICLES)


def default_data_dir() -> Path | None:
    """../shared/data/squad beside the project checkout, when it exists."""
    here = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad"
    cwd = Path.cwd().parent / "shared" / "data" / "squad"
    for candidate in (cwd, here):
        if candidate.is_dir():
            return candidate
    return None


def load_squad(path: Path) -> list[dict]:
    """The `data` list of a SQuAD-format JSON file: articles with paragraphs and questions."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["data"]


def train_articles(data_dir: Path, without_tuning: bool = False) -> list[dict]:
    """The SQuAD 1.1 articles a reader may train on: 0-37, or 0-27 `without_tuning`."""
    articles = load_squad(data_dir / "dev-v1.1.json")[:TRAIN_ARTICLES]
    return articles[:TUNING_ARTICLES.start] if without_tuning else articles


def train_titles(data_dir: Path, without_tuning: bool = False) -> set[str]:
    return {a["title"] for a in train_articles(data_dir, without_tuning)}

