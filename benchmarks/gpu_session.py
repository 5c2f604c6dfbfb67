"""One prepared GPU call (issues 8 and 11): the CUDA tests, the speed benchmark, then bottle and MTD
trained at 256 px on the GPU, all within a wall-clock budget.

    python benchmarks/gpu_session.py --data DATA --weights LITE0.pth --out $OUT --budget 535

DATA holds ``mvtec/bottle`` and ``mtd`` (any size: the loader resizes). Phases, in order:
1. ``pytest -m gpu`` (the CUDA tests);
2. ``benchmarks/speed.py`` on CUDA alone (bf16 autocast, channels_last; the GPU's bf16 and fp32
   matmul peaks probed in the same run), so that no training shares the GPU with the timings;
3. the ``--runs`` of ``RUNS`` at once, once per ``--seeds`` seed (a seed given twice trains twice,
   to check repeatability, e.g. with ``--train-args "--set train.deterministic=true"``), each a
   plain ``cavga train`` (fp32, as on the CPU), then ``cavga evaluate`` and ``cavga validate``. A run still training at
   the deadline is stopped and finished from its last checkpoint (``--resume --epochs <last saved
   epoch>``: the end of training runs as usual), and its history says how many epochs it had.
Everything lands in OUT/results.tar.gz (run folders without checkpoints, speed JSON) and
OUT/session.log, re-packed after each phase so that a cut-off call still returns what finished.
``--smoke`` shrinks every phase for a CPU rehearsal of the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_TESTS = ["tests/test_speed.py", "tests/test_networks.py"]  # the files with @pytest.mark.gpu tests

# name: (data set arguments, model arguments, epochs). Du/Dw at the library defaults with the
# paper's schedule; Ru with the frozen EfficientNet-Lite0 encoder at the operating point issue 8
# chose on painted validation (stride 16, Grad-CAM of |mu|^2/2) and its 40-epoch schedule.
BOTTLE = ["--data", "{data}/mvtec", "--layout", "mvtec", "--category", "bottle"]
MTD = ["--data", "{data}/mtd", "--layout", "mtd"]
LITE0 = ["--backbone", "efficientnet_lite0", "--backbone-weights", "{weights}", "--freeze-encoder"]
LITE0 += ["--encoder-stride", "16", "--set", "model.attention_score=mu_energy"]
RUNS = {
    "bottle-Du": (BOTTLE, ["--model", "Du"], 100),
    "bottle-Dw": (BOTTLE, ["--model", "Dw"], 100),
    "bottle-Ru-lite0": (BOTTLE, ["--model", "Ru", *LITE0], 40),
    "bottle-Rw-lite0": (BOTTLE, ["--model", "Rw", *LITE0], 40),
    "mtd-Du": (MTD, ["--model", "Du"], 100),
    "mtd-Ru-lite0-pad": (MTD, ["--model", "Ru", "--resize", "pad", *LITE0], 40),
}


def log(out: Path, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(out / "session.log", "a") as f:
        f.write(line + "\n")


def pack(out: Path, work: Path) -> None:
    """OUT/results.tar.gz: everything under ``work`` except checkpoints and the image folders."""
    skip = ("checkpoint", ".pt", "/maps", "/overlays", "/report")
    tmp = out / "results.tar.gz.part"
    with tarfile.open(tmp, "w:gz") as tar:
        for p in sorted(work.rglob("*")):
            if p.is_file() and not any(s in str(p) for s in skip):
                tar.add(p, arcname=str(p.relative_to(work)))
    tmp.replace(out / "results.tar.gz")


def last_saved_epoch(run: Path) -> int:
    """Epochs recorded in the run's history (one JSON line per finished epoch), 0 if none."""
    hist = run / "history.jsonl"
    return sum(1 for line in hist.read_text().splitlines() if line.strip()) if hist.exists() else 0


