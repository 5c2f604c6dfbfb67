"""DDP training on two Gloo processes (torch.multiprocessing.spawn, torchrun's environment variables)."""

from __future__ import annotations

import copy
import faulthandler
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from cavga import distributed as dist
from cavga.config import ModelConfig, RunConfig
from cavga.demo_data import generate_demo_dataset
from cavga.errors import CavgaError
from cavga.networks import build_networks

WORLD = 2


def _tiny_cfg(root) -> RunConfig:
    cfg = RunConfig()
    cfg.data.root, cfg.data.category, cfg.data.image_size = str(root), "brick", 32
    cfg.model = ModelConfig(variant="Du", base_channels=8, latent_channels=8)
    cfg.train.epochs, cfg.train.batch_size, cfg.train.device = 1, 4, "cpu"
    return cfg


def _one_step(model, disc, x, cfg):
    """One train_step with plain SGD, in eval mode (z = mu, batch norm on its running statistics), so
    that each image's loss is independent of the others and half-batch gradients average exactly."""
    from cavga.step import train_step

    model.eval()
    disc.eval()
    opt_g = torch.optim.SGD([p for p in dist.unwrap(model).parameters()], lr=0.5)
    opt_d = torch.optim.SGD(dist.unwrap(disc).parameters(), lr=0.5)
    train_step(model, disc, opt_g, opt_d, x, torch.zeros(len(x), dtype=torch.long), cfg)


def _worker(rank: int, ports: tuple[int, ...], root: str, out: str) -> None:
    faulthandler.dump_traceback_later(600, exit=True)  # a hung collective fails the test, not CI's clock
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    import cavga.train as T

    cfg = _tiny_cfg(root)
    cfg.loss.w_ae = 1.0  # a large attention term: the Grad-CAM double backward matters in the gradient
    # 1. One DDP step on this rank's half of a batch against one single-process step on the whole batch.
    ctx = dist.init(torch.device("cpu"))
    torch.manual_seed(0)
    model, disc = build_networks(cfg.model, 32, allow_random_init=True)
    x = torch.rand(4, 3, 32, 32)  # (B, 3, S, S) the same batch on every rank
    ref_model, ref_disc = copy.deepcopy(model), copy.deepcopy(disc)
    _one_step(ref_model, ref_disc, x, cfg)  # the single-process reference (its peak all-reduce is symmetric)
    half = x[rank * 2 : rank * 2 + 2]  # (B / 2, 3, S, S)
    _one_step(dist.wrap(model, ctx), dist.wrap(disc, ctx), half, cfg)
    step = {
        "ddp": {**model.state_dict(), **{f"d.{k}": v for k, v in disc.state_dict().items()}},
        "ref": {**ref_model.state_dict(), **{f"d.{k}": v for k, v in ref_disc.state_dict().items()}},
    }
    # 1b. CAVGA-w where rank 1's shard holds anomalous images only: it still joins both all-reduces
    # (with zero gradients from its side), so nothing hangs and the ranks stay identical.
    from cavga.step import make_optimizers, train_step

    cfg_w = _tiny_cfg(root)
    cfg_w.model = ModelConfig(variant="Dw", base_channels=8, latent_channels=8)
    torch.manual_seed(0)
    model_w, disc_w = build_networks(cfg_w.model, 32, allow_random_init=True)
    opt_g, opt_d = make_optimizers(model_w, disc_w, cfg_w)
    labels = torch.full((2,), rank, dtype=torch.long)  # rank 0: normal, rank 1: anomalous
    train_step(dist.wrap(model_w, ctx), dist.wrap(disc_w, ctx), opt_g, opt_d, half, labels, cfg_w)
    step["w"] = {k: v.detach().clone() for k, v in [*model_w.named_parameters(), *disc_w.named_parameters()]}
    dist.close(ctx)

    # 2. A whole (tiny) run through cavga.train.train, which joins a group from the environment
    # (on a fresh port: re-using the first group's port races with its store's shutdown).
    os.environ["MASTER_PORT"] = str(ports[1])
    seen: dict = {"steps": 0}
    original = T.train_step

    def spy(model, disc, *args, **kwargs):
        seen["steps"] += 1
        seen["model"], seen["disc"] = dist.unwrap(model), dist.unwrap(disc)
        seen["wrapped"] = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        return original(model, disc, *args, **kwargs)

    T.train_step = spy
    run_dir = os.path.join(out, f"run{rank}")  # each rank its own --out: rank 1 must write nothing there
    # two restart candidates of one epoch (cavga.restarts), then the chosen one's second epoch: rank 1
    # reads no file of rank 0's, so it must receive the chosen start to stay identical to rank 0
    cfg.train.epochs, cfg.train.validate_every, cfg.train.restarts = 2, 1, 2
    T.train(cfg, run_dir, progress=False)
    state = {**seen["model"].state_dict(), **{f"d.{k}": v for k, v in seen["disc"].state_dict().items()}}
    steps = seen["steps"]

    # 3. train.patience on painted checks that would score differently on each rank (each rank's own
    # batch-norm statistics): rank 0's scores decide on every rank, so both train the same epochs.
    import cavga.epoch_choice as E

    checks = []

    def rank_dependent_check(*args, **kwargs):
        checks.append(1)
        return (0.5 + 0.1 * len(checks), 0.95) if rank == 0 else (0.9 - 0.1 * len(checks), 0.95)

    E.epoch_check = rank_dependent_check
    os.environ["MASTER_PORT"] = str(ports[2])
    seen["steps"] = 0
    cfg.train.epochs, cfg.train.restarts, cfg.train.patience = 3, 1, 1
    T.train(cfg, os.path.join(out, f"patience{rank}"), progress=False)
    patience_steps = seen["steps"]

    # 4. Ranks that see different runs (a multi-node --out on disks of their own) all stop, alike.
    os.environ["MASTER_PORT"] = str(ports[3])
    ctx = dist.init(torch.device("cpu"))
    try:
        dist.check_same_view("RUN", (None if rank == 0 else 3, "split"))
        view_error = ""
    except CavgaError as e:
        view_error = str(e)
    dist.close(ctx)
    # 5. A run interrupted after epoch 1 and resumed ends where the uninterrupted one does: rank 1's
    # reparameterisation noise too is what it would have drawn (CAVGA-Dw: the noise reaches C's loss).
    ends = {}
    for name, stops in (("whole", (2,)), ("resumed", (1, 2))):
        for i, epochs in enumerate(stops):
            os.environ["MASTER_PORT"] = str(ports[4 + len(ends) * 2 + i])
            cfg5 = copy.deepcopy(cfg_w)
            cfg5.train.epochs, cfg5.train.restarts, cfg5.train.validate_every = epochs, 1, 0
            cfg5.model.encoder_init = "dcgan"
            T.train(cfg5, os.path.join(out, name), resume=i > 0, progress=False)  # one folder, rank 0 writes
        ends[name] = {k: v.detach().clone() for k, v in seen["model"].state_dict().items()}
    resumed_same = all(torch.equal(ends["whole"][k], ends["resumed"][k]) for k in ends["whole"])
    torch.save(
        {"step": step, "params": state, "steps": steps, "wrapped": seen["wrapped"],
         "patience_steps": patience_steps, "checks": len(checks), "view_error": view_error,
         "resumed_same": resumed_same},
        os.path.join(out, f"rank{rank}.pt"),
    )  # fmt: skip
    faulthandler.cancel_dump_traceback_later()


