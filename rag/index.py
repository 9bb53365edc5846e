"""The persisted corpus index: documents, chunks, vectors, BM25 and a manifest, under one folder.

Layout of `index/NAME/` (format 3): manifest.json (format version, embedding model, dimension,
chunking, counts, each file's checksum), the catalog (names.bin, catalog.npy, sha256.npy,
name_order.npy: each document's name, length, time added and hash, see catalog.py), notes.json
(what reading a document noted), texts.bin (the documents' text, UTF-8, one after another),
offsets.npy (each document's bytes in texts.bin and rows in sentences.npy), sentences.npy and
chunks.npy (character offsets), vectors.npy (unit vectors, float32), bm25/ (bm25s's arrays) and,
from IVF_MIN chunks up, ivf.faiss (an inverted-file index that finds the candidates; their scores
are exact). Arrays are memory-mapped and documents are decoded when read, so a million documents
load in seconds without being parsed into objects. JSON, NumPy and FAISS only: nothing is
unpickled. Formats 1 and 2 (the document list in manifest.json) are still read.
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
import mmap
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from .catalog import FILES as CATALOG_FILES
from .catalog import Catalog, DocumentInfo, now
from .errors import IndexStoreError
from .schema import Chunk, Document, Ranking, Sentence

try:
    import fcntl
except ImportError:  # not on Windows: there, processes sharing an index are not coordinated
    fcntl = None

FORMAT_VERSION = 3
_ARRAYS = ("texts.bin", "offsets.npy", "sentences.npy", "chunks.npy", "vectors.npy")
_FILES = ("notes.json", *CATALOG_FILES, *_ARRAYS)  # besides manifest.json
_FORMAT_2_FILES = ("documents.json", *_ARRAYS)
_BM25_FILES = tuple(f"bm25/{n}" for n in ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy",
                                          "vocab.index.json", "params.index.json"))
# From this many chunks the dense search goes through an inverted-file index (IVF) instead of
# comparing the question with every vector: eval/results/scale-2026-12-03.md measures both.
IVF_MIN = 200_000
IVF_PROBE = 64  # lists searched per question; the candidates are then scored exactly


@dataclass(frozen=True)
class Manifest:
    format_version: int
    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    documents: Sequence[DocumentInfo]  # a Catalog (in manifest.json, format 3 writes their count)
    chunks: int
    created: str
    # the checksum of each other file as written (see _digest): a vector file swapped, shifted or
    # damaged is refused on load (indexes written before this was recorded have none)
    files: dict[str, str] | None = None

    def check(self) -> str | None:
        """What is wrong with the fields' types and values, if anything (a hand-edited or damaged
        manifest must give a clear error, not a TypeError deep in `ask`)."""
        for name, kind in (("format_version", int), ("embedding_model", str), ("dimension", int),
                           ("chunk_size", int), ("chunk_overlap", int), ("chunks", int), ("created", str)):
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"its field '{name}' should be {kind.__name__}, not {type(value).__name__}"
        if self.dimension < 1 or self.chunks < 0:
            return "its dimension or chunk count is out of range"
        if self.files is not None and not (isinstance(self.files, dict) and
                                           all(isinstance(v, str) for v in self.files.values())):
            return "its file checksums are malformed"
        return None

    def to_json(self) -> dict:
        """manifest.json's content: the documents themselves are in the catalog's files."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "documents": len(self.documents)}


def _listed_documents(documents: list, created: str) -> Catalog:
    """The catalog of a format 1 or 2 manifest, which listed its documents as JSON objects."""
    for d in documents:
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("sha256"), str)
                and isinstance(d.get("chars"), int) and isinstance(d.get("added", ""), str)):
            raise ValueError("each of its documents should have a name, a sha256 and a character count")
    if len({d["name"] for d in documents}) != len(documents):
        raise ValueError("two of its documents have the same name")
    try:  # "added" was recorded from 2026-12-03: the index's creation stands in before
        return Catalog.of(DocumentInfo(name=d["name"], sha256=d["sha256"], chars=d["chars"],
                                       added=d.get("added") or created) for d in documents)
    except ValueError as exc:
        raise ValueError(f"a document's hash or time is malformed ({exc})") from exc


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Stored(Sequence):
    """A sequence made item by item from memory-mapped arrays (`_item`), slices as lists."""

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        return self._item(range(len(self))[i])


