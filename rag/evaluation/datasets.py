"""Question sets: the project's JSONL format, SQuAD-format JSON, and the held-out SQuAD splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RagError
from ..squad import TRAIN_ARTICLES, TUNING_ARTICLES, load_squad, train_titles


# Between an article's paragraphs when it is one document: a line break, not a blank line, so that
# chunks run across paragraphs and overlap, as in running text. (With blank lines the chunker cuts
# at every paragraph of SQuAD's, which are mostly over half a chunk long: the chunks come out the
# same as with one document per paragraph.)
PARAGRAPH_BREAK = "\n"


@dataclass
class EvalItem:
    id: str
    question: str
    answers: list[str]
    answerable: bool
    gold_doc: str | None = None  # document holding the answer, when known (for retrieval recall)
    context: str | None = None  # the gold paragraph's text, when known (for reader-only scoring)
    # Where the answers stand in gold_doc, when it is longer than the gold paragraph (a whole
    # article): a passage then holds the gold only if it holds one of these (for retrieval recall).
    gold_spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class EvalSet:
    name: str
    items: list[EvalItem]
    documents: list[tuple[str, str]] = field(default_factory=list)  # (name, text) to index, if the set brings its own


def load_eval_set(path: Path) -> EvalSet:
    """A JSONL set ({"id","question","answers","answerable","doc"} per line; "answer" for a single one;
    "doc" names the document that holds it) or a SQuAD-format JSON file."""
    path = Path(path)
    if not path.is_file():
        raise RagError(f"{path}: no such eval set file.")
    if path.suffix.lower() == ".jsonl":
        return EvalSet(name=path.stem, items=_read_jsonl(path))
    try:
        articles = load_squad(path)
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
        raise RagError(f"{path}: not a JSONL eval set nor SQuAD-format JSON ({exc}).") from exc
    return squad_set(path.stem, articles)


def _read_jsonl(path: Path) -> list[EvalItem]:
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                answers = row["answers"] if "answers" in row else row["answer"]
                answers = [answers] if isinstance(answers, str) else list(answers)
                if not isinstance(row["question"], str) or not all(isinstance(a, str) for a in answers):
                    raise TypeError("the question and the answers must be text")
                items.append(EvalItem(id=str(row.get("id", n)), question=row["question"], answers=answers,
                                      answerable=bool(row.get("answerable", bool(answers))), gold_doc=row.get("doc")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise RagError(f'{path}:{n}: not a valid eval line ({exc!r}); each line is a JSON object with '
                               f'"question" and "answers" (a list of right answers, or one as "answer"; '
                               f'empty for a question the documents cannot answer).') from exc
    return items


def squad_set(name: str, articles: list[dict], whole_articles: bool = False) -> EvalSet:
    """Each paragraph becomes a document named 'Title/index'; unanswerable questions have no answers.

    With `whole_articles`, each article is one document named by its title, its paragraphs on lines
    of their own: long documents of many chunks each, chunks running across paragraphs."""
    items, docs = [], []
    for article in articles:
        offset = 0
        for p, para in enumerate(article["paragraphs"]):
            doc = article["title"] if whole_articles else f"{article['title']}/{p}"
            if not whole_articles:
                docs.append((doc, para["context"]))
            for qa in para["qas"]:
                impossible = bool(qa.get("is_impossible"))
                answers = [] if impossible else qa["answers"]
                spans = [(offset + a["answer_start"], offset + a["answer_start"] + len(a["text"])) for a in answers]
                items.append(EvalItem(id=qa["id"], question=qa["question"], answers=[a["text"] for a in answers],
                                      answerable=not impossible, gold_doc=doc, context=para["context"],
                                      gold_spans=spans if whole_articles else []))
            offset += len(para["context"]) + len(PARAGRAPH_BREAK)
        if whole_articles:
            docs.append((article["title"], PARAGRAPH_BREAK.join(p["context"] for p in article["paragraphs"])))
    return EvalSet(name=name, items=items, documents=docs)


def squad_split(data_dir: Path, split: str = "heldout",
                whole_articles: bool = False) -> tuple[EvalSet, EvalSet]:
    """SQuAD 1.1 articles of a split and the SQuAD 2.0 articles with the same titles, as documents
    of one paragraph each or (`whole_articles`) of one article each.

    'heldout': articles 38-47, for reporting. 'tune': train articles 28-37, for choosing settings.
    """
    articles = load_squad(data_dir / "dev-v1.1.json")
    if split == "heldout":
        v1 = articles[TRAIN_ARTICLES:]
    elif split == "tune":
        v1 = [articles[i] for i in TUNING_ARTICLES]
    else:
        raise ValueError(f"unknown split {split!r}")
    titles = {a["title"] for a in v1}
    v2 = [a for a in load_squad(data_dir / "dev-v2.0.json") if a["title"] in titles]
    kind = "-articles" if whole_articles else ""
    return (squad_set(f"squad-v1.1-{split}{kind}", v1, whole_articles),
            squad_set(f"squad-v2.0-{split}{kind}", v2, whole_articles))


def squad_dev(data_dir: Path) -> EvalSet:
    """All of SQuAD 1.1 dev (48 articles, 10,570 questions), one document per paragraph: the set
    published results are scored on, for a reader trained on train-v1.1 alone."""
    return squad_set("squad-v1.1-dev", load_squad(data_dir / "dev-v1.1.json"))


def squad_v2_tuning(data_dir: Path, limit: int, without_tuning: bool = False) -> EvalSet:
    """A slice of the SQuAD 2.0 *train* titles, for choosing the abstention threshold; with
    `without_tuning`, of the titles outside the tuning articles (when those are what is scored)."""
    titles = train_titles(data_dir, without_tuning)
    v2 = [a for a in load_squad(data_dir / "dev-v2.0.json") if a["title"] in titles]
    full = squad_set("squad-v2.0-train-slice", v2)
    # Every k-th question, so the slice spans all train titles.
    step = max(1, len(full.items) // limit) if limit else 1
    full.items = full.items[::step][:limit] if limit else full.items
    return full
