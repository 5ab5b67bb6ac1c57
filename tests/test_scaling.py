"""Training that scales: torchrun DDP matches one process, survives a change in the number of processes and
keeps its replicas identical; accumulation, EMA, channels-last, workers, the image cache, bf16 and
TensorBoard change speed and bookkeeping, not the result."""

import csv
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import sagan_restore.train as train_module
from sagan_restore import checkpoint, distributed
from sagan_restore.infer.loading import load_model
from sagan_restore.cli import main
from sagan_restore.data.datasets import ImageSource
from sagan_restore.models.discriminator import PatchDiscriminator

from robust_helpers import TINY, child_env, clean_folder, one_torch_thread  # noqa: F401 (fixture)


def common_args(data, *extra):
    # float32: with bf16 (auto, on CPUs that have it) how a batch is split changes the rounding, and these
    # tests compare runs to 1e-6.
    return ["--clean", str(data), "--save-every", "2", "--log-every", "1", "--sample-every", "1000",
            "--device", "cpu", "--precision", "fp32", *TINY, *extra]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "sagan_restore", *args]
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)


def state_at(run, step):
    return checkpoint.TrainingState.load(checkpoint.checkpoint_path(run, step))


def discriminator_outputs(state) -> torch.Tensor:
    d = PatchDiscriminator(6, width=8)
    d.load_state_dict(state.discriminator)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return d(x, y)


def assert_same_training(a: dict, b: dict, *, atol: float) -> None:
    """Same G and the same D function. (D's convolution biases in front of instance norm are left out:
    the norm subtracts them, so their true gradient is zero and Adam turns round-off into steps of the
    learning rate's size; they change no output.)"""
    for name in a.generator:
        assert torch.allclose(a.generator[name], b.generator[name], atol=atol), name
    assert torch.allclose(discriminator_outputs(a), discriminator_outputs(b), atol=10 * atol)
    assert a.opt_g["state"].keys() == b.opt_g["state"].keys()


