"""eval/training/train_reader.py: its loss on hand-computed cases, and a few steps end to end on synthetic SQuAD."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, write_synthetic_squad, write_synthetic_train_set

spec = importlib.util.spec_from_file_location("train_reader", ROOT / "eval" / "training" / "train_reader.py")
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
    train_reader.main(["--data", str(tmp_path), "--sources", "dev-train", "--out", str(out), "--targets", "all", "--ema", "0.9", "--soft-targets", "none",
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
    """Articles 0-27 train by default, leaving the tuning slice (28-37) unseen; on request, 0-37 do."""
    write_synthetic_squad(tmp_path)
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--unanswerable", "0", "--negatives", "0", "--batch-size", "64",
              "--epochs", "1", "--max-length", "64", "--stride", "16", "--precision", "fp32", "--ema", "0",
              "--soft-targets", "none"]
    train_reader.main(common + ["--out", str(tmp_path / "all"), "--with-tuning-articles"])
    assert start_event(capsys)["examples"] == 38
    train_reader.main(common + ["--out", str(tmp_path / "without")])
    assert start_event(capsys)["examples"] == 28


def test_a_window_gets_the_teacher_mass_of_the_characters_its_tokens_cover():
    # Context tokens 5..7 cover characters [0, 3), [4, 7), [8, 12).
    offsets = [(5, 0, 3), (6, 4, 7), (7, 8, 12)]
    starts = [(4, 0.5), (9, 0.2), (20, 0.1)]  # 9 lies inside token 7; 20 lies outside the window
    assert train_reader.window_distribution(offsets, starts, at_start=True) == \
        [(0, pytest.approx(0.3)), (6, 0.5), (7, 0.2)]
    ends = [(7, 0.6), (3, 0.1), (4, 0.05)]  # an end at 4 ends no token (4 is the next one's start)
    assert train_reader.window_distribution(offsets, ends, at_start=False) == \
        [(0, pytest.approx(0.3)), (5, 0.1), (6, 0.6)]


def test_distillation_towards_one_hot_targets_is_the_gold_loss():
    gen = torch.Generator().manual_seed(1)
    start_logits, end_logits = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen)
    s = torch.nn.functional.one_hot(torch.tensor([1, 4]), 6)
    e = torch.nn.functional.one_hot(torch.tensor([2, 4]), 6)
    gold = train_reader.marginal_span_loss(start_logits, end_logits, s.bool(), e.bool())
    distilled = train_reader.distillation_loss(start_logits, end_logits, s.float(), e.float(), temperature=1.0)
    assert distilled.item() == pytest.approx(gold.item(), rel=1e-6)


def soft_targets_for(examples, answer_start, answer_end):
    """Targets that put 0.8 on one answer span and 0.2 on "no answer", for each example."""
    n = len(examples)
    return train_reader.SoftTargets(
        keys=np.array([train_reader.example_key(ex["question"], ex["context"]) for ex in examples], dtype="S40"),
        null_start=np.full(n, 0.2, dtype=np.float32), null_end=np.full(n, 0.2, dtype=np.float32),
        start_char=np.array([[answer_start(ex), 0] for ex in examples], dtype=np.int32),
        start_p=np.tile(np.array([0.8, 0.0], dtype=np.float32), (n, 1)),
        end_char=np.array([[answer_end(ex), 0] for ex in examples], dtype=np.int32),
        end_p=np.tile(np.array([0.8, 0.0], dtype=np.float32), (n, 1)))


def test_soft_targets_survive_a_round_trip_and_temper_with_no_answer(tmp_path):
    examples = [{"question": "Who?", "context": "Anna came."}, {"question": "When?", "context": "In May."}]
    soft = soft_targets_for(examples, lambda ex: 0, lambda ex: 4)
    soft.save(tmp_path / "t.npz")
    loaded = train_reader.SoftTargets.load(tmp_path / "t.npz")
    row = loaded.row(train_reader.example_key("When?", "In May."))
    assert row == 1
    assert loaded.tempered(row, "start", 1.0) == [(0, pytest.approx(0.8))]
    # T = 2: 0.8 ** 0.5 / (0.8 ** 0.5 + 0.2 ** 0.5) = 2/3
    assert loaded.tempered(row, "end", 2.0) == [(4, pytest.approx(2 / 3))]
    with pytest.raises(KeyError, match="no teacher targets"):
        loaded.row(train_reader.example_key("Why?", "In May."))


def test_joined_paragraphs_take_each_ones_odds_against_no_answer():
    """Own paragraph: 0.8 on char 0, 0.2 no answer (odds 4); distractor: 0.5 on char 3, 0.5 no answer
    (odds 1), placed 10 characters in. Joined: 4 and 1 over 1 + 4 + 1."""
    own = {"question": "Who?", "context": "Anna came."}
    other = {"question": "Who?", "context": "Bob stayed."}
    soft = soft_targets_for([own, other], lambda ex: 0 if ex is own else 3, lambda ex: 4)
    soft.null_start[1] = 0.5
    soft.start_p[1] = [0.5, 0.0]
    key = lambda ex: train_reader.example_key(ex["question"], ex["context"])  # noqa: E731
    joined = soft.joined([(key(own), 0), (key(other), 10)], "start", 1.0)
    assert joined == [(0, pytest.approx(4 / 6)), (13, pytest.approx(1 / 6))]


def test_distractors_join_the_hard_negative_to_the_paragraph_and_keep_the_answer_offsets(tmp_path):
    write_synthetic_squad(tmp_path)
    # A hard negative for every question, so the same questions get one whatever else draws at random.
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--unanswerable", "0", "--soft-targets", "none",
              "--negatives", "1"]
    args = train_reader.parse_args(common + ["--distractors", "1"])
    examples = train_reader.build_examples(args, train_reader.seeded(args.seed))
    joined = [ex for ex in examples if ex.get("parts")]
    assert joined and all(ex["answer_start"] is not None for ex in joined)
    for ex in joined:
        (first, _), (second, offset) = ex["parts"]
        assert ex["context"] == f"{first}\n\n{second}" and offset == len(first) + 2
        for start, text in ex["all_answers"] + [(ex["answer_start"], ex["answer_text"])]:
            assert ex["context"][start:start + len(text)] == text
    assert any(ex["parts"][0][1] == 0 and ex["answer_start"] > len(ex["parts"][0][0]) for ex in joined)
    default = train_reader.build_examples(train_reader.parse_args(common), train_reader.seeded(42))
    assert not any(ex.get("parts") for ex in default) and len(default) == len(examples) + len(joined)


def test_laid_out_examples_are_bulleted_notes_read_as_the_engine_reads_them(tmp_path):
    """--layouts lays a share of the paragraphs out as a list, one sentence to an item without its full
    stop, read through the engine's reading_view; every answer still sits at its offsets, and the
    other examples are drawn exactly as without the option."""
    write_synthetic_squad(tmp_path)
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--unanswerable", "1", "--negatives", "1",
              "--soft-targets", "none"]
    plain = train_reader.build_examples(train_reader.parse_args(common), train_reader.seeded(42))
    half = train_reader.build_examples(train_reader.parse_args(common + ["--layouts", "0.5"]), train_reader.seeded(42))
    assert len(half) == len(plain)
    changed = [(a, b) for a, b in zip(plain, half) if a != b]
    assert 0.25 * len(plain) < len(changed) < 0.75 * len(plain)
    for before, after in changed:
        sentences = [s.strip().rstrip(".") for s in before["context"].split(". ")]
        assert after["context"] == ".".join("- " + s for s in sentences)  # each item's line break read as "."
        assert after["question"] == before["question"]
        if before["answer_start"] is None:
            assert after["answer_start"] is None
            continue
        for start, text in after["all_answers"] + [(after["answer_start"], after["answer_text"])]:
            assert after["context"][start:start + len(text)] == text
    assert any(a["answer_start"] is None for _, a in changed) and any(a["answer_start"] for _, a in changed)


def test_training_follows_soft_targets_and_refuses_ones_from_other_data(tmp_path, capsys):
    write_synthetic_squad(tmp_path)
    spec_d = importlib.util.spec_from_file_location("distill", ROOT / "eval" / "training" / "distill.py")
    distill = importlib.util.module_from_spec(spec_d)
    spec_d.loader.exec_module(distill)
    examples = distill.candidate_examples(tmp_path, without_tuning=False)
    assert len(examples) == 38 * 3  # each question with its paragraph and its hard negative, each unanswerable
    soft = soft_targets_for(examples, lambda ex: ex["context"].find("Anna"),
                            lambda ex: ex["context"].find("Anna") + len("Anna Person0"))
    soft.save(tmp_path / "soft.npz")
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--batch-size", "16", "--epochs", "1", "--max-length", "64",
              "--stride", "16", "--precision", "fp32", "--ema", "0", "--soft-targets", str(tmp_path / "soft.npz"),
              "--distill-weight", "0.5", "--temperature", "2"]
    train_reader.main(common + ["--out", str(tmp_path / "distilled")])
    assert json.loads((tmp_path / "distilled" / "training_args.json").read_text())["distill_weight"] == "0.5"
    soft_targets_for(examples[:5], lambda ex: 0, lambda ex: 1).save(tmp_path / "other.npz")
    with pytest.raises(KeyError, match="no teacher targets"):
        train_reader.main(common[:-6] + ["--soft-targets", str(tmp_path / "other.npz"), "--out", str(tmp_path / "x")])


def test_the_committed_teacher_targets_cover_every_example_the_default_recipe_draws():
    """`train_reader.py` with its defaults distils from eval/training/teacher/: every example it trains on from
    the dev train articles (train-v1.1's learn from gold spans alone), and on the tuning-slice
    variant, must find its teacher targets."""
    from rag.squad import default_data_dir

    data = default_data_dir()
    if data is None:
        pytest.skip("needs ../shared/data/squad (present in CI)")
    for variant in ([], ["--with-tuning-articles"]):
        args = train_reader.parse_args(["--data", str(data), "--sources", "dev-train"] + variant)
        assert args.soft_targets.parent == ROOT / "eval" / "training" / "teacher" and args.temperature == 2.0
        soft = train_reader.SoftTargets.load(args.soft_targets)
        examples = train_reader.build_examples(args, train_reader.seeded(args.seed))
        for ex in examples:
            soft.row(train_reader.example_key(ex["question"], ex["context"]))
        assert len(examples) > 9000


def test_layer_decay_zero_trains_only_the_span_head_and_frozen_embeddings_stay(tmp_path):
    from rag.config import default_embedding_model_path
    base = load_file(default_embedding_model_path() / "model.safetensors")
    write_synthetic_squad(tmp_path)
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--limit", "16", "--batch-size", "8", "--epochs", "1", "--max-length", "64",
              "--stride", "16", "--precision", "fp32", "--ema", "0", "--soft-targets", "none"]
    train_reader.main(common + ["--out", str(tmp_path / "head"), "--layer-decay", "0"])
    train_reader.main(common + ["--out", str(tmp_path / "frozen"), "--freeze-embeddings"])
    head, frozen = load_file(tmp_path / "head" / "model.safetensors"), load_file(tmp_path / "frozen" / "model.safetensors")
    words, layer = "embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"
    base_words = next(v for k, v in base.items() if k.endswith(words)).half()
    base_layer = next(v for k, v in base.items() if k.endswith(layer)).half()
    assert torch.equal(head["bert." + words], base_words) and torch.equal(head["bert." + layer], base_layer)
    assert torch.equal(frozen["bert." + words], base_words) and not torch.equal(frozen["bert." + layer], base_layer)


def test_augmented_variants_keep_the_answers_and_their_teacher_targets_are_found(tmp_path):
    """Word-swapped variants (`--augment-*`): the gold answers stay where their offsets say, a variant
    depends on its example alone, and a reader trains on the variants distill.py labels."""
    write_synthetic_squad(tmp_path)
    spec_d = importlib.util.spec_from_file_location("distill", ROOT / "eval" / "training" / "distill.py")
    distill = importlib.util.module_from_spec(spec_d)
    spec_d.loader.exec_module(distill)
    neighbours = train_reader.TEACHER_DIR / "word-neighbours.txt.gz"
    words = train_reader.load_neighbours(neighbours)
    example = {"question": "Which city hosted the talks?", "context": "The talks started in Istanbul, a large city.",
               "answer_start": 21, "answer_text": "Istanbul", "all_answers": [(21, "Istanbul")]}
    variants = [train_reader.augmented(example, 1.0, 1.0, words) for _ in range(2)]
    assert variants[0] == variants[1]
    variant = variants[0]
    assert variant["question"] != example["question"] and variant["context"] != example["context"]
    assert variant["context"][variant["answer_start"]:variant["answer_start"] + 8] == "Istanbul"

    originals = distill.candidate_examples(tmp_path, without_tuning=False)
    swapped = distill.augmented_candidates(distill.every_example(tmp_path, False), 0.5, 0.2, neighbours)
    assert len(swapped) == len(originals) and any(s["question"] != o["question"] for s, o in zip(swapped, originals))
    for ex in swapped:
        for start, text in ex.get("all_answers") or []:
            assert ex["context"][start:start + len(text)] == text
    first = lambda ex: max(ex["context"].find("Anna"), 0)  # noqa: E731
    soft_targets_for(originals, first, lambda ex: first(ex) + 4).save(tmp_path / "soft.npz")
    soft_targets_for(swapped, first, lambda ex: first(ex) + 4).save(tmp_path / "soft-augmented.npz")
    common = ["--data", str(tmp_path), "--sources", "dev-train", "--batch-size", "16", "--epochs", "2", "--max-length", "64",
              "--stride", "16", "--precision", "fp32", "--ema", "0", "--soft-targets", str(tmp_path / "soft.npz")]
    train_reader.main(common + ["--augment-question", "0.5", "--augment-context", "0.2", "--out", str(tmp_path / "aug")])
    assert (tmp_path / "aug" / "model.safetensors").exists()
    with pytest.raises(KeyError, match="no teacher targets"):  # other variants than the teacher labelled
        train_reader.main(common + ["--augment-question", "0.3", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        train_reader.parse_args(["--augment-question", "0.3", "--soft-targets", "none"])


def test_train_set_is_a_source_and_its_share_a_learning_curve(tmp_path):
    """train-v1.1 joins the dev train articles; --share draws nested subsets of its questions, and the
    dev-train examples (which the committed teacher answered) stay exactly as they were."""
    write_synthetic_squad(tmp_path)
    write_synthetic_train_set(tmp_path, articles=200)
    common = ["--data", str(tmp_path), "--soft-targets", "none"]

    def examples(*extra):
        args = train_reader.parse_args(common + list(extra))
        return train_reader.build_examples(args, train_reader.seeded(args.seed))

    dev_only = examples("--sources", "dev-train")
    half, full = examples("--share", "0.5"), examples("--share", "1")
    assert [ex for ex in full if ex["source"] == "dev-train"] == dev_only
    assert [ex for ex in half if ex["source"] == "dev-train"] == dev_only
    questions = lambda exs: {ex["question"] for ex in exs if ex["source"] == "squad-train"}  # noqa: E731
    assert len(questions(full)) == 200 and 60 < len(questions(half)) < 140
    assert questions(half) < questions(full)
    negatives = [ex for ex in full if ex["source"] == "squad-train" and ex["answer_start"] is None]
    assert negatives and all("fair every spring" in ex["context"] for ex in negatives)
    with pytest.raises(SystemExit):
        train_reader.parse_args(common + ["--sources", "wikipedia"])


def test_a_stopped_run_resumed_ends_as_an_uninterrupted_one(tmp_path):
    """--stop-after-steps leaves a checkpoint; --resume goes on with the same batches, optimizer
    moments, weight average and dropout draws, so the weights match a run that never stopped."""
    write_synthetic_squad(tmp_path)
    write_synthetic_train_set(tmp_path)
    common = ["--data", str(tmp_path), "--batch-size", "8", "--epochs", "2", "--max-length", "64",
              "--stride", "16", "--precision", "fp32", "--ema", "0.9", "--checkpoint-every", "0", "--soft-targets", "none",
              "--lr", "1e-3"]  # a high rate, so that a state not restored shows (0.01 off, not 0)
    train_reader.main(common + ["--out", str(tmp_path / "straight")])
    stopped = common + ["--out", str(tmp_path / "resumed"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    train_reader.main(stopped + ["--stop-after-steps", "7"])  # mid-way through the first epoch
    assert not (tmp_path / "resumed").exists() and (tmp_path / "ckpt" / "progress.json").exists()
    train_reader.main(stopped + ["--resume", "--stop-after-steps", "9"])  # into the second epoch
    with pytest.raises(SystemExit, match="other settings"):
        train_reader.main(stopped[:-2] + ["--lr", "1e-4", "--out", str(tmp_path / "resumed"),
                                          "--checkpoint-dir", str(tmp_path / "ckpt"), "--resume"])
    train_reader.main(stopped + ["--resume"])
    assert not (tmp_path / "ckpt").exists()
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.allclose(straight[name].float(), resumed[name].float(), atol=1e-3), name


def test_hard_negatives_searched_in_worker_processes_are_the_ones_searched_one_by_one(tmp_path):
    """--workers replays the draws, searches the drawn questions' negatives in parallel, then builds
    the examples: the same examples, in the same order, as one process makes."""
    import negatives  # on the path train_reader put it on

    write_synthetic_squad(tmp_path)
    write_synthetic_train_set(tmp_path, articles=500, paragraphs=5)
    built = {}
    for workers in ("1", "2"):
        negatives._found.clear()
        args = train_reader.parse_args(["--data", str(tmp_path), "--soft-targets", "none", "--negatives", "0.6",
                                        "--workers", workers])
        built[workers] = train_reader.build_examples(args, train_reader.seeded(args.seed))
    drawn = [ex for ex in built["1"] if ex["source"] == "squad-train" and ex["answer_start"] is None]
    assert len(drawn) > 250  # more than find_negatives leaves to one process
    assert built["2"] == built["1"]


def test_a_run_past_its_stop_time_ends_with_the_weights_it_has(tmp_path, capsys):
    """--stop-at: a machine lent for minutes gets a reader back, not nothing."""
    import time

    write_synthetic_squad(tmp_path)
    out = tmp_path / "cut"
    train_reader.main(["--data", str(tmp_path), "--sources", "dev-train", "--out", str(out), "--soft-targets", "none",
                       "--batch-size", "4", "--epochs", "2", "--max-length", "64", "--stride", "16",
                       "--precision", "fp32", "--stop-at", str(time.time())])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    cut = next(e for e in events if e.get("event") == "cut short")
    assert cut["step"] == 1 and cut["of"] > 10
    assert (out / "model.safetensors").is_file() and any(e.get("event") == "done" for e in events)


def test_the_weight_average_leaves_frozen_weights_exactly_as_they_were():
    """Averaging a constant in float32 drifts it (274 of 400 values after 200 steps): the frozen token
    embeddings then looked changed, and a low-rank change stored 8 MB of that rounding."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    average = train_reader.WeightAverage(model, 0.998)
    for step in range(200):
        with torch.no_grad():
            model[1].weight.add_(0.01)
        average.update(model, step)
    averaged = average.averaged(model)
    assert torch.equal(averaged[0].weight, frozen)
    assert not torch.equal(averaged[1].weight, model[1].weight)  # the trained weights are averaged
