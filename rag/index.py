"""The persisted corpus index: documents, chunks, FAISS vectors and a manifest, under one folder.

Layout of `index/NAME/`: manifest.json (format version, embedding model, dimension, chunking,
document hashes), documents.json (texts and sentence offsets), chunks.json (offsets),
vectors.faiss (inner product over unit vectors). JSON and FAISS only: nothing is unpickled.
Writes go to a temporary folder that replaces the old one only once complete. Processes sharing an
index folder (the web chat, `rag index --add`) coordinate through `locked`: a writer holds it
exclusively from reading the index it changes to the swap, so no addition is lost; a reader shares
it while loading, so none sees the folder mid-swap.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .errors import IndexStoreError
from .schema import Chunk, Document, Ranking, Sentence

try:
    import fcntl
except ImportError:  # not on Windows: there, processes sharing an index are not coordinated
    fcntl = None

FORMAT_VERSION = 1
_FILES = ("manifest.json", "documents.json", "chunks.json", "vectors.faiss")


@dataclass(frozen=True)
class Manifest:
    format_version: int
    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    documents: list[dict]  # {"name", "sha256", "chars", "added"} ("added", an ISO time, since 2026-12-03)
    chunks: int
    created: str
    # sha256 of each other file as written: a vector file swapped, shifted or damaged is refused on
    # load (indexes written before this was recorded have none, and are checked without it)
    files: dict[str, str] | None = None

    def check(self) -> str | None:
        """What is wrong with the fields' types and values, if anything (a hand-edited or damaged
        manifest must give a clear error, not a TypeError deep in `ask`)."""
        for name, kind in (("format_version", int), ("embedding_model", str), ("dimension", int),
                           ("chunk_size", int), ("chunk_overlap", int), ("documents", list), ("chunks", int),
                           ("created", str)):
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"its field '{name}' should be {kind.__name__}, not {type(value).__name__}"
        if self.dimension < 1 or self.chunks < 0:
            return "its dimension or chunk count is out of range"
        for d in self.documents:
            if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("sha256"), str)
                    and isinstance(d.get("chars"), int)):
                return "each of its documents should have a name, a sha256 and a character count"
        if len({d["name"] for d in self.documents}) != len(self.documents):
            return "two of its documents have the same name"
        if self.files is not None and not (isinstance(self.files, dict) and
                                           all(isinstance(v, str) for v in self.files.values())):
            return "its file checksums are malformed"
        return None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CorpusIndex:
    """Documents, their chunks, and the two searches over the chunks (dense and BM25)."""

    def __init__(self, manifest: Manifest, documents: list[Document], chunks: list[Chunk], vectors):
        self.manifest = manifest
        self.documents = documents
        self.chunks = chunks
        self.vectors = vectors  # a faiss.Index with one row per chunk
        self.by_name = {d.name: d for d in documents}
        self._bm25 = None
        self._speller = None

    @property
    def document_names(self) -> list[str]:
        return [d.name for d in self.documents]

    def search_dense(self, query_vector: np.ndarray, n: int) -> Ranking:
        n = min(n, len(self.chunks))
        scores, ids = self.vectors.search(query_vector.reshape(1, -1), n)
        keep = ids[0] >= 0
        return Ranking(ids=ids[0][keep].tolist(), scores=scores[0][keep].tolist())

    def similarities(self, query_vector: np.ndarray, ids: list[int]) -> list[float]:
        """Cosine of the query with the given chunks (vectors are unit length)."""
        if not ids:
            return []
        vectors = self.vectors.reconstruct_batch(np.asarray(ids, dtype=np.int64))
        return (vectors @ query_vector).astype(float).tolist()

    def bm25_scores(self, question: str) -> np.ndarray:
        """Every chunk's BM25 score for the question (0 where none of its words occur)."""
        bm25 = self._bm25_index()
        tokens = [t for t in _tokenize([question])[0] if t in bm25.vocab_dict]
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return bm25.get_scores(tokens)

    def search_bm25(self, question: str, n: int) -> Ranking:
        return top_ranking(self.bm25_scores(question), n)

    def respell(self, question: str) -> str:
        """The question with its unknown words respelt as the documents' closest words (see spelling.py)."""
        if self._speller is None:
            from .spelling import Speller

            # A word is known when the documents have its stem: BM25's vocabulary holds every stem already.
            self._speller = Speller([d.text for d in self.documents],
                                    known=lambda word: _stemmer().stemWord(word) in self._bm25_index().vocab_dict)
        return self._speller.respell(question)

    def _bm25_index(self):
        if self._bm25 is None:  # rebuilt on load: cheap, and nothing extra to persist or validate
            import bm25s

            bm25 = bm25s.BM25()
            bm25.index(_tokenize([c.text for c in self.chunks]), show_progress=False)
            self._bm25 = bm25
        return self._bm25