class _StoredDocuments(_Stored):
    """Documents of a loaded index, decoded from texts.bin when read (the last few kept)."""

    def __init__(self, catalog: Catalog, notes: dict[int, list[str]], texts, offsets, sentences):
        self.catalog, self.notes = catalog, notes
        self.texts, self.offsets, self.sentences = texts, offsets, sentences  # memory-mapped
        self._item = functools.lru_cache(maxsize=256)(self._document)

    def __len__(self) -> int:
        return len(self.catalog)

    def _document(self, i: int) -> Document:
        t0, t1, s0, s1 = (int(v) for v in self.offsets[i])
        return Document(name=self.catalog.name(i), text=bytes(self.texts[t0:t1]).decode("utf-8"),
                        sentences=[Sentence(int(a), int(b)) for a, b in self.sentences[s0:s1]],
                        notes=list(self.notes.get(i, [])))


class _StoredChunks(_Stored):
    """Chunks of a loaded index: offsets from chunks.npy, text cut from their document when read."""

    def __init__(self, rows, documents: Sequence[Document]):
        self.rows, self.documents = rows, documents

    def __len__(self) -> int:
        return len(self.rows)

    def _item(self, i: int) -> Chunk:
        doc_id, start, end = (int(v) for v in self.rows[i])
        return Chunk(doc_id=doc_id, start=start, end=end, text=self.documents[doc_id].text[start:end])


