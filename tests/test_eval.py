"""A small evaluation end to end through `rag eval`."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, write_synthetic_squad
from rag.cli import main as cli
from rag.evaluation.report import read_predictions


def test_eval_jsonl_end_to_end(tmp_path, capsys, monkeypatch, seed_qa):
    monkeypatch.setenv("RAG_MAX_DOCUMENT_CHARS", "30000000")  # a setting by environment: the report names it
    subset = tmp_path / "mini.jsonl"
    rows = [q for q in seed_qa if q["answerable"]][:4] + [q for q in seed_qa if not q["answerable"]][:2]
    subset.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = cli(["eval", str(subset), "--out", str(tmp_path / "results"), "--json", "--no-cold-start"])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    totals = json.loads(out)
    assert code == 0
    assert totals["n"] == 6 and totals["unanswerable"] == 2
    for key in ("exact_match", "f1", "citation_accuracy", "abstain_precision", "abstain_recall",
                "latency_p50_ms", "latency_p95_ms", "index_build_s", "recall@1", "recall@5", "mrr"):
        assert key in totals
    files = {p.name for p in (tmp_path / "results").iterdir()}
    assert any(f.endswith(".json") for f in files) and any(f.endswith(".md") for f in files)
    assert any(f.endswith("-latency.png") for f in files)
    report = next((tmp_path / "results").glob("*.md")).read_text()
    command = next(line for line in report.splitlines() if line.startswith("Command:"))
    assert "RAG_MAX_DOCUMENT_CHARS=30000000 " in command and " rag eval " in command
    summary = next((tmp_path / "results").glob("*.json"))
    assert "records" not in json.loads(summary.read_text())  # the summary is committed; predictions are not
    saved = read_predictions(tmp_path / "results", summary.stem)
    assert len(saved["records"]) == 6 and {"prediction", "score", "citations", "f1", "seconds"} <= set(saved["records"][0])


def test_eval_jsonl_takes_one_answer_measures_recall_and_names_a_bad_line(tmp_path, capsys):
    """A set may give one right answer as "answer"; retrieval recall counts the passages holding it
    (or those of the document a line names); a malformed line is refused with its line number."""
    rows = [{"question": "Who led the Russian delegation?", "answer": "Vladimir Medinsky"},
            {"question": "Who led the Russian delegation?", "answers": ["Vladimir Medinsky"], "doc": "elsewhere.txt"},
            {"question": "What is the boiling point of mercury?", "answers": []}]
    good = tmp_path / "mine.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = cli(["eval", str(good), "--out", str(tmp_path / "results"), "--json", "--no-cold-start"])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and totals["n"] == 3 and totals["unanswerable"] == 1
    assert totals["exact_match"] == 100.0
    assert totals["recall@5"] == 50.0  # the first line's answer is retrieved; no passage is from "elsewhere.txt"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"question": "Who?", "answers": "x", "id": 2}).replace(
        '"answers"', '"reply"') + "\n")
    assert cli(["eval", str(bad), "--out", str(tmp_path / "results"), "--no-cold-start"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and '"answers"' in err


def test_eval_squad_format_file_and_min_f1_gate(tmp_path, capsys):
    squad = {"data": [{"title": "Tiny", "paragraphs": [
        {"context": "The Amazon River flows through Brazil. It is about 6,400 km long.",
         "qas": [{"id": "q1", "question": "Which country does the Amazon River flow through?",
                  "answers": [{"text": "Brazil", "answer_start": 31}]}]},
        {"context": "Mount Fuji is the highest mountain in Japan. It last erupted in 1707.",
         "qas": [{"id": "q2", "question": "When did Mount Fuji last erupt?",
                  "answers": [{"text": "1707", "answer_start": 64}]}]},
    ]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(squad))
    code = cli(["eval", str(path), "--out", str(tmp_path), "--json", "--no-cold-start", "--min-f1", "101"])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert totals["n"] == 2 and "recall@1" in totals and totals["recall@5"] == 100.0
    assert code == 1  # F1 cannot reach 101


def test_squad_open_results_keep_no_dataset_text(tmp_path, capsys):
    """Results are committed to the repository; SQuAD's questions, answers and sentences stay in ../shared."""
    write_synthetic_squad(tmp_path)
    out = tmp_path / "results"
    code = cli(["eval", "squad-open", "--data", str(tmp_path), "--out", str(out), "--json", "--no-cold-start",
                "--early-stop", "none", "--rank-decay", "0.5", "--fusion", "rrf"])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and totals["n"] == 10 and totals["early_stop"] is None and totals["rank_decay"] == 0.5
    assert totals["fusion"] == "rrf"
    summary = next(out.glob("squad-open-*.json"))
    saved = json.loads(summary.read_text()) | read_predictions(out, summary.stem)
    records = saved["records_v1"] + saved["records_v2"]
    assert len(saved["records_v1"]) == 10 and len(saved["records_v2"]) == 20
    assert all({"id", "prediction", "score", "f1"} <= set(r) for r in records)
    assert not any({"question", "answers"} & set(r) for r in records)
    assert not any("sentence" in c for r in records for c in r["citations"])
    assert "Who is the mayor" not in json.dumps(saved)


