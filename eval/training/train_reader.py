"""Fine-tune the packaged MiniLM encoder into the extractive reader that docqa ships.

Trains on the SQuAD train data only (`--sources`: train-v1.1.json, and dev-v1.1 articles 0-37
with the unanswerable questions of the same titles from dev-v2.0); dev articles 38-47 stay held
out for measurement (see ../shared/data/README.md). Every hyper-parameter is a flag with its
default, the seed is fixed, and the loss is logged. The defaults are the first pass of the shipped
reader, which alone scores within 1 held-out F1 of it; four shorter passes from those weights
(`--base`) made the shipped one (rag/models/reader/README.md lists the commands):

    .venv/bin/python eval/training/train_reader.py            # weights in eval/logs/reader

A run keeps a checkpoint every `--checkpoint-every` steps; a stopped one goes on with `--resume`
(same settings), ending with the weights an uninterrupted run would have.

On the dev train articles the reader also learns from a larger teacher (knowledge distillation):
all-mpnet-base-v2 fine-tuned on the same articles on a GPU by eval/training/distill.py, whose answer
distributions for those examples are committed in eval/training/teacher/ (a few MB), so this step
needs no GPU. The teacher never answered train-v1.1; its questions train on the gold spans alone.

Uses a GPU when one is present. bf16 autocast (`--precision auto`) is on for a GPU and for a CPU
with AVX-512 BF16 (1.6x faster per step than float32 on such a 2-core machine); a CPU without it
trains in float32, since emulated bf16 measured 25x *slower* per step.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import functools
import hashlib
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, get_linear_schedule_with_warmup

ROOT = Path(__file__).resolve().parents[2]
TEACHER_DIR = Path(__file__).resolve().parent / "teacher"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from negatives import article_queries, find_negatives, hard_negative  # noqa: E402
from rag.documents import reading_view  # noqa: E402
from rag.reader import native_bf16  # noqa: E402
from rag.sentences import split_sentences  # noqa: E402
from rag.squad import load_squad, train_articles, train_titles  # noqa: E402

SOURCES = ("squad-train", "dev-train")
# The defaults are the first of the shipped reader's five passes (rag/models/reader/README.md): one
# pass over all of train-v1.1 and dev articles 0-27, a hard negative for 30% of the questions, about
# 125k windows; 3,906 steps of 1.1-1.25 s (about 80 minutes) on a 2-core CPU with AVX-512 BF16 with
# nothing else running. More distinct questions beat more passes over fewer (30% of train-v1.1:
# held-out F1 76.1; all of it: 80.4); a GPU runs the whole set in minutes.
SQUAD_TRAIN_SHARE = 1.0
# The committed teacher (eval/training/teacher/) answered these examples only (augmented ones name none).
TEACHER_SOURCES = ("dev-train", None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad")
    p.add_argument("--sources", default="squad-train,dev-train",
                   help="comma-separated data to train on: squad-train (train-v1.1.json, 87,599 questions) and "
                        "dev-train (dev-v1.1 articles 0-37, the only ones the committed teacher answered; "
                        "with their SQuAD 2.0 unanswerables, see --unanswerable)")
    p.add_argument("--share", type=float, default=SQUAD_TRAIN_SHARE,
                   help="share of train-v1.1's questions drawn (a learning curve is this option)")
    p.add_argument("--base", default=None, help="encoder to start from (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "logs" / "reader",
                   help="where the weights go (default: eval/logs/reader, out of git; the shipped reader, five "
                        "passes, is rag/models/reader)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=float, default=0.1, help="share of steps with linear warm-up")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--layer-decay", type=float, default=1.0,
                   help="layer-wise learning-rate decay: layer l of L gets lr * decay**(L + 1 - l), the "
                        "embeddings decay**(L + 1), the span head lr (1.0: one rate for all); keeps more of "
                        "what the encoder knew in its lower layers")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="leave the token embeddings as the encoder had them (words rare in SQuAD keep their "
                        "pre-trained meaning)")
    p.add_argument("--max-length", type=int, default=384, help="tokens per window (question + context)")
    p.add_argument("--stride", type=int, default=128, help="tokens shared by consecutive windows")
    p.add_argument("--max-question-tokens", type=int, default=64)
    p.add_argument("--unanswerable", type=float, default=0.33,
                   help="share of the train titles' SQuAD 2.0 unanswerable questions to train on")
    p.add_argument("--negatives", type=float, default=0.3,
                   help="share of questions also given a no-answer example: the other paragraph of the same "
                        "article that BM25 ranks highest for the question and that lacks the answer (on the "
                        "8.6k dev-train questions, 1.0 with 2 epochs beat 0.3 with 3 at the same cost: "
                        "eval/results/distill-sweep-gpu-2026-11-26.md; with one pass over the larger set on a "
                        "CPU, each negative costs a new question, so 0.3)")
    p.add_argument("--distractors", type=float, default=0.0,
                   help="share of the hard negatives joined to their question's own paragraph as one context "
                        "(in random order) instead of standing alone: the reader must find the answer beside "
                        "a related paragraph, as in a chunk that spans two (about the same tokens); 0.25, 0.5 "
                        "and 1 all lost on the tuning slice, most where several passages compete, so it is off: "
                        "eval/results/distill-sweep-distractors-gpu-2026-11-26.md")
    p.add_argument("--targets", choices=("majority", "all"), default="all",
                   help="majority: train on the answer most annotators gave; all: every distinct annotator "
                        "answer is right (the loss marginalises over their start and end tokens)")
    p.add_argument("--ema", type=float, default=0.998,
                   help="decay of an exponential moving average of the weights, saved instead of the last "
                        "step's (0: off)")
    p.add_argument("--save-last", type=Path, default=None,
                   help="with --ema, also save the last step's weights here (to compare the two)")
    p.add_argument("--soft-targets", default="auto",
                   help="a teacher's answer distributions for the training examples (eval/training/distill.py writes "
                        "them), which the loss also pulls the reader towards; 'auto': the committed ones in "
                        "eval/training/teacher/ for the articles trained on; 'none': gold spans only")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="with --soft-targets: share of the loss that is the teacher's (the rest: the gold spans)")
    p.add_argument("--temperature", type=float, default=2.0,
                   help="with --soft-targets: softens the teacher's and the reader's distributions alike")
    p.add_argument("--augment-question", type=float, default=0.0,
                   help="augmentation (TinyBERT-style): every other epoch trains on a variant of each example "
                        "whose question words are each swapped, with this probability, for a near neighbour in the "
                        "encoder's word embeddings (city -> town, started -> began), labelled by the teacher alone "
                        "(the gold answer may no longer fit the changed question); 0: off")
    p.add_argument("--augment-context", type=float, default=0.0,
                   help="with augmentation: the same for the context's words outside every gold answer")
    p.add_argument("--augment-targets", default="auto",
                   help="the teacher's answers to the augmented examples; 'auto': the --soft-targets file's "
                        "sibling named *-augmented.npz")
    p.add_argument("--neighbours", type=Path, default=TEACHER_DIR / "word-neighbours.txt.gz",
                   help="each vocabulary word's near neighbours for augmentation (`--write-neighbours` makes it)")
    p.add_argument("--write-neighbours", action="store_true",
                   help="write --neighbours from the encoder's word embeddings, then exit")
    p.add_argument("--layouts", type=float, default=0.0,
                   help="share of the examples whose paragraph is laid out as notes are, one sentence to a bullet "
                        "without its full stop, and read as the engine reads it (reading_view: each item's end a "
                        "full stop), answers moved with it; SQuAD's paragraphs are all prose, users' documents "
                        "are not (eval/results/layout-reading-2026-12-03.md); 0: off")
    tuning = p.add_mutually_exclusive_group()
    tuning.add_argument("--without-tuning-articles", action="store_true", default=True,
                        help="train on dev articles 0-27 only (the default), so `rag eval squad --split tune` "
                             "scores the reader on articles it has not seen, and the engine's settings "
                             "(the abstention threshold) are chosen there honestly")
    tuning.add_argument("--with-tuning-articles", dest="without_tuning_articles", action="store_false",
                        help="train on dev articles 0-37")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--attention-dropout", type=float, default=0.0,
                   help="dropout on the attention weights (the encoder was pre-trained with 0.1); off, a step on "
                        "a 2-core AVX-512 BF16 CPU took 1.45x less time, since drawing its masks cost a third of "
                        "the step and kept the fused attention kernels out (eval/results/reader-full-cpu-2026-12-03.md)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile the model; auto: on a CPU with a C++ compiler for runs of 200 steps or more "
                        "(about a minute to compile; then 1.2-1.3 s a step against 1.4-1.5 s uncompiled on a 2-core "
                        "AVX-512 BF16 CPU, eval/results/reader-full-cpu-2026-12-03.md)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 autocast on a GPU or a CPU with AVX-512 BF16, else float32")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes searching for hard negatives while the examples are built (same examples)")
    p.add_argument("--limit", type=int, default=0, help="train on N examples drawn at random (smoke tests, learning curves)")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="where the run keeps its checkpoint (default: eval/logs/checkpoints/, named by --out)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (0: none)")
    p.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint of a stopped run with the same settings (same result as "
                        "a run that never stopped, up to float noise)")
    p.add_argument("--stop-at", type=float, default=0,
                   help="end training at this time (Unix seconds) with the weights it has, the schedule "
                        "unfinished: a guard for a machine lent for minutes (0: none)")
    p.add_argument("--stop-after-steps", type=int, default=0,
                   help="stop after this many steps of this process, keeping the checkpoint for --resume "
                        "(for a run longer than the time there is; 0: run to the end)")
    args = p.parse_args(argv)
    args.sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    if not args.sources or set(args.sources) - set(SOURCES):
        p.error(f"--sources takes a comma-separated list of {', '.join(SOURCES)}")
    if not 0 <= args.share <= 1:
        p.error("--share is a share: between 0 and 1")
    if args.checkpoint_dir is None:
        tag = hashlib.sha1(str(args.out.resolve()).encode()).hexdigest()[:8]
        args.checkpoint_dir = ROOT / "eval" / "logs" / "checkpoints" / f"{args.out.name}-{tag}"
    args.soft_targets = soft_targets_path(args.soft_targets, args.without_tuning_articles)
    args.augment = args.augment_question > 0 or args.augment_context > 0
    if args.augment_targets == "auto":
        args.augment_targets = (None if args.soft_targets is None else
                                args.soft_targets.with_name(args.soft_targets.stem + "-augmented.npz"))
    else:
        args.augment_targets = Path(args.augment_targets)
    if args.augment and args.soft_targets is None and not args.write_neighbours:
        p.error("augmentation needs a teacher: its examples are labelled by the teacher alone (--soft-targets)")
    if args.augment and args.distractors > 0:
        p.error("--distractors and augmentation do not combine (the teacher labelled no augmented joined contexts)")
    return args


def soft_targets_path(value: str, without_tuning: bool) -> Path | None:
    """'auto' picks the teacher that saw the same articles: the tuning slice's targets come from a
    teacher trained without articles 28-37, so tuning scores stay honest."""
    if value == "none":
        return None
    if value == "auto":
        return TEACHER_DIR / ("soft-targets-tune.npz" if without_tuning else "soft-targets-full.npz")
    return Path(value)


def use_bf16_autocast(precision: str, device: str) -> bool:
    """bf16 only where the hardware computes it natively (rag.reader.native_bf16)."""
    if precision != "auto":
        return precision == "bf16"
    return native_bf16(device)


def training_examples(data_dir: Path, unanswerable_share: float, rng: random.Random,
                      negative_share: float = 0.0, without_tuning: bool = False,
                      distractor_share: float = 0.0, sources: tuple[str, ...] = ("dev-train",),
                      share: float = 1.0, seed: int = 0, workers: int = 1) -> list[dict]:
    """Question/context/answer triples from the train data; answer None means unanswerable.

    dev-train examples come first and draw from `rng` as they always have (so the committed
    teacher's targets still find them); train-v1.1's draw from their own generator. An example
    names its `source`. An example joined from two paragraphs (`distractor_share`) names them in
    `parts`: (context, offset in the joined context) pairs, whose teacher targets make the joined
    example's."""
    examples = []
    if "dev-train" in sources:
        examples += article_examples(train_articles(data_dir, without_tuning), rng, negative_share,
                                     distractor_share, "dev-train", workers)
        titles = train_titles(data_dir, without_tuning)
        v2_path = data_dir / "dev-v2.0.json"
        if unanswerable_share > 0 and v2_path.exists():
            for article in load_squad(v2_path):
                if article["title"] not in titles:
                    continue
                for para in article["paragraphs"]:
                    for qa in para["qas"]:
                        if qa.get("is_impossible") and rng.random() < unanswerable_share:
                            examples.append({"question": qa["question"], "context": para["context"],
                                             "answer_start": None, "answer_text": "", "source": "dev-train"})
    train_path = data_dir / "train-v1.1.json"
    if "squad-train" in sources and share > 0:
        if not train_path.exists():
            raise FileNotFoundError(f"{train_path} is missing: train with --sources dev-train, or add the file")
        own = random.Random(f"squad-train-{seed}")
        articles = [a | {"paragraphs": [p | {"qas": [q for q in p["qas"] if own.random() < share]}
                                        for p in a["paragraphs"]]} for a in load_squad(train_path)]
        examples += article_examples(articles, own, negative_share, distractor_share, "squad-train", workers)
    return examples


def article_examples(articles: list[dict], rng: random.Random, negative_share: float, distractor_share: float,
                     source: str, workers: int = 1) -> list[dict]:
    """Each question of the articles with its paragraph, and (`negative_share`) a hard negative,
    searched for in `workers` processes at once."""
    if negative_share > 0 and distractor_share == 0 and workers > 1:
        # Without distractors each question draws once, whatever its negative, so the draws can be
        # replayed first and the searches for the drawn ones run together.
        replay = random.Random()
        replay.setstate(rng.getstate())
        find_negatives(article_queries(articles, lambda: replay.random() < negative_share), workers)
    examples = []
    for article in articles:
        contexts = [para["context"] for para in article["paragraphs"]]
        for own, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                # The answer most annotators gave; its offset nearest the others' (see data README).
                text, _ = Counter(a["text"] for a in qa["answers"]).most_common(1)[0]
                start = next(a["answer_start"] for a in qa["answers"] if a["text"] == text)
                distinct = {(a["answer_start"], a["text"]) for a in qa["answers"]}
                example = {"question": qa["question"], "context": para["context"], "answer_start": start,
                           "answer_text": text, "all_answers": sorted(distinct), "source": source}
                examples.append(example)
                if negative_share > 0 and rng.random() < negative_share:
                    golds = frozenset(a["text"] for a in qa["answers"])
                    negative = hard_negative(qa["question"], tuple(contexts), own, golds)
                    if negative is None:
                        continue
                    # Draws only when asked for, so the examples without distractors stay as they were.
                    if distractor_share > 0 and rng.random() < distractor_share:
                        examples[-1] = with_distractor(example, negative, before=rng.random() < 0.5)
                    else:
                        examples.append({"question": qa["question"], "context": negative,
                                         "answer_start": None, "answer_text": "", "source": source})
    return examples


def with_distractor(example: dict, distractor: str, before: bool) -> dict:
    """The example with `distractor` joined to its context by a blank line, before or after it;
    the answers' offsets move with the paragraph."""
    own = example["context"]
    shift = len(distractor) + 2 if before else 0
    context = f"{distractor}\n\n{own}" if before else f"{own}\n\n{distractor}"
    parts = [(distractor, 0), (own, shift)] if before else [(own, 0), (distractor, len(own) + 2)]
    return example | {"context": context, "answer_start": example["answer_start"] + shift,
                      "all_answers": [(a0 + shift, text) for a0, text in example["all_answers"]],
                      "parts": parts}


WORD = re.compile(r"[A-Za-z]+")


def write_neighbours(encoder: str, path: Path, k: int = 8) -> None:
    """Each whole-word vocabulary entry (3+ letters) with its k nearest others by the cosine of the
    encoder's input embeddings. Written once and committed, so that every machine augments the same
    way: the teacher's targets are keyed by the augmented text, and a nearest-neighbour search in
    floating point can order near ties differently on other hardware."""
    import gzip

    from transformers import AutoModel

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    embeddings = AutoModel.from_pretrained(encoder, dtype=torch.float32).get_input_embeddings().weight.detach()
    words = sorted(w for w in tokenizer.get_vocab() if re.fullmatch(r"[a-z]{3,}", w))
    vectors = torch.nn.functional.normalize(embeddings[[tokenizer.convert_tokens_to_ids(w) for w in words]], dim=1)
    lines = []
    for b in range(0, len(words), 2048):
        sims = vectors[b:b + 2048] @ vectors.T
        sims[torch.arange(sims.shape[0]), torch.arange(b, b + sims.shape[0])] = -1.0
        for i, row in enumerate(sims.topk(k, dim=1).indices.tolist()):
            lines.append(" ".join([words[b + i]] + [words[j] for j in row]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=9, mtime=0))


@functools.lru_cache(maxsize=4)
def load_neighbours(path: Path) -> dict[str, tuple[str, ...]]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {w: tuple(rest) for w, *rest in (line.split() for line in f if line.strip())}


def swap_words(text: str, p: float, neighbours: dict[str, tuple[str, ...]], rng: random.Random,
               keep: list[tuple[int, int]] = ()) -> tuple[str, list[tuple[int, int]]]:
    """`text` with each known word outside the `keep` spans swapped for a random neighbour with
    probability p (its capitalisation kept); also the (old offset, shift) points to move offsets by."""
    out, shifts, last, shift = [], [], 0, 0
    for m in WORD.finditer(text):
        word = m.group()
        options = neighbours.get(word.lower())
        if not options or rng.random() >= p or any(a < m.end() and m.start() < b for a, b in keep):
            continue
        new = rng.choice(options)
        new = new.upper() if word.isupper() and len(word) > 1 else new.capitalize() if word[0].isupper() else new
        out += [text[last:m.start()], new]
        last = m.end()
        shift += len(new) - len(word)
        shifts.append((m.end(), shift))
    return "".join(out) + text[last:], shifts


def moved(offset: int, shifts: list[tuple[int, int]]) -> int:
    """Where a character at `offset` of the original text (outside every swapped word) is now."""
    i = bisect.bisect_right([end for end, _ in shifts], offset) - 1
    return offset + (shifts[i][1] if i >= 0 else 0)


def augmented(example: dict, p_question: float, p_context: float,
              neighbours: dict[str, tuple[str, ...]]) -> dict:
    """A variant of the example with words swapped for neighbours, drawn from a generator seeded by
    the example itself, so any machine makes the same variant of it whatever else it draws. Gold
    answers are never touched in the context; their offsets move with the text before them."""
    rng = random.Random(example_key(example["question"], example["context"]))
    question, _ = swap_words(example["question"], p_question, neighbours, rng)
    answers = example.get("all_answers") or []
    keep = [(a0, a0 + len(text)) for a0, text in answers]
    context, shifts = swap_words(example["context"], p_context, neighbours, rng, keep)
    variant = example | {"question": question, "context": context}
    if example["answer_start"] is not None:
        variant["answer_start"] = moved(example["answer_start"], shifts)
        variant["all_answers"] = [(moved(a0, shifts), text) for a0, text in answers]
    variant.pop("parts", None)  # a joined context is augmented as one text; the teacher reads the variant
    return variant


def as_list(text: str) -> tuple[str, dict[int, int]]:
    """`text` laid out as notes are: one sentence to a bullet, without its closing full stop; with
    how far each sentence moved (by the offset where it started)."""
    pieces, shifts, size = [], {}, 0
    for n, sentence in enumerate(split_sentences(text)):
        item = text[sentence.start:sentence.end]
        item = item[:-1] if item.endswith(".") else item
        prefix = ("\n" if n else "") + "- "
        size += len(prefix)
        shifts[sentence.start] = size - sentence.start
        pieces += [prefix, item]
        size += len(item)
    return "".join(pieces), shifts


def laid_out(example: dict) -> dict:
    """The example with its paragraph laid out as a list (`as_list`), read as the engine reads it
    (`reading_view`); the answers move with their text. An answer running across sentences, or an
    example joined from two paragraphs, is left as it was."""
    if example.get("parts"):
        return example
    listed, shifts = as_list(example["context"])
    starts = sorted(shifts)

    def moved_answer(a0: int, text: str) -> int | None:
        if a0 < starts[0]:
            return None
        a1 = a0 + shifts[starts[bisect.bisect_right(starts, a0) - 1]]
        return a1 if listed[a1:a1 + len(text)] == text else None

    # Its own source: the teacher never answered it (it learns from the gold spans alone).
    variant = example | {"context": reading_view("notes.md", listed), "source": f"{example['source']}, laid out"}
    if example["answer_start"] is None:
        return variant
    start = moved_answer(example["answer_start"], example["answer_text"])
    if start is None:
        return example
    kept = [(a, t) for a, t in ((moved_answer(a0, t), t) for a0, t in example.get("all_answers", [])) if a is not None]
    return variant | {"answer_start": start, "all_answers": kept}


@dataclass
class SoftTargets:
    """A teacher's answers to the training examples: for each (question, context) its likeliest start
    and end characters with their probabilities, and its probability of "no answer"."""

    keys: np.ndarray        # example_key of each row, as bytes
    null_start: np.ndarray  # (rows,) P(no answer) in the start distribution
    null_end: np.ndarray    # (rows,) and in the end distribution
    start_char: np.ndarray  # (rows, k) character offsets where the answer may start
    start_p: np.ndarray     # (rows, k) their probabilities
    end_char: np.ndarray    # (rows, k) character offsets (exclusive) where it may end
    end_p: np.ndarray

    def __post_init__(self) -> None:
        self._rows = {key.decode(): i for i, key in enumerate(self.keys)}

    @classmethod
    def load(cls, path: Path) -> "SoftTargets":
        with np.load(path, allow_pickle=False) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    def save(self, path: Path) -> None:
        """Written to a temporary file and renamed, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        os.replace(tmp, path)

    def row(self, key: str) -> int:
        if key not in self._rows:
            raise KeyError(f"no teacher targets for example {key}: were they made from the same data?")
        return self._rows[key]

    def tempered(self, row: int, which: str, temperature: float) -> list[tuple[int, float]]:
        """(character, probability) pairs, renormalised with "no answer" after p ** (1 / T)."""
        return [(c, q) for c, q in self._tempered(row, which, temperature)[1] if q > 0]

    def _tempered(self, row: int, which: str, temperature: float) -> tuple[float, list[tuple[int, float]]]:
        chars, probs = getattr(self, f"{which}_char")[row], getattr(self, f"{which}_p")[row]
        null = getattr(self, f"null_{which}")[row]
        p = np.concatenate([[null], probs]).astype(np.float64) ** (1.0 / temperature)
        p /= p.sum()
        return float(p[0]), [(int(c), float(q)) for c, q in zip(chars, p[1:])]

    def joined(self, parts: list[tuple[str, int]], which: str, temperature: float) -> list[tuple[int, float]]:
        """The tempered distribution over a context joined from paragraphs the teacher read apart.

        A paragraph's character c has odds p(c) / p(no answer) against "no answer" (its logit less
        the [CLS] logit); taking the [CLS] logit as the same in all of them, the joined softmax is
        each paragraph's odds, shifted to its offset, over 1 + their sum."""
        odds: list[tuple[int, float]] = []
        for key, offset in parts:
            null, chars = self._tempered(self.row(key), which, temperature)
            odds += [(offset + c, q / max(null, 1e-6)) for c, q in chars if q > 0]
        total = 1.0 + sum(o for _, o in odds)
        return [(c, o / total) for c, o in odds]