class CorpusIndex:
    """Documents, their chunks, and the two searches over the chunks (dense and BM25).

    `documents` and `chunks` are lists for an index built in memory, and views that read the
    memory-mapped files for one loaded from disk; `vectors` is a (chunks × dimension) array."""

    def __init__(self, manifest: Manifest, documents: Sequence[Document], chunks: Sequence[Chunk], vectors: np.ndarray,
                 ivf=None, bm25=None):
        self.manifest = manifest
        self.documents = documents
        self.chunks = chunks
        self.vectors = vectors
        self.ivf = ivf  # a faiss IndexIVF over `vectors` from IVF_MIN chunks up, else None (exact search)
        self.by_name = _ByName(manifest.documents, documents)
        self._bm25 = bm25  # built on first use for an index in memory, loaded (memory-mapped) from disk
        self._speller = None
        self._chars: int | None = None  # the documents' length in all, once counted

    @property
    def document_names(self) -> list[str]:
        return self.manifest.documents.names()

    def search_dense(self, query_vector: np.ndarray, n: int) -> Ranking:
        """The `n` chunks closest to the query, best first (ties: the lower id first). Exact, or from
        IVF_MIN chunks up the inverted file's candidates, scored exactly."""
        if min(n, len(self.chunks)) <= 0:
            return Ranking(ids=[], scores=[])
        if self.ivf is not None:
            _, found = self.ivf.search(query_vector.reshape(1, -1).astype(np.float32), n)
            ids = np.sort(found[0][found[0] >= 0])
            scores = _rows(self.vectors, ids) @ query_vector
        else:
            ids = np.arange(len(self.chunks))
            scores = np.asarray(self.vectors) @ query_vector
        n = min(n, len(ids))
        best = np.argpartition(-scores, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
        best = sorted(best.tolist(), key=lambda i: (-scores[i], ids[i]))
        return Ranking(ids=[int(ids[i]) for i in best], scores=[float(scores[i]) for i in best])

    def similarities(self, query_vector: np.ndarray, ids: list[int]) -> list[float]:
        """Cosine of the query with the given chunks (vectors are unit length)."""
        if not ids:
            return []
        return (_rows(self.vectors, np.asarray(ids, dtype=np.int64)) @ query_vector).astype(float).tolist()

    def bm25_scores(self, question: str) -> np.ndarray:
        """Every chunk's BM25 score for the question (0 where none of its words occur)."""
        bm25 = self._bm25_index()
        tokens = [t for t in bm25_terms([question])[0] if t in bm25.vocab_dict]
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return bm25.get_scores(tokens)

    def search_bm25(self, question: str, n: int) -> Ranking:
        return top_ranking(self.bm25_scores(question), n)

    def respell(self, question: str) -> str:
        """The question with its unknown words respelt as the documents' closest words (see spelling.py).
        Not for indexes over SPELLING_MAX_CHARS of text: the speller counts every word in memory."""
        if self._chars is None:
            self._chars = self.manifest.documents.total_chars()
        if self._chars > SPELLING_MAX_CHARS:
            return question
        if self._speller is None:
            from .spelling import Speller

            # A word is known when the documents have its stem: BM25's vocabulary holds every stem already.
            self._speller = Speller([d.text for d in self.documents],
                                    known=lambda word: _stemmer().stemWord(word) in self._bm25_index().vocab_dict)
        return self._speller.respell(question)

    def _bm25_index(self):
        if self._bm25 is None:
            import bm25s

            bm25 = bm25s.BM25()
            bm25.index(bm25_terms([c.text for c in self.chunks]), show_progress=False)
            self._bm25 = bm25
        return self._bm25


class _ByName(Mapping):
    """The index's documents by name (found in the catalog)."""

    def __init__(self, catalog: Catalog, documents: Sequence[Document]):
        self.catalog, self.documents = catalog, documents

    def __getitem__(self, name: str) -> Document:
        i = self.catalog.find(name) if isinstance(name, str) else None
        if i is None:
            raise KeyError(name)
        return self.documents[i]

    def __iter__(self):
        return iter(self.catalog.names())

    def __len__(self) -> int:
        return len(self.catalog)


SPELLING_MAX_CHARS = 50_000_000


def top_ranking(scores: np.ndarray, n: int) -> Ranking:
    """The `n` best positive scores of a per-chunk array, best first (ties: the lower chunk id first).

    Over a large array the candidates are first bounded by a threshold: the n-th best score of every
    64th entry. At least n entries reach it (those of the sample), and every one of the n best does,
    so the result is exact; it saves sorting through the quarter of a million chunks that share some
    word with a typical question at 1M chunks (1.9 ms of a 12 ms retrieval)."""
    if n <= 0:
        return Ranking(ids=[], scores=[])
    ids = None
    if len(scores) >= 256 * n:
        sample = scores[::64]
        if np.count_nonzero(sample > 0) >= n:
            ids = np.flatnonzero(scores >= np.partition(sample, len(sample) - n)[len(sample) - n])
    if ids is None:
        ids = np.flatnonzero(scores > 0)
    if len(ids) > n:  # every id scoring at least the n-th best, so ties there go to the lower id
        found = scores[ids]
        ids = ids[found >= np.partition(found, len(found) - n)[len(found) - n]]
    ids = sorted(ids.tolist(), key=lambda i: (-scores[i], i))[:n]
    return Ranking(ids=ids, scores=[float(scores[i]) for i in ids])


def word_overlap(question: str, text: str) -> float:
    """The share of the question's content words (stemmed) that occur in `text`, 0 to 1."""
    words = content_words(question)
    return len(words & content_words(text)) / len(words) if words else 0.0


@functools.lru_cache(maxsize=4096)
def content_words(text: str) -> frozenset[str]:
    """The text's words without stopwords, stemmed. Kept: one question is compared with every sentence
    and span the engine weighs, and is read once."""
    return frozenset(bm25_terms([text], stopwords=_content_stopwords())[0])


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


def bm25_terms(texts: list[str], stopwords: str | tuple[str, ...] = "en") -> list[list[str]]:
    """Lower-cased English words without stopwords (bm25s's short English list unless given), stemmed
    ("hosted" and "hosts" both "host")."""
    import bm25s

    return bm25s.tokenize(texts, stopwords=stopwords, stemmer=_stemmer(), return_ids=False, show_progress=False)


def build_index(docs: list[Document], chunks: list[Chunk], vectors: np.ndarray, embedding_model: str,
                chunk_size: int, chunk_overlap: int, added: dict[str, str] | None = None) -> CorpusIndex:
    """The index of `docs`; `added` gives when documents already indexed were added (the rest: now)."""
    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk expected")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    created = now()
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        embedding_model=embedding_model,
        dimension=int(vectors.shape[1]),
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        documents=Catalog.of(DocumentInfo(name=d.name, sha256=sha256(d.text), chars=len(d.text),
                                          added=(added or {}).get(d.name, created)) for d in docs),
        chunks=len(chunks),
        created=created,
    )
    return CorpusIndex(manifest, list(docs), list(chunks), vectors, ivf=_ivf(vectors) if len(vectors) >= IVF_MIN else None)