def test_eval_squad_scores_the_split_it_is_asked_for(tmp_path, capsys):
    """The reader on the gold paragraph: held-out articles 38-47 by default, the tuning slice 28-37 on request."""
    write_synthetic_squad(tmp_path)
    for split, held in (("heldout", range(38, 48)), ("tune", range(28, 38))):
        out = tmp_path / split
        code = cli(["eval", "squad", "--data", str(tmp_path), "--split", split, "--out", str(out), "--json"])
        totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and totals["split"] == split and totals["n"] == 10 and totals["v2_n"] == 20
        summary = next(out.glob("squad-reader-*.json"))
        saved = read_predictions(out, summary.stem)
        assert sorted(r["id"] for r in saved["v1_predictions"]) == sorted(f"q{n}" for n in held)
        assert 0.0 <= totals["f1"] <= 100.0
    # The whole dev set, as published results score it: SQuAD 1.1 alone, every article.
    code = cli(["eval", "squad", "--data", str(tmp_path), "--split", "dev", "--out", str(tmp_path / "dev"), "--json"])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and totals["split"] == "dev" and totals["n"] == 48 and "v2_f1" not in totals
    saved = read_predictions(tmp_path / "dev", next((tmp_path / "dev").glob("squad-reader-dev-*.json")).stem)
    assert sorted(r["id"] for r in saved["v1_predictions"]) == sorted(f"q{n}" for n in range(48))
    assert cli(["eval", "squad-open", "--split", "dev", "--data", str(tmp_path)]) == 2
    assert "scores the reader alone" in capsys.readouterr().err


