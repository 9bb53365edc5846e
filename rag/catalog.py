"""What an index records of each document besides its text: name, hash, length, when it was added.

Kept in arrays (`Catalog`) rather than a JSON list, so an index of a million documents opens
without parsing a million objects: the arrays are memory-mapped, a name is decoded when read, and
a name is found by binary search over the names' sorted order.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

# The catalog's files in an index folder: the names (UTF-8, one after another), a row per document
# (its name's bytes in names.bin, its length in characters, when it was added in Unix seconds), each
# document's sha256, and the documents' order by name.
FILES = ("names.bin", "catalog.npy", "sha256.npy", "name_order.npy")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    sha256: str  # of the text as indexed: an unchanged document is not embedded again
    chars: int
    added: str  # when it was first indexed, ISO 8601 with its UTC offset


def now() -> str:
    return time.strftime(_TIME_FORMAT)


def _seconds(iso: str) -> int:
    return int(datetime.strptime(iso, _TIME_FORMAT).timestamp())


def _iso(seconds: int) -> str:
    return time.strftime(_TIME_FORMAT, time.localtime(seconds))


class Catalog(Sequence):
    """The documents' DocumentInfo by position (a document's id), and ids by name."""

    def __init__(self, names: np.ndarray, rows: np.ndarray, digests: np.ndarray, order: np.ndarray):
        self._names, self._rows, self._digests, self._order = names, rows, digests, order

    @classmethod
    def of(cls, infos: Iterable[DocumentInfo]) -> Catalog:
        infos = list(infos)
        encoded = [i.name.encode("utf-8") for i in infos]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        rows = np.zeros((len(infos), 4), dtype=np.int64)
        if infos:
            rows[:, 0], rows[:, 1] = ends - [len(b) for b in encoded], ends
            rows[:, 2] = [i.chars for i in infos]
            rows[:, 3] = [_seconds(i.added) for i in infos]
        digests = np.frombuffer(b"".join(bytes.fromhex(i.sha256) for i in infos), dtype=np.uint8).reshape(-1, 32)
        order = np.array(sorted(range(len(infos)), key=encoded.__getitem__), dtype=np.int64)
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), rows, digests, order)

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        """The catalog in `folder`, memory-mapped; ValueError if its arrays do not fit together."""
        size = (folder / "names.bin").stat().st_size
        names = np.memmap(folder / "names.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        rows, digests, order = (np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in FILES[1:])
        n = len(rows)
        if (rows.ndim, rows.shape[1:], rows.dtype) != (2, (4,), np.int64) or digests.shape != (n, 32) \
                or digests.dtype != np.uint8 or order.shape != (n,) or order.dtype != np.int64:
            raise ValueError("the catalog's arrays have the wrong shape or type")
        if n:
            starts, ends = np.asarray(rows[:, 0]), np.asarray(rows[:, 1])
            if starts[0] != 0 or (ends < starts).any() or (starts[1:] != ends[:-1]).any() or ends[-1] != size:
                raise ValueError("the names' offsets into names.bin are out of order or out of range")
            if (np.asarray(rows[:, 2]) < 0).any() or np.bincount(np.asarray(order), minlength=n).max(initial=0) != 1 \
                    or (np.asarray(order) < 0).any():
                raise ValueError("a document length or the name order is out of range")
        return cls(names, rows, digests, order)

    def save(self, folder: Path, write_npy) -> None:
        with open(folder / "names.bin", "wb") as f:
            f.write(np.asarray(self._names).tobytes())
        for name, array in zip(FILES[1:], (self._rows, self._digests, self._order)):
            write_npy(folder / name, np.asarray(array))

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        _, _, chars, added = (int(v) for v in self._rows[i])
        return DocumentInfo(name=self.name(i), sha256=bytes(self._digests[i]).hex(), chars=chars, added=_iso(added))

    def name(self, i: int) -> str:
        start, end = int(self._rows[i, 0]), int(self._rows[i, 1])
        return bytes(self._names[start:end]).decode("utf-8")

    def names(self) -> list[str]:
        return [self.name(i) for i in range(len(self))]

    def find(self, name: str) -> int | None:
        """The id of the document called `name`, or None."""
        key = name.encode("utf-8")
        order = self._order
        at = bisect.bisect_left(range(len(order)), key, key=lambda k: self._name_bytes(int(order[k])))
        if at < len(order) and self._name_bytes(int(order[at])) == key:
            return int(order[at])
        return None

    def _name_bytes(self, i: int) -> bytes:
        return bytes(self._names[int(self._rows[i, 0]):int(self._rows[i, 1])])

    def lengths(self) -> np.ndarray:
        """Each document's length in characters."""
        return np.asarray(self._rows[:, 2])

    def total_chars(self) -> int:
        return int(self.lengths().sum())

    def sorted_and_unique(self, block: int = 1 << 16) -> bool:
        """Whether name_order sorts the names strictly, so that `find` finds and no name is there twice.
        Compared as fixed-width byte strings a block at a time (names hold no NUL), not one by one."""
        order, names = np.asarray(self._order), np.asarray(self._names)
        starts, ends = np.asarray(self._rows[:, 0]), np.asarray(self._rows[:, 1])
        for at in range(0, max(len(order) - 1, 0), block):
            ids = order[at:at + block + 1]  # one more: the pair across the blocks' border
            lengths = ends[ids] - starts[ids]
            width = max(int(lengths.max()), 1)
            keys = np.zeros((len(ids), width), np.uint8)
            cols = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            keys[np.repeat(np.arange(len(ids)), lengths), cols] = names[np.repeat(starts[ids], lengths) + cols]
            keys = keys.view(f"S{width}").ravel()
            if not (keys[:-1] < keys[1:]).all():
                return False
        return True
