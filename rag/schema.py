"""The plain records that flow between the stages: documents → chunks → passages → answer."""

from __future__ import annotations

import bisect
import functools
import itertools
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Sentence:
    """A sentence by its character offsets in its document: `doc.text[start:end]`."""

    start: int
    end: int


@dataclass
class Document:
    name: str
    text: str
    sentences: list[Sentence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "invalid UTF-8 bytes were replaced"

    @functools.cached_property
    def sentence_starts(self) -> list[int]:
        """Where each sentence starts, for binary search (made once: a document does not change)."""
        return [s.start for s in self.sentences]

    def sentences_in(self, start: int, end: int) -> list[Sentence]:
        """The sentences overlapping [start, end) (a passage's), in order."""
        first = max(bisect.bisect_right(self.sentence_starts, start) - 1, 0)
        return list(itertools.takewhile(lambda s: s.start < end,
                                        (s for s in self.sentences[first:] if s.end > start)))


@dataclass(frozen=True)
class Chunk:
    """A piece of one document the retriever ranks and the reader reads."""

    doc_id: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Ranking:
    """Chunk ids, best first, with their scores: the one result type every retriever returns."""

    ids: list[int]
    scores: list[float]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its document's name and its retrieval scores."""

    chunk_id: int
    doc: str
    start: int
    end: int
    text: str
    score: float  # the retriever's fused score of the dense and BM25 searches: orders passages
    similarity: float  # cosine of question and chunk embeddings: says whether it is related at all


@dataclass(frozen=True)
class Citation:
    """A sentence supporting the answer, with the answer span inside it (both in document offsets)."""

    doc: str
    sentence: str
    start: int
    end: int
    answer_start: int
    answer_end: int
    score: float


@dataclass
class Answer:
    question: str
    text: str  # '' when abstained
    score: float  # confidence in [0, 1]: the answer's probability (pooled over the places it is found)
    abstained: bool
    citations: list[Citation]
    passages: list[Passage]  # what the reader looked at, best first
    reason: str = ""  # why it abstained, in words
    # The answer against the reader's own "no answer" in its window, p / (p + p_null): what the threshold
    # tests (0 where nothing was read).
    against_no_answer: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.abstained and self.citations:  # a yes/no question: the closest sentence, for the user to judge
            return "\n".join([f"No span of the documents answers this ({self.reason}):"] +
                             [f'  [{c.doc}:{c.start}-{c.end}] "{_one_line(c.sentence)}"' for c in self.citations])
        if self.abstained:
            return f"Not in the documents ({self.reason})."
        lines = [f"{_one_line(self.text)}   (confidence {self.score:.2f})"]
        lines += [f'  [{c.doc}:{c.start}-{c.end}] "{_one_line(c.sentence)}"' for c in self.citations]
        return "\n".join(lines)


def _one_line(text: str) -> str:
    """Text as printed: line breaks of hard-wrapped documents become spaces (offsets stay the document's)."""
    return " ".join(text.split())
