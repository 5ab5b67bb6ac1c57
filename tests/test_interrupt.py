"""Interrupted training loses at most the steps since the last checkpoint, and never a file."""

import csv
import errno
import os
import signal
import time

import numpy as np
import pytest
import torch

from sagan_restore import checkpoint
from sagan_restore.cli import main

from robust_helpers import TINY, clean_folder, one_torch_thread, start_cli  # noqa: F401 (fixture)

LOSSES = ("g_total", "g_l1", "g_adv", "d_real", "d_fake")


def log_rows(run) -> dict[int, dict]:
    """Complete rows of log.csv by step (a kill can cut the last one short)."""
    path = run / "log.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if None not in r.values() and r["step"].isdigit()]
    return {int(r["step"]): r for r in rows}


def checkpoint_steps(run) -> list[int]:
    return [checkpoint.checkpoint_step(p) for p in checkpoint.list_checkpoints(run)]


def partial_files(run) -> list[str]:
    return [p.name for p in run.rglob(".*") if p.is_file()]


def wait_until(condition, proc, *, timeout=60.0, poll=0.005):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"training ended early:\n{proc.communicate()[1]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


def saving_now(run) -> bool:
    folder = run / "checkpoints"
    return folder.is_dir() and any(name.startswith(".step_") for name in os.listdir(folder))