def top_ranking(scores: np.ndarray, n: int) -> Ranking:
    """The `n` best positive scores of a per-chunk array, best first (ties: the lower chunk id first)."""
    if n <= 0:
        return Ranking(ids=[], scores=[])
    ids = np.flatnonzero(scores > 0)
    if len(ids) > n:
        ids = ids[np.argpartition(-scores[ids], n - 1)[:n]]
    ids = sorted(ids.tolist(), key=lambda i: (-scores[i], i))
    return Ranking(ids=ids, scores=[float(scores[i]) for i in ids])


def word_overlap(question: str, text: str) -> float:
    """The share of the question's content words (stemmed) that occur in `text`, 0 to 1."""
    words, found = (set(tokens) for tokens in _tokenize([question, text], stopwords=_content_stopwords()))
    return len(words & found) / len(words) if words else 0.0


@functools.cache
def _content_stopwords() -> tuple[str, ...]:
    """NLTK's English stopwords (bm25s ships them), which hold "how", "what", "do", plus "much", "many"
    and the modal verbs: words every question has, which say nothing of its topic."""
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return (*STOPWORDS_EN_PLUS, "much", "many", "whose", "could", "would", "may", "might", "must", "shall")


_per_thread = threading.local()


def _stemmer():
    """An English stemmer for this thread: PyStemmer's are not thread-safe, and the web app answers
    several questions at once."""
    if not hasattr(_per_thread, "stemmer"):
        import Stemmer

        _per_thread.stemmer = Stemmer.Stemmer("english")
    return _per_thread.stemmer


def _tokenize(texts: list[str], stopwords: str | tuple[str, ...] = "en") -> list[list[str]]:
    """Lower-cased English words without stopwords (bm25s's short English list unless given), stemmed
    ("hosted" and "hosts" both "host")."""
    import bm25s

    return bm25s.tokenize(texts, stopwords=stopwords, stemmer=_stemmer(), return_ids=False, show_progress=False)


def build_index(docs: list[Document], chunks: list[Chunk], vectors: np.ndarray, embedding_model: str,
                chunk_size: int, chunk_overlap: int, added: dict[str, str] | None = None) -> CorpusIndex:
    """The index of `docs`; `added` gives when documents already indexed were added (the rest: now)."""
    import faiss

    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk expected")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        embedding_model=embedding_model,
        dimension=int(vectors.shape[1]),
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        documents=[{"name": d.name, "sha256": sha256(d.text), "chars": len(d.text),
                    "added": (added or {}).get(d.name, now)} for d in docs],
        chunks=len(chunks),
        created=now,
    )
    return CorpusIndex(manifest, docs, chunks, flat)


def merge_index(old: CorpusIndex, drop: set[str], docs: Sequence[Document] = (), chunks: Sequence[Chunk] = (),
                vectors: np.ndarray | None = None) -> CorpusIndex:
    """`old` without the documents named in `drop`, plus `docs` with their chunks (doc_id counting
    from 0 among `docs`) and those chunks' vectors; the vectors of what is kept are reused."""
    empty = np.zeros((0, old.manifest.dimension), np.float32)
    kept = [i for i, d in enumerate(old.documents) if d.name not in drop]
    new_id = {old_id: new_id for new_id, old_id in enumerate(kept)}
    keep_chunks = [c for c, chunk in enumerate(old.chunks) if chunk.doc_id in new_id]
    kept_vectors = old.vectors.reconstruct_batch(np.array(keep_chunks, dtype=np.int64)) if keep_chunks else empty
    if vectors is None:
        vectors = empty
    all_chunks = [replace(old.chunks[c], doc_id=new_id[old.chunks[c].doc_id]) for c in keep_chunks]
    all_chunks += [replace(c, doc_id=c.doc_id + len(kept)) for c in chunks]
    m = old.manifest
    replaced = drop | {d.name for d in docs}
    added = {d["name"]: d.get("added") or m.created  # older indexes did not record it
             for d in m.documents if d["name"] not in replaced}
    return build_index([old.documents[i] for i in kept] + list(docs), all_chunks, np.vstack([kept_vectors, vectors]),
                       m.embedding_model, m.chunk_size, m.chunk_overlap, added)