def _free_ports(n: int) -> tuple[int, ...]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=2, n_test_defect=2, crop=32)
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_ports(8), str(root), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_a_ddp_step_on_half_batches_equals_one_step_on_the_whole_batch(ddp_run):
    _, ranks = ddp_run
    init_model, init_disc = _init_params()
    init = {**init_model, **{f"d.{k}": v for k, v in init_disc.items()}}
    for r in ranks:
        ddp, ref = r["step"]["ddp"], r["step"]["ref"]
        for k, p0 in init.items():
            if not p0.is_floating_point() or "running" in k:
                continue
            step_ddp, step_ref = ddp[k] - p0, ref[k] - p0  # -lr * gradient (SGD)
            err = float((step_ddp - step_ref).abs().max())
            assert err <= 1e-4 * float(step_ref.abs().max()) + 1e-9, (k, err)
    # and the step moved the encoder, the latent head, the decoder and D (else the equality would be empty)
    for k in ("encoder.body.1.0.weight", "to_mu.weight", "decoder.body.0.weight", "d.head.weight"):
        assert not torch.equal(ranks[0]["step"]["ddp"][k], init[k]), k


def _init_params():
    torch.manual_seed(0)
    model, disc = build_networks(ModelConfig(variant="Du", base_channels=8, latent_channels=8), 32, True)
    return model.state_dict(), disc.state_dict()


