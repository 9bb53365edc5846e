"""Fast paths checked against brute force on synthetic data (FAISS search, span decoding, fusion)."""

import numpy as np
import torch

from rag.index import build_index
from rag.reader import decode_spans
from rag.retriever import fuse
from rag.schema import Chunk, Document, Ranking


def test_dense_search_matches_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [Document(name="d", text="x" * 1000)]
    chunks = [Chunk(doc_id=0, start=i, end=i + 1, text="x") for i in range(200)]
    index = build_index(docs, chunks, vectors, "synthetic", 10, 0)
    for _ in range(10):
        q = rng.normal(size=32).astype(np.float32)
        q /= np.linalg.norm(q)
        got = index.search_dense(q, 7)
        brute = np.argsort(-(vectors @ q))[:7]
        assert got.ids == brute.tolist()
        assert np.allclose(got.scores, (vectors @ q)[brute], atol=1e-5)


def test_rrf_hand_computed():
    a = Ranking(ids=[1, 2, 3], scores=[3, 2, 1])
    b = Ranking(ids=[3, 1], scores=[9, 8])
    fused = fuse([a, b], rrf_k=60)
    # 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62
    assert fused.ids == [1, 3, 2]
    assert np.isclose(fused.scores[0], 1 / 61 + 1 / 62)
    assert np.isclose(fused.scores[2], 1 / 62)


def test_span_decoding_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        windows, length, max_len = 3, 24, 5
        start = torch.randn(windows, length, generator=gen) * 3
        end = torch.randn(windows, length, generator=gen) * 3
        context = torch.zeros(windows, length, dtype=torch.bool)
        context[:, 6:length - 1] = True  # [CLS] q q q q [SEP] context... [SEP]
        spans = decode_spans(start, end, context, max_len, top_n=4)
        for w in range(windows):
            allowed = context[w].clone()
            allowed[0] = True
            ps = torch.softmax(start[w].masked_fill(~allowed, -1e9), -1)
            pe = torch.softmax(end[w].masked_fill(~allowed, -1e9), -1)
            brute = sorted(((float(ps[i] * pe[j]), i, j) for i in range(length) for j in range(length)
                            if context[w, i] and context[w, j] and i <= j < i + max_len), reverse=True)[:4]
            got = [(p, s, e) for ww, s, e, p in spans if ww == w]
            assert [(s, e) for _, s, e in got] == [(s, e) for _, s, e in brute]
            assert np.allclose([p for p, _, _ in got], [p for p, _, _ in brute], rtol=1e-4)
