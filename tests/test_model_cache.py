"""The model cache lets go of what it no longer needs: an export made anew replaces the one before,
and exports of folders that are gone are removed; nothing else in the cache is touched."""

import os
import shutil

from rag.config import SHIPPED_READER
from rag.reader import Reader

QUESTION, PASSAGE = "Who built the bridge?", "The bridge was built by Ada Stone in 1890."


def answer_with(folder, cache):
    reader = Reader(str(folder), backend="onnx", cache_dir=cache)
    spans = reader.read(QUESTION, [PASSAGE], top_n=1)
    assert reader._onnx is not None  # ONNX Runtime ran it, from the cache
    return PASSAGE[spans[0].start:spans[0].end]


def touch(folder, seconds):
    """A changed model, as the cache sees one: a file with a new modification time."""
    config = folder / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + seconds * 10**9))


def exports(cache):
    return sorted(p.name for p in cache.glob("*.onnx"))


def test_an_export_made_anew_replaces_the_old_and_a_gone_folder_s_export_goes(tmp_path):
    cache = tmp_path / "onnx"
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(SHIPPED_READER, first)
    shutil.copytree(SHIPPED_READER, second)  # the files' times are copied: the same export as the first's
    touch(second, 1)  # now another model
    cache.mkdir()
    (cache / "encoders").mkdir()  # not an entry: left alone
    (cache / "notes.txt").write_text("a file a user put here")
    unrecorded = cache / ("0" * 32 + ".onnx")  # as a model that is not a folder is exported: left alone
    unrecorded.write_bytes(b"an export named by its weights")

    expected = answer_with(first, cache)
    assert expected == "Ada Stone"
    made = exports(cache)
    assert len(made) == 2
    card = first / "README.md"
    card.write_text(card.read_text() + "\nEdited.\n")  # the model card is not the model: no new export
    answer_with(first, cache)
    assert exports(cache) == made
    answer_with(second, cache)
    both = exports(cache)
    assert len(both) == 3  # two folders in use: both kept

    touch(first, 2)
    assert answer_with(first, cache) == expected
    now = exports(cache)
    assert len(now) == 3 and len(set(now) - set(both)) == 1  # the first folder's old export replaced

    shutil.rmtree(first)
    touch(second, 3)
    assert answer_with(second, cache) == expected
    assert len(exports(cache)) == 2  # the gone folder's export went, and the second's old one
    assert (cache / "encoders").is_dir() and (cache / "notes.txt").is_file() and unrecorded.is_file()
    assert len(list((cache / ".sources").glob("*.json"))) == 1  # one record, for the one export left


def test_a_cached_export_is_found_again_without_exporting(tmp_path):
    cache = tmp_path / "onnx"
    answer_with(SHIPPED_READER, cache)
    (made,) = cache.glob("*.onnx")
    mtime = made.stat().st_mtime_ns
    answer_with(SHIPPED_READER, cache)
    assert exports(cache) == [made.name] and made.stat().st_mtime_ns == mtime


def test_a_damaged_export_is_made_again(tmp_path):
    """A cached export ONNX Runtime cannot read is exported again in its place, not left to send
    every later start to PyTorch."""
    cache = tmp_path / "onnx"
    answer_with(SHIPPED_READER, cache)
    (made,) = cache.glob("*.onnx")
    made.write_bytes(b"not an ONNX graph")
    assert answer_with(SHIPPED_READER, cache) == "Ada Stone"  # by ONNX Runtime again
    assert exports(cache) == [made.name] and made.stat().st_size > 10**6