def _ivf(vectors: np.ndarray, seed: int = 0):
    """An inverted file over `vectors` (4·√n lists, 8-bit codes), trained on a sample: it finds the
    candidates, which are then scored with the exact vectors."""
    import faiss

    lists = int(4 * np.sqrt(len(vectors)))
    ivf = faiss.index_factory(vectors.shape[1], f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(ivf).cp.niter = 10
    sample = np.random.default_rng(seed).choice(len(vectors), min(len(vectors), 64 * lists), replace=False)
    ivf.train(vectors[np.sort(sample)])
    for start in range(0, len(vectors), 100_000):
        ivf.add(vectors[start:start + 100_000])
    faiss.extract_index_ivf(ivf).nprobe = IVF_PROBE
    return ivf


def merge_index(old: CorpusIndex, drop: set[str], docs: Sequence[Document] = (), chunks: Sequence[Chunk] = (),
                vectors: np.ndarray | None = None) -> CorpusIndex:
    """`old` without the documents named in `drop`, plus `docs` with their chunks (doc_id counting
    from 0 among `docs`) and those chunks' vectors; the vectors of what is kept are reused."""
    empty = np.zeros((0, old.manifest.dimension), np.float32)
    kept = [i for i, d in enumerate(old.documents) if d.name not in drop]
    new_id = {old_id: new_id for new_id, old_id in enumerate(kept)}
    keep_chunks = [c for c, chunk in enumerate(old.chunks) if chunk.doc_id in new_id]
    kept_vectors = np.asarray(old.vectors[np.array(keep_chunks, dtype=np.int64)]) if keep_chunks else empty
    if vectors is None:
        vectors = empty
    all_chunks = [replace(old.chunks[c], doc_id=new_id[old.chunks[c].doc_id]) for c in keep_chunks]
    all_chunks += [replace(c, doc_id=c.doc_id + len(kept)) for c in chunks]
    m = old.manifest
    replaced = drop | {d.name for d in docs}
    added = {d.name: d.added for d in m.documents if d.name not in replaced}
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
        offsets, sentences, notes, byte, row = [], [], {}, 0, 0
        with open(tmp / "texts.bin", "wb") as f:
            for i, d in enumerate(index.documents):
                data = d.text.encode("utf-8")
                f.write(data)
                offsets.append((byte, byte + len(data), row, row + len(d.sentences)))
                sentences += [(s.start, s.end) for s in d.sentences]
                byte, row = byte + len(data), row + len(d.sentences)
                if d.notes:
                    notes[str(i)] = d.notes
            f.flush()
            os.fsync(f.fileno())
        index.manifest.documents.save(tmp, _write_npy)
        _write_json(tmp / "notes.json", notes)
        _write_npy(tmp / "offsets.npy", np.array(offsets, dtype=np.int64).reshape(-1, 4))
        _write_npy(tmp / "sentences.npy", np.array(sentences, dtype=np.int64).reshape(-1, 2))
        _write_npy(tmp / "chunks.npy", np.array([(c.doc_id, c.start, c.end) for c in index.chunks],
                                                dtype=np.int64).reshape(-1, 3))
        _write_npy(tmp / "vectors.npy", np.asarray(index.vectors, dtype=np.float32))
        index._bm25_index().save(str(tmp / "bm25"), show_progress=False)
        names = list(_FILES + _BM25_FILES)
        if index.ivf is not None:
            faiss.write_index(index.ivf, str(tmp / "ivf.faiss"))
            names.append("ivf.faiss")
        files = {name: _digest(tmp / name) for name in names}
        # last: its presence marks completeness
        _write_json(tmp / "manifest.json", replace(index.manifest, format_version=FORMAT_VERSION, files=files).to_json())
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


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


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


# Files up to this size are checked whole on every load; larger ones (the vectors, texts and BM25
# arrays of a large index) by a sample, which a file truncated, swapped or shifted still fails,
# since reading gigabytes on each start would cost more than the rest of the load: at 1M chunks,
# hashing 3.5 GB took 2.7 s of a 9.8 s load (eval/results/scale-format2-2026-12-03.md).
SAMPLED_ABOVE = 64 << 20


def _digest(path: Path) -> str:
    """The file's sha256, or above SAMPLED_ABOVE bytes "sampled:" and the sha256 of its size, its
    first and last MiB and 62 blocks of 64 KiB spread evenly between them."""
    size = path.stat().st_size
    if size <= SAMPLED_ABOVE:
        return _file_sha256(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for at, length in [(0, 1 << 20), *((size * k // 63, 1 << 16) for k in range(1, 63)), (size - (1 << 20), 1 << 20)]:
            f.seek(at)
            h.update(f.read(length))
    return "sampled:" + h.hexdigest()


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
    if not isinstance(data, dict):
        raise _corrupt(folder, "manifest.json is malformed: it is not a JSON object")
    listed = data.get("documents")
    if isinstance(listed, list):  # formats 1 and 2
        try:
            data["documents"] = _listed_documents(listed, str(data.get("created")))
        except ValueError as exc:
            raise _corrupt(folder, f"manifest.json is malformed: {exc}") from exc
    elif isinstance(listed, int) and not isinstance(listed, bool):
        try:
            data["documents"] = Catalog.load(folder)
        except FileNotFoundError as exc:
            raise _corrupt(folder, f"{Path(exc.filename).name} is missing") from exc
        except (ValueError, OSError) as exc:
            raise _corrupt(folder, f"its document catalog is malformed ({exc})") from exc
        if len(data["documents"]) != listed:
            raise _corrupt(folder, "its document catalog does not hold the manifest's documents")
    else:
        raise _corrupt(folder, "manifest.json is malformed: its field 'documents' should be a count")
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise _corrupt(folder, f"manifest.json has unexpected fields ({exc})") from exc
    problem = manifest.check()
    if problem:
        raise _corrupt(folder, f"manifest.json is malformed: {problem}")
    if manifest.format_version not in (1, 2, FORMAT_VERSION):
        raise IndexStoreError(
            f"The index at {folder} has format version {manifest.format_version}; this docqa reads "
            f"versions 1 to {FORMAT_VERSION}. Rebuild it with `rag index PATH... --name {folder.name}`."
        )
    return manifest


def load_index(folder: Path, embedding_model: str) -> CorpusIndex:
    """Load and check an index; any inconsistency is an IndexStoreError naming `rag index`. The
    arrays are memory-mapped; the checks read them once, in blocks, without making objects."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.embedding_model != embedding_model:
        raise IndexStoreError(
            f"The index at {folder} was built with embedding model '{manifest.embedding_model}', "
            f"but '{embedding_model}' is configured. Use that model, or rebuild the index with "
            f"`rag index PATH... --name {folder.name}`."
        )
    if manifest.format_version == 1:
        return _load_format_1(folder, manifest)
    expected = (_FILES if manifest.format_version == FORMAT_VERSION else _FORMAT_2_FILES) + _BM25_FILES
    files = manifest.files or {}
    for name in expected:
        if name not in files:
            raise _corrupt(folder, f"manifest.json has no checksum for {name}")
    for name, digest in files.items():
        if name not in expected + ("ivf.faiss",):
            raise _corrupt(folder, f"manifest.json names an unknown file {name!r}")
        if not (folder / name).is_file():
            raise _corrupt(folder, f"{name} is missing")
        if (_digest if digest.startswith("sampled:") else _file_sha256)(folder / name) != digest:
            raise _corrupt(folder, f"{name} is not the file the index was written with (its checksum differs)")
    try:
        if manifest.format_version == FORMAT_VERSION:
            notes = _read_json(folder, "notes.json")
        else:
            meta = _read_json(folder, "documents.json")
            notes = meta["notes"]
            if [str(n) for n in meta["names"]] != manifest.documents.names():
                raise _corrupt(folder, "documents.json does not name the manifest's documents")
        notes = {int(i): [str(n) for n in v] for i, v in notes.items()}
        texts = (np.memmap(folder / "texts.bin", dtype=np.uint8, mode="r") if (folder / "texts.bin").stat().st_size
                 else np.zeros(0, np.uint8))
        offsets, sentences, chunks, vectors = (np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False)
                                               for n in ("offsets", "sentences", "chunks", "vectors"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(folder, f"the document notes or an array is malformed ({exc!r})") from exc
    _read_in_place(texts)
    problem = _check_arrays(manifest, texts, offsets, sentences, chunks, vectors)
    if problem:
        raise _corrupt(folder, problem)
    ivf = None
    if "ivf.faiss" in files:
        import faiss

        try:
            ivf = faiss.read_index(str(folder / "ivf.faiss"))
            faiss.extract_index_ivf(ivf).nprobe = IVF_PROBE
        except RuntimeError as exc:
            raise _corrupt(folder, "ivf.faiss cannot be read") from exc
        if ivf.ntotal != manifest.chunks or ivf.d != manifest.dimension:
            raise _corrupt(folder, "ivf.faiss does not match the manifest's chunk count or dimension")
    documents = _StoredDocuments(manifest.documents, notes, texts, offsets, sentences)
    return CorpusIndex(manifest, documents, _StoredChunks(chunks, documents), vectors, ivf=ivf,
                       bm25=_StoredBM25(folder, manifest.chunks))


def _load_format_1(folder: Path, manifest: Manifest) -> CorpusIndex:
    """An index written before 2026-12-03 (JSON documents and chunks, FAISS flat vectors), read
    whole into memory so it keeps answering; its next change writes it in the current format."""
    import faiss

    for name, digest in (manifest.files or {}).items():
        if name not in ("documents.json", "chunks.json", "vectors.faiss") or _file_sha256(folder / name) != digest:
            raise _corrupt(folder, f"{name} is not the file the index was written with")
    try:
        docs = [Document(name=d["name"], text=d["text"], notes=list(d.get("notes", [])),
                         sentences=[Sentence(int(a), int(b)) for a, b in d["sentences"]])
                for d in _read_json(folder, "documents.json")]
        chunks = [Chunk(doc_id=int(i), start=int(a), end=int(b), text=docs[int(i)].text[int(a):int(b)])
                  for i, a, b in _read_json(folder, "chunks.json")]
        flat = faiss.read_index(str(folder / "vectors.faiss"))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise _corrupt(folder, f"a file of the index is malformed ({exc!r})") from exc
    vectors = flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.zeros((0, manifest.dimension), np.float32)
    if len(chunks) != manifest.chunks or vectors.shape != (manifest.chunks, manifest.dimension) \
            or [d.name for d in docs] != manifest.documents.names():
        raise _corrupt(folder, "its files do not match the manifest")
    return CorpusIndex(replace(manifest, format_version=FORMAT_VERSION, files=None), docs, chunks, vectors)


class _StoredBM25:
    """bm25s's index in `folder/bm25/`, memory-mapped on first use (the import alone costs time)."""

    def __init__(self, folder: Path, chunks: int):
        self.folder, self.chunks, self._loaded = folder, chunks, None

    def __getattr__(self, name):
        if self._loaded is None:
            import bm25s

            try:
                loaded = bm25s.BM25.load(str(self.folder / "bm25"), mmap=True, show_progress=False)
            except (ValueError, KeyError, OSError) as exc:
                raise _corrupt(self.folder, f"the BM25 index cannot be read ({exc!r})") from exc
            if loaded.scores.get("num_docs") != self.chunks:
                raise _corrupt(self.folder, "the BM25 index does not match the chunk count")
            self._loaded = loaded
        return getattr(self._loaded, name)


def _rows(vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The vectors of a few chunks (the candidates of one question). From a memory-mapped file they
    are read with pread rather than through the map, where each read would map the 64 KiB around it
    into the process ("fault-around"): 200 questions at 1M chunks left 1.1 GB of vectors.npy resident."""
    path = getattr(vectors, "filename", None)
    if path is None or len(ids) > 1024:
        return np.asarray(vectors[ids])
    row = vectors.shape[1] * 4
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b"".join(os.pread(fd, row, vectors.offset + int(i) * row) for i in ids)
    finally:
        os.close(fd)
    return np.frombuffer(data, dtype=np.float32).reshape(len(ids), vectors.shape[1])


def _read_in_place(array: np.ndarray) -> None:
    """Tell the kernel that a memory-mapped array is read at random places (a few documents per
    question), so that each read does not also read ahead the pages after it."""
    mapped = getattr(array, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_RANDOM"):
        with contextlib.suppress(OSError, ValueError):
            mapped.madvise(mmap.MADV_RANDOM)


def _check_arrays(manifest: Manifest, texts, offsets, sentences, chunks, vectors) -> str | None:
    """What is wrong with a loaded index's arrays, if anything: shapes, offsets in range, unit vectors."""
    n, m = len(manifest.documents), manifest.chunks
    chars = manifest.documents.lengths()
    if not manifest.documents.sorted_and_unique():
        return "two documents have the same name, or the catalog's name order is damaged"
    for name, array, width, dtype in (("offsets", offsets, 4, np.int64), ("sentences", sentences, 2, np.int64),
                                      ("chunks", chunks, 3, np.int64),
                                      ("vectors", vectors, manifest.dimension, np.float32)):
        if array.ndim != 2 or array.shape[1] != width or array.dtype != dtype:
            return f"{name}.npy has the wrong shape or type"
    if len(offsets) != n or len(chunks) != m or len(vectors) != m:
        return "the chunk count or vector dimension does not match the manifest"
    if n:
        t0, t1, s0, s1 = (np.asarray(offsets[:, k]) for k in range(4))
        if (t0[0] != 0 or s0[0] != 0 or (t1 < t0).any() or (s1 < s0).any() or (t0[1:] != t1[:-1]).any()
                or (s0[1:] != s1[:-1]).any() or t1[-1] != len(texts) or s1[-1] != len(sentences)):
            return "the documents' offsets into texts.bin or sentences.npy are out of order or out of range"
        owner = np.repeat(np.arange(n), s1 - s0)
        a, b = np.asarray(sentences[:, 0]), np.asarray(sentences[:, 1])
        if ((a < 0) | (a >= b) | (b > chars[owner])).any():
            return "sentence offsets fall outside their documents"
    for start in range(0, m, 1 << 18):
        block = np.asarray(chunks[start:start + (1 << 18)])
        doc, a, b = block[:, 0], block[:, 1], block[:, 2]
        if ((doc < 0) | (doc >= n)).any() or ((a < 0) | (a >= b) | (b > chars[np.clip(doc, 0, max(n - 1, 0))])).any():
            return "chunk offsets fall outside their documents"
    if not _unit_vectors(vectors):
        return "vectors.npy holds vectors that are not finite and of unit length"
    return None


def _unit_vectors(vectors: np.ndarray, block: int = 65536, whole: int = 1 << 18) -> bool:
    """Whether the stored vectors are finite with length 1 (what the embedder writes), read in blocks:
    every one up to `whole` vectors, else 16 blocks spread over the file (reading 1.5 GB of vectors
    on each load would cost more than the rest of it; the file's checksum covers the rest). A
    memory-mapped array is read from its file: touching every page of the map would count them all
    in the process's resident memory."""
    path = getattr(vectors, "filename", None)
    starts = range(0, len(vectors), block)
    if len(vectors) > whole:
        starts = sorted({(len(vectors) - block) * k // 15 for k in range(16)})
    for start in starts:
        if path is not None:
            rows = np.fromfile(path, dtype=np.float32, count=min(block, len(vectors) - start) * vectors.shape[1],
                               offset=vectors.offset + start * vectors.shape[1] * 4).reshape(-1, vectors.shape[1])
        else:
            rows = np.asarray(vectors[start:start + block])
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
