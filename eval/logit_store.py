"""The reader's logits per window, kept on disk, so that sweeps over the engine's settings and rules
share one forward pass per (question, passage) window.

A sweep replays `Engine.ask` under many settings. What they change (which passages are read together,
how spans are cut, moved, weighted or dropped) is decided after the model, from its start/end logits;
the model's input for a window (its token ids) is the same in every run. So the logits are memoised
per window, keyed by the window's token ids, and a setting costs the decoding alone. Kept in shards of
plain arrays (`np.load(..., allow_pickle=False)`), each written atomically, so a stopped sweep resumes
where it was and a second sweep with the same reader starts warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Logits = tuple[np.ndarray, np.ndarray]


class LogitStore:
    """Start/end logits per window for one reader: in memory, and in `folder` when one is given."""

    def __init__(self, model: str, folder: Path | None = None, flush_every: int = 500):
        self.model = model
        self.folder = folder
        self.flush_every = flush_every
        self.windows: dict[str, Logits] = {}
        self._new: dict[str, Logits] = {}
        self.computed = 0  # windows the model ran on in this process
        if folder is not None:
            self._open(folder)

    def _open(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        about = folder / "model.json"
        if about.is_file():
            stored = json.loads(about.read_text())["model"]
            if stored != self.model:
                raise SystemExit(f"{folder} holds logits of reader {stored!r}, not {self.model!r}: use another folder.")
        else:
            about.write_text(json.dumps({"model": self.model}) + "\n")
        for shard in sorted(folder.glob("shard-*.npz")):
            with np.load(shard, allow_pickle=False) as z:
                bounds = np.concatenate([[0], np.cumsum(z["lengths"])])
                for key, a, b in zip(z["keys"].tolist(), bounds[:-1], bounds[1:]):
                    self.windows[key] = (z["start"][a:b], z["end"][a:b])

    def logits(self, inputs: dict[str, np.ndarray], compute: Callable[[dict[str, np.ndarray]], Logits]) -> Logits:
        """The (windows, length) start and end logits of `inputs`, computing only the windows not seen
        before (in one batch, padded to the longest of them). Padding positions get 0: decoding never
        reads them (they are outside every window's context)."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        lengths = mask.sum(axis=1)
        keys = [hashlib.sha1(ids[w, :n].tobytes()).hexdigest() for w, n in enumerate(lengths)]
        rows = [keys.index(k) for k in dict.fromkeys(keys) if k not in self.windows]  # each new window once
        if rows:
            width = int(lengths[rows].max())
            start, end = compute({name: array[rows, :width] for name, array in inputs.items()})
            for i, w in enumerate(rows):
                n = lengths[w]
                self._new[keys[w]] = self.windows[keys[w]] = (start[i, :n].copy(), end[i, :n].copy())
            self.computed += len(rows)
            if len(self._new) >= self.flush_every:
                self.flush()
        shape = ids.shape
        start, end = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for w, k in enumerate(keys):
            s, e = self.windows[k]
            start[w, : len(s)], end[w, : len(e)] = s, e
        return start, end

    def flush(self) -> None:
        """Write the windows computed since the last flush as a new shard (atomically)."""
        if self.folder is None or not self._new:
            self._new.clear()
            return
        keys = list(self._new)
        path = self.folder / f"shard-{time.time_ns()}-{os.getpid()}.npz"  # unique: two sweeps may share a folder
        tmp = path.with_name(f".{path.name}.partial")  # not a shard until whole
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(keys), lengths=np.array([len(self._new[k][0]) for k in keys]),
                     start=np.concatenate([self._new[k][0] for k in keys]),
                     end=np.concatenate([self._new[k][1] for k in keys]))
        os.replace(tmp, path)
        self._new.clear()
