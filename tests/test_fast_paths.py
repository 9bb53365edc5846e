"""Fast paths checked against brute force on synthetic data, and score arithmetic on hand-computed cases."""

import numpy as np
import pytest
import torch

from rag.citations import assemble, sentence_weight
from rag.documents import make_document
from rag.index import build_index
from rag.reader import Reader, ReaderSpan, decode_spans
from rag.retriever import Retriever, combine, fuse
from rag.schema import Chunk, Document, Passage, Ranking


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


def test_large_indexes_search_an_inverted_file_close_to_brute_force_and_load_memory_mapped(tmp_path, monkeypatch):
    """From IVF_MIN chunks up the dense search goes through an IVF index: its candidates are scored
    exactly, its top 10 holds at least 9 of brute force's in 10, and a saved index answers the same
    from memory-mapped files."""
    import rag.index as ix

    monkeypatch.setattr(ix, "IVF_MIN", 2000)
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 32))  # clustered, as embeddings are
    vectors = (centres[rng.integers(0, 50, 6000)] + 0.5 * rng.normal(size=(6000, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    text = "Word " * 6000
    docs = [make_document("d.txt", text)]
    chunks = [Chunk(doc_id=0, start=5 * i, end=5 * i + 4, text="Word") for i in range(6000)]
    index = build_index(docs, chunks, vectors, "synthetic", 10, 0)
    assert index.ivf is not None
    ix.save_index(index, tmp_path / "big")
    loaded = ix.load_index(tmp_path / "big", "synthetic")
    assert isinstance(loaded.vectors, np.memmap) and loaded.ivf is not None
    found = 0
    for _ in range(50):
        q = vectors[rng.integers(0, 6000)] + 0.3 * rng.normal(size=32).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = vectors @ q
        got = index.search_dense(q, 10)
        assert np.allclose(got.scores, exact[got.ids], atol=1e-5)  # exact scores, best first
        assert got.scores == sorted(got.scores, reverse=True)
        found += len(set(got.ids) & set(np.argsort(-exact)[:10].tolist()))
        assert loaded.search_dense(q, 10) == got
    assert found >= 0.9 * 500
    assert loaded.chunks[17] == chunks[17] and loaded.by_name["d.txt"].text == text


def test_rrf_hand_computed():
    a = Ranking(ids=[1, 2, 3], scores=[3, 2, 1])
    b = Ranking(ids=[3, 1], scores=[9, 8])
    fused = fuse([a, b], rrf_k=60)
    # 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62
    assert fused.ids == [1, 3, 2]
    assert np.isclose(fused.scores[0], 1 / 61 + 1 / 62)
    assert np.isclose(fused.scores[2], 1 / 62)


def test_convex_fusion_hand_computed():
    ids, cosines, bm25 = [1, 2, 3], [0.5, 0.9, 0.1], [4.0, 0.0, 2.0]
    # w 0.5: 1: 0.25 + 0.5 * 4/4 = 0.75; 2: 0.45 + 0 = 0.45; 3: 0.05 + 0.5 * 2/4 = 0.3
    fused = combine(ids, cosines, bm25, dense_weight=0.5)
    assert fused.ids == [1, 2, 3] and np.allclose(fused.scores, [0.75, 0.45, 0.3])
    # w 0.9: 2: 0.81; 1: 0.45 + 0.1 = 0.55; 3: 0.09 + 0.05 = 0.14
    assert combine(ids, cosines, bm25, dense_weight=0.9).ids == [2, 1, 3]
    # No word of the question in any candidate: the cosine alone orders them (no division by zero).
    fused = combine(ids, cosines, [0.0, 0.0, 0.0], dense_weight=0.7)
    assert fused.ids == [2, 1, 3] and np.allclose(fused.scores, [0.63, 0.35, 0.07])


class _FixedQuery:
    """Stands in for the embedding model: every question embeds to one given vector."""

    def __init__(self, vector):
        self.vector = vector

    def encode_query(self, question):
        return self.vector


def test_hybrid_retrieval_matches_brute_force_over_all_chunks():
    rng = np.random.default_rng(1)
    words = "river market school mayor bridge harbour castle garden station tower".split()
    texts = [" ".join(rng.choice(words, size=8)) for _ in range(40)]
    vectors = rng.normal(size=(40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(doc_id=0, start=0, end=len(t), text=t) for t in texts]
    index = build_index([Document(name="d", text=texts[0])], chunks, vectors, "synthetic", 10, 0)
    for question in ["Where is the river market?", "castle towers", "gardens"]:
        q = rng.normal(size=16).astype(np.float32)
        q /= np.linalg.norm(q)
        bm25 = index.bm25_scores(question)
        lexical = index.search_bm25(question, 40)
        assert lexical.ids and np.allclose(bm25[lexical.ids], lexical.scores)  # the two BM25 paths agree
        for fusion in ("convex", "rrf"):
            got = Retriever(_FixedQuery(q), candidates=40, fusion=fusion, dense_weight=0.7).retrieve(index, question, 10)
            if fusion == "convex":
                brute = 0.7 * (vectors @ q) + 0.3 * bm25 / bm25.max()
            else:
                dense_rank = np.argsort(np.argsort(-(vectors @ q)))
                lexical_rank = {c: r for r, c in enumerate(lexical.ids)}
                brute = np.array([1 / (61 + dense_rank[c]) + (1 / (61 + lexical_rank[c]) if c in lexical_rank else 0)
                                  for c in range(40)])
            order = np.argsort(-brute, kind="stable")[:10]
            assert [p.chunk_id for p in got] == order.tolist()
            assert np.allclose([p.score for p in got], brute[order], atol=1e-5)
            assert np.allclose([p.similarity for p in got], (vectors @ q)[order], atol=1e-5)


def test_bm25_top_n_matches_brute_force():
    rng = np.random.default_rng(3)
    words = "river market school mayor bridge harbour castle garden station tower".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(60)]
    chunks = [Chunk(doc_id=0, start=0, end=len(t), text=t) for t in texts]
    index = build_index([Document(name="d", text=texts[0])], chunks, np.eye(60, 4, dtype=np.float32), "x", 10, 0)
    for question in ["river market", "castle", "towers and gardens", "nothing known"]:
        scores = index.bm25_scores(question)
        brute = sorted((i for i in range(60) if scores[i] > 0), key=lambda i: (-scores[i], i))
        for n in (0, 1, 5, 60):
            got = index.search_bm25(question, n)
            assert np.allclose(got.scores, scores[brute[:n]])
            assert len(got.ids) == min(n, len(brute))


def test_bm25_matches_inflected_words():
    texts = ["Istanbul hosted the second round of talks.", "The delegations met in Geneva."]
    chunks = [Chunk(doc_id=0, start=0, end=len(t), text=t) for t in texts]
    index = build_index([Document(name="d", text=texts[0])], chunks, np.eye(2, 4, dtype=np.float32), "synthetic", 10, 0)
    assert index.search_bm25("Which city hosts the rounds?", 2).ids == [0]
    assert index.search_bm25("Where did the delegation meet?", 2).ids == [1]


def test_bm25_gives_the_same_answers_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(2)
    words = "hosted hosting rounds delegations meeting meets talks talked cities signed signing".split()
    texts = [" ".join(rng.choice(words, size=10)) for _ in range(30)]
    chunks = [Chunk(doc_id=0, start=0, end=len(t), text=t) for t in texts]
    index = build_index([Document(name="d", text=texts[0])], chunks, np.eye(30, 4, dtype=np.float32), "x", 10, 0)
    questions = [" ".join(rng.choice(words, size=3)) for _ in range(200)]
    alone = [index.search_bm25(q, 5) for q in questions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda q: index.search_bm25(q, 5), questions))
    assert together == alone


def test_span_decoding_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(10):
        windows, length, max_len = 3, 24, 5
        start = (rng.standard_normal((windows, length)) * 3).astype(np.float32)
        end = (rng.standard_normal((windows, length)) * 3).astype(np.float32)
        context = np.zeros((windows, length), dtype=bool)
        context[:, 6:length - 1] = True  # [CLS] q q q q [SEP] context... [SEP]
        spans = decode_spans(start, end, context, max_len, top_n=4)
        for w in range(windows):
            allowed = context[w].copy()
            allowed[0] = True
            ps = torch.softmax(torch.from_numpy(start[w]).masked_fill(~torch.from_numpy(allowed), -1e9), -1)
            pe = torch.softmax(torch.from_numpy(end[w]).masked_fill(~torch.from_numpy(allowed), -1e9), -1)
            brute = sorted(((float(ps[i] * pe[j]), i, j) for i in range(length) for j in range(length)
                            if context[w, i] and context[w, j] and i <= j < i + max_len), reverse=True)[:4]
            got = [(p, s, e) for ww, s, e, p in spans if ww == w]
            assert [(s, e) for _, s, e in got] == [(s, e) for _, s, e in brute]
            assert np.allclose([p for p, _, _ in got], [p for p, _, _ in brute], rtol=1e-4)


def test_a_span_stopping_inside_a_dotted_word_takes_the_whole_word():
    from rag.reader import keep_dotted_word

    for text, stop, whole in [("Logs go to /var/log/orbit/access.log. Then", "access", "access.log"),
                              ("It took 3.5 hours.", "3", "3.5"), ("Version v1.2.3 is out", "v1", "v1.2.3"),
                              ("Allah.So the story goes", "Allah", "Allah"),  # a missing space, not a word
                              ("It opened in 1983. Then", "1983", "1983")]:
        end = text.index(stop) + len(stop)
        assert text[text.index(stop):keep_dotted_word(text, end)] == whole


def test_reader_windows_match_transformers_tokenizer_call():
    """The reader cuts windows with the `tokenizers` library alone (no transformers on the fast
    path): ids, token types, offsets and which tokens are the passage's must be what transformers'
    call with truncation="only_second", a stride and overflowing tokens gives."""
    from transformers import AutoTokenizer

    from rag.config import SHIPPED_READER

    reader = Reader(str(SHIPPED_READER), backend="torch", max_seq_length=64, doc_stride=16, max_question_tokens=8)
    hf = AutoTokenizer.from_pretrained(str(SHIPPED_READER))
    passages = ["Ann met Bob in Paris.", "The meeting, long planned, took place in Rome in May. " * 9, "Ünïcödé 東京."]
    question = "Where and when did the long planned meeting of all the delegations take place?"
    windows = reader.windows(question, passages)
    short = hf.decode(hf(question, add_special_tokens=False)["input_ids"][:8])
    enc = hf([short] * 3, passages, truncation="only_second", max_length=64, stride=16,
             return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="np")
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert (windows.inputs[name] == enc[name]).all(), name
    assert windows.passage == enc["overflow_to_sample_mapping"].tolist()
    for w in range(len(windows.passage)):
        n = int(enc["attention_mask"][w].sum())
        assert [tuple(o) for o in enc["offset_mapping"][w][:n]] == windows.offsets[w]
        assert windows.context[w].tolist() == [s == 1 for s in enc.sequence_ids(w)]


def test_answer_pooling_hand_computed():
    text = "Ann met Bob. Ann left. Carl stayed."
    doc = make_document("d", text)
    index = build_index([doc], [Chunk(doc_id=0, start=0, end=len(text), text=text)],
                        np.eye(1, 4, dtype=np.float32), "synthetic", 100, 0)
    # Two passages overlapping on "Ann left.": the same occurrence read twice counts once.
    passages = [Passage(chunk_id=0, doc="d", start=0, end=22, text=text[:22], score=1.0, similarity=1.0),
                Passage(chunk_id=0, doc="d", start=13, end=len(text), text=text[13:], score=0.5, similarity=1.0)]
    # Each window's "no answer" probability: 0.2 in passage 0, 0.1 in passage 1.
    spans = [ReaderSpan(passage=1, start=23 - 13, end=27 - 13, score=0.6, no_answer=0.1),  # Carl, once
             ReaderSpan(passage=0, start=0, end=3, score=0.4, no_answer=0.2),  # Ann (first sentence)
             ReaderSpan(passage=0, start=13, end=16, score=0.3, no_answer=0.2),  # Ann (second sentence) ...
             ReaderSpan(passage=1, start=0, end=3, score=0.2, no_answer=0.1)]  # ... seen again through passage 1
    answer = assemble("who?", index, passages, spans, threshold=0.1)
    # Ann: 1 - (1 - 0.4)(1 - 0.3) = 0.58 < Carl 0.6; counting the repeat would give 0.664 > 0.6.
    assert answer.text == "Carl" and np.isclose(answer.score, 0.6)
    spans[0] = ReaderSpan(passage=1, start=23 - 13, end=27 - 13, score=0.55, no_answer=0.1)
    answer = assemble("who?", index, passages, sorted(spans, key=lambda s: -s.score), threshold=0.1)
    assert answer.text == "Ann" and np.isclose(answer.score, 0.58)
    assert [(c.answer_start, c.sentence) for c in answer.citations] == [(0, "Ann met Bob."), (13, "Ann left.")]
    # It abstains on the answer against its best occurrence's "no answer": Ann 0.58 / (0.58 + 0.2) = 0.744.
    assert not assemble("who?", index, passages, spans, threshold=0.74).abstained
    assert assemble("who?", index, passages, spans, threshold=0.75).abstained
    # So a low confidence the reader prefers to "no answer" is answered; a higher one it does not, is not.
    unsure = [ReaderSpan(passage=0, start=0, end=3, score=0.05, no_answer=0.01)]
    assert not assemble("who?", index, passages, unsure, threshold=0.56).abstained
    outweighed = [ReaderSpan(passage=0, start=0, end=3, score=0.3, no_answer=0.6)]
    answer = assemble("who?", index, passages, outweighed, threshold=0.56)
    assert answer.abstained and np.isclose(answer.score, 0.3) and "no answer" in answer.reason


def test_onnx_reader_matches_pytorch_on_padded_batches(tmp_path):
    from rag.config import SHIPPED_READER

    passages = ["Ann met Bob in Paris.", "The meeting, long planned, took place in Rome in May. " * 12,
                "Carl stayed home. " * 5]
    fast = Reader(str(SHIPPED_READER), backend="onnx", cache_dir=tmp_path)
    reference = Reader(str(SHIPPED_READER), backend="torch")
    for question in ["Where did Ann meet Bob?", "When was the meeting?", "Who stayed home?"]:
        a, b = fast.read(question, passages, top_n=5), reference.read(question, passages, top_n=5)
        assert [(s.passage, s.start, s.end) for s in a] == [(s.passage, s.start, s.end) for s in b]
        assert np.allclose([s.score for s in a], [s.score for s in b], atol=1e-5)
    assert fast._onnx is not None


def test_int8_onnx_reader_is_written_once_and_picks_the_float32_spans(tmp_path):
    """`quantize` under ONNX Runtime: the int8 graph is made from the float32 export, found again by a
    later process without loading the model, and reads these plain questions as float32 does."""
    from rag.config import SHIPPED_READER

    passages = ["Ann met Bob in Paris.", "The meeting, long planned, took place in Rome in May. " * 12,
                "Carl stayed home. " * 5]
    float32 = Reader(str(SHIPPED_READER), backend="onnx", cache_dir=tmp_path)
    int8 = Reader(str(SHIPPED_READER), backend="onnx", cache_dir=tmp_path, quantize=True)
    for question in ["Where did Ann meet Bob?", "When was the meeting?", "Who stayed home?"]:
        a, b = int8.read(question, passages, top_n=1)[0], float32.read(question, passages, top_n=1)[0]
        assert passages[a.passage][a.start:a.end] == passages[b.passage][b.start:b.end]  # "May" is in 12 places
    assert int8._onnx.path.name.endswith("-int8.onnx") and int8._onnx.path.stat().st_size < float32._onnx.path.stat().st_size / 2
    again = Reader(str(SHIPPED_READER), backend="onnx", cache_dir=tmp_path, quantize=True)
    again.load()
    assert again._model is None and again._onnx.path == int8._onnx.path


def test_bfloat16_document_embeddings_match_float32(seed_qa):
    """Indexing embeds in bfloat16 where the CPU has it (2.2x faster): each chunk's vector must stay
    within rounding of float32's, and every seed question must rank the chunks alike."""
    from rag import get_engine
    from rag.embeddings import Embedder

    engine = get_engine()
    chunks = [c.text for c in engine.index().chunks]
    source = engine.config.embedding_model_source()
    fp32 = Embedder(source, dtype="float32").encode(chunks)
    bf16 = Embedder(source, dtype="bfloat16").encode(chunks)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert (fp32 * bf16).sum(axis=1).min() > 0.9999
    for item in seed_qa:
        q = engine.embedder.encode_query(item["question"])
        assert np.argmax(fp32 @ q) == np.argmax(bf16 @ q)


def test_question_embeddings_without_sentence_transformers_match_it(tmp_path):
    """Once the question encoder's export is cached, `rag ask` skips loading sentence-transformers
    (3 s of a cold start): the tokenizer, the ONNX graph and a mean must give its vectors, long
    (truncated) and odd questions included, and a new process must answer exactly as before."""
    import json
    import os
    import subprocess
    import sys

    from rag.config import default_embedding_model_path
    from rag.embeddings import Embedder

    model = str(default_embedding_model_path())
    questions = ["Who led the Russian delegation?", "  what's  the boiling point??\n", "Ünïcödé “quotes” 東京", "x",
                 "word " * 400]
    exporting = Embedder(model, backend="onnx", cache_dir=tmp_path / "onnx")
    reference = Embedder(model, backend="torch")
    for q in questions:  # the first question exports, through sentence-transformers' own modules
        assert np.allclose(exporting.encode_query(q), reference.encode_query(q), atol=1e-5)
    assert exporting._onnx is not None and exporting._onnx.tokenizer is None
    cached = Embedder(model, backend="onnx", cache_dir=tmp_path / "onnx")
    for q in questions:
        assert np.allclose(cached.encode_query(q), reference.encode_query(q), atol=1e-5), q[:20]
    assert cached._onnx.tokenizer is not None and cached._model is None  # the fast path, nothing else loaded
    # Several texts at once (a passage's sentences), padded to the longest in batches: as PyTorch encodes them.
    batched = cached.encode_few(questions, batch_size=2)
    assert np.allclose(batched, reference.encode(questions, dtype="float32"), atol=1e-5)
    assert cached._model is None

    script = ("import sys, json; from rag import ask; a = ask('Who led the Russian delegation?'); "
              "print(json.dumps([a.text, a.score, 'sentence_transformers' in sys.modules]))")
    env = {**os.environ, "RAG_CACHE_DIR": str(tmp_path / "fresh")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      timeout=300, check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert runs[0][2] is True and runs[1][2] is False  # exported on the first run, then not needed
    assert runs[0][:2] == runs[1][:2] and runs[0][0] == "Vladimir Medinsky"


def test_a_span_counts_by_the_share_of_the_questions_words_its_sentence_holds():
    """With a sentence weight w, a span's probability counts (1 - w) + w * the share of the question's
    content words in its sentence; a question with no content words is left as the reader scored it."""
    text = "The ferry leaves at 9:00. The museum opens at 10:00.\n\n| Room | Floor |\n|---|---|\n| Museum shop | 2 |"
    doc = make_document("d.md", text)
    question = "When does the museum open?"
    assert sentence_weight(question, doc, text.index("9:00"), 0.7) == pytest.approx(0.3)  # no word of it
    assert sentence_weight(question, doc, text.index("10:00"), 0.7) == pytest.approx(1.0)  # museum, open
    assert sentence_weight(question, doc, text.index("9:00"), 0.0) == 1.0
    assert sentence_weight("When is it?", doc, text.index("9:00"), 0.7) == 1.0
    # A table row is read with its header row: "Which floor is the museum shop on?" finds floor in it.
    assert sentence_weight("Which floor is the museum shop on?", doc, text.index("| 2 |") + 2, 0.7) == pytest.approx(1.0)