def test_a_rank_without_normal_images_still_steps_in_lockstep(ddp_run):
    _, ranks = ddp_run
    a, b = ranks[0]["step"]["w"], ranks[1]["step"]["w"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    torch.manual_seed(0)
    init, _ = build_networks(ModelConfig(variant="Dw", base_channels=8, latent_channels=8), 32, True)
    assert not torch.equal(a["decoder.body.0.weight"], init.state_dict()["decoder.body.0.weight"])


def test_both_ranks_step_and_stay_identical(ddp_run):
    _, ranks = ddp_run
    assert all(r["wrapped"] for r in ranks)
    # 10 training images (12 less the held-out normal), global batch 4 -> 2 per rank: 2 steps an epoch,
    # one epoch of each of two candidates and the chosen one's second epoch
    assert [r["steps"] for r in ranks] == [6, 6]
    a, b = ranks[0]["params"], ranks[1]["params"]
    assert a.keys() == b.keys()
    # Parameters and the attention scale (averaged over ranks) are identical. Batch-norm running
    # statistics are rank 0's at each forward (DDP broadcasts them) and drift by the last step's
    # local update; only rank 0's are saved.
    for k in a:
        if "running_" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k
    assert float(a["cam_scale"]) > 0


def test_rank_0_alone_writes_the_run_folder(ddp_run):
    out, ranks = ddp_run
    run0 = out / "run0"
    for name in ("config.yaml", "split.json", "history.jsonl", "checkpoint.pt"):
        assert (run0 / name).is_file(), name
    assert not (out / "run1").exists()
    state = torch.load(run0 / "checkpoint.pt", weights_only=True)
    assert state["normalizer"] is not None and state["epoch"] == 2 and len(state["restarts"]["scores"]) == 2
    assert (run0 / "restarts" / "seed0" / "checkpoint.pt").is_file()  # the candidates' folders: rank 0's too
    for k, v in state.get("last_model", state["model"]).items():  # the last epoch's, whichever was chosen
        assert torch.equal(v, ranks[0]["params"][k]), k


def test_the_ranks_stop_alike_on_rank_0s_painted_checks(ddp_run):
    """Rank 1's own checks would have stopped it after epoch 2 (patience 1) while rank 0 trained on,
    leaving the two in mismatched collectives; rank 0 alone checks, and both train all 3 epochs."""
    out, ranks = ddp_run
    assert [r["checks"] for r in ranks] == [3, 0]
    assert [r["patience_steps"] for r in ranks] == [6, 6]  # 3 epochs of 2 steps
    assert torch.load(out / "patience0" / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_ranks_that_see_different_runs_all_stop_with_one_line(ddp_run):
    _, ranks = ddp_run
    for r in ranks:
        assert "rank 0: no checkpoint, rank 1: epoch 3" in r["view_error"]
        assert "a filesystem every node shares" in r["view_error"]


def test_a_resumed_ddp_run_ends_where_the_uninterrupted_one_does(ddp_run):
    _, ranks = ddp_run
    assert all(r["resumed_same"] for r in ranks)


def test_every_rank_needs_an_image_and_the_global_batch_must_split_evenly():
    with pytest.raises(CavgaError, match="1 training image\\(s\\) for 2 processes"):
        dist.check_shards(1, 4, dist.Context(rank=0, world_size=2))
    dist.check_shards(2, 4, dist.Context(rank=0, world_size=2))


def test_the_global_batch_must_split_evenly():
    ctx = dist.Context(rank=0, world_size=3)
    with pytest.raises(CavgaError, match="not divisible by the 3 processes"):
        dist.shard_loader(list(range(12)), 4, 0, 0, 0, ctx)


def test_shards_are_disjoint_and_reshuffle_by_epoch():
    data = list(range(10))

    def order(rank: int, epoch: int) -> list[int]:
        return list(dist.shard_loader(data, 4, 0, 7, epoch, dist.Context(rank=rank, world_size=2)).sampler)

    a, b = order(0, 3), order(1, 3)
    assert not set(a) & set(b) and len(a) == len(b) == 5
    assert order(0, 3) == a and order(0, 4) != a  # deterministic, and set_epoch reshuffles


def test_under_torchrun_only_one_cavga_training_runs(monkeypatch, tmp_path, capsys):
    """Commands that would run whole on every rank (evaluate, demo, benchmark, a category sweep, a
    baseline's fit) are refused under torchrun before any work, in one line; ranks above 0 say who they are."""
    from cavga.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    for argv in (["evaluate", str(tmp_path)], ["demo", "--out", str(tmp_path / "d")],
                 ["train", "--data", str(tmp_path), "--category", "all", "--out", str(tmp_path / "all")]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("cavga: error (rank 1): cavga ") and "under torchrun only `cavga train`" in err, err
    root = tmp_path / "data"
    generate_demo_dataset(root, seed=0, n_train=4, n_test_good=1, n_test_defect=1, crop=32)
    argv = ["train", "--data", str(root), "--category", "brick", "--model", "AE-L2", "--out", str(tmp_path / "ae"),
            "--image-size", "32", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "AE-L2 trains in one process" in capsys.readouterr().err
    assert not (tmp_path / "ae").exists()


def test_the_running_scales_peak_adds_up_over_shards_of_unequal_normal_counts():
    """cam_peak over a whole batch equals the one computed from its shards' summed parts, also where
    one shard holds three normal images and the other none (the mean of the shards' peaks does not)."""
    from cavga.attention import cam_peak, cam_peak_parts, peak_from_parts

    cam = torch.arange(1.0, 7.0).view(6, 1, 1, 1) * torch.ones(6, 1, 2, 2)  # (B, 1, h, w), peaks 1 ... 6
    normal = torch.tensor([True, True, True, False, False, False])
    whole = cam_peak(cam, normal)  # 2.0: the normal images' mean peak
    halves = [cam_peak_parts(cam[:3], normal[:3]), cam_peak_parts(cam[3:], normal[3:])]
    assert float(peak_from_parts(halves[0] + halves[1])) == float(whole) == 2.0
    assert float((cam_peak(cam[:3], normal[:3]) + cam_peak(cam[3:], normal[3:])) / 2) != 2.0  # the old mean
    none = torch.zeros(6, dtype=torch.bool)
    assert float(peak_from_parts(cam_peak_parts(cam, none))) == float(cam_peak(cam, none)) == 3.5


@pytest.mark.parametrize("rank", ["0", "1"])
def test_warnings_are_said_by_rank_0_alone(rank, monkeypatch, tmp_path, capsys):
    """Under torchrun every rank meets the same warnings; rank 0 says them once (errors name their rank)."""
    import warnings

    import cavga.cli as cli
    import cavga.train

    said = "data.category 'foo': the folder layout has no categories; ignored"

    def train(cfg, run_dir, **kwargs):
        warnings.warn(said, stacklevel=1)
        return run_dir / "checkpoint.pt"

    monkeypatch.setenv("RANK", rank)  # a rank of torchrun's, faked (the training is stubbed: no group is joined)
    monkeypatch.setattr(cavga.train, "train", train)
    argv = ["train", "--data", str(tmp_path), "--layout", "folder", "--category", "foo", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--no-check"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("cavga: warning:")]
    assert warned == ([f"cavga: warning: {said}"] if rank == "0" else [])


_GLOO_PEER_GONE = "[../third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:4242"


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_rank_whose_peer_stopped_says_one_line_and_other_errors_keep_their_traceback(rank, monkeypatch, capsys):
    """Rank 0 stopped on an error of its own: the other ranks fail in a collective with the backend's
    RuntimeError, said as one line naming the rank; rank 0's own failures and other RuntimeErrors
    (bugs) keep their tracebacks."""
    import cavga.cli as cli

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for message in (_GLOO_PEER_GONE, "mat1 and mat2 shapes cannot be multiplied"):

        def fail(args, message=message):
            raise RuntimeError(message)

        monkeypatch.setattr(cli, "dispatch", fail)
        if rank == "1" and message == _GLOO_PEER_GONE:
            assert cli.main(["report", "RUN"]) == 2
            assert capsys.readouterr().err == (
                "cavga: error (rank 1): another rank stopped (rank 0's own error, if it had one, is above); "
                "this rank stops too\n"
            )
        else:
            with pytest.raises(RuntimeError, match=message[:20].replace("[", r"\[")):
                cli.main(["report", "RUN"])


def _cli_worker(rank: int, port: int, argv: list[str], out: str) -> None:
    """One rank of torchrun, faked: ``cavga`` with ``argv``; its exit status and stderr to ``out``."""
    import contextlib
    import io

    faulthandler.dump_traceback_later(300, exit=True)
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    from cavga.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 - what the test is about: reported, not raised
            code = f"raised {type(e).__name__}: {e}"
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(f"{code}\n{err.getvalue()}")
    faulthandler.cancel_dump_traceback_later()


def test_when_rank_0_alone_stops_every_rank_says_one_line(tmp_path):
    """A run folder another process holds: rank 0 alone locks it and stops with its one line; rank 1,
    waiting in the first collective, stops with one line too (not Gloo's traceback)."""
    from cavga.runlock import RunLock

    root = tmp_path / "data"
    generate_demo_dataset(root, seed=0, n_train=12, n_test_good=2, n_test_defect=2, crop=32)
    run = tmp_path / "run"
    argv = ["train", "--data", str(root), "--layout", "mvtec", "--category", "brick", "--model", "Du"]
    argv += ["--out", str(run), "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--device", "cpu"]
    argv += ["--no-progress", "--encoder-init", "dcgan", "--restarts", "1", "--set", "model.base_channels=8"]
    with RunLock(run, "train"):  # held by this process, alive: the ranks' train must be refused
        mp.spawn(_cli_worker, args=(_free_ports(1)[0], argv, str(tmp_path)), nprocs=WORLD, join=True)
    said = {r: (tmp_path / f"rank{r}.txt").read_text().splitlines() for r in range(WORLD)}
    assert said[0][0] == "2" and len(said[0]) == 2 and said[0][1].startswith(f"cavga: error: {run}: in use by pid")
    peer = "another rank stopped (rank 0's own error, if it had one, is above); this rank stops too"
    assert said[1] == ["2", f"cavga: error (rank 1): {peer}"]