def featurize(examples: list[dict], tokenizer, max_length: int, stride: int, max_q: int,
              all_answers: bool = False, batch_size: int = 512) -> list[dict]:
    """Window each context and label the answer's token spans (CLS when none is in the window).

    `starts`/`ends` hold the majority answer's tokens, or with `all_answers` every distinct
    annotator answer's tokens that fall inside the window. Examples are tokenized `batch_size` at a
    time, which the fast tokenizer spreads over the CPU's cores (one at a time took 150 s of the
    full data's 125k windows on a 2-core AVX2 EPYC, 2026-12-04)."""
    features = []
    for b in range(0, len(examples), batch_size):
        batch = examples[b:b + batch_size]
        questions = truncated_questions(tokenizer, [ex["question"] for ex in batch], max_q)
        enc = tokenizer(questions, [ex["context"] for ex in batch], truncation="only_second", max_length=max_length,
                        stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
        for i, ids in enumerate(enc["input_ids"]):
            ex = batch[enc["overflow_to_sample_mapping"][i]]
            if ex["answer_start"] is None:
                answers = []
            elif all_answers:
                answers = ex["all_answers"]
            else:
                answers = [(ex["answer_start"], ex["answer_text"])]
            seq = enc.sequence_ids(i)
            offsets = enc["offset_mapping"][i]
            ctx = [t for t, s in enumerate(seq) if s == 1]
            starts, ends = [], []
            for a0, text in answers:
                a1 = a0 + len(text)
                if offsets[ctx[0]][0] <= a0 and offsets[ctx[-1]][1] >= a1:
                    starts.append(next(t for t in ctx if offsets[t][1] > a0))
                    ends.append(next(t for t in reversed(ctx) if offsets[t][0] < a1))
            feature = {"input_ids": ids, "starts": sorted(set(starts)) or [0], "ends": sorted(set(ends)) or [0],
                       "key": example_key(ex["question"], ex["context"]), "source": ex.get("source"),
                       "parts": [(example_key(ex["question"], c), offset) for c, offset in ex.get("parts", [])],
                       "context_offsets": [(t, offsets[t][0], offsets[t][1]) for t in ctx]}
            if "token_type_ids" in enc:  # BERT-style encoders; MPNet and RoBERTa have none
                feature["token_type_ids"] = enc["token_type_ids"][i]
            features.append(feature)
    return features


def truncated_questions(tokenizer, questions: list[str], max_q: int) -> list[str]:
    """At most `max_q` tokens of each question, so a long one cannot crowd out the context."""
    ids = tokenizer(questions, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(q[:max_q]) if len(q) >= max_q else question for question, q in zip(questions, ids)]


def example_key(question: str, context: str) -> str:
    """Names a (question, context) pair, so a teacher's targets find their example."""
    return hashlib.sha1(f"{question}\x1f{context}".encode()).hexdigest()


def attach_soft_targets(features: list[dict], soft: "SoftTargets", temperature: float) -> None:
    """Give each window the teacher's start and end distributions over its tokens.

    The teacher saw whole paragraphs and answered in characters; a window gets the mass of the
    characters its context tokens cover, and its [CLS] slot the rest (the teacher's "no answer"
    plus whatever lies outside the window), so windows without the answer learn to say so."""
    for f in features:
        if f["parts"]:  # a paragraph joined with a distractor: the teacher read them apart
            starts = soft.joined(f["parts"], "start", temperature)
            ends = soft.joined(f["parts"], "end", temperature)
        else:
            row = soft.row(f["key"])
            starts = soft.tempered(row, "start", temperature)
            ends = soft.tempered(row, "end", temperature)
        f["soft_starts"] = window_distribution(f["context_offsets"], starts, at_start=True)
        f["soft_ends"] = window_distribution(f["context_offsets"], ends, at_start=False)


def window_distribution(context_offsets: list[tuple[int, int, int]], chars: list[tuple[int, float]],
                        at_start: bool) -> list[tuple[int, float]]:
    """(token, probability) pairs for one window; token 0 ([CLS]) takes the mass no token covers.

    A start character belongs to the token with c0 <= char < c1, an end character to the one with
    c0 < char <= c1 (offsets are sorted, so a binary search finds it)."""
    firsts = [c0 for _, c0, _ in context_offsets]
    lasts = [c1 for _, _, c1 in context_offsets]
    mass: dict[int, float] = {}
    for char, prob in chars:
        i = bisect.bisect_right(firsts, char) - 1 if at_start else bisect.bisect_left(lasts, char)
        if 0 <= i < len(context_offsets):
            token, c0, c1 = context_offsets[i]
            if (c0 <= char < c1) if at_start else (c0 < char <= c1):
                mass[token] = mass.get(token, 0.0) + prob
    return [(0, max(0.0, 1.0 - sum(mass.values())))] + sorted(mass.items())


def marginal_span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor,
                       start_mask: torch.Tensor, end_mask: torch.Tensor) -> torch.Tensor:
    """-log of the probability mass on any gold start plus on any gold end, halved like the
    transformers QA loss (which this equals when each feature has one gold span)."""
    return span_loss_rows(start_logits, end_logits, start_mask, end_mask).mean()