def log_steps(run) -> list[int]:
    with open(run / "log.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_torchrun_two_processes_match_one_and_resume_across_process_counts(tmp_path):
    data = clean_folder(tmp_path / "clean")
    two, one = tmp_path / "two", tmp_path / "one"
    ran = torchrun("train", "--out", str(two), "--iters", "4", *common_args(data))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.count("finished:") == 1  # rank 0 speaks for the job
    assert main(["train", "--out", str(one), "--iters", "4", *common_args(data)]) == 0

    # The replicas agreed at every save (train checks it and raises otherwise); the files were written once.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert log_steps(two) == [1, 2, 3, 4]
    assert [p.name for p in checkpoint.list_checkpoints(two)] == ["step_0000002.pt", "step_0000004.pt"]
    assert_same_training(state_at(two, 4), state_at(one, 4), atol=1e-6)

    # Resume each run with the other number of processes: they still agree.
    assert main(["train", "--resume", str(two), "--iters", "6", "--no-progress"]) == 0
    ran = torchrun("train", "--resume", str(one), "--iters", "6", "--no-progress")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert log_steps(two) == log_steps(one) == [1, 2, 3, 4, 5, 6]
    assert_same_training(state_at(two, 6), state_at(one, 6), atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, job: str, args: list, results) -> None:
    """One process of a 2-process job started by the tests below, the way torchrun would start it."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        if job == "diverge":
            with distributed.session(torch.device("cpu")):
                distributed.check_same_everywhere(torch.tensor([1.0, float(rank)]), what="a test value")
        else:
            if rank == 1:  # only this process sees non-finite losses, at iterations 3 and 4
                real_loss, calls = train_module.pixel_loss, []

                def l1(output, target, kind):
                    calls.append(1)
                    loss = real_loss(output, target, kind)
                    return loss * float("nan") if len(calls) in (3, 4) else loss

                train_module.pixel_loss = l1
            main(args)
        results.put((rank, "ok"))
    except Exception as err:  # reported to the test, which runs in the parent
        results.put((rank, f"{type(err).__name__}: {err}"))


def run_two_processes(job: str, args: list | None = None) -> dict[int, str]:
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_rank_main, args=(rank, port, job, args or [], results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert all(p.exitcode == 0 for p in procs), "a process hung or crashed"
    return dict(results.get(timeout=5) for _ in procs)


def test_replicas_that_differ_are_caught():
    outcome = run_two_processes("diverge")
    assert all(message.startswith("RuntimeError: processes disagree on a test value") for message in outcome.values())


def test_a_nan_in_one_process_makes_every_process_skip_that_step(tmp_path):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--iters", "6", *common_args(data)]
    assert run_two_processes("nan", args) == {0: "ok", 1: "ok"}  # no deadlock, replicas equal at each save
    state = state_at(run, 6)
    assert state.health["skipped"] == 2 and state.health["rollbacks"] == 0
    with open(run / "log.csv", newline="") as f:
        assert [int(r["skipped"]) for r in csv.DictReader(f)] == [0, 0, 1, 2, 2, 2]


def test_gradient_accumulation_matches_the_whole_batch(tmp_path):
    data = clean_folder(tmp_path / "clean")
    for name, extra in (("whole", []), ("accumulated", ["--accumulate", "2"])):
        assert main(["train", "--out", str(tmp_path / name), "--iters", "4", *common_args(data, *extra)]) == 0
    assert_same_training(state_at(tmp_path / "whole", 4), state_at(tmp_path / "accumulated", 4), atol=1e-6)


def test_layout_workers_and_cache_do_not_change_the_run(tmp_path):
    data = clean_folder(tmp_path / "clean")
    assert main(["train", "--out", str(tmp_path / "plain"), "--iters", "4", *common_args(data)]) == 0
    faster = ["--channels-last", "--workers", "2", "--cache-mb", "0"]
    assert main(["train", "--out", str(tmp_path / "faster"), "--iters", "4", *common_args(data, *faster)]) == 0
    assert_same_training(state_at(tmp_path / "plain", 4), state_at(tmp_path / "faster", 4), atol=1e-5)


def test_ema_weights_are_the_saved_model_and_follow_the_average(tmp_path):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--iters", "6", *common_args(data, "--ema", "0.9"), "--save-every", "1",
            "--keep", "10"]
    assert main(args) == 0
    before, after = state_at(run, 5), state_at(run, 6)
    decay = min(0.9, (1 + 6) / (10 + 6))  # with its warm-up
    for name, trained in after.generator.items():
        expected = before.ema[name] + (1 - decay) * (trained - before.ema[name])
        assert torch.allclose(after.ema[name], expected, atol=1e-7), name
    assert not torch.equal(after.ema["head.weight"], after.generator["head.weight"])
    saved, info = checkpoint.load_generator(run / "generator.safetensors")
    assert info["ema"] == 0.9
    for name, value in saved.state_dict().items():
        assert torch.equal(value, after.ema[name]), name
    from_checkpoint, _ = load_model(checkpoint.checkpoint_path(run, 6))
    assert torch.equal(from_checkpoint.state_dict()["head.weight"], after.ema["head.weight"])


def test_bf16_autocast_trains_on_cpu(tmp_path):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--iters", "4", *common_args(data, "--precision", "bf16")]) == 0
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isfinite(float(r["g_l1"])) for r in rows) and rows[-1]["skipped"] == "0"
    full = tmp_path / "fp32"
    assert main(["train", "--out", str(full), "--iters", "4", *common_args(data, "--precision", "fp32")]) == 0
    with open(full / "log.csv", newline="") as f:
        first_fp32 = float(next(csv.DictReader(f))["g_l1"])
    assert float(rows[0]["g_l1"]) == pytest.approx(first_fp32, rel=0.02)  # bf16 has 8 bits of mantissa
    assert float(rows[0]["g_l1"]) != first_fp32


def test_tensorboard_gets_the_logged_numbers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--iters", "3", *common_args(data, "--tensorboard")]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    with open(run / "log.csv", newline="") as f:
        logged = [float(r["g_l1"]) for r in csv.DictReader(f)]
    assert [e.step for e in events.Scalars("g_l1")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("g_l1")] == pytest.approx(logged, rel=1e-5)
    assert "images_per_s" in events.Tags()["scalars"]


def test_the_global_batch_must_split_evenly(tmp_path, capsys):
    data = clean_folder(tmp_path / "clean")
    assert main(["train", "--out", str(tmp_path / "run"), "--iters", "2", *common_args(data, "--accumulate", "3")]) == 2
    assert "--batch 4 is the global batch" in capsys.readouterr().err


def test_image_cache_keeps_what_fits_its_budget():
    loads = []

    def loader(k):
        def load():
            loads.append(k)
            return np.zeros((10, 10, 3), np.float32)  # 1200 bytes
        return load

    source = ImageSource([loader(k) for k in range(3)], ["a", "b", "c"], cache_bytes=2500)
    for _ in range(2):
        for k in range(3):
            source.get(k)
    assert loads == [0, 1, 2, 2]  # two fit; the third is decoded at each use
