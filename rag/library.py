"""The library of indexes on disk: their names, loading and reloading, building, adding and
removing documents, and the locks that let processes share them.

The engine answers questions from an index; everything about keeping indexes lives here, so each
can be read and changed alone. Indexes are loaded once per process and again when another process
has rewritten them; the seed index is a cache of the seed documents, rebuilt when they change.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .chunking import chunk_documents
from .config import Config
from .documents import collect_files, read_document
from .embeddings import Embedder
from .errors import DocumentError, IndexStoreError, RagError
from .index import (CorpusIndex, Manifest, build_index, load_index, locked, merge_index, read_manifest, recover,
                    save_index, sha256, stamp)
from .milvus_store import BUILDING, MilvusIndex, MilvusStore, store_uri
from .schema import Document

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let a final newline in
SEED_INDEX = "seed"


class Library:
    """The indexes under `config.index_dir`, or in the Milvus store `config.store` names;
    `embedder` embeds the chunks of documents added."""

    def __init__(self, config: Config, embedder: Embedder):
        self.config = config
        self.embedder = embedder
        uri = store_uri(config.store)
        self.milvus = MilvusStore(uri) if uri else None
        self._indexes: dict[str, CorpusIndex | MilvusIndex] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}  # which write of each index folder is loaded
        self._lock = threading.RLock()

    def exists(self, name: str) -> bool:
        """Whether an index `name` is there (readable or not)."""
        if self.milvus:
            return self.milvus.exists(name)
        recover(self.index_path(name))  # one a writer left mid-swap is there, once put back
        return self.index_path(name).is_dir()

    def location(self, name: str) -> str:
        """Where the index `name` is kept, in words."""
        if self.milvus:
            return f"the Milvus store at {self.milvus.uri}"
        return str(self.index_path(name))

    def manifests(self) -> list[tuple[str, Manifest | RagError]]:
        """Every index's name with its manifest, or the error that reading it gave."""
        if self.milvus:
            names = self.milvus.names()
        else:
            names = sorted(p.name for p in self.config.index_dir.glob("*") if p.is_dir() and not p.name.startswith("."))
        found = []
        for name in names:
            try:
                found.append((name, self.milvus.open(name, self.config.embedding_model_id).manifest if self.milvus
                              else read_manifest(self.config.index_dir / name)))
            except RagError as exc:
                found.append((name, exc))
        return found

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
        if self.milvus:
            return self._milvus_index(name)
        with self._lock:
            if not self._is_current(name):
                if name == SEED_INDEX:
                    self._seed_index()
                else:
                    with locked(self.config.index_dir, exclusive=False):
                        self._keep(name, load_index(self.index_path(name), self.config.embedding_model_id))
            return self._indexes[name]

    def _milvus_index(self, name: str) -> MilvusIndex:
        """The index as the Milvus store holds it now: opened again when another process wrote to it."""
        self.index_path(name)  # the same names as the local store
        with self._lock:
            held = self._indexes.get(name)
            settings = self.milvus.settings(name) if held is not None else None
            if held is None or settings is None or settings["version"] != held.settings["version"]:
                if name == SEED_INDEX:
                    self._seed_index()
                else:
                    self._indexes[name] = self.milvus.open(name, self.config.embedding_model_id)
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
        if self.milvus:
            return self._milvus_build(docs, name, progress)
        corpus = self.build_corpus(docs, progress)
        self.save(corpus, name)
        return corpus

    def add_documents(self, name: str, docs: list[Document], progress: Progress | None = None) -> CorpusIndex:
        """Add documents to an index (replacing same-named ones), embedding only the new chunks."""
        self._refuse_seed(name, "put documents there")
        settings = self.index(name).manifest  # the index's own chunking, which may not be the configured one
        chunks = chunk_documents(docs, settings.chunk_size, settings.chunk_overlap)
        vectors = self._embed([c.text for c in chunks], progress)
        if self.milvus:
            with self._lock:
                self.milvus.add(name, docs, chunks, vectors)
            return self.index(name)

        def add(old: CorpusIndex) -> CorpusIndex:
            if (old.manifest.chunk_size, old.manifest.chunk_overlap) != (settings.chunk_size, settings.chunk_overlap):
                raise IndexStoreError(f"The index '{name}' was rebuilt with other chunk settings while documents "
                                      f"were being added to it; add them again.")
            return merge_index(old, {d.name for d in docs}, docs, chunks, vectors)

        return self._update(name, add)

    def remove(self, doc_names: list[str], name: str) -> CorpusIndex:
        """Remove documents, named as their citations name them, from the index `name`."""
        self._refuse_seed(name, "remove a document from it: take the file out of that folder")

        def check(old: CorpusIndex | MilvusIndex) -> None:
            missing = [n for n in doc_names if n not in old.by_name]
            if missing:
                raise DocumentError(f"The index '{name}' has no document named '{missing[0]}'; it holds: "
                                    + ", ".join(old.document_names) + ".")
            if set(old.document_names) <= set(doc_names):
                raise IndexStoreError(f"That would leave the index '{name}' empty: to drop the whole index, delete "
                                      f"{self.location(name)}.")

        if self.milvus:
            with self._lock:
                check(self.index(name))
                self.milvus.delete(name, list(doc_names))
            return self.index(name)

        def remove(old: CorpusIndex) -> CorpusIndex:
            check(old)
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
        chunks, vectors = self._chunk_and_embed(docs, progress)
        return build_index(docs, chunks, vectors, self.config.embedding_model_id,
                           self.config.chunk_size, self.config.chunk_overlap)

    def _chunk_and_embed(self, docs: list[Document], progress: Progress | None):
        repeated = [n for n, count in Counter(d.name for d in docs).items() if count > 1]
        if repeated:  # citations name their document: two of one name would cite the wrong text
            raise DocumentError(f"Two documents are named '{repeated[0]}': give each its own name.")
        chunks = chunk_documents(docs, self.config.chunk_size, self.config.chunk_overlap)
        return chunks, self._embed([c.text for c in chunks], progress)

    def _milvus_build(self, docs: list[Document], name: str, progress: Progress | None) -> MilvusIndex:
        """The index `name` in the Milvus store, made anew from `docs` (embedded before anything is dropped)."""
        chunks, vectors = self._chunk_and_embed(docs, progress)
        c = self.config
        building = name + BUILDING  # built aside, swapped in whole: a failed build leaves the old index
        with self._lock:
            self.milvus.create(building, self.embedder.dimension, c.embedding_model_id, c.chunk_size, c.chunk_overlap)
            self.milvus.add(building, docs, chunks, vectors)
            self.milvus.swap_in(building, name)
            self._indexes[name] = self.milvus.open(name, c.embedding_model_id)
            return self._indexes[name]

    def copy(self, source: str, name: str) -> None:
        """The index `source` again under `name` (the web chat starts from the seed corpus this way)."""
        if self.milvus:
            self.index_documents(self.index(source).documents, name)
        else:
            self.save(self.index(source), name)

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
        if self.milvus:
            self._milvus_seed_index(docs)
            return
        folder = self.index_path(SEED_INDEX)
        with locked(self.config.index_dir, exclusive=False):
            try:
                m = read_manifest(folder)
                fresh = ([d.sha256 for d in m.documents] == [sha256(d.text) for d in docs]
                         and (m.chunk_size, m.chunk_overlap) == (self.config.chunk_size, self.config.chunk_overlap)
                         and m.embedding_model == self.config.embedding_model_id)
                if fresh:
                    self._keep(SEED_INDEX, load_index(folder, self.config.embedding_model_id))
                    return
            except IndexStoreError:
                pass  # missing or corrupt: a cache, so rebuild it
        self.save(self.build_corpus(docs), SEED_INDEX)

    def _milvus_seed_index(self, docs: list[Document]) -> None:
        c = self.config
        try:
            held = self.milvus.open(SEED_INDEX, c.embedding_model_id)
            s = held.settings
            if ([info["sha256"] for info in held.listing.values()] == [sha256(d.text) for d in sorted(docs, key=lambda d: d.name)]
                    and (s["chunk_size"], s["chunk_overlap"]) == (c.chunk_size, c.chunk_overlap)):
                self._indexes[SEED_INDEX] = held
                return
        except IndexStoreError as exc:
            if "Cannot reach" in str(exc):
                raise
        self._milvus_build(docs, SEED_INDEX, None)

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

