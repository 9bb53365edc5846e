"""eval/train_reader.py: its loss on hand-computed cases, and a few steps end to end on synthetic SQuAD."""

import importlib.util
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, write_synthetic_squad

spec = importlib.util.spec_from_file_location("train_reader", ROOT / "eval" / "train_reader.py")
train_reader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_reader)


def test_marginal_loss_sums_the_probability_of_every_gold_token():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    starts = torch.tensor([[False, True, True, False]])  # p = 0.2 + 0.3
    ends = torch.tensor([[False, False, False, True]])  # p = 0.4
    loss = train_reader.marginal_span_loss(logits, logits, starts, ends)
    assert loss.item() == pytest.approx((-math.log(0.5) - math.log(0.4)) / 2, rel=1e-6)


def test_marginal_loss_with_one_gold_span_is_the_usual_qa_loss():
    gen = torch.Generator().manual_seed(0)
    start_logits, end_logits = torch.randn(3, 7, generator=gen), torch.randn(3, 7, generator=gen)
    s, e = torch.tensor([0, 2, 5]), torch.tensor([0, 3, 6])
    one_hot = lambda idx: torch.nn.functional.one_hot(idx, 7).bool()  # noqa: E731
    expected = (torch.nn.functional.cross_entropy(start_logits, s) + torch.nn.functional.cross_entropy(end_logits, e)) / 2
    assert train_reader.marginal_span_loss(start_logits, end_logits, one_hot(s), one_hot(e)).item() == \
        pytest.approx(expected.item(), rel=1e-6)


def test_training_writes_a_loadable_reader_and_its_settings(tmp_path):
    write_synthetic_squad(tmp_path)
    out, last = tmp_path / "reader", tmp_path / "last"
    train_reader.main(["--data", str(tmp_path), "--out", str(out), "--targets", "all", "--ema", "0.9",
                       "--save-last", str(last), "--limit", "16", "--batch-size", "8", "--epochs", "1",
                       "--max-length", "64", "--stride", "16", "--precision", "fp32"])
    args = json.loads((out / "training_args.json").read_text())
    assert args["targets"] == "all" and args["ema"] == "0.9"
    averaged, final = load_file(out / "model.safetensors"), load_file(last / "model.safetensors")
    assert averaged.keys() == final.keys() and averaged["qa_outputs.weight"].dtype == torch.float16
    assert not torch.equal(averaged["qa_outputs.weight"], final["qa_outputs.weight"])

    from transformers import AutoModelForQuestionAnswering
    assert AutoModelForQuestionAnswering.from_pretrained(out).config.hidden_size == 384


def start_event(capsys) -> dict:
    return next(json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event": "start"' in line)


def test_training_can_leave_the_tuning_articles_out(tmp_path, capsys):
    """Articles 0-37 train by default; without the tuning slice (28-37), only 0-27 do."""
    write_synthetic_squad(tmp_path)
    common = ["--data", str(tmp_path), "--unanswerable", "0", "--negatives", "0", "--batch-size", "64",
              "--epochs", "1", "--max-length", "64", "--stride", "16", "--precision", "fp32", "--ema", "0"]
    train_reader.main(common + ["--out", str(tmp_path / "all")])
    assert start_event(capsys)["examples"] == 38
    train_reader.main(common + ["--out", str(tmp_path / "without"), "--without-tuning-articles"])
    assert start_event(capsys)["examples"] == 28