def span_loss_rows(start_logits: torch.Tensor, end_logits: torch.Tensor,
                   start_mask: torch.Tensor, end_mask: torch.Tensor) -> torch.Tensor:
    def nll(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        gold_mass = torch.logsumexp(logits.masked_fill(~gold, float("-inf")), dim=-1)
        return torch.logsumexp(logits, dim=-1) - gold_mass
    return (nll(start_logits, start_mask) + nll(end_logits, end_mask)) / 2


def length_grouped_batches(features: list[dict], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (less padding, so less compute), in random order."""
    order = list(range(len(features)))
    rng.shuffle(order)
    batches = []
    chunk = batch_size * 50
    for i in range(0, len(order), chunk):
        group = sorted(order[i:i + chunk], key=lambda j: len(features[j]["input_ids"]))
        batches += [group[k:k + batch_size] for k in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(features: list[dict], idx: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(features[j]["input_ids"]) for j in idx)
    shape = (len(idx), width)
    batch = {"input_ids": torch.full(shape, pad_id, dtype=torch.long),
             "attention_mask": torch.zeros(shape, dtype=torch.long),
             "start_mask": torch.zeros(shape, dtype=torch.bool), "end_mask": torch.zeros(shape, dtype=torch.bool)}
    if "token_type_ids" in features[idx[0]]:
        batch["token_type_ids"] = torch.zeros(shape, dtype=torch.long)
    if "soft_starts" in features[idx[0]]:
        batch["soft_start"] = torch.zeros(shape)
        batch["soft_end"] = torch.zeros(shape)
        batch["distill_weight"] = torch.tensor([features[j]["distill_weight"] for j in idx])
    for r, j in enumerate(idx):
        f = features[j]
        n = len(f["input_ids"])
        batch["input_ids"][r, :n] = torch.tensor(f["input_ids"])
        batch["attention_mask"][r, :n] = 1
        if "token_type_ids" in batch:
            batch["token_type_ids"][r, :n] = torch.tensor(f["token_type_ids"])
        batch["start_mask"][r, f["starts"]] = True
        batch["end_mask"][r, f["ends"]] = True
        if "soft_start" in batch:
            for token, p in f["soft_starts"]:
                batch["soft_start"][r, token] = p
            for token, p in f["soft_ends"]:
                batch["soft_end"][r, token] = p
    return batch


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class WeightAverage:
    """Exponential moving average of the weights. The decay ramps up from 0 ((1+t)/(10+t)), so the
    randomly initialised QA head of the first steps does not linger in the average. Frozen weights
    are left out: averaging a constant drifts it by float rounding (one float16 step in 3,900 steps
    for MPNet's token embeddings), which a low-rank change would then have to store."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].mul_(d).add_(p.detach(), alpha=1 - d)

    def averaged(self, model: torch.nn.Module) -> torch.nn.Module:
        averaged = copy.deepcopy(model)
        averaged.load_state_dict(self.shadow, strict=False)
        return averaged


def distillation_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, soft_start: torch.Tensor,
                      soft_end: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy from the teacher's (already tempered) distributions to the reader's tempered
    ones, times T^2 so its gradients keep their size as T changes (Hinton et al., 2015)."""
    return distillation_loss_rows(start_logits, end_logits, soft_start, soft_end, temperature).mean()


def distillation_loss_rows(start_logits: torch.Tensor, end_logits: torch.Tensor, soft_start: torch.Tensor,
                           soft_end: torch.Tensor, temperature: float) -> torch.Tensor:
    def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(target * (logits.float() / temperature).log_softmax(-1)).sum(-1)
    return (ce(start_logits, soft_start) + ce(end_logits, soft_end)) / 2 * temperature ** 2


def batch_loss(model, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> torch.Tensor:
    """The gold-span loss, and with a teacher each window's mix of it and the teacher's
    (`distill_weight` per window: the recipe's share, all of it for an augmented window)."""
    out = model(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
    gold = span_loss_rows(out.start_logits, out.end_logits, batch["start_mask"], batch["end_mask"])
    if "soft_start" not in batch:
        return gold.mean()
    soft = distillation_loss_rows(out.start_logits, out.end_logits, batch["soft_start"], batch["soft_end"],
                                  temperature)
    w = batch["distill_weight"]
    return ((1 - w) * gold + w * soft).mean()


def seeded(seed: int) -> random.Random:
    """Seed every generator; the returned one draws the examples and then the batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return random.Random(seed)


def load_model(base: str, device: str, attention_dropout: float | None = None):
    """Tokenizer and a QA model from `base`; the QA head starts from torch's current random state.
    `attention_dropout` replaces the encoder's own (None: keep it)."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    settings = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    model = AutoModelForQuestionAnswering.from_pretrained(base, dtype=torch.float32, **settings).to(device)
    return tokenizer, model


def use_compile(choice: str, device: str, steps: int) -> bool:
    """torch.compile where it pays: its minute of compiling is won back after about 100 steps on a CPU;
    inductor needs a C++ compiler there."""
    if choice != "auto":
        return choice == "on"
    import shutil
    return device == "cpu" and steps >= 200 and any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def compiled(model, device: str):
    """The model's forward compiled; on a CPU with the plain attention, which inductor fuses into
    a faster step than the scaled-dot-product kernel (1.2-1.3 s against 1.5-1.6 s at batch 32)."""
    if device == "cpu":
        model.set_attn_implementation("eager")
    return torch.compile(model, dynamic=True)


def build_examples(args: argparse.Namespace, rng: random.Random) -> list[dict]:
    examples = training_examples(args.data, args.unanswerable, rng, args.negatives, args.without_tuning_articles,
                                 args.distractors, args.sources, args.share, args.seed, args.workers)
    if args.layouts > 0:
        # Drawn from its own generator, so the other draws (and the teacher's targets) stay as they were.
        draw = random.Random(f"layouts-{args.seed}")
        examples = [laid_out(ex) if draw.random() < args.layouts else ex for ex in examples]
    if args.limit:
        rng.shuffle(examples)
        examples = examples[:args.limit]
    return examples


def parameter_groups(model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; with `layer_decay` < 1, lower layers learn slower."""
    n_layers = model.config.num_hidden_layers
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = re.search(r"\.layer\.(\d+)\.", name)
        depth = 0 if ".embeddings." in name else int(layer.group(1)) + 1 if layer else n_layers + 1
        decays = not name.endswith(no_decay)
        group = groups.setdefault((depth, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr": lr * layer_decay ** (n_layers + 1 - depth)})
        group["params"].append(param)
    return list(groups.values())


# Settings that may change between a stopped run and its resumption: they do not change the result.
RESUMABLE_CHANGES = ("resume", "threads", "workers", "log_every", "checkpoint_every", "checkpoint_dir", "stop_after_steps", "stop_at",
                     "compile")


def run_settings(args: argparse.Namespace) -> dict[str, str]:
    return {k: str(v) for k, v in vars(args).items() if k not in RESUMABLE_CHANGES}


class Checkpoint:
    """A training run's state between steps, so that a stopped run goes on where it was.

    Tensors (weights, their average, AdamW's moments, torch's random state) go to a safetensors
    file and the rest (step, epoch, the batch generator's state, the settings) to JSON: nothing
    is pickled. `progress.json` is replaced last and atomically and names the tensors' file, so a
    kill at any moment leaves the previous checkpoint whole."""

    def __init__(self, folder: Path, settings: dict[str, str]):
        self.folder, self.settings = folder, settings

    def exists(self) -> bool:
        return (self.folder / "progress.json").is_file()

    def save(self, model, optimizer, ema: "WeightAverage | None", step: int, epoch: int, first_step: int,
             epoch_rng: tuple) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{n}": p.detach().cpu().contiguous() for n, p in model.named_parameters()}
        if ema is not None:
            tensors |= {f"ema.{n}": t.cpu().contiguous() for n, t in ema.shadow.items()}
        for i, param in enumerate(p for g in optimizer.param_groups for p in g["params"]):
            for name, value in optimizer.state.get(param, {}).items():
                tensors[f"optimizer.{i}.{name}"] = torch.as_tensor(value).cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        name = f"state-{step}.safetensors"
        save_file(tensors, self.folder / name)
        progress = {"step": step, "epoch": epoch, "first_step": first_step, "tensors": name,
                    "epoch_rng": [epoch_rng[0], list(epoch_rng[1]), epoch_rng[2]], "settings": self.settings}
        tmp = self.folder / "progress.json.tmp"
        tmp.write_text(json.dumps(progress))
        os.replace(tmp, self.folder / "progress.json")
        for old in self.folder.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink()

    def restore(self, model, optimizer, ema: "WeightAverage | None") -> tuple[int, int, int, tuple]:
        """Loads the state into the given objects; returns (step, epoch, first step of that epoch,
        the batch generator's state when that epoch began)."""
        from safetensors.torch import load_file

        progress = json.loads((self.folder / "progress.json").read_text())
        changed = sorted(k for k in set(progress["settings"]) | set(self.settings)
                         if progress["settings"].get(k) != self.settings.get(k))
        if changed:
            raise SystemExit(f"the checkpoint in {self.folder} was made with other settings ({', '.join(changed)}): "
                             "resume with the same ones, or start afresh without --resume")
        tensors = load_file(self.folder / progress["tensors"])
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(tensors[f"model.{n}"])
            if ema is not None:
                for n in ema.shadow:
                    ema.shadow[n].copy_(tensors[f"ema.{n}"])
        for i, param in enumerate(p for g in optimizer.param_groups for p in g["params"]):
            state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optimizer.{i}.")}
            if state:
                optimizer.state[param] = {k: v.to(param.device) if v.dim() else v for k, v in state.items()}
        torch.set_rng_state(tensors["rng.torch"])
        version, internal, gauss = progress["epoch_rng"]
        return progress["step"], progress["epoch"], progress["first_step"], (version, tuple(internal), gauss)

    def remove(self) -> None:
        if self.folder.is_dir():
            for f in self.folder.iterdir():
                f.unlink()
            self.folder.rmdir()


def train(model, tokenizer, features: list[dict], args: argparse.Namespace, rng: random.Random,
          device: str, log=print, augmented: list[dict] | None = None) -> torch.nn.Module | None:
    """AdamW with linear warm-up and decay; returns the weight average (`--ema`) or the last weights,
    or None when `--stop-after-steps` stopped it (its checkpoint then holds the run). With
    `augmented` windows, every other epoch trains on them instead of the originals (the cost stays
    that of the epochs asked for). Each epoch's batches are drawn from `rng` as it stood when the
    epoch began, which the checkpoint keeps, so a resumed run trains on the same batches."""
    use_bf16 = use_bf16_autocast(args.precision, device)
    n_batches = math.ceil(len(features) / args.batch_size)
    total_steps = max(1, int(n_batches * args.epochs))
    passes = [features] if augmented is None else [features, augmented]
    compiling = use_compile(args.compile, device, total_steps)
    log(json.dumps({"event": "train", "features": len(features), "augmented": len(augmented or []),
                    "steps": total_steps, "device": device, "bf16": use_bf16, "compiled": compiling,
                    "args": {k: str(v) for k, v in vars(args).items()}}))
    forward = compiled(model, device) if compiling else model

    if args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameter_groups(model, args.lr, args.weight_decay, args.layer_decay), lr=args.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps)
    ema = WeightAverage(model, args.ema) if args.ema else None

    checkpoint = Checkpoint(args.checkpoint_dir, run_settings(args))
    step, epoch, first_step, epoch_rng = 0, 0, 0, rng.getstate()
    if args.resume and checkpoint.exists():
        step, epoch, first_step, epoch_rng = checkpoint.restore(model, optimizer, ema)
        with warnings.catch_warnings():  # the schedule only moves on to where the run stopped
            warnings.simplefilter("ignore")
            for _ in range(step):
                scheduler.step()
        log(json.dumps({"event": "resumed", "step": step, "from": str(checkpoint.folder)}))
    model.train()
    t0, running, steps_here = time.time(), [], 0
    while step < total_steps:
        current = passes[epoch % len(passes)]
        rng.setstate(epoch_rng)
        batches = length_grouped_batches(current, args.batch_size, rng)
        for idx in batches[step - first_step:]:
            if step >= total_steps:
                break
            batch = {k: v.to(device) for k, v in collate(current, idx, tokenizer.pad_token_id).items()}
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
                loss = batch_loss(forward, batch, args.temperature)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model, step)
            step += 1
            steps_here += 1
            running.append(loss.detach())
            if step % args.log_every == 0 or step == total_steps:
                log(json.dumps({"step": step, "epoch": round(step / n_batches, 3),
                                "loss": round(torch.stack(running).mean().item(), 4),
                                "lr": max(scheduler.get_last_lr()), "elapsed_s": round(time.time() - t0, 1)}))
                running = []
            stopping = args.stop_after_steps and steps_here >= args.stop_after_steps and step < total_steps
            if stopping or (args.checkpoint_every and step % args.checkpoint_every == 0 and step < total_steps):
                checkpoint.save(model, optimizer, ema, step, epoch, first_step, epoch_rng)
            if stopping:
                log(json.dumps({"event": "stopped", "step": step, "resume_with": "--resume"}))
                return None
            if args.stop_at and time.time() >= args.stop_at and step < total_steps:
                log(json.dumps({"event": "cut short", "step": step, "of": total_steps}))
                total_steps = step  # ends both loops; the weights (averaged) are kept as they are
        epoch += 1
        first_step, epoch_rng = step, rng.getstate()
    model.eval()
    if ema is None:
        return model
    if args.save_last is not None:
        save(model, tokenizer, args.save_last)
    return ema.averaged(model).eval()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = seeded(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    from rag.config import default_embedding_model_path
    base = args.base or str(default_embedding_model_path())
    if args.write_neighbours:
        write_neighbours(base, args.neighbours)
        print(json.dumps({"event": "neighbours", "out": str(args.neighbours)}), flush=True)
        return
    tokenizer, model = load_model(base, device, args.attention_dropout)
    examples = build_examples(args, rng)
    features = featurize(examples, tokenizer, args.max_length, args.stride, args.max_question_tokens,
                         all_answers=args.targets == "all")
    extra = augmented_features(examples, tokenizer, args)
    print(json.dumps({"event": "start", "examples": len(examples), "features": len(features)}), flush=True)
    set_soft_targets(features, args)
    t0 = time.time()
    trained = train(model, tokenizer, features, args, rng, device, log=lambda line: print(line, flush=True),
                    augmented=extra)
    if trained is None:  # stopped early (--stop-after-steps): the checkpoint waits for --resume
        return
    save(trained, tokenizer, args.out)
    Checkpoint(args.checkpoint_dir, run_settings(args)).remove()
    write_training_args(args.out, args, bf16_autocast=use_bf16_autocast(args.precision, device), device=device,
                        examples=len(examples), train_seconds=round(time.time() - t0))
    print(json.dumps({"event": "done", "out": str(args.out), "train_seconds": round(time.time() - t0)}), flush=True)


def augmented_features(examples: list[dict], tokenizer, args: argparse.Namespace) -> list[dict] | None:
    """The windows of every example's augmented variant, with the teacher's targets (None: no augmentation)."""
    if not args.augment:
        return None
    neighbours = load_neighbours(args.neighbours)
    variants = [augmented(ex, args.augment_question, args.augment_context, neighbours) for ex in examples]
    features = featurize(variants, tokenizer, args.max_length, args.stride, args.max_question_tokens,
                         all_answers=args.targets == "all")
    for f in features:
        f["distill_weight"] = 1.0
    attach_soft_targets(features, SoftTargets.load(args.augment_targets), args.temperature)
    return features


def set_soft_targets(features: list[dict], args: argparse.Namespace) -> None:
    """The windows' teacher distributions as `args` asks for them (none with `--soft-targets none`);
    windows shared between runs drop those of an earlier run first."""
    for f in features:
        f.pop("soft_starts", None)
        f.pop("soft_ends", None)
        f["distill_weight"] = args.distill_weight
    if args.soft_targets is not None:
        taught = [f for f in features if f.get("source") in TEACHER_SOURCES]
        attach_soft_targets(taught, SoftTargets.load(args.soft_targets), args.temperature)
        for f in features:  # examples the teacher never answered learn from the gold spans alone
            if f.get("source") not in TEACHER_SOURCES:
                f.update(soft_starts=[], soft_ends=[], distill_weight=0.0)


def write_training_args(out: Path, args: argparse.Namespace, **facts) -> None:
    """Every setting of the run and what it measured, beside the weights it wrote."""
    (out / "training_args.json").write_text(
        json.dumps({k: str(v) for k, v in vars(args).items()} | facts, indent=2) + "\n")


def save(model, tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu").to(torch.float16).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main()
