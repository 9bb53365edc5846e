"""eval/logit_store.py: the sweeps' per-window memo of the reader's logits, checked against computing
every window directly (synthetic logits that depend on the whole window, as a model's do)."""

import importlib.util

import numpy as np
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("logit_store", ROOT / "eval" / "logit_store.py")
logit_store = importlib.util.module_from_spec(spec)
spec.loader.exec_module(logit_store)


def fake_model(calls: list):
    """Logits from each window's own tokens (their sum, plus the position), zero on padding."""
    def compute(inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        calls.append(ids.shape)
        total = (ids * mask).sum(axis=1, keepdims=True).astype(np.float32)
        position = np.arange(ids.shape[1], dtype=np.float32)[None]
        return (total + position) * mask, (total - position) * mask
    return compute


def batch(rows: list[list[int]]) -> dict[str, np.ndarray]:
    width = max(map(len, rows))
    ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_memo_matches_the_model_and_runs_each_window_once(tmp_path):
    rng = np.random.default_rng(0)
    pool = [list(rng.integers(1, 1000, size=rng.integers(3, 40))) for _ in range(12)]
    calls, direct = [], fake_model([])
    store = logit_store.LogitStore("reader-a", tmp_path / "logits", flush_every=5)
    for _ in range(30):  # batches of windows drawn with repeats, within and across batches
        inputs = batch([pool[i] for i in rng.integers(0, len(pool), size=rng.integers(1, 6))])
        start, end = store.logits(inputs, fake_model(calls))
        want_start, want_end = direct(inputs)
        np.testing.assert_array_equal(start, want_start)
        np.testing.assert_array_equal(end, want_end)
    assert store.computed == sum(shape[0] for shape in calls) <= len(pool)
    store.flush()

    again = logit_store.LogitStore("reader-a", tmp_path / "logits")  # a resumed sweep: nothing to compute
    inputs = batch(pool)
    start, _ = again.logits(inputs, fake_model(never := []))
    np.testing.assert_array_equal(start, direct(inputs)[0])
    assert len(again.windows) == len(pool) and never == []

    with pytest.raises(SystemExit, match="reader-a"):  # another reader's logits are never reused
        logit_store.LogitStore("reader-b", tmp_path / "logits")
