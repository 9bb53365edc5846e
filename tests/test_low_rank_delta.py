"""eval/training/low_rank_delta.py: a fine-tuned model stored as a low-rank change to its base and
rebuilt, checked against the tuned model itself and against the SVD optimum on a tiny random BERT."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForQuestionAnswering, BertConfig, BertModel

from conftest import ROOT
from rag.low_rank import applied, truncated

spec = importlib.util.spec_from_file_location("low_rank_delta", ROOT / "eval" / "training" / "low_rank_delta.py")
low_rank_delta = importlib.util.module_from_spec(spec)
spec.loader.exec_module(low_rank_delta)

CHANGE_RANK = 2  # the fine-tuning below changes every matrix by a product of this rank


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny base encoder, and a 'fine-tuned' QA model: every matrix changed by a rank-2 product,
    every bias by noise, a QA head the base lacks."""
    folder = tmp_path_factory.mktemp("delta")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder / "base")
    tuned = AutoModelForQuestionAnswering.from_pretrained(folder / "base")
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name.startswith("qa_outputs"):
                p.normal_()
            elif p.dim() == 2:
                p += 0.1 * torch.randn(p.shape[0], CHANGE_RANK) @ torch.randn(CHANGE_RANK, p.shape[1])
            else:
                p += 0.01 * torch.randn_like(p)
    tuned.save_pretrained(folder / "tuned")
    return folder, tuned


def logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return torch.stack([out.start_logits, out.end_logits])


def test_at_the_change_rank_the_rebuilt_model_is_the_tuned_one(models, tmp_path):
    folder, tuned = models
    summary = low_rank_delta.make(folder / "base", folder / "tuned", CHANGE_RANK, tmp_path / "delta")
    assert summary["matrix_change_kept"] == pytest.approx(1.0, abs=1e-9)
    low_rank_delta.apply(folder / "base", tmp_path / "delta", tmp_path / "rebuilt")
    rebuilt = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "rebuilt", dtype=torch.float32)  # float16 on disk
    ids = torch.randint(0, 60, (3, 20), generator=torch.Generator().manual_seed(1))
    # float16 storage: the weights agree to about 1e-3 of their change, the logits as closely.
    assert torch.allclose(logits(rebuilt, ids), logits(tuned, ids), atol=2e-2)
    base = AutoModelForQuestionAnswering.from_pretrained(folder / "base")
    with torch.no_grad():
        base.qa_outputs.load_state_dict(tuned.qa_outputs.state_dict())
    assert not torch.allclose(logits(base, ids), logits(tuned, ids), atol=2e-2)  # the change matters


def test_a_lower_rank_keeps_the_best_approximation_of_each_change(models):
    """Eckart-Young: what rank 1 leaves out of a matrix's change is exactly its smaller singular values."""
    folder, tuned = models
    base, missing = low_rank_delta.base_reader(folder / "base", tuned.config)
    before, after = base.state_dict(), tuned.state_dict()
    delta, summary = low_rank_delta.low_rank_delta(before, after, 1, whole=missing, dtype=torch.float64)
    assert summary["matrix_change_kept"] < 1.0
    rebuilt = applied(before, delta)
    assert missing and all(torch.equal(rebuilt[k], after[k]) for k in missing)
    for key, t in after.items():
        change = t.double() - before[key].double()
        if key in missing or change.dim() != 2 or not change.any():
            continue
        left_out = torch.linalg.svdvals(change)[1:]
        error = torch.linalg.matrix_norm(t.double() - rebuilt[key].double())
        assert error.item() == pytest.approx(left_out.norm().item(), rel=1e-4)


def test_the_stored_change_is_smaller_than_the_model(models, tmp_path):
    folder, _ = models
    low_rank_delta.make(folder / "base", folder / "tuned", 1, tmp_path / "delta")
    stored = (tmp_path / "delta" / low_rank_delta.DELTA_FILE).stat().st_size
    assert stored < (folder / "tuned" / "model.safetensors").stat().st_size / 2


def test_a_frozen_matrix_saved_in_float16_is_left_out(models):
    """train_reader stores float16: a matrix training never changed comes back as its base value
    rounded, which is no change to store (the token embeddings, frozen for the accurate reader)."""
    folder, tuned = models
    base, missing = low_rank_delta.base_reader(folder / "base", tuned.config)
    before, after = base.state_dict(), dict(tuned.state_dict())
    frozen = "bert.embeddings.word_embeddings.weight"
    after[frozen] = before[frozen].half().float()
    delta, _ = low_rank_delta.low_rank_delta(before, after, 2, whole=missing)
    assert not any(name.endswith(frozen) for name in delta)
    assert any(name.endswith("bert.embeddings.position_embeddings.weight") for name in delta)


def test_a_lower_rank_cut_from_a_stored_change_is_the_change_made_at_that_rank(models):
    folder, tuned = models
    base, missing = low_rank_delta.base_reader(folder / "base", tuned.config)
    before, after = base.state_dict(), tuned.state_dict()
    high, _ = low_rank_delta.low_rank_delta(before, after, 2, whole=missing, dtype=torch.float64)
    low, _ = low_rank_delta.low_rank_delta(before, after, 1, whole=missing, dtype=torch.float64)
    cut = truncated(high, 1)
    factored = {k[2:] for k in high if k.startswith("b.")}  # (a matrix stored whole stays whole)
    assert factored and cut.keys() == high.keys()
    rebuilt_cut, rebuilt_low = applied(before, cut), applied(before, low)
    for key in factored:
        assert torch.allclose(rebuilt_cut[key], rebuilt_low[key], atol=1e-5)
