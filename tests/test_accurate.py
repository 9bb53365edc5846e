"""eval/training/accurate.py: the accurate reader's GPU run, small on CPU, from staging to the change
that comes back; the packaged MiniLM stands in for all-mpnet-base-v2."""

import importlib.util
import json
import shutil

import pytest
import torch
from transformers import AutoModelForQuestionAnswering

from conftest import ROOT, write_synthetic_squad, write_synthetic_train_set

spec = importlib.util.spec_from_file_location("accurate", ROOT / "eval" / "training" / "accurate.py")
accurate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(accurate)


def logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return torch.stack([out.start_logits, out.end_logits])


def test_staged_parts_train_a_reader_whose_change_rebuilds_it_on_the_true_encoder(tmp_path):
    from rag.config import default_embedding_model_path
    from rag.reader import Reader

    encoder = default_embedding_model_path()
    data = tmp_path / "data"
    data.mkdir()
    write_synthetic_squad(data)
    write_synthetic_train_set(data)
    folders = accurate.stage(encoder, data, tmp_path / "stage", part_mib=6)
    assert len(folders) > 1 and all(p.stat().st_size <= 6 * 2**20 for f in folders for p in f.iterdir())

    there = tmp_path / "there"  # what the calls copy, one part folder each
    there.mkdir()
    for folder in folders[:-1]:
        for f in folder.iterdir():
            shutil.copy(f, there)
    with pytest.raises(SystemExit, match="parts"):  # the last part has not come yet
        accurate.unpack_stage(there, tmp_path / "early")
    for f in folders[-1].iterdir():
        shutil.copy(f, there)

    out, work = tmp_path / "out", tmp_path / "work"
    accurate.main(["run", "--stage", str(there), "--work", str(work), "--out", str(out), "--limit", "12",
                   "--rank", "384", "--score-ranks", "8", "384", "--train-flags", "--batch-size", "6", "--lr", "1e-3",
                   "--epochs", "3",
                   "--max-length", "64", "--stride", "16", "--precision", "fp32", "--ema", "0"])
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert stages["delta"]["matrix_change_kept"] == pytest.approx(1.0, abs=1e-6)  # full rank: all of it
    for name in ("accurate-tune", "rebuilt-r8-tune", "rebuilt-r384-tune"):
        assert 0 <= stages[name]["f1"] <= 100 and stages[name]["n"] == 10  # a question per tuning article
    assert stages["shipped"]["files"] and all(p.stat().st_size <= 16 * 2**20 for p in out.glob("accurate-delta.tar.*"))

    # Back here: the change joined into a folder the engine reads, on the encoder itself.
    accurate.unpack(out, tmp_path / "delta", encoder, source={"path": str(encoder)})
    tuned = AutoModelForQuestionAnswering.from_pretrained(work / "accurate", dtype=torch.float32)
    rebuilt = Reader(str(tmp_path / "delta"), rebuilt_dir=tmp_path / "cache")
    rebuilt.load()
    rebuilt = AutoModelForQuestionAnswering.from_pretrained(rebuilt._source, dtype=torch.float32)
    ids = torch.randint(1000, 20000, (3, 40), generator=torch.Generator().manual_seed(0))
    base = AutoModelForQuestionAnswering.from_pretrained(encoder, dtype=torch.float32)
    with torch.no_grad():
        base.qa_outputs.load_state_dict(tuned.qa_outputs.state_dict())
    # The change was measured from the int8 encoder and is applied to the encoder itself: the rebuilt
    # reader differs from the trained one by the int8 rounding of the weights alone, far less than
    # the training changed it.
    rounding = (logits(rebuilt, ids) - logits(tuned, ids)).abs().max()
    training = (logits(base, ids) - logits(tuned, ids)).abs().max()
    assert rounding < training / 10  # measured: 0.14 against 3.5

    # A lower rank (stored at full rank, MiniLM's matrices are whole changes, which stay whole).
    accurate.unpack(out, tmp_path / "delta-r4", encoder, rank=4, source={"path": str(encoder)})
    spans = Reader(str(tmp_path / "delta-r4"), rebuilt_dir=tmp_path / "cache").read(
        "Who is the mayor of Town 3?", ["Town 3 lies on the river Num3. Its mayor is called Anna Person3."])
    assert spans and 0 < spans[0].score <= 1


def test_a_call_carries_the_tracked_and_the_untracked_files_git_does_not_ignore(tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "tracked.bin").write_bytes(b"x" * 1000)
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.bin", ".gitignore"], check=True)
    (tmp_path / "untracked.bin").write_bytes(b"x" * 300)
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "big.bin").write_bytes(b"x" * 10_000)
    assert accurate.travelling_tree_bytes(tmp_path) == 1000 + 300 + len("ignored/\n")
    (tmp_path / "tracked.bin").unlink()  # moved aside for the calls: it does not travel
    assert accurate.travelling_tree_bytes(tmp_path) == 300 + len("ignored/\n")
