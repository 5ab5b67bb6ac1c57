"""Non-finite losses or gradients: skipped and counted, then rollbacks with a lower learning rate, then a
clear error. NaNs are injected through the L1 loss, which runs once per iteration."""

import csv

import pytest
import torch

import sagan_restore.train as train_module
from sagan_restore import checkpoint
from sagan_restore.cli import main

from robust_helpers import TINY, clean_folder, one_torch_thread  # noqa: F401 (fixture)


def inject(monkeypatch, *, nan_loss=(), nan_grad=(), nan_from=None):
    """Make the pixel loss of the given iterations (counted from 1, replays included) non-finite."""
    real_loss = train_module.pixel_loss
    calls = []

    def l1(output, target, kind):
        calls.append(1)
        n = len(calls)
        loss = real_loss(output, target, kind)
        if n in nan_loss or (nan_from is not None and n >= nan_from):
            return loss * float("nan")
        if n in nan_grad:  # a finite loss whose gradient is NaN: d sqrt(|u|)/du at u = 0 is 0 * inf
            return loss + 0 * torch.sqrt((output - output.detach()).abs()).sum()
        return loss

    monkeypatch.setattr(train_module, "pixel_loss", l1)


def log_rows(run):
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_args(tmp_path, *extra):
    data = clean_folder(tmp_path / "clean")
    return ["train", "--clean", str(data), "--out", str(tmp_path / "run"), "--log-every", "1",
            "--sample-every", "1000", "--lr", "2e-4", *TINY, *extra]


def test_isolated_nonfinite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    inject(monkeypatch, nan_loss={3}, nan_grad={7})
    g_changed = []
    real_train_step = train_module.train_step

    def train_step(nets, *args, **kwargs):
        before = [p.detach().clone() for p in nets.generator.parameters()]
        result = real_train_step(nets, *args, **kwargs)
        g_changed.append(any(not torch.equal(a, p) for a, p in zip(before, nets.generator.parameters())))
        return result

    monkeypatch.setattr(train_module, "train_step", train_step)
    with pytest.warns(UserWarning, match="2 step"):
        assert main(run_args(tmp_path, "--iters", "10", "--save-every", "100")) == 0
    assert g_changed == [True, True, False, True, True, True, False, True, True, True]
    rows = log_rows(tmp_path / "run")
    assert [int(r["skipped"]) for r in rows] == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert rows[2]["g_l1"] == "nan" and rows[6]["g_l1"] != "nan"  # step 7: finite loss, NaN gradient
    state = checkpoint.TrainingState.load(checkpoint.checkpoint_path(tmp_path / "run", 10))
    assert state.health["skipped"] == 2 and state.health["rollbacks"] == 0
    assert all(torch.isfinite(v).all() for v in state.generator.values())


def test_a_run_of_nonfinite_steps_rolls_back_with_a_lower_learning_rate(tmp_path, monkeypatch):
    inject(monkeypatch, nan_loss=set(range(8, 13)))  # steps 8-12: five in a row
    with pytest.warns(UserWarning) as caught:
        assert main(run_args(tmp_path, "--iters", "14", "--save-every", "5")) == 0
    messages = [str(w.message) for w in caught]
    assert any("steps 8-12" in m and "rolled back to step 5" in m and "0.0001" in m for m in messages)
    run = tmp_path / "run"
    rows = log_rows(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 15))  # the replayed steps replaced the bad ones
    assert [float(r["lr"]) for r in rows] == [2e-4] * 5 + [1e-4] * 9
    state = checkpoint.TrainingState.load(checkpoint.checkpoint_path(run, 14))
    assert state.health == {"skipped": 5, "streak": 0, "rollbacks": 1, "lr_scale": 0.5}
    assert state.opt_g["param_groups"][0]["lr"] == pytest.approx(1e-4)

    monkeypatch.undo()  # a resumed run keeps the lowered rate and its count
    with pytest.warns(UserWarning, match="5 step"):
        assert main(["train", "--resume", str(run), "--iters", "16", "--no-progress"]) == 0
    state = checkpoint.TrainingState.load(checkpoint.checkpoint_path(run, 16))
    assert state.opt_d["param_groups"][0]["lr"] == pytest.approx(1e-4)


def test_repeated_rollbacks_stop_with_a_clear_error(tmp_path, monkeypatch, capsys):
    inject(monkeypatch, nan_from=3)  # diverged for good: nothing saved yet, so back to the initial weights
    with pytest.warns(UserWarning, match="rolled back to step 0"):
        code = main(run_args(tmp_path, "--iters", "100", "--save-every", "50"))
    err = capsys.readouterr().err
    assert code == 2 and "training diverged" in err and "--lr" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
