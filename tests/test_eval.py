"""A small evaluation end to end through `rag eval`."""

import json

from rag.cli import main as cli


def test_eval_jsonl_end_to_end(tmp_path, capsys, seed_qa):
    subset = tmp_path / "mini.jsonl"
    rows = [q for q in seed_qa if q["answerable"]][:4] + [q for q in seed_qa if not q["answerable"]][:2]
    subset.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = cli(["eval", str(subset), "--out", str(tmp_path / "results"), "--json", "--no-cold-start"])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    totals = json.loads(out)
    assert code == 0
    assert totals["n"] == 6 and totals["unanswerable"] == 2
    for key in ("exact_match", "f1", "citation_accuracy", "abstain_precision", "abstain_recall",
                "latency_p50_ms", "latency_p95_ms", "index_build_s"):
        assert key in totals
    files = {p.name for p in (tmp_path / "results").iterdir()}
    assert any(f.endswith(".json") for f in files) and any(f.endswith(".md") for f in files)
    assert any(f.endswith("-latency.png") for f in files)
    saved = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert len(saved["records"]) == 6 and {"prediction", "score", "citations", "f1", "seconds"} <= set(saved["records"][0])


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