# Called with the name of each step of `save_index` as it is done: tests kill the process there.
_after_step: Callable[[str], None] = lambda step: None


def save_index(index: CorpusIndex, folder: Path) -> None:
    """Write atomically: a complete new folder replaces the old one, or the old one stays.

    The swap takes two renames (old folder aside, new one in); a process killed between them leaves
    no folder of that name, which `recover` puts right on the next open: the complete new one wins.
    A folder that cannot be written is an IndexStoreError saying where and what to do."""
    folder = Path(folder)
    try:
        _save(index, folder)
    except OSError as exc:
        raise IndexStoreError(f"Cannot write the index {folder} ({exc.strerror or exc}): check that this user may "
                              f"write in {folder.parent}, or keep indexes elsewhere with --index-dir DIR "
                              f"(or RAG_INDEX_DIR). The previous index, if any, is unchanged.") from exc


def _save(index: CorpusIndex, folder: Path) -> None:
    import faiss

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    tmp.chmod(0o755)
    try:
        faiss.write_index(index.vectors, str(tmp / "vectors.faiss"))
        _write_json(tmp / "documents.json", [
            {"name": d.name, "text": d.text, "notes": d.notes, "sentences": [[s.start, s.end] for s in d.sentences]}
            for d in index.documents
        ])
        _write_json(tmp / "chunks.json", [[c.doc_id, c.start, c.end] for c in index.chunks])
        files = {name: _file_sha256(tmp / name) for name in _FILES[1:]}
        # last: its presence marks completeness
        _write_json(tmp / "manifest.json", asdict(replace(index.manifest, files=files)))
        _after_step("written")
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(folder, old)
            _after_step("moved aside")
        try:
            os.replace(tmp, folder)
        except OSError:
            if old is not None:
                os.replace(old, folder)
            raise
        _after_step("swapped")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover(folder: Path) -> bool:
    """Put back an index that a process killed mid-swap left without its folder: the complete new
    one (its manifest written) if there is one, else the old one set aside. True if it did."""
    folder = Path(folder)
    if folder.exists() or not folder.parent.is_dir():
        return False

    def newest(kind: str) -> list[Path]:
        return sorted(folder.parent.glob(f".{folder.name}.{kind}-*"), key=lambda p: p.stat().st_mtime_ns,
                      reverse=True)
    for candidate in [p for p in newest("tmp") if (p / "manifest.json").is_file()] + newest("old"):
        try:
            os.replace(candidate, folder)
            return True
        except OSError:
            continue
    return False


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def locked(index_dir: Path, exclusive: bool):
    """An advisory lock (flock) on the indexes under `index_dir`, shared between processes.

    Best effort: where the folder cannot hold the lock file (read-only, or not there yet: then
    nothing is writing there) or the file system has no locks, it goes on without one; every write
    is still atomic, only simultaneous additions are no longer merged.
    """
    if exclusive:
        with contextlib.suppress(OSError):  # a folder that cannot be made: the write says so, clearly
            index_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(open(index_dir / ".lock", "a"))
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:
            pass
        yield  # closing the file releases the lock


def stamp(folder: Path) -> tuple[int, int] | None:
    """What identifies one write of an index (every save makes a new manifest file); None if absent."""
    try:
        st = os.stat(Path(folder) / "manifest.json")
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _write_json(path: Path, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())


