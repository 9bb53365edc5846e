"""Indexes kept in Milvus instead of `index/NAME/`: for document sets past one machine.

`RAG_STORE=milvus:./index/docqa.db` keeps them in Milvus Lite (a folder; pymilvus starts the
in-process server for a `.db` path), `RAG_STORE=milvus:http://HOST:19530` in a Milvus server or
cluster. The same pymilvus client speaks to both, so the code a cluster runs is the code tested.

Each index NAME is two collections:
- `docqa_NAME_chunks`: one row per chunk (document name, offsets, text, its embedding, its terms)
  and the sparse BM25 vector Milvus's own BM25 function makes from the terms. The terms are the
  text's words as the local store's BM25 counts them (English stems, stop words out: Milvus Lite's
  analyzer has no stemmer), so both stores rank alike. Milvus runs both searches (dense inner
  product, BM25); their candidates are fused as the local store fuses them (`MilvusIndex.retrieve`).
- `docqa_NAME_docs`: the documents' text in parts (a VARCHAR holds 65,535 bytes), with each
  document's checksum and when it was added, and one settings row (embedding model, dimension,
  chunking, and a version that every write changes, so other processes read the index again).
  Milvus needs a vector field in every collection; this one's is a constant placeholder.

Writes go chunks first, then the document's text and listing: a document appears only once all of
it is there, and chunks left by an interrupted write (of a document not listed) are never cited.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import numpy as np

from .catalog import Catalog, DocumentInfo, now
from .errors import IndexStoreError
from .index import Manifest, bm25_terms, sha256
from .schema import Chunk, Document, Passage

LAYOUT_VERSION = 2  # of the collections below, recorded in each index's settings
BUILDING = ".building"  # an index is built under NAME.building, then renamed NAME
PART_CHARS = 16_000  # at most 4 UTF-8 bytes a character: a part fits a 65,535-byte VARCHAR
DOC_CACHE = 64  # documents kept in memory per index, most recently cited first
SCHEMA_CHUNKS = {"id", "doc", "start", "end", "text", "terms", "vector", "sparse"}
SCHEMA_DOCS = {"id", "kind", "doc", "part", "text", "info", "placeholder"}
_QUERY_LIMIT = 16_384  # Milvus's cap on offset + limit of one query
DELETE_BATCH = 50_000  # document names in one delete filter (see MilvusStore.delete)


def store_uri(store: str) -> str | None:
    """The Milvus URI of a RAG_STORE value, or None for the local store."""
    if store in ("", "local"):
        return None
    if store.startswith("milvus:"):
        return store[len("milvus:"):]
    raise IndexStoreError(f"RAG_STORE={store!r}: use 'local', 'milvus:PATH.db' (Milvus Lite) or "
                          f"'milvus:http://HOST:19530' (a Milvus server).")


def collection(name: str, kind: str) -> str:
    """Milvus's names allow letters, digits and '_': the index name's '.', '-' and '_' are spelt
    out as `_HEX_` (so the name reads back unambiguously)."""
    return f"docqa_{re.sub(r'[^A-Za-z0-9]', lambda m: f'_{ord(m[0]):x}_', name)}_{kind}"


class MilvusStore:
    """One Milvus database holding docqa's indexes."""

    def __init__(self, uri: str, timeout: float = 30.0):
        self.uri = uri
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()
        self._loaded: set[str] = set()

    @property
    def client(self):
        """The pymilvus client, connected on first use (pymilvus is imported only then)."""
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                try:
                    self._client = MilvusClient(uri=self.uri, timeout=self.timeout)
                except Exception as exc:  # pymilvus raises its own MilvusException, or gRPC's errors
                    if "://" not in self.uri:  # Milvus Lite: one process at a time holds its folder
                        raise IndexStoreError(
                            f"Cannot open the Milvus Lite database {self.uri} ({_short(exc)}): another process may "
                            f"have it open. To share one store between processes, serve it: `milvus-lite server "
                            f"--data-dir {self.uri} --port 19530` and RAG_STORE=milvus:http://127.0.0.1:19530."
                        ) from None
                    raise IndexStoreError(f"Cannot reach the Milvus store at {self.uri} ({_short(exc)}). Start "
                                          f"the server, check RAG_STORE, or unset it to use the local index "
                                          f"folder.") from None
            return self._client

    def close(self) -> None:
        """Disconnect; for Milvus Lite, also stop its in-process server, so another process may open it."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
                self._loaded.clear()
                if "://" not in self.uri:
                    from milvus_lite import server_manager_instance

                    server_manager_instance.release_server(self.uri)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except IndexStoreError:
            raise
        except Exception as exc:
            raise IndexStoreError(f"The Milvus store at {self.uri} failed to {what} ({_short(exc)}).") from None

    # ---- indexes ----

    def names(self) -> list[str]:
        found = self._call("list its collections", self.client.list_collections)
        docs = {c for c in found if c.startswith("docqa_") and c.endswith("_docs")}
        return sorted(n for n in map(self._name_of, docs)
                      if collection(n, "chunks") in found and not n.endswith(BUILDING))

    @staticmethod
    def _name_of(docs_collection: str) -> str:
        inner = docs_collection[len("docqa_"):-len("_docs")]
        return re.sub(r"_([0-9a-f]+)_", lambda m: chr(int(m[1], 16)), inner)

    def exists(self, name: str) -> bool:
        return self._call("look for a collection", self.client.has_collection, collection(name, "docs"))

    def swap_in(self, built: str, name: str) -> None:
        """Make the complete index `built` the index `name`: drop the old one, rename the new one in.
        A process stopped between the two leaves no `name`; `open` finishes the rename."""
        settings = self.settings(built)
        settings["complete"] = True
        self._put_settings(built, settings)
        if self.exists(name):
            self.drop(name)
        self._rename(built, name)

    def _rename(self, old: str, new: str) -> None:
        for kind in ("chunks", "docs"):
            self._loaded.discard(collection(old, kind))
            self._call("rename a collection", self.client.rename_collection, collection(old, kind),
                       collection(new, kind))

    def open(self, name: str, embedding_model: str) -> "MilvusIndex":
        """The index `name`, checked: made by docqa, with this embedding model, in the expected shape."""
        building = name + BUILDING
        if not self.exists(name) and self.exists(building) and (self.settings(building) or {}).get("complete"):
            self._rename(building, name)  # a build swapped out the old index and stopped before this
        if not self.exists(name):
            raise IndexStoreError(f"No index named '{name}' in the Milvus store at {self.uri}: build it with "
                                  f"`rag index PATH... --name {name}`.")
        for kind, fields in (("chunks", SCHEMA_CHUNKS), ("docs", SCHEMA_DOCS)):
            found = self._call("describe a collection", self.client.describe_collection, collection(name, kind))
            have = {f["name"] for f in found.get("fields", [])}
            if have != fields:
                raise IndexStoreError(f"The Milvus collection {collection(name, kind)} was changed outside docqa "
                                      f"(fields {sorted(have)}, expected {sorted(fields)}); rebuild the index "
                                      f"`{name}` with `rag index PATH... --name {name}`.")
        settings = self.settings(name)
        if settings is None:
            raise IndexStoreError(f"The index '{name}' in the Milvus store has no settings row: a build was "
                                  f"interrupted or someone changed it; rebuild it.")
        if settings["embedding_model"] != embedding_model:
            raise IndexStoreError(f"The index '{name}' was built with the embedding model "
                                  f"{settings['embedding_model']!r}, not the configured {embedding_model!r}; "
                                  f"rebuild it, or set RAG_EMBEDDING_MODEL to match.")
        return MilvusIndex(self, name, settings)

    def load(self, name: str) -> None:
        """Load the index's collections for searching (Milvus Lite loads them per process; a
        server keeps them loaded, and loading again is a no-op)."""
        for kind in ("chunks", "docs"):
            if collection(name, kind) not in self._loaded:
                self._call("load a collection", self.client.load_collection, collection(name, kind))
                self._loaded.add(collection(name, kind))

    def settings(self, name: str) -> dict | None:
        self.load(name)
        rows = self._call("read the index settings", self.client.query, collection(name, "docs"),
                          filter='kind == "settings"', output_fields=["info"], limit=1)
        return json.loads(rows[0]["info"]) if rows else None

    def create(self, name: str, dimension: int, embedding_model: str, chunk_size: int, chunk_overlap: int) -> None:
        """Empty collections for the index `name` (dropping any of that name)."""
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        client = self.client
        for kind in ("chunks", "docs"):
            self._loaded.discard(collection(name, kind))
            if self._call("look for a collection", client.has_collection, collection(name, kind)):
                self._call("drop a collection", client.drop_collection, collection(name, kind))
        chunks = MilvusClient.create_schema(auto_id=False)
        chunks.add_field("id", DataType.INT64, is_primary=True)
        chunks.add_field("doc", DataType.VARCHAR, max_length=4096)
        chunks.add_field("start", DataType.INT64)
        chunks.add_field("end", DataType.INT64)
        chunks.add_field("text", DataType.VARCHAR, max_length=65_535)
        chunks.add_field("terms", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        chunks.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                     output_field_names=["sparse"]))
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="IP")
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        self._call("create a collection", client.create_collection, collection(name, "chunks"), schema=chunks,
                   index_params=params)
        docs = MilvusClient.create_schema(auto_id=False)
        docs.add_field("id", DataType.VARCHAR, is_primary=True, max_length=4200)
        docs.add_field("kind", DataType.VARCHAR, max_length=16)
        docs.add_field("doc", DataType.VARCHAR, max_length=4096)
        docs.add_field("part", DataType.INT64)
        docs.add_field("text", DataType.VARCHAR, max_length=65_535)
        docs.add_field("info", DataType.VARCHAR, max_length=4096)
        docs.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        params = client.prepare_index_params()
        params.add_index("placeholder", index_type="FLAT", metric_type="L2")
        self._call("create a collection", client.create_collection, collection(name, "docs"), schema=docs,
                   index_params=params)
        settings = {"docqa": LAYOUT_VERSION, "embedding_model": embedding_model, "dimension": dimension,
                    "chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                    "created": now(), "version": time.time_ns()}
        self._put_settings(name, settings)

    def _put_settings(self, name: str, settings: dict) -> None:
        self._call("write the index settings", self.client.upsert, collection(name, "docs"), [
            {"id": "settings", "kind": "settings", "doc": "", "part": 0, "text": "", "info": json.dumps(settings),
             "placeholder": [0.0, 0.0]}])

    def add(self, name: str, docs: list[Document], chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Add documents (replacing same-named ones): chunks first, then text and listing."""
        self.delete(name, [d.name for d in docs])
        # Random 63-bit ids: processes adding at once need no counter to agree on (a clash among a
        # million chunks has odds of about 1 in 10^7).
        ids = [secrets.randbits(63) for _ in chunks]
        terms = bm25_terms([c.text for c in chunks])
        rows = [{"id": i, "doc": docs[c.doc_id].name, "start": c.start, "end": c.end, "text": c.text,
                 "terms": " ".join(t), "vector": v.tolist()} for i, c, v, t in zip(ids, chunks, vectors, terms)]
        for batch in range(0, len(rows), 1000):
            self._call("store chunks", self.client.insert, collection(name, "chunks"), rows[batch:batch + 1000])
        added = now()
        listings, rest = [], []
        for d in docs:
            parts = [d.text[i:i + PART_CHARS] for i in range(0, len(d.text), PART_CHARS)] or [""]
            info = json.dumps({"sha256": sha256(d.text), "chars": len(d.text), "added": added, "parts": len(parts)})
            rows = [{"id": _part_id(d.name, n), "kind": "doc", "doc": d.name, "part": n, "text": part,
                     "info": info if n == 0 else "", "placeholder": [0.0, 0.0]} for n, part in enumerate(parts)]
            listings.append(rows[0])
            rest += rows[1:]
        # Every document's later parts go in first, the listings (part 0) last; in batches, since one
        # insert per document made 80% of the time of adding 5,000 small documents.
        for rows in (rest, listings):
            for batch in range(0, len(rows), 100):
                self._call("store documents", self.client.insert, collection(name, "docs"), rows[batch:batch + 100])
        self._bump(name)

    def delete(self, name: str, doc_names: list[str]) -> None:
        """Remove documents: their listing first (so they stop being cited), then their text and chunks.
        Listings go by primary key; text and chunks by a filter on the name, which Milvus answers by
        reading every row, so names go 50,000 to a filter: with 1,000, adding 50,000 documents to
        50,000 others spent 47 s of 76 in these scans (Milvus Lite, eval/results/scale-2026-12-03.md)."""
        doc_names = list(doc_names)
        for i in range(0, len(doc_names), DELETE_BATCH):
            batch = doc_names[i:i + DELETE_BATCH]
            self._call("remove documents", self.client.delete, collection(name, "docs"),
                       ids=[_part_id(n, 0) for n in batch])
            names = json.dumps(batch)
            self._call("remove documents", self.client.delete, collection(name, "docs"),
                       filter=f'kind == "doc" and doc in {names}')
            self._call("remove chunks", self.client.delete, collection(name, "chunks"), filter=f"doc in {names}")
        if doc_names:
            self._bump(name)

    def _bump(self, name: str) -> None:
        settings = self.settings(name)
        settings["version"] = time.time_ns()  # differs from every earlier one, across rebuilds too
        self._put_settings(name, settings)

    def drop(self, name: str) -> None:
        for kind in ("chunks", "docs"):
            self._loaded.discard(collection(name, kind))
            self._call("drop a collection", self.client.drop_collection, collection(name, kind))


