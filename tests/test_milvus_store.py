"""Indexes in Milvus (RAG_STORE=milvus:...): Milvus Lite embedded in the process, and Milvus Lite run
as a gRPC server on 127.0.0.1, which is the code path a Milvus cluster takes."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag.config import Config
from rag.engine import Engine
from rag.errors import IndexStoreError

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "russia-ukraine-istanbul-talks-2025-07.txt"
QUESTIONS = ["Who led the Russian delegation?", "Who is Turkey's foreign minister?", "How long did the talks last?",
             "What language were the talks held in?", "Which hotel hosted the negotiations?",
             "What is the boiling point of mercury?", "Did the talks take place in Russian?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the process exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"nothing listened on port {port} within {seconds} s")


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """Milvus Lite as a gRPC server on loopback: RAG_STORE for it."""
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server") / "data"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(data),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, proc)
    yield f"milvus:http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def run(rag_bin: str, *args: str, store: str, index_dir: Path, timeout: float = 300,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAG_STORE=store, RAG_INDEX_DIR=str(index_dir))
    return subprocess.run([rag_bin, *args], capture_output=True, text=True, timeout=timeout, env=env, input=stdin)


def same(a, b) -> bool:
    """Two answers alike: span, abstention and cited places."""
    return (a.text == b.text and a.abstained == b.abstained
            and [(c.doc, c.start, c.end, c.answer_start, c.answer_end) for c in a.citations]
            == [(c.doc, c.start, c.end, c.answer_start, c.answer_end) for c in b.citations])


def test_embedded_milvus_answers_like_the_local_store(tmp_path):
    local = Engine(Config(index_dir=tmp_path / "local"))
    milvus = Engine(Config(index_dir=tmp_path / "unused", store=f"milvus:{tmp_path / 'docqa.db'}"))
    local.build([SEED], "talks")
    corpus = milvus.build([SEED], "talks")[0]
    assert corpus.document_names == [SEED.name] and corpus.manifest.chunks == local.index("talks").manifest.chunks
    for question in QUESTIONS:
        a, b = local.ask(question, index="talks"), milvus.ask(question, index="talks")
        assert same(a, b), (question, a, b)
    c = milvus.ask("Who led the Russian delegation?", index="talks").citations[0]
    assert SEED.read_text(encoding="utf-8")[c.answer_start:c.answer_end] == "Vladimir Medinsky"  # exact offsets
    # Chunks whose document was never listed (a write stopped half-way) are never cited.
    ghost = "The Mirren canal was dug in 1794 by the navvy Josiah Crabtree."
    client, vector = milvus.library.milvus.client, milvus.embedder.encode([ghost])[0].tolist()
    client.insert("docqa_talks_chunks", [{"id": 10_000, "doc": "ghost.txt", "start": 0, "end": len(ghost),
                                          "text": ghost, "terms": "mirren canal dug 1794 navvi josiah crabtre",
                                          "vector": vector}])
    nearest = client.search("docqa_talks_chunks", [vector], anns_field="vector", limit=1, output_fields=["doc"])
    assert nearest[0][0]["entity"]["doc"] == "ghost.txt"  # Milvus finds it...
    assert "ghost.txt" not in [p.doc for p in milvus.ask("Who dug the Mirren canal?", index="talks").passages]
    # The seed index, which ask() reads by default, lives in the store too.
    assert milvus.ask("Who led the Russian delegation?").text == "Vladimir Medinsky"
    # Milvus's own RRFRanker, when asked for, fuses the two searches inside Milvus.
    milvus.library.milvus.close()
    rrf = Engine(Config(index_dir=tmp_path / "unused", store=f"milvus:{tmp_path / 'docqa.db'}", fusion="rrf"))
    assert rrf.ask("Who led the Russian delegation?", index="talks").text == "Vladimir Medinsky"
    assert not (tmp_path / "unused").exists()


def test_one_process_indexes_through_a_milvus_server_and_another_answers(milvus_server, tmp_path, rag_bin):
    notes = tmp_path / "canal-notes.txt"
    notes.write_text("The Mirren canal was dug in 1794 by the navvy Josiah Crabtree.\n")
    built = run(rag_bin, "index", str(SEED), "--name", "talks", store=milvus_server, index_dir=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "Milvus store at http://127.0.0.1:" in built.stdout
    added = run(rag_bin, "index", str(notes), "--name", "talks", "--add", store=milvus_server, index_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    asked = run(rag_bin, "ask", "--index", "talks", "--json", store=milvus_server, index_dir=tmp_path,
                stdin="Who led the Russian delegation?\nWho dug the Mirren canal?\n")
    assert asked.returncode == 0, asked.stderr
    answers = [json.loads(line) for line in asked.stdout.splitlines() if line.strip()]
    assert answers[0]["text"] == "Vladimir Medinsky" and answers[0]["citations"][0]["doc"] == SEED.name
    assert "Josiah Crabtree" in answers[1]["text"] and answers[1]["citations"][0]["doc"] == "canal-notes.txt"
    listed = run(rag_bin, "list", store=milvus_server, index_dir=tmp_path)
    assert "talks  2 document(s)" in listed.stdout and "canal-notes.txt" in listed.stdout
    removed = run(rag_bin, "remove", "canal-notes.txt", "--index", "talks", store=milvus_server, index_dir=tmp_path)
    assert removed.returncode == 0, removed.stderr
    asked = run(rag_bin, "ask", "--index", "talks", "Who dug the Mirren canal?", store=milvus_server,
                index_dir=tmp_path)
    assert "Not in the documents" in asked.stdout
    assert not any(tmp_path.glob("talks*"))  # nothing went to the local index folder


def test_an_unreachable_store_is_a_clear_error(tmp_path, rag_bin):
    port = free_port()  # nothing listens there
    result = run(rag_bin, "ask", "Who led the Russian delegation?", store=f"milvus:http://127.0.0.1:{port}",
                 index_dir=tmp_path, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"Cannot reach the Milvus store at http://127.0.0.1:{port}" in result.stderr
    bad = run(rag_bin, "ask", "Who?", store="postgres://x", index_dir=tmp_path)
    assert "RAG_STORE='postgres://x'" in bad.stderr and "Traceback" not in bad.stderr


def test_an_index_of_another_embedding_model_or_changed_outside_docqa_is_refused(milvus_server, tmp_path):
    store = milvus_server
    engine = Engine(Config(index_dir=tmp_path, store=store))
    engine.build([SEED], "checked")
    other = Engine(Config(index_dir=tmp_path, store=store, embedding_model=str(tmp_path / "another-model")))
    with pytest.raises(IndexStoreError, match="built with the embedding model"):
        other.ask("Who led the Russian delegation?", index="checked")
    # Someone drops a field of the chunks collection (here: makes it anew without the BM25 vectors).
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=store[len("milvus:"):])
    client.drop_collection("docqa_checked_chunks")
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=384)
    client.create_collection("docqa_checked_chunks", schema=schema)
    fresh = Engine(Config(index_dir=tmp_path, store=store))
    with pytest.raises(IndexStoreError, match="was changed outside docqa"):
        fresh.ask("Who led the Russian delegation?", index="checked")


def test_two_web_chats_over_one_milvus_server_share_uploads(milvus_server, tmp_path):
    """An upload through one web-chat process is answerable from another."""
    from gradio_client import Client

    urls, procs = [], []
    for n in range(2):
        port = free_port()
        env = dict(os.environ, RAG_STORE=milvus_server, RAG_INDEX_DIR=str(tmp_path / f"unused-{n}"))
        procs.append(subprocess.Popen([sys.executable, "-m", "ui", "--port", str(port)], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        wait_for_port(port, procs[-1], seconds=180)
        urls.append(f"http://127.0.0.1:{port}/")
    try:
        notes = tmp_path / "lighthouse-notes.txt"
        notes.write_text("The old lighthouse on Skerry Point was built in 1871 by the engineer Thomas Ogilvie.\n")
        first = Client(urls[0], verbose=False)
        component = next(c["id"] for c in first.config["components"] if c.get("props", {}).get("elem_id") == "docqa")
        with notes.open("rb") as f:
            uploaded = httpx.post(urls[0] + "gradio_api/upload", files={"files": (notes.name, f)}).json()
        reply = httpx.post(urls[0] + "gradio_api/component_server", timeout=120, json={
            "data": {"paths": uploaded}, "component_id": component, "fn_name": "add_files", "session_hash": "t"}).json()
        assert reply["added"] == ["lighthouse-notes.txt"], reply
        answer = Client(urls[1], verbose=False).predict("Who built the lighthouse on Skerry Point?", api_name="/ask")
        assert answer["text"] == "Thomas Ogilvie" and answer["citations"][0]["doc"] == "lighthouse-notes.txt"
        assert Client(urls[0], verbose=False).predict("Who led the Russian delegation?",
                                                      api_name="/ask")["text"] == "Vladimir Medinsky"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