def test_eval_refuses_a_bad_early_stop_or_rank_decay(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(["eval", "squad-open", "--early-stop", "soon"])
    assert exit_.value.code == 2 and "'none', not 'soon'" in capsys.readouterr().err
    for bad in ("0", "1.5", "heavy"):
        with pytest.raises(SystemExit) as exit_:
            cli(["eval", "squad-open", "--rank-decay", bad])
        assert exit_.value.code == 2 and f"in (0, 1] such as 0.8, not '{bad}'" in capsys.readouterr().err
    for bad in ("-0.1", "1.5", "most"):
        with pytest.raises(SystemExit) as exit_:
            cli(["eval", "squad-open", "--dense-weight", bad])
        assert exit_.value.code == 2 and f"in [0, 1] such as 0.7, not '{bad}'" in capsys.readouterr().err


def test_retrieval_sweep_scores_every_fusion(tmp_path):
    """eval/sweep_retrieval.py on synthetic SQuAD: one row per fusion, recall rising with depth."""
    write_synthetic_squad(tmp_path)
    out = tmp_path / "retrieval.json"
    subprocess.run([sys.executable, str(ROOT / "eval" / "sweep_retrieval.py"), "--data", str(tmp_path),
                    "--fusions", "dense", "bm25", "rrf", "convex:0.7", "--out", str(out)], check=True,
                   capture_output=True, text=True)
    rows = json.loads(out.read_text())
    assert [r["fusion"] for r in rows] == ["dense", "bm25", "rrf", "convex:0.7"]
    for r in rows:
        assert r["split"] == "tune" and r["n"] == 10 and r["chunks"] == 20
        recalls = [r[f"recall@{k}"] for k in (1, 2, 3, 5, 10)]
        assert recalls == sorted(recalls) and recalls[-1] == 100.0


def test_engine_sweep_replays_ask_under_each_setting(tmp_path):
    """eval/sweep_engine.py memoises the models and replays the real Engine.ask: it must keep up with
    the engine's calls (a reader call with character ranges to exclude broke it once)."""
    write_synthetic_squad(tmp_path)
    out, logits = tmp_path / "engine.json", tmp_path / "logits"
    command = [sys.executable, str(ROOT / "eval" / "sweep_engine.py"), "--data", str(tmp_path), "--chunks", "800:200",
               "--top-k", "1", "3", "--stops", "none", "0.2", "--limit", "6", "--logits", str(logits), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    rows = [r for r in json.loads(out.read_text()) if "v1_f1" in r]
    assert {r["top_k"] for r in rows} == {1, 3}
    assert all(0.0 <= r["v1_f1"] <= 100.0 for r in rows) and max(r["v1_f1"] for r in rows) > 0
    # Run again on the kept logits: the same results, and no window read again (no new shard).
    shards = sorted(logits.glob("shard-*.npz"))
    assert shards
    subprocess.run(command, check=True, capture_output=True, text=True)
    assert [r for r in json.loads(out.read_text()) if "v1_f1" in r] == rows
    assert sorted(logits.glob("shard-*.npz")) == shards


def test_gate_sweep_counts_what_each_setting_stops(tmp_path):
    """eval/sweep_gate.py on synthetic SQuAD: a gate nothing passes stops every question, one everything
    passes none, and letting more words or sentences count never stops more."""
    write_synthetic_squad(tmp_path)
    out = tmp_path / "gate.json"
    subprocess.run([sys.executable, str(ROOT / "eval" / "sweep_gate.py"), "--data", str(tmp_path),
                    "--similarities", "-1", "0.2", "1.01", "--overlaps", "0.5", "1.01",
                    "--sentence-similarities", "-1", "2", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    rows = {(r["min_similarity"], r["min_word_overlap"], r["sentence_similarity"]): r for r in json.loads(out.read_text())}
    sets = ("own", "own-mixed", "off-seed", "off-articles", "seed-off")
    assert rows[(1.01, 1.01, 2)]["own_n"] == rows[(1.01, 1.01, 2)]["own-mixed_n"] == 10
    for name in sets:
        assert rows[(1.01, 1.01, 2)][f"{name}_stopped"] == 100.0
        assert rows[(-1.0, 1.01, 2)][f"{name}_stopped"] == rows[(-1.0, 0.5, 2)][f"{name}_stopped"] == 0.0
        for cut in (0.2, 1.01):
            assert rows[(cut, 0.5, 2)][f"{name}_stopped"] <= rows[(cut, 1.01, 2)][f"{name}_stopped"]
            assert rows[(cut, 1.01, -1)][f"{name}_stopped"] <= rows[(cut, 1.01, 2)][f"{name}_stopped"]
    assert rows[(1.01, 0.5, 2)]["own_stopped"] == 0.0  # every own question shares its words with its paragraph


def test_squad_open_can_index_whole_articles(tmp_path, capsys):
    """`--whole-articles`: one document per article, as a user's documents are; recall counts only the
    passages of the gold article that hold an answer, and the answers' offsets point into the article."""
    from rag.evaluation.datasets import squad_split
    from rag.evaluation.runner import holds_gold
    from rag.schema import Passage

    write_synthetic_squad(tmp_path)
    v1, v2 = squad_split(tmp_path, "tune", whole_articles=True)
    docs = dict(v1.documents)
    assert len(docs) == 10 and all("\n" in text for text in docs.values())
    for item in v1.items:
        assert [docs[item.gold_doc][a:b] for a, b in item.gold_spans] == item.answers
        text = docs[item.gold_doc]
        holding, other = text.index(item.answers[0]), text.index("market")
        assert holds_gold(Passage(0, item.gold_doc, 0, holding + len(item.answers[0]), "", 0.0, 0.0), item)
        assert not holds_gold(Passage(0, item.gold_doc, other, len(text), "", 0.0, 0.0), item)
    out = tmp_path / "results"
    code = cli(["eval", "squad-open", "--whole-articles", "--split", "tune", "--data", str(tmp_path), "--out", str(out),
                "--json", "--no-cold-start"])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and totals["whole_articles"] and totals["n"] == 10 and totals["recall@5"] == 100.0
    saved = json.loads(next(out.glob("squad-open-articles-tune-*.json")).read_text())
    assert saved["v1"]["documents"] == 10 and saved["v2"]["documents"] == 10


def test_the_reader_answers_users_notes_above_a_floor(tmp_path, capsys):
    """eval/notes/: twelve documents as users write them (Markdown lists and tables, HTML tables, notes
    of short lines, a FAQ, release notes), with 56 questions they answer and 10 they do not, written
    before any reader was run on them. Over these many questions, not one toy sentence, the engine
    must stay right on most and refuse most of what the notes do not say."""
    index_dir = str(tmp_path / "indexes")
    assert cli(["--index-dir", index_dir, "index", str(ROOT / "eval" / "notes"), "--name", "notes"]) == 0
    code = cli(["--index-dir", index_dir, "eval", str(ROOT / "eval" / "notes_qa.jsonl"), "--index", "notes",
                "--no-cold-start", "--json", "--out", str(tmp_path / "out")])
    totals = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and totals["n"] == 66 and totals["unanswerable"] == 10
    assert totals["exact_match"] >= 70 and totals["unanswerable_accuracy"] >= 80, totals