def read_manifest(folder: Path) -> Manifest:
    folder = Path(folder)
    if not (folder / "manifest.json").exists():
        recover(folder)  # a writer killed mid-swap (or another reader got there first)
    if not (folder / "manifest.json").exists():
        raise IndexStoreError(f"No index at {folder}: build one with `rag index PATH... --name {folder.name}`.")
    data = _read_json(folder, "manifest.json")
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise _corrupt(folder, f"manifest.json has unexpected fields ({exc})") from exc
    problem = manifest.check()
    if problem:
        raise _corrupt(folder, f"manifest.json is malformed: {problem}")
    if manifest.format_version != FORMAT_VERSION:
        raise IndexStoreError(
            f"The index at {folder} has format version {manifest.format_version}; this docqa reads "
            f"version {FORMAT_VERSION}. Rebuild it with `rag index PATH... --name {folder.name}`."
        )
    return manifest


def load_index(folder: Path, embedding_model: str) -> CorpusIndex:
    """Load and check an index; any inconsistency is an IndexStoreError naming `rag index`."""
    import faiss

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.embedding_model != embedding_model:
        raise IndexStoreError(
            f"The index at {folder} was built with embedding model '{manifest.embedding_model}', "
            f"but '{embedding_model}' is configured. Use that model, or rebuild the index with "
            f"`rag index PATH... --name {folder.name}`."
        )
    for name, digest in (manifest.files or {}).items():
        if name not in _FILES[1:]:
            raise _corrupt(folder, f"manifest.json names an unknown file {name!r}")
        if not (folder / name).is_file():
            raise _corrupt(folder, f"{name} is missing")
        if _file_sha256(folder / name) != digest:
            raise _corrupt(folder, f"{name} is not the file the index was written with (its checksum differs)")
    try:
        docs = [
            Document(name=d["name"], text=d["text"], notes=list(d.get("notes", [])),
                     sentences=[Sentence(int(s), int(e)) for s, e in d["sentences"]])
            for d in _read_json(folder, "documents.json")
        ]
        chunks = [Chunk(doc_id=int(i), start=int(s), end=int(e), text=docs[int(i)].text[int(s):int(e)])
                  for i, s, e in _read_json(folder, "chunks.json")]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise _corrupt(folder, f"documents.json or chunks.json is malformed ({exc!r})") from exc
    try:
        vectors = faiss.read_index(str(folder / "vectors.faiss"))
    except RuntimeError as exc:
        raise _corrupt(folder, "vectors.faiss cannot be read") from exc
    hashes = [d["sha256"] for d in manifest.documents]
    if hashes != [sha256(d.text) for d in docs]:
        raise _corrupt(folder, "documents.json does not match the manifest's hashes")
    if not (len(chunks) == manifest.chunks == vectors.ntotal) or vectors.d != manifest.dimension:
        raise _corrupt(folder, "the chunk count or vector dimension does not match the manifest")
    if any(not 0 <= c.doc_id < len(docs) or not 0 <= c.start < c.end <= len(docs[c.doc_id].text) for c in chunks):
        raise _corrupt(folder, "chunk offsets fall outside their documents")
    if any(not 0 <= s.start < s.end <= len(d.text) for d in docs for s in d.sentences):
        raise _corrupt(folder, "sentence offsets fall outside their documents")
    if len({d.name for d in docs}) != len(docs):
        raise _corrupt(folder, "two documents have the same name")
    if not _unit_vectors(vectors):
        raise _corrupt(folder, "vectors.faiss holds vectors that are not finite and of unit length")
    return CorpusIndex(manifest, docs, chunks, vectors)


def _unit_vectors(vectors, block: int = 65536) -> bool:
    """Whether every stored vector is finite with length 1 (what the embedder writes), read in blocks."""
    for start in range(0, vectors.ntotal, block):
        rows = vectors.reconstruct_n(start, min(block, vectors.ntotal - start))
        norms = np.linalg.norm(rows, axis=1)
        if not (np.isfinite(norms).all() and np.allclose(norms, 1.0, atol=1e-3)):
            return False
    return True


def _read_json(folder: Path, name: str):
    try:
        with open(folder / name, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise _corrupt(folder, f"{name} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(folder, f"{name} is not valid JSON") from exc


def _corrupt(folder: Path, why: str) -> IndexStoreError:
    return IndexStoreError(
        f"The index at {folder} is corrupt: {why}. Rebuild it with `rag index PATH... --name {folder.name}`."
    )
