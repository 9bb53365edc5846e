"""The engine: one object that owns the models and indexes, and answers questions.

The CLI, the web chat and the evaluation runner all go through `Engine.ask`. Models load on
first use and stay loaded; indexes are read from disk once per process.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from .chunking import chunk_documents
from .citations import assemble, question_ranges
from .config import Config, check_settings
from .documents import collect_files, printable, read_document, reading_view
from .embeddings import Embedder
from .errors import DocumentError, IndexStoreError, QuestionError
from .index import (CorpusIndex, build_index, load_index, locked, merge_index, read_manifest, save_index, sha256,
                    stamp, word_overlap)
from .reader import Reader, ReaderSpan
from .retriever import Retriever
from .questions import is_question, is_yes_no
from .schema import Answer, Citation, Document, Passage, Sentence

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let a final newline in
SEED_INDEX = "seed"


class Engine:
    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else Config()
        c = self.config
        self.embedder = Embedder(c.embedding_model_source(), device=c.device, backend=c.backend,
                                 cache_dir=c.cache_dir / "onnx", dtype=c.embedding_dtype)
        self.reader = Reader(
            c.reader_model_id, device=c.device, max_seq_length=c.max_seq_length, doc_stride=c.doc_stride,
            max_answer_tokens=c.max_answer_tokens, quantize=c.reader_quantize, dtype=c.reader_dtype, backend=c.backend,
            cache_dir=c.cache_dir / "onnx",
        )
        self.retriever = Retriever(self.embedder, candidates=c.candidates, fusion=c.fusion, dense_weight=c.dense_weight,
                                   rrf_k=c.rrf_k)
        self._indexes: dict[str, CorpusIndex] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}  # which write of each index folder is loaded
        self._lock = threading.RLock()

    # ---- answering -------------------------------------------------------------------------

    def ask(self, question: str, index: str | CorpusIndex | None = None, top_k: int | None = None,
            threshold: float | None = None) -> Answer:
        """Answer `question` from the index (default: the seed corpus), or abstain."""
        if top_k is None:
            top_k = self.config.top_k
        if threshold is None:
            threshold = self.config.abstain_threshold
        check_settings(top_k, threshold)
        question = self.check_question(question)
        corpus = index if isinstance(index, CorpusIndex) else self.index(index)
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
                          reason="no passage of the documents is about this question")
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
        """(cosine with the question, document, sentence) for the retrieved passages' sentences that `keep`."""
        found = {}
        for p in passages:
            doc = corpus.by_name[p.doc]
            for s in doc.sentences_in(p.start, p.end):
                if (doc.name, s) not in found and keep(doc.text[s.start:s.end]):
                    found[(doc.name, s)] = (doc, s)
        if not found:
            return []
        vectors = self.embedder.encode([doc.text[s.start:s.end] for doc, s in found.values()])
        similarities = vectors @ self.embedder.encode_query(question)
        return [(float(sim), doc, s) for sim, (doc, s) in zip(similarities, found.values())]

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
        by retrieval rank (`rank_decay`). Returns the spans, best first, and how many passages were read.
        """
        c = self.config
        batches = [passages] if c.early_stop_score is None else [passages[:c.first_read], passages[c.first_read:]]
        spans: list[ReaderSpan] = []
        read = 0
        for batch in batches:
            if not batch:
                continue
            found = self.reader.read(question, [reading_view(p.doc, p.text) for p in batch],
                                     exclude=[question_ranges(corpus.by_name[p.doc], p) for p in batch])
            spans += [replace(s, passage=s.passage + read, score=s.score * c.rank_decay ** (s.passage + read))
                      for s in found]
            read += len(batch)
            if c.early_stop_score is not None and any(s.score >= c.early_stop_score for s in spans):
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

    # ---- indexes ---------------------------------------------------------------------------

    def index_path(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise IndexStoreError(
                f"Invalid index name {name!r}: use letters, digits, '.', '_' or '-' (up to 64, not starting with '.')."
            )
        return self.config.index_dir / name

    def index(self, name: str | None = None) -> CorpusIndex:
        """The named index, loaded once per process and again when another process has rewritten it
        (one stat per call); the seed index is built on first use."""
        if name is None:
            name = self.config.index_name
        with self._lock:
            if not self._is_current(name):
                if name == SEED_INDEX:
                    self._seed_index()
                else:
                    with locked(self.config.index_dir, exclusive=False):
                        self._keep(name, load_index(self.index_path(name), self.config.embedding_model_id))
            return self._indexes[name]

    def _is_current(self, name: str) -> bool:
        """Whether the index `name` is held as its folder holds it now (no other process rewrote it)."""
        return name in self._indexes and self._stamps[name] == stamp(self.index_path(name))

    def _keep(self, name: str, corpus: CorpusIndex) -> None:
        """Hold `corpus` as the index `name`, as written now (call under the index lock)."""
        self._indexes[name] = corpus
        self._stamps[name] = stamp(self.index_path(name))

    def save(self, corpus: CorpusIndex, name: str) -> None:
        """Write `corpus` as the index `name` (atomically) and use it from now on."""
        with self._lock, locked(self.config.index_dir, exclusive=True):
            self._write(corpus, name)

    def _write(self, corpus: CorpusIndex, name: str) -> None:
        """`save` for a caller already holding the locks."""
        save_index(corpus, self.index_path(name))
        self._keep(name, corpus)

    def build(self, paths: list[Path], name: str, progress: Progress | None = None) -> tuple[CorpusIndex, list[str]]:
        """Index files and folders under `name`, replacing what was there only on success.

        Returns the index and the notes of `read_paths`.
        """
        self.index_path(name)  # refuse a bad name before any work
        docs, notes = self.read_paths(paths)
        return self.index_documents(docs, name, progress), notes

    def add(self, paths: list[Path], name: str, progress: Progress | None = None) -> tuple[CorpusIndex, list[str]]:
        """Add files and folders to the existing index `name` (a document of the same name is replaced)."""
        self.index(name)  # it must exist: a clear error otherwise, before reading anything
        docs, notes = self.read_paths(paths)
        return self.add_documents(name, docs, progress), notes

    def read_paths(self, paths: list[Path]) -> tuple[list[Document], list[str]]:
        """The documents in files and folders, each named as its citations will name it, and notes on
        files skipped inside folders or decoded with replacement.

        A file named directly that cannot be read is an error; one found inside a folder (empty, binary,
        a PDF without text) is skipped with a note, so one bad file does not stop a folder of good ones."""
        files, notes = collect_files(paths)
        if not files:
            raise DocumentError("No supported documents found in " + ", ".join(map(str, paths)) + ".")
        named = {Path(p).resolve() for p in paths if Path(p).is_file()}
        docs = []
        for file, name in zip(files, self._doc_names(files, paths)):
            try:
                docs.append(read_document(file, name=name, limits=self.config.document_limits))
            except DocumentError as exc:
                if file.resolve() in named:
                    raise
                notes.append(f"skipped {exc}")
        if not docs:
            raise DocumentError("No readable documents in " + ", ".join(map(str, paths)) + ": " + " ".join(notes))
        return docs, notes + [f"{d.name}: {n}" for d in docs for n in d.notes]

    def index_documents(self, docs: list[Document], name: str, progress: Progress | None = None) -> CorpusIndex:
        """Index documents already in memory under `name` (atomically replacing the old index)."""
        self.index_path(name)  # refuse a bad name before any work
        corpus = self.build_corpus(docs, progress)
        self.save(corpus, name)
        return corpus

    def add_documents(self, name: str, docs: list[Document], progress: Progress | None = None) -> CorpusIndex:
        """Add documents to an index (replacing same-named ones), embedding only the new chunks."""
        self._refuse_seed(name, "put documents there")
        settings = self.index(name).manifest  # the index's own chunking, which may not be the configured one
        chunks = chunk_documents(docs, settings.chunk_size, settings.chunk_overlap)
        vectors = self._embed([c.text for c in chunks], progress)

        def add(old: CorpusIndex) -> CorpusIndex:
            if (old.manifest.chunk_size, old.manifest.chunk_overlap) != (settings.chunk_size, settings.chunk_overlap):
                raise IndexStoreError(f"The index '{name}' was rebuilt with other chunk settings while documents "
                                      f"were being added to it; add them again.")
            return merge_index(old, {d.name for d in docs}, docs, chunks, vectors)

        return self._update(name, add)

    def remove(self, doc_names: list[str], name: str) -> CorpusIndex:
        """Remove documents, named as their citations name them, from the index `name`."""
        self._refuse_seed(name, "remove a document from it: take the file out of that folder")

        def remove(old: CorpusIndex) -> CorpusIndex:
            missing = [n for n in doc_names if n not in old.by_name]
            if missing:
                raise DocumentError(f"The index '{name}' has no document named '{missing[0]}'; it holds: "
                                    + ", ".join(old.document_names) + ".")
            if set(old.document_names) <= set(doc_names):
                raise IndexStoreError(f"That would leave the index '{name}' empty: to drop the whole index, delete "
                                      f"{self.index_path(name)}.")
            return merge_index(old, drop=set(doc_names))

        return self._update(name, remove)

    def _update(self, name: str, change: Callable[[CorpusIndex], CorpusIndex]) -> CorpusIndex:
        """Replace the index `name` by `change(it)`, holding the lock from reading it to the swap, and
        reading it as it is on disk then: what another process wrote meanwhile stays."""
        with self._lock, locked(self.config.index_dir, exclusive=True):
            current = self._indexes[name] if self._is_current(name) else load_index(
                self.index_path(name), self.config.embedding_model_id)
            corpus = change(current)
            self._write(corpus, name)
        return corpus

    def _refuse_seed(self, name: str, doing: str) -> None:
        if name == SEED_INDEX:
            raise IndexStoreError(f"The '{SEED_INDEX}' index is rebuilt from {self.config.seeds_dir} whenever that "
                                  f"folder changes: {doing}, or build an index of your own with `rag index PATH... "
                                  f"--name NAME`.")

    def build_corpus(self, docs: list[Document], progress: Progress | None = None) -> CorpusIndex:
        """Chunk and embed documents into an in-memory index (not saved)."""
        repeated = [n for n, count in Counter(d.name for d in docs).items() if count > 1]
        if repeated:  # citations name their document: two of one name would cite the wrong text
            raise DocumentError(f"Two documents are named '{repeated[0]}': give each its own name.")
        chunks = chunk_documents(docs, self.config.chunk_size, self.config.chunk_overlap)
        vectors = self._embed([c.text for c in chunks], progress)
        return build_index(docs, chunks, vectors, self.config.embedding_model_id,
                           self.config.chunk_size, self.config.chunk_overlap)

    def _embed(self, texts: list[str], progress: Progress | None, batch: int = 64) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), batch):
            parts.append(self.embedder.encode(texts[i:i + batch]))
            if progress:
                progress("embedding", min(i + batch, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, self.embedder.dimension), np.float32)
        return np.vstack(parts)

    def _seed_index(self) -> None:
        """Load the seed corpus's index: a cache, rebuilt when the seeds or settings changed."""
        seeds = self.config.seeds_dir
        files, _ = collect_files([seeds]) if seeds.is_dir() else ([], [])
        if not files:
            raise IndexStoreError(f"No seed documents in {seeds} (set RAG_SEEDS_DIR, or pass an index name).")
        docs = [read_document(f, name=f.relative_to(seeds).as_posix(), limits=self.config.document_limits)
                for f in files]
        folder = self.index_path(SEED_INDEX)
        with locked(self.config.index_dir, exclusive=False):
            try:
                m = read_manifest(folder)
                fresh = ([d["sha256"] for d in m.documents] == [sha256(d.text) for d in docs]
                         and (m.chunk_size, m.chunk_overlap) == (self.config.chunk_size, self.config.chunk_overlap)
                         and m.embedding_model == self.config.embedding_model_id)
                if fresh:
                    self._keep(SEED_INDEX, load_index(folder, self.config.embedding_model_id))
                    return
            except IndexStoreError:
                pass  # missing or corrupt: a cache, so rebuild it
        self.save(self.build_corpus(docs), SEED_INDEX)

    @staticmethod
    def _doc_names(files: list[Path], roots: list[Path]) -> list[str]:
        """Each file's name relative to the folder it was found under, or its own name; where two
        would share one ("a/notes.txt" and "b/notes.txt" given as files), more of their paths."""
        def name(file: Path, parts: int) -> str:
            own = next((file.relative_to(root) for root in map(Path, roots)
                        if root.is_dir() and file.is_relative_to(root)), Path(file.name))
            return own.as_posix() if parts <= len(own.parts) else Path(*file.resolve().parts[-parts:]).as_posix()

        names = [name(f, 1) for f in files]
        for parts in range(2, max((len(f.resolve().parts) for f in files), default=1) + 1):
            counts = Counter(names)
            if all(counts[n] == 1 for n in names):
                break
            names = [name(f, parts) if counts[n] > 1 else n for f, n in zip(files, names)]
        return names

