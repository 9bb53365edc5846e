"""The engine: one object that owns the models and answers questions from an index.

The CLI, the web chat and the evaluation runner all go through `Engine.ask`. Models load on
first use and stay loaded; the indexes are kept by `engine.library` (rag/library.py).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .citations import assemble, question_ranges, sentence_weight
from .config import Config, check_settings
from .documents import printable, reading_view, table_row_in_context
from .embeddings import Embedder
from .errors import QuestionError
from .index import CorpusIndex, word_overlap
from .library import SEED_INDEX, Library, Progress
from .milvus_store import MilvusIndex
from .reader import Reader, ReaderSpan
from .retriever import Retriever
from .questions import is_question, is_yes_no
from .schema import Answer, Citation, Document, Passage, Sentence

__all__ = ["Engine", "SEED_INDEX", "UNRELATED"]
# Why an answer abstained when no retrieved passage is about the question: nothing was read.
UNRELATED = "no passage of the documents is about this question"


class Engine:
    """Answers questions: retrieve, check the passages are about the question, read, assemble."""

    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else Config()
        c = self.config
        self.embedder = Embedder(c.embedding_model_source(), device=c.device, backend=c.backend,
                                 cache_dir=c.cache_dir / "onnx", dtype=c.embedding_dtype)
        self.reader = _reader(c)
        self.retriever = Retriever(self.embedder, candidates=c.candidates, fusion=c.fusion, dense_weight=c.dense_weight,
                                   rrf_k=c.rrf_k)
        self.library = Library(c, self.embedder)

    def with_reader(self, reader_model: str) -> "Engine":
        """This engine reading with another reader (a name from READERS, or a path): the embedder,
        retriever and indexes are shared, so a second reader costs one more model, not a second engine."""
        other = copy.copy(self)
        other.config = self.config.with_(reader_model=reader_model)
        other.reader = _reader(other.config)
        return other

    # ---- answering -------------------------------------------------------------------------

    def ask(self, question: str, index: str | CorpusIndex | MilvusIndex | None = None, top_k: int | None = None,
            threshold: float | None = None) -> Answer:
        """Answer `question` from the index (default: the seed corpus), or abstain."""
        if top_k is None:
            top_k = self.config.top_k
        if threshold is None:
            threshold = self.config.threshold
        check_settings(top_k, threshold)
        question = self.check_question(question)
        corpus = self.index(index) if index is None or isinstance(index, str) else index
        answer = self._answer(question, corpus, top_k, threshold)
        if answer.abstained:
            respelt = corpus.respell(question)
            if respelt != question and not self._answer(respelt, corpus, top_k, threshold).abstained:
                answer.reason += f'; did you mean "{respelt}"'
        return answer

    def _answer(self, question: str, corpus: CorpusIndex, top_k: int, threshold: float) -> Answer:
        passages = self.retriever.retrieve(corpus, question, top_k)
        if not self.related(question, corpus, passages):
            # Nothing retrieved is even about the question: abstain without reading.
            return Answer(question=question, text="", score=0.0, abstained=True, citations=[], passages=passages,
                          reason=UNRELATED)
        if is_yes_no(question):
            return self._closest_sentence(question, corpus, passages)
        spans, read = self._read(question, corpus, passages)
        return assemble(question, corpus, passages[:read], spans, threshold)

    def _closest_sentence(self, question: str, corpus: CorpusIndex, passages: list[Passage]) -> Answer:
        """A yes/no question gets no span (none says yes or no) but the sentence closest to it in
        meaning, among the retrieved passages' statements (a FAQ's own question is no evidence), as the
        one citation, so the user can judge."""
        near = self._sentence_similarities(question, corpus, passages, keep=lambda text: not is_question(text))
        if not near:
            return Answer(question=question, text="", score=0.0, abstained=True, citations=[], passages=passages,
                          reason="a yes/no question: answers here are spans of the text, and no span says yes or no")
        similarity, doc, sentence = max(near, key=lambda t: t[0])
        citation = Citation(doc=doc.name, sentence=doc.text[sentence.start:sentence.end], start=sentence.start,
                            end=sentence.end, answer_start=sentence.start, answer_end=sentence.end, score=similarity)
        return Answer(question=question, text="", score=0.0, abstained=True, citations=[citation], passages=passages,
                      reason="a yes/no question: answers here are spans of the text, and no span says yes or no; "
                             "the sentence closest to the question is cited")

    def _sentence_similarities(self, question: str, corpus: CorpusIndex, passages: list[Passage],
                               keep: Callable[[str], bool] = lambda text: True) -> list[tuple[float, Document, Sentence]]:
        """(cosine with the question, document, sentence) for the retrieved passages' sentences that `keep`.
        A Markdown table row is judged with its table's header row above it (`table_row_in_context`)."""
        found = {}
        for p in passages:
            doc = corpus.by_name[p.doc]
            for s in doc.sentences_in(p.start, p.end):
                if (doc.name, s) in found:  # overlapping chunks share sentences
                    continue
                text = table_row_in_context(doc.name, doc.text, s.start, s.end)
                if keep(text):
                    found[(doc.name, s)] = (doc, s, text)
        if not found:
            return []
        vectors = self.embedder.encode_few([text for _, _, text in found.values()])
        similarities = vectors @ self.embedder.encode_query(question)
        return [(float(sim), doc, s) for sim, (doc, s, _) in zip(similarities, found.values())]

    def related(self, question: str, corpus: CorpusIndex, passages: list[Passage]) -> bool:
        """Whether a retrieved passage is about the question: close in meaning, holding most of its
        words, or holding a sentence close to it that has half its words.

        The cosine with a whole chunk misses short questions over a chunk of many topics (a web page of
        opening hours, fees and loan rules: 0.15 for "How much do non-residents pay?" over the chunk that
        says). Sentences are embedded only when the cheaper tests fail, and only those sharing words.
        """
        c = self.config
        if not passages:
            return False
        if max(p.similarity for p in passages) >= c.min_similarity or any(
                word_overlap(question, p.text) >= c.min_word_overlap for p in passages):
            return True
        near = self._sentence_similarities(question, corpus, passages,
                                           keep=lambda text: word_overlap(question, text) >= c.sentence_word_overlap)
        return any(similarity >= c.sentence_similarity for similarity, _, _ in near)

    def _read(self, question: str, corpus: CorpusIndex, passages: list[Passage]) -> tuple[list[ReaderSpan], int]:
        """Spans from the best passages alone when they hold a confident answer, else from all.

        Reading one or two passages instead of several is most of what makes an answer fast; the
        others are read (in one batch) only when the first ones are unsure. Spans are weighted down
        by retrieval rank (`rank_decay`) and by how few of the question's words their sentence holds
        (`sentence_overlap_weight`), before the early-stop check: "sure" means sure as weighted.
        Returns the spans, best first, and how many passages were read.
        """
        c = self.config
        stop = c.early_stop
        batches = [passages] if math.isinf(stop) else [passages[:c.first_read], passages[c.first_read:]]
        spans: list[ReaderSpan] = []
        read = 0
        for batch in batches:
            if not batch:
                continue
            found = self.reader.read(question, [reading_view(p.doc, p.text) for p in batch],
                                     exclude=[question_ranges(corpus.by_name[p.doc], p) for p in batch])
            spans += [replace(s, passage=s.passage + read, score=s.score * c.rank_decay ** (s.passage + read)
                              * sentence_weight(question, corpus.by_name[batch[s.passage].doc],
                                                batch[s.passage].start + s.start, c.sentence_overlap_weight))
                      for s in found]
            read += len(batch)
            if any(s.score >= stop for s in spans):
                break
        return sorted(spans, key=lambda s: s.score, reverse=True), read

    def check_question(self, question: str) -> str:
        """The question as read: refused when it is not text, empty or too long (counted as given,
        before its spaces are collapsed), its whitespace collapsed, and bytes that were not UTF-8
        (a terminal's argument or a piped line in another encoding) shown as U+FFFD."""
        if not isinstance(question, str):
            raise QuestionError(f"The question must be text (a str), not {type(question).__name__}.")
        if not question.strip():
            raise QuestionError("The question is empty: ask something about the documents.")
        if len(question) > self.config.max_question_chars:
            raise QuestionError(
                f"The question is {len(question):,} characters long; the limit is "
                f"{self.config.max_question_chars:,}. Ask a shorter question."
            )
        return printable(" ".join(question.split()))

    def warm_up(self, index: str | None = None) -> None:
        """Load the models and the index now rather than on the first question."""
        self.index(index)
        self.embedder.encode_query("warm up")
        self.reader.load()

    # ---- the library of indexes (rag/library.py), as the Python API offers it ----------------

    def index(self, name: str | None = None) -> CorpusIndex:
        return self.library.index(name)

    def build(self, paths: list[Path], name: str, progress: Progress | None = None) -> tuple[CorpusIndex, list[str]]:
        return self.library.build(paths, name, progress)

    def add(self, paths: list[Path], name: str, progress: Progress | None = None) -> tuple[CorpusIndex, list[str]]:
        return self.library.add(paths, name, progress)

    def remove(self, doc_names: list[str], name: str) -> CorpusIndex:
        return self.library.remove(doc_names, name)


def _reader(c: Config) -> Reader:
    """The reader `c` names, not yet loaded."""
    return Reader(c.reader_model_id, device=c.device, max_seq_length=c.max_seq_length, doc_stride=c.doc_stride,
                  max_answer_tokens=c.max_answer_tokens, quantize=c.reader_quantize, dtype=c.reader_dtype,
                  backend=c.backend, cache_dir=c.cache_dir / "onnx", rebuilt_dir=c.cache_dir / "readers")
