"""What the model cache holds, and what it lets go.

The cache keeps what is slow to make from a model folder: ONNX exports (90-440 MB each) and readers
rebuilt from a low-rank change (440 MB). Each is named by the folder's files and the libraries
(`model_fingerprint`), so a changed model is made anew. So that the old ones do not pile up (a day
of updates once left 13 exports, 3.4 GB), each entry records the folder and role it is made from, and
making an entry removes those it supersedes: the same folder and role made earlier, and entries whose
folder is gone (a deleted checkout, a rebuilt reader since replaced). Exports of a model that is not
a folder are named by their weights and have no record: they are left alone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[0-9a-f]{32}$")
_ENTRY = re.compile(r"^[0-9a-f]{32}(?:-int8)?(?:\.onnx)?$")  # an entry: an export or a model folder
RECORDS = ".sources"  # the folder of the records, one `<entry name>.json` each


@dataclass(frozen=True)
class CacheEntry:
    """An entry of the cache: its name there (files made from it start with the name), and the model
    folder and role it is made from."""

    name: str
    source: Path
    role: str


def cache_entry(folder: Path, role: str) -> CacheEntry:
    return CacheEntry(model_fingerprint(folder, role), Path(folder).resolve(), role)


def model_fingerprint(folder: Path, role: str) -> str:
    """Names what is made from a model folder by the folder's files (name, size, modification time)
    and the libraries that make it, so it is found without loading the model, and a changed model or
    library is made anew. Not by their contents: hashing the weights (90 MB for all-MiniLM-L6-v2)
    took 0.2 s of every cold start. Not by its Markdown (a model card): editing one rebuilt the
    accurate reader (30 s) and exported it again."""
    from importlib.metadata import version

    h = hashlib.sha256(repr((role, version("torch"), version("transformers"), version("onnxruntime"))).encode())
    # The folder's own files and sentence-transformers' module folders (1_Pooling, ...): not the
    # other exports a hub snapshot may carry (onnx/, openvino/), which can be large.
    modules = [d for d in folder.iterdir() if d.is_dir() and d.name[:1].isdigit()]
    for path in sorted(p for d in [folder, *modules] for p in d.iterdir() if p.is_file() and p.suffix != ".md"):
        info = path.stat()
        h.update(repr((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns)).encode())
    return h.hexdigest()[:32]


def publish(staged: Path, dest: Path, entry: CacheEntry | None) -> None:
    """Move a finished entry (a file or folder) into place atomically: its record written first,
    what it supersedes removed after. An entry without a source (None) is only moved."""
    if entry:
        record(dest.parent, entry)
    os.replace(staged, dest)
    if entry:
        prune(dest.parent, entry)


def record(cache_dir: Path, entry: CacheEntry) -> None:
    """Note (atomically) what `entry` is made from, before the entry itself appears."""
    records = cache_dir / RECORDS
    records.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=records)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"source": str(entry.source), "role": entry.role}, f)
    os.replace(tmp, records / f"{entry.name}.json")


def prune(cache_dir: Path, made: CacheEntry) -> None:
    """Remove the entries `made` supersedes (see the module's docstring) and their records. What
    has no record (staging folders, an unpacked encoder) is left alone."""
    records = cache_dir / RECORDS
    stale: set[str] = set()
    for path in records.glob("*.json"):
        if not _NAME.match(path.stem):
            continue
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
            same = (Path(source["source"]), source["role"]) == (made.source, made.role)
            gone = not Path(source["source"]).exists()
        except (OSError, ValueError, KeyError, TypeError):  # a damaged record: its entry cannot be placed
            same = gone = True
        if path.stem != made.name and (same or gone):
            stale.add(path.stem)
    for name in stale:
        try:
            for path in (p for p in cache_dir.glob(f"{name}*") if _ENTRY.match(p.name)):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            (records / f"{name}.json").unlink(missing_ok=True)  # only once its entry is gone
        except OSError:  # not ours to remove: kept, with its record, for a later prune to try again
            pass