def test_sigkill_at_random_moments_then_resume_ends_in_the_uninterrupted_state(tmp_path):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    iters = 40
    first = ["train", "--clean", str(data), "--out", str(run), "--iters", str(iters), "--save-every", "2",
             "--log-every", "1", "--sample-every", "1000", *TINY]
    resume = ["train", "--resume", str(run), "--no-progress"]
    rng = np.random.default_rng(7)
    first_seen: dict[int, dict] = {}  # the losses each step had the first time any process logged it
    killed_mid_save = 0
    for round_ in range(4):
        proc = start_cli(*(first if round_ == 0 else resume))
        start = max(checkpoint_steps(run), default=0)
        if round_ % 2:  # the moment a checkpoint is being written
            wait_until(lambda: saving_now(run), proc, poll=0.0002)
        else:  # a random moment a few steps past the resume point
            target = start + int(rng.integers(2, 9))
            wait_until(lambda: max(log_rows(run), default=0) >= target, proc)
            time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.communicate()
        killed_mid_save += bool(partial_files(run))
        for path in checkpoint.list_checkpoints(run):
            checkpoint.TrainingState.load(path)  # raises if any checkpoint is damaged
        for step, row in log_rows(run).items():
            first_seen.setdefault(step, row)
    assert killed_mid_save >= 1, "no kill landed inside a checkpoint write"

    finished = start_cli(*resume)
    _, err = finished.communicate(timeout=120)
    assert finished.returncode == 0, err
    assert partial_files(run) == []  # the temporary files of killed writes are gone
    assert checkpoint_steps(run)[-1] == iters and len(checkpoint_steps(run)) <= 3
    final = log_rows(run)
    assert sorted(final) == list(range(1, iters + 1))
    # Every step a killed process had already logged was replayed to the same losses after the resume.
    replayed = [s for s in first_seen if s <= iters]
    assert len(replayed) > 10
    for step in replayed:
        for key in LOSSES:
            assert float(final[step][key]) == pytest.approx(float(first_seen[step][key]), rel=1e-5), (step, key)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    proc = start_cli("train", "--clean", str(data), "--out", str(run), "--iters", "500", "--save-every", "400",
                     "--log-every", "1", "--sample-every", "1000", *TINY)
    wait_until(lambda: len(log_rows(run)) >= 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    assert f"resume with: sagan-restore train --resume {run}" in err and "Traceback" not in err
    saved = checkpoint_steps(run)
    assert saved and saved[-1] == max(log_rows(run))  # the step it stopped after, not an older one
    assert main(["train", "--resume", str(run), "--iters", str(saved[-1] + 2), "--no-progress"]) == 0
    assert checkpoint_steps(run)[-1] == saved[-1] + 2


def tiny_run(tmp_path, *extra, iters=6):
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    args = ["train", "--clean", str(data), "--out", str(run), "--iters", str(iters), "--save-every", "2",
            "--log-every", "1", "--sample-every", "1000", *TINY, *extra]
    assert main(args) == 0
    return run


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    run = tiny_run(tmp_path, "--keep", "2", iters=10)
    assert checkpoint_steps(run) == [8, 10]


def test_resume_skips_a_damaged_checkpoint_with_a_warning(tmp_path, capsys):
    run = tiny_run(tmp_path)
    newest = checkpoint.checkpoint_path(run, 6)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a copy cut short
    (run / "checkpoints" / ".step_0000008.pt.x1y2z3").write_bytes(b"half a checkpoint")  # a killed save
    before = log_rows(run)
    with pytest.warns(UserWarning, match="step_0000006.pt"):
        assert main(["train", "--resume", str(run), "--iters", "8", "--no-progress"]) == 0
    assert partial_files(run) == []
    assert checkpoint_steps(run) == [4, 6, 8]  # step 6 was trained again from step 4 and saved whole
    after = log_rows(run)
    assert sorted(after) == list(range(1, 9))
    for step in (5, 6):
        assert after[step]["g_l1"] == before[step]["g_l1"]


def test_crafted_checkpoint_is_refused_on_resume(tmp_path, capsys):
    run = tiny_run(tmp_path, iters=2)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = checkpoint.TrainingState.load(checkpoint.checkpoint_path(run, 2))
    torch.save({**state.to_dict(), "generator": Payload()}, checkpoint.checkpoint_path(run, 2))
    with pytest.warns(UserWarning, match="refused to load"):
        assert main(["train", "--resume", str(run), "--iters", "3", "--no-progress"]) == 2
    assert not marker.exists()  # the payload never ran
    err = capsys.readouterr().err
    assert "none of its checkpoints loads" in err and "step_0000002.pt: refused to load" in err
    assert checkpoint_steps(run) == [2]  # nothing deleted, nothing trained


def test_resume_with_no_loadable_checkpoint_stops_and_keeps_the_run(tmp_path, capsys):
    """It used to start again at step 0, truncate log.csv and let pruning delete the new checkpoints."""
    run = tiny_run(tmp_path)
    for step in checkpoint_steps(run):
        path = checkpoint.checkpoint_path(run, step)
        path.write_bytes(path.read_bytes()[:100])
    before_log = (run / "log.csv").read_bytes()
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    with pytest.warns(UserWarning):
        assert main(["train", "--resume", str(run), "--iters", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "none of its checkpoints loads" in err and "Traceback" not in err
    assert all(f"step_000000{s}.pt" in err for s in (2, 4, 6))  # each file, with why
    assert (run / "log.csv").read_bytes() == before_log
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_a_bug_while_loading_a_checkpoint_is_not_mistaken_for_a_damaged_file(tmp_path, monkeypatch):
    from sagan_restore import train as train_module

    run = tiny_run(tmp_path)

    def buggy(nets, state):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(train_module, "load_state", buggy)
    with pytest.raises(KeyError, match="a bug of ours"):
        main(["train", "--resume", str(run), "--iters", "8", "--no-progress"])


def test_full_disk_during_a_checkpoint_leaves_the_previous_one_and_no_partial_file(tmp_path, monkeypatch, capsys):
    real_save = torch.save
    calls = []

    def save_until_the_disk_fills(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    data = clean_folder(tmp_path / "clean")
    run = tmp_path / "run"
    code = main(["train", "--clean", str(data), "--out", str(run), "--iters", "6", "--save-every", "2",
                 "--sample-every", "1000", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and f"--resume {run}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert checkpoint_steps(run) == [2] and partial_files(run) == []
    checkpoint.TrainingState.load(checkpoint.checkpoint_path(run, 2))
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert checkpoint_steps(run)[-1] == 6