class _Documents(Mapping):
    """Documents by name, fetched from Milvus when first cited and kept (the most recent DOC_CACHE).
    Iterating lists every document: for the web chat's list and `rag list`, not for answering."""

    def __init__(self, index: "MilvusIndex"):
        self.index = index
        self._cache: OrderedDict[str, Document] = OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Document:
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        doc = self.index.fetch(name)
        if doc is None:
            raise KeyError(name)
        with self._lock:
            self._cache[name] = doc
            while len(self._cache) > DOC_CACHE:
                self._cache.popitem(last=False)
        return doc

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and bool(self.index.listed([name]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.listing)

    def __len__(self) -> int:
        return len(self.index.listing)


class MilvusIndex:
    """An index in Milvus, with the face the engine uses of a local one: `manifest`, `by_name`,
    `document_names`, `respell`, and `retrieve` (which Milvus's hybrid search answers). Answering
    reads only the chunks found and the documents cited, whatever the size of the collection."""

    def __init__(self, store: MilvusStore, name: str, settings: dict):
        self.store = store
        self.name = name
        self.settings = settings
        self.by_name = _Documents(self)
        self._chunks = collection(name, "chunks")
        self._docs = collection(name, "docs")

    def _query(self, what: str, **kwargs) -> list[dict]:
        return self.store._call(what, self.store.client.query, **kwargs)

    def listed(self, names) -> dict[str, dict]:
        """Which of `names` are listed documents (written whole), with their info: looked up by
        primary key (a listing's id is derived from its name), not by a filter over every document."""
        names = sorted(set(names))
        found = {}
        for i in range(0, len(names), 1000):
            rows = self.store._call("look up documents", self.store.client.get, self._docs,
                                    ids=[_part_id(n, 0) for n in names[i:i + 1000]], output_fields=["doc", "info"])
            found.update((r["doc"], json.loads(r["info"])) for r in rows)
        return found

    @functools.cached_property
    def listing(self) -> dict[str, dict]:
        """Every listed document's name → {"sha256", "chars", "added", "parts"}, in name order."""
        found = {}
        iterator = self.store._call("list documents", self.store.client.query_iterator, self._docs, batch_size=1000,
                                    filter='kind == "doc" and part == 0', output_fields=["doc", "info"])
        try:
            while rows := self.store._call("list documents", iterator.next):
                found.update((r["doc"], json.loads(r["info"])) for r in rows)
        finally:
            iterator.close()
        return dict(sorted(found.items()))

    @property
    def manifest(self) -> Manifest:
        s = self.settings
        return Manifest(format_version=s["docqa"], embedding_model=s["embedding_model"], dimension=s["dimension"],
                        chunk_size=s["chunk_size"], chunk_overlap=s["chunk_overlap"],
                        documents=Catalog.of(DocumentInfo(name=n, sha256=info["sha256"], chars=info["chars"],
                                                          added=info["added"]) for n, info in self.listing.items()),
                        chunks=self.chunk_count(), created=s["created"])

    def chunk_count(self) -> int:
        rows = self._query("count chunks", collection_name=self._chunks, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    @property
    def document_names(self) -> list[str]:
        return list(self.listing)

    @property
    def documents(self) -> list[Document]:
        """Every document, read whole: for small indexes (answering reads only the ones cited)."""
        return [self.by_name[n] for n in self.listing]

    def fetch(self, name: str) -> Document | None:
        """The document `name` as stored, checked against its checksum; None if it is not listed."""
        from .documents import make_document

        rows = self._query("read a document", collection_name=self._docs, output_fields=["part", "text", "info"],
                           filter=f'kind == "doc" and doc == {json.dumps(name)}', limit=_QUERY_LIMIT)
        rows.sort(key=lambda r: r["part"])
        if not rows or rows[0]["part"] != 0:
            return None
        info = json.loads(rows[0]["info"])
        text = "".join(r["text"] for r in rows)
        if len(rows) != info["parts"] or sha256(text) != info["sha256"]:
            raise IndexStoreError(f"The text of '{name}' in the Milvus store does not match its checksum: it was "
                                  f"changed outside docqa; add the document again.")
        return make_document(name, text)  # sentences are split again: the same splitter, the same offsets

    def respell(self, question: str) -> str:
        """No spelling suggestions here: they need every word of the documents in memory."""
        return question

    def retrieve(self, question: str, query: np.ndarray, top_k: int, candidates: int, fusion: str,
                 dense_weight: float, rrf_k: int) -> list[Passage]:
        """Milvus's dense and BM25 top `candidates`, fused as the local store fuses them ("convex":
        0.7 x cosine + 0.3 x BM25 / best BM25 among the candidates) or by Milvus's RRFRanker ("rrf").

        Milvus's WeightedRanker normalises each search's scores on its own, which on held-out SQuAD
        put the gold paragraph first for 81.8% of questions against 86.2% for the convex fusion
        (eval/results/milvus-parity-2026-12-03.md); so the searches are Milvus's and the arithmetic
        over their 40 candidates is docqa's."""
        fields = ["doc", "start", "end", "text", "vector"]
        terms = " ".join(bm25_terms([question])[0])
        if fusion == "rrf":
            from pymilvus import AnnSearchRequest, RRFRanker

            requests = [AnnSearchRequest([query.tolist()], "vector", {"metric_type": "IP"}, candidates)]
            if terms:
                requests.append(AnnSearchRequest([terms], "sparse", {"metric_type": "BM25"}, candidates))
            hits = self._search("search", self.store.client.hybrid_search, self._chunks, requests, RRFRanker(rrf_k),
                                limit=top_k * 2, output_fields=fields)
            found = {h["id"]: h["entity"] for h in hits}
            ranked = [(h["id"], float(h["distance"])) for h in hits]
        else:
            from .retriever import combine

            dense = self._search("search", self.store.client.search, self._chunks, [query.tolist()],
                                 anns_field="vector", limit=candidates, search_params={"metric_type": "IP"},
                                 output_fields=fields)
            lexical = self._bm25(terms, candidates, fields) if terms else []
            found = {h["id"]: h["entity"] for h in dense + lexical}
            # BM25 scores are positive (Milvus Lite reports them negated, as distances): their size is what counts.
            bm25 = {h["id"]: abs(float(h["distance"])) for h in lexical}
            unscored = [h["id"] for h in dense if h["id"] not in bm25]
            if terms and unscored:  # the dense candidates' BM25 scores, as the local store has them
                bm25.update((h["id"], abs(float(h["distance"])))
                            for h in self._bm25(terms, len(unscored), ["doc"], f"id in {json.dumps(unscored)}"))
            ids = list(found)
            cosines = [float(np.asarray(found[i]["vector"], dtype=np.float32) @ query) for i in ids]
            ranking = combine(ids, cosines, [bm25.get(i, 0.0) for i in ids], dense_weight)
            ranked = list(zip(ranking.ids, ranking.scores))
        listed = self.listed(found[i]["doc"] for i, _ in ranked)  # not chunks left by an interrupted write
        passages = []
        for i, score in ranked:
            e = found[i]
            if e["doc"] in listed:
                passages.append(Passage(chunk_id=int(i), doc=e["doc"], start=int(e["start"]), end=int(e["end"]),
                                        text=e["text"], score=score,
                                        similarity=float(np.asarray(e["vector"], dtype=np.float32) @ query)))
        return passages[:top_k]

    def _bm25(self, terms: str, limit: int, fields: list[str], where: str = "") -> list[dict]:
        return self._search("search", self.store.client.search, self._chunks, [terms], anns_field="sparse",
                            limit=limit, filter=where, search_params={"metric_type": "BM25"}, output_fields=fields)

    def _search(self, what: str, fn, *args, **kwargs) -> list[dict]:
        return list(self.store._call(what, fn, *args, **kwargs)[0])


def _part_id(name: str, part: int) -> str:
    """The primary key of part `part` of document `name` in the docs collection."""
    return f"doc:{hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]}:{part}"


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "…"
