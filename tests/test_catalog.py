"""The document catalog against plain Python on synthetic names: every lookup and check agrees."""

import random

from rag.catalog import Catalog, DocumentInfo


def _infos(names):
    return [DocumentInfo(name=n, sha256=f"{i:064x}", chars=i, added="2026-12-03T10:00:00+0000")
            for i, n in enumerate(names)]


def test_lookup_and_order_agree_with_a_dict_and_sorted(tmp_path):
    rng = random.Random(0)
    alphabet = "ab/é日 ."
    names = list(dict.fromkeys("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)))
    catalog = Catalog.of(_infos(names))
    catalog.save(tmp_path, lambda path, array: __import__("numpy").save(path, array))
    loaded = Catalog.load(tmp_path)
    for c in (catalog, loaded):
        assert c.names() == names and len(c) == len(names)
        assert all(c.find(n) == i for i, n in enumerate(names))
        assert c.find("zzz-not-there") is None and c.find("") is None
        assert c[5] == _infos(names)[5] and c[-1].name == names[-1]
        assert c.total_chars() == sum(range(len(names)))
        assert c.sorted_and_unique() and c.sorted_and_unique(block=7)


def test_a_name_twice_or_a_wrong_order_is_found_across_block_borders(tmp_path):
    names = [f"doc{i:04d}.txt" for i in range(50)]
    catalog = Catalog.of(_infos(names))
    twice = Catalog(catalog._names.copy(), catalog._rows, catalog._digests, catalog._order)
    twice._names[len("doc0000.txt") * 9:len("doc0000.txt") * 10] = list(b"doc0008.txt")  # doc0009 -> doc0008
    assert not twice.sorted_and_unique(block=8)  # the pair 8, 9 straddles the first border
    shuffled = Catalog(catalog._names, catalog._rows, catalog._digests, catalog._order[::-1].copy())
    assert not shuffled.sorted_and_unique(block=8)
    assert Catalog.of([]).sorted_and_unique() and Catalog.of(_infos(["only"])).sorted_and_unique()


def test_top_ranking_equals_a_full_sort_on_large_arrays_with_ties():
    """The sampled threshold of top_ranking against sorting every positive score."""
    import numpy as np

    from rag.index import top_ranking

    rng = np.random.default_rng(0)
    for size, n, zeros in ((100, 5, 0.5), (6000, 20, 0.3), (50_000, 20, 0.9), (50_000, 20, 0.9999), (50_000, 40, 0.0)):
        scores = np.round(rng.gamma(2.0, size=size), 1).astype(np.float32)  # rounded: many ties
        scores[rng.random(size) < zeros] = 0
        expected = sorted(np.flatnonzero(scores > 0).tolist(), key=lambda i: (-scores[i], i))[:n]
        assert top_ranking(scores, n).ids == expected