def cavga(*args: str) -> list[str]:
    return [sys.executable, "-m", "cavga", *args]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True, help="EfficientNet-Lite0 ImageNet state dict")
    p.add_argument("--out", required=True)
    p.add_argument("--budget", type=float, default=520.0, help="seconds for the whole script")
    p.add_argument("--work", default="/tmp/cavga-gpu-work", help="run folders and logs (not under OUT)")
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--runs", default="bottle-Du,bottle-Dw,bottle-Ru-lite0,mtd-Du,mtd-Ru-lite0-pad", help="names in RUNS"
    )
    p.add_argument("--seeds", default="0", help="comma list; each run once per seed (folder NAME-seedS)")
    p.add_argument("--speed", default=None, help="speed.py arguments instead of the default grid ('' skips it)")
    p.add_argument(
        "--train-args",
        default="",
        help="more `cavga train` arguments for every run, e.g. '--set train.deterministic=true'",
    )
    p.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    p.add_argument("--smoke", action="store_true", help="tiny settings, to rehearse the script on a CPU")
    a = p.parse_args(argv)
    names = [n for n in a.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"--runs: unknown {unknown}; choose from {', '.join(RUNS)}")
    t0 = time.monotonic()
    out = Path(a.out).resolve()
    work = Path(a.work).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")

    def left() -> float:
        return a.budget - (time.monotonic() - t0)

    def run(cmd: list[str], limit: float, logfile: Path) -> int:
        log(out, f"$ {' '.join(cmd)}  (limit {limit:.0f} s)")
        with open(logfile, "w") as f:
            try:
                done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=limit)
                return done.returncode
            except subprocess.TimeoutExpired:
                return 124

    probe = "import torch as t; c = t.cuda.is_available(); print(t.__version__, c, c and t.cuda.get_device_name())"
    run([sys.executable, "-c", probe], 60, work / "torch.txt")
    log(out, (work / "torch.txt").read_text().strip())
    subprocess.run("nvidia-smi > " + str(work / "nvidia-smi.txt") + " 2>&1", shell=True)

    # 1. CUDA tests
    if not (a.smoke or a.no_tests):
        pytest = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TESTS]
        rc = run(pytest, 90, work / "pytest-gpu.txt")
        log(out, f"pytest -m gpu: rc {rc}; {(work / 'pytest-gpu.txt').read_text().strip().splitlines()[-1:]}")

    # 2. speed, alone on the GPU
    speed = [sys.executable, "benchmarks/speed.py", "--devices", a.device.split(":")[0], "--out", str(work / "speed")]
    if a.speed is not None:
        speed += a.speed.split()
    elif a.smoke:
        speed += ["--variants", "Du", "--sizes", "32", "--batch", "2", "--warmup", "1", "--steps", "1", "--no-sweep"]
    else:
        speed += ["--variants", "Du,Ru,Dw,Rw", "--sizes", "128,256", "--batch", "16", "--warmup", "3", "--steps", "8"]
        speed += ["--sweep-sizes", "128,256,512", "--sweep-batches", "16,64,256"]
    if a.speed != "":
        rc = run(
            [*speed, "--name", f"gpu-h200-{time.strftime('%H%M%S')}"],
            max(min(130.0, left() - 300), 30),
            work / "speed.txt",
        )
        log(out, f"speed: rc {rc}")
    pack(out, work)

    # 3. the training runs, all at once; each then evaluated and validated
    fill = {"data": str(Path(a.data).resolve()), "weights": str(Path(a.weights).resolve())}
    finish_reserve = 100.0  # seconds kept for finishing a cut-off run, evaluating and validating

    def one(name: str, seed: str, copy: int, data: list[str], model: list[str], epochs: int) -> None:
        run_dir = work / "runs" / (f"{name}-seed{seed}" + (f"-{copy}" if copy else ""))
        name = run_dir.name
        size, epochs = ("32", 8) if a.smoke else ("256", epochs)
        cmd = cavga("train", *[s.format(**fill) for s in (*data, *model)], "--image-size", size)
        cmd += ["--epochs", str(epochs), "--device", a.device, "--out", str(run_dir), "--no-progress", "--seed", seed]
        cmd += ["--no-check"]  # validated after evaluate (below), so a run short of time has its test numbers first
        every = "1" if a.smoke else "5"
        cmd += ["--set", f"train.checkpoint_every={every}", *a.train_args.split()]
        rc = run(cmd, left() - finish_reserve, work / f"train-{name}.txt")
        if rc == 124:
            done = last_saved_epoch(run_dir)
            log(out, f"{name}: stopped at the deadline after {done} epochs; finishing from the last checkpoint")
            finish = cavga("train", "--out", str(run_dir), "--resume", "--epochs", str(max(done, 1)), "--no-progress")
            finish += ["--no-check"]
            rc = run(finish + ["--device", a.device], left() - 60, work / f"finish-{name}.txt")
        log(out, f"{name}: train rc {rc}, {last_saved_epoch(run_dir)} epochs")
        evaluate = cavga("evaluate", str(run_dir), "--device", a.device, "--no-progress")
        rc = run(evaluate, left() - 20, work / f"eval-{name}.txt")
        if (run_dir / "metrics.json").exists():
            m = json.loads((run_dir / "metrics.json").read_text())
            log(out, f"{name}: evaluate rc {rc}; test {json.dumps(m.get('metrics', {}))[:300]}")
            rc = run(cavga("validate", str(run_dir), "--device", a.device), left() - 5, work / f"validate-{name}.txt")
            log(out, f"{name}: validate rc {rc}")

    pairs = [(n, s) for n in names for s in a.seeds.split(",")]
    # a seed given twice ("--seeds 0,0") trains twice, into NAME-seed0 and NAME-seed0-1 (repeatability)
    copies = [pairs[:i].count(pair) for i, pair in enumerate(pairs)]
    threads = [threading.Thread(target=one, args=(n, s, c, *RUNS[n])) for (n, s), c in zip(pairs, copies, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pack(out, work)
    log(out, f"done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
