"""How fast docqa starts: a cold `rag ask`, `import rag`, `rag serve` to its first answer, peak
memory, and the warm `ask()` latency on the seed set, each beside `python -c "import torch"`
measured in the same run, so that figures from different machines compare as ratios.

    .venv/bin/python eval/bench_startup.py [--runs 5] [--readers accurate,small] [--reader-dtypes auto,bfloat16]

Cold means a fresh process with the seed index built and the models' ONNX exports cached (the
state after the first `rag ask` on a machine); the first start with each setting, which builds the
index, rebuilds a reader from its change and exports, is reported once. Each reader and reader dtype
is measured side by side, so the defaults can be chosen by measurement (RAG_READER_MODEL;
RAG_READER_DTYPE: `auto` is the float32 ONNX reader on CPU, `bfloat16` PyTorch's).
The report names the CPU and its vector extensions.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.evaluation.report import write_json, write_markdown  # noqa: E402

QUESTION = "Who led the Russian delegation?"
# A child that reports its own peak memory (kB) on the last line of stderr.
PEAK = """import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    {body}
except SystemExit as stop:
    if stop.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def cpu() -> dict:
    """The CPU's name and which of the vector extensions that matter here it has."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"name": name, "cores": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "avx512_bf16": "avx512_bf16" in flags}


def timed(argv: list[str], env: dict, stdin: str | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MB) and stdout of one fresh process."""
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed: {out.stderr[-2000:]}")
    return seconds, int(out.stderr.strip().splitlines()[-1]) // 1024, out.stdout


def python(body: str) -> list[str]:
    return [sys.executable, "-c", PEAK.format(body=body)]


def rag_ask(*args: str) -> list[str]:
    return python("runpy.run_module('rag.cli', run_name='__main__')") + ["rag", "ask", *args]


def median_of(runs: int, argv: list[str], env: dict) -> dict:
    results = [timed(argv, env) for _ in range(runs)]
    return {"median_s": round(statistics.median(r[0] for r in results), 3),
            "runs_s": [round(r[0], 3) for r in results], "peak_rss_mb": max(r[1] for r in results)}


def serve_to_first_answer(env: dict) -> float:
    """Seconds from starting `rag serve` to its first answer through the API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from gradio_client import Client

        deadline = start + 300
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        answer = client.predict(QUESTION, api_name="/ask")
        assert answer["text"], answer
        return time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)


def warm_latency(env: dict, rounds: int) -> dict:
    """p50/p95 of `ask()` over the seed set's questions, after one warm-up, in one process."""
    code = f"""
import json, statistics, time
from rag import ask
questions = [json.loads(l)["question"] for l in open({str(ROOT / 'eval' / 'seed_qa.jsonl')!r}) if l.strip()]
ask(questions[0])
times = []
for _ in range({rounds}):
    for q in questions:
        t = time.perf_counter(); ask(q); times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({{"p50_ms": round(1000 * times[len(times) // 2], 1), "p95_ms": round(1000 * times[int(len(times) * 0.95)], 1),
                  "asks": len(times)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh processes per cold measurement (median reported)")
    p.add_argument("--rounds", type=int, default=3, help="passes over the seed set for the warm latency")
    p.add_argument("--readers", default="accurate,small", help="RAG_READER_MODEL values to compare")
    p.add_argument("--reader-dtypes", default="auto", help="RAG_READER_DTYPE values to compare (bfloat16 pays "
                   "only on a CPU with AVX-512 BF16)")
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="docqa-startup-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # a fresh cache per run: over 1 GB
    base = {**os.environ, "RAG_INDEX_DIR": str(work / "index"), "RAG_CACHE_DIR": str(work / "cache"),
            "PYTHONUNBUFFERED": "1"}
    results = {"cpu": cpu(), "python": sys.version.split()[0], "runs": args.runs}
    results["import_torch"] = median_of(args.runs, python("import torch"), base)
    results["import_rag"] = median_of(args.runs, python("import rag"), base)
    variants = [(r, d) for r in args.readers.split(",") for d in args.reader_dtypes.split(",")]
    for reader, dtype in variants:
        env = {**base, "RAG_READER_MODEL": reader, "RAG_READER_DTYPE": dtype}
        first, _, _ = timed(rag_ask(QUESTION), env)  # the index, the reader's rebuild, its export
        row = median_of(args.runs, rag_ask(QUESTION), env)
        row["first_start_s"] = round(first, 2)
        row["ratio_to_import_torch"] = round(row["median_s"] / results["import_torch"]["median_s"], 2)
        row["warm"] = warm_latency(env, args.rounds)
        row["serve_to_first_answer_s"] = round(serve_to_first_answer(env), 2)
        results[f"rag_ask_{reader}_{dtype}"] = row
    name = f"startup-{time.strftime('%Y-%m-%d')}"
    write_json(args.out, name, results)
    c = results["cpu"]
    isa = ", ".join(k for k in ("avx2", "avx512f", "avx512_bf16") if c[k])
    rows = ["| what | median | runs | peak RSS | ÷ import torch |", "|---|---|---|---|---|"]
    torch_s = results["import_torch"]["median_s"]
    for label, key in [("`python -c 'import torch'`", "import_torch"), ("`import rag`", "import_rag")] + [
            (f"cold `rag ask` (reader {r}, RAG_READER_DTYPE={d})", f"rag_ask_{r}_{d}") for r, d in variants]:
        r = results[key]
        rows.append(f"| {label} | {r['median_s']:.2f} s | {', '.join(f'{x:.2f}' for x in r['runs_s'])} | "
                    f"{r['peak_rss_mb']} MB | {r['median_s'] / torch_s:.2f} |")
    more = ["| reader, dtype | warm ask() p50 | p95 | `rag serve` to first answer | first start on a fresh cache |",
            "|---|---|---|---|---|"]
    for reader, d in variants:
        r = results[f"rag_ask_{reader}_{d}"]
        more.append(f"| {reader}, {d} | {r['warm']['p50_ms']} ms | {r['warm']['p95_ms']} ms | "
                    f"{r['serve_to_first_answer_s']} s | {r['first_start_s']} s |")
    write_markdown(args.out, name, "Start-up and latency", " ".join(["eval/bench_startup.py", *(argv or sys.argv[1:])]), {
        "CPU": f"{c['name']}, {c['cores']} cores; {isa or 'no AVX2'}",
        "Cold start (fresh processes; seed index built, ONNX exports cached)": "\n".join(rows),
        "Warm latency (seed set), the web chat, and the first start (a fresh cache: the first setting also "
        "builds the seed index; a reader shipped as a change is rebuilt; each exports to ONNX)": "\n".join(more),
    })
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
