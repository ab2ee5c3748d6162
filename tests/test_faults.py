"""What users and the world do to a training run: a learning rate that diverges, two processes on one run folder,
a run or dataset that moved, a full disk, a stop signal halfway through an epoch, a bad ``--set`` value, files
that disappear during a run."""

from __future__ import annotations

import builtins
import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from interrupts import ctrl_c_at_step
from synthetic import make_dataset, tiny_config
from tiny_runs import train_tiny_run

from simpsons_classifier import cli
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.data.scan import scan_dataset
from simpsons_classifier.evaluation import EvalResult
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import checkpoint, distributed, trainer
from simpsons_classifier.training.curves import read_metrics
from simpsons_classifier.training.divergence import MAX_NON_FINITE_IN_A_ROW, TrainingDiverged
from simpsons_classifier.run_lock import hold_run
from simpsons_classifier.training.state import TrainingState


def _cli(capsys, *args: str) -> tuple[int, str]:
    """Exit status and stderr of ``simpsons ARGS`` run in this process."""
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def _error_line(stderr: str) -> str:
    """The one ``error:`` line of a command that failed as a user's mistake (progress bars aside), no traceback."""
    assert "Traceback" not in stderr
    (line,) = [line for line in re.split(r"[\r\n]+", stderr) if line.startswith("error:")]
    return line


def _config_file(path: Path, **overrides) -> Path:
    tiny_config(**overrides).save(path)
    return path


# --- a diverging run -------------------------------------------------------------------------------------------

def test_a_diverging_run_stops_with_the_cause_and_saves_no_best_checkpoint(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    config = _config_file(tmp_path / "lr.yaml", epochs=2, batch_size=2, lr=1e12)
    code, stderr = _cli(capsys, "train", "--data", data, "--out", tmp_path / "run", "--config", config)
    assert code == 2
    line = _error_line(stderr)
    assert "diverged in epoch 1/2" in line and "learning rate" in line and "lr 1e+12" in line
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "report.html").exists()


def _tiny_state(classes: int = 3) -> TrainingState:
    ctx = distributed.Context(rank=0, world_size=1, device=torch.device("cpu"))
    torch.manual_seed(0)
    state = TrainingState.create(tiny_config(), classes, ctx, "none", steps_per_epoch=10)
    state.train_stages(("head", "last_stage"))
    state.net.train()
    return state


def test_a_non_finite_step_is_skipped_with_weights_and_norm_statistics_as_they_were():
    state = _tiny_state()
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    images, targets = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    images[0, 0, 0, 0] = float("nan")
    assert trainer.train_step(state, images, targets, tiny_config()) is None
    for key, value in state.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert trainer.train_step(state, images.nan_to_num(), targets, tiny_config()) is not None  # the next one steps
    assert any(not torch.equal(v, before[k]) for k, v in state.model.state_dict().items())


def test_non_finite_steps_in_a_row_stop_the_run_naming_the_step():
    state = _tiny_state()
    bad = [(torch.full((2, 3, 32, 32), float("inf")), torch.tensor([0, 1]))] * 10
    with pytest.raises(TrainingDiverged, match=rf"epoch 1/2 at step {MAX_NON_FINITE_IN_A_ROW + 1} of 10.*--set lr"):
        trainer.train_one_epoch(state, bad, 0, tiny_config(), steps=10)


# --- one writer per run folder ---------------------------------------------------------------------------------

HOLD = """
import sys, time
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.run_lock import hold_run
with hold_run(RunDir(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Another process that holds the lock of ``tmp_path / "run"``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_on_a_run_in_use_is_refused_with_the_holders_pid(tmp_path, capsys, lock_holder):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    code, stderr = _cli(capsys, "train", "--data", data, "--out", tmp_path / "run")
    assert code == 2
    assert f"is in use by process {lock_holder.pid}" in _error_line(stderr)
    assert not (tmp_path / "run" / "split.csv").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys, lock_holder):
    lock_holder.send_signal(signal.SIGKILL)
    lock_holder.wait()
    with hold_run(RunDir(tmp_path / "run")):
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    assert re.search(rf"left locked by process {lock_holder.pid} \(since .*\), which has ended; taking it over",
                     capsys.readouterr().err)


# --- runs and datasets that move -------------------------------------------------------------------------------

@pytest.fixture
def chdir_back():
    here = os.getcwd()
    yield
    os.chdir(here)


def test_a_run_moved_elsewhere_evaluates_from_another_working_directory(tmp_path, capsys, chdir_back):
    make_dataset(tmp_path / "project" / "data", classes=3, per_source=1)
    os.chdir(tmp_path / "project")
    trainer.train(tiny_config(epochs=1), "data", "runs/demo", progress=False)  # paths as a user types them
    shutil.move(tmp_path / "project" / "runs" / "demo", tmp_path / "moved")
    os.chdir(tmp_path)
    code, stderr = _cli(capsys, "evaluate", "--run", tmp_path / "moved")
    assert code == 0, stderr
    assert (tmp_path / "moved" / "eval" / "metrics.json").is_file()


def test_a_moved_dataset_is_refused_with_the_option_and_re_pointed_with_data_root(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    run = trainer.train(tiny_config(epochs=1), data, tmp_path / "run", progress=False)
    data.rename(tmp_path / "moved-data")
    code, stderr = _cli(capsys, "evaluate", "--run", run)
    assert code == 2 and "--data-root NEWROOT" in _error_line(stderr)
    code, stderr = _cli(capsys, "evaluate", "--run", run, "--data-root", tmp_path / "moved-data")
    assert code == 0, stderr
    assert RunData.read(run).root == tmp_path / "moved-data"  # recorded: later commands read from there
    assert all(Path(s.path).is_file() for s in RunData.read(run).split.val)
    code, stderr = _cli(capsys, "evaluate", "--run", run, "--data-root", tmp_path)
    assert code == 2 and "holds none of the run's" in stderr


@pytest.mark.slow
def test_an_interrupted_run_whose_dataset_moved_resumes_with_data_root(tmp_path, capsys, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)  # 10 training images: 5 steps an epoch
    config = _config_file(tmp_path / "tiny.yaml", epochs=2, batch_size=2)
    run = RunDir(tmp_path / "run")
    ctrl_c_at_step(monkeypatch, 6)  # in epoch 2
    code, stderr = _cli(capsys, "train", "--data", data, "--out", run, "--config", config)
    assert code == 130 and "simpsons train --resume" in stderr
    monkeypatch.undo()
    moved = data.rename(tmp_path / "moved-data")

    code, stderr = _cli(capsys, "train", "--resume", run)
    line = _error_line(stderr)
    assert code == 2 and f"dataset folder {data} is not there any more" in line
    assert "simpsons train --resume RUN --data-root NEWROOT" in line
    assert checkpoint.read(run.last)["progress"]["batches"] == 2  # refused before it trained

    code, stderr = _cli(capsys, "train", "--resume", run, "--data-root", moved)
    assert code == 0, stderr
    assert json.loads(run.dataset.read_text())["root"] == str(moved)
    assert all(Path(s.path).is_file() and Path(s.path).is_relative_to(moved) for s in RunData.read(run).split.val)
    assert checkpoint.read(run.last)["epoch"] == 2  # finished
    assert [int(row["epoch"]) for row in read_metrics(run.metrics)][-2:] == [0, 1]
    assert run.report.is_file() and EvalResult.read(run.eval_dir().metrics).num_images == 5


def test_an_older_run_with_paths_relative_to_its_working_directory_still_reads(tmp_path, chdir_back):
    """Runs written before the paths were relative to the dataset folder: cwd-relative paths, absolute root."""
    data = make_dataset(tmp_path / "project" / "data", classes=3, per_source=1)
    scan = scan_dataset(data, progress=False)
    run = RunDir(tmp_path / "old").make()
    run.dataset.write_text(json.dumps({"root": str(data), "classes": scan.classes, "class_counts": {}}))
    with open(run.split, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "subset", "group"])
        for i, sample in enumerate(scan.samples):
            writer.writerow([os.path.relpath(sample.path, tmp_path / "project"), sample.label,
                             "val" if i % 3 == 0 else "train", ""])
    os.chdir(tmp_path)  # not the folder the paths were relative to
    split = RunData.read(run).split
    assert len(split.train + split.val) == len(scan.samples)
    assert all(Path(s.path).is_file() for s in split.train + split.val)


# --- a full disk -----------------------------------------------------------------------------------------------

def test_a_full_disk_while_checkpointing_keeps_the_last_good_checkpoint_and_says_so(tmp_path, capsys, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    config = _config_file(tmp_path / "tiny.yaml", epochs=2)
    run = tmp_path / "run"
    real_save = torch.save

    def save_until_the_disk_fills(payload, file, *args, **kwargs):
        if "optimizer" in payload and payload["epoch"] == 2:  # last.pt after the second epoch
            with contextlib.ExitStack() as stack:
                if isinstance(file, (str, os.PathLike)):
                    file = stack.enter_context(open(file, "wb"))
                return real_save(payload, DiskFullAfter(file, 100_000), *args, **kwargs)
        return real_save(payload, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    code, stderr = _cli(capsys, "train", "--data", data, "--out", run, "--config", config)
    assert code == 2
    line = _error_line(stderr)
    assert f"cannot write {run / 'last.pt'}: No space left on device [ENOSPC]" in line
    assert "previous last.pt is unchanged" in line
    assert not [p.name for p in run.iterdir() if "tmp" in p.name]
    assert checkpoint.read(run / "last.pt")["epoch"] == 1

    # Resumed on the still-full disk, it fails before training an epoch.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=10**5))
    monkeypatch.setattr(trainer, "train_one_epoch", lambda *a, **k: pytest.fail("trained on a full disk"))
    code, stderr = _cli(capsys, "train", "--resume", run)
    assert code == 2 and f"cannot write {run}: 0 MB free" in _error_line(stderr) and "[ENOSPC]" in stderr


def test_the_free_space_asked_for_covers_the_checkpoints_at_their_peak(tmp_path, monkeypatch):
    """The up-front free-space check asks for at least what the checkpoint files take together at their peak (a new
    last.pt beside the old one, with best.pt and start.pt there)."""
    asked, peak = [], [0]
    real_check, real_save = trainer.check_writable, torch.save

    def record_check(folder, needed_bytes=0):
        asked.append(needed_bytes)
        return real_check(folder, needed_bytes)

    def save_and_measure(payload, handle, *args, **kwargs):
        real_save(payload, handle, *args, **kwargs)
        handle.flush()  # the temporary file, complete, beside the checkpoints it replaces
        peak[0] = max(peak[0], sum(p.stat().st_size for p in run.iterdir() if p.is_file() and ".pt" in p.name))

    monkeypatch.setattr(trainer, "check_writable", record_check)
    monkeypatch.setattr(torch, "save", save_and_measure)
    run = tmp_path / "run"
    config = tiny_config(head_init="probe", wise_alpha=0.5)  # start.pt is kept for the weight ensemble
    trainer.train(config, make_dataset(tmp_path / "data", classes=3, per_source=1), run, progress=False)
    assert (run / "start.pt").is_file() and max(asked) >= peak[0] > 0


class DiskFullAfter:
    """A file that takes ``room`` bytes, then fails as a full disk does (torch.save's zip writer then fails closing
    the archive, with a RuntimeError raised while handling the OSError)."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> DiskFullAfter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


WRITE_MODES = set("wax+")


def _opening_for_write(args, kwargs) -> Path | None:
    """The file an ``open(...)`` call opens for writing, as an absolute path; None for a read or a descriptor."""
    file = args[0] if args else kwargs.get("file")
    mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
    if isinstance(file, (str, os.PathLike)) and WRITE_MODES & set(mode):
        return Path(os.path.abspath(file))
    return None


def fill_the_disk_when_writing(monkeypatch, name: str, room: int = 10) -> None:
    """Every file named ``name`` (or its temporary twin ``.NAME.tmp``) takes ``room`` bytes, then fails as a full
    disk does; any other file is written as usual. Both ``open`` and ``io.open`` (what ``Path.write_text`` calls)
    are patched, so a write that does not go through ``storage.write_atomic`` fills the disk too."""
    real_open = io.open

    def open_on_a_full_disk(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        path = _opening_for_write(args, kwargs)
        return DiskFullAfter(handle, room) if path is not None and path.name in (name, f".{name}.tmp") else handle

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    monkeypatch.setattr(io, "open", open_on_a_full_disk)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A trained, evaluated, explained and reported tiny run; tests that break it work on a copy."""
    return train_tiny_run(tmp_path_factory.mktemp("finished"), classes=3)


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run (modification times kept, so its evaluation and pictures are as fresh)."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.mark.parametrize("command, written", [
    ("evaluate", "eval/metrics.json"),
    ("evaluate", "eval/per_class.csv"),
    ("evaluate", "eval/confusion_matrix.png"),
    ("evaluate", "eval/predictions.csv"),
    ("explain", "explain/kernels_3x3.png"),
    ("explain", "explain/gradcam_classes.png"),
    ("report", "report.html"),
])
def test_a_full_disk_while_writing_evaluation_explanation_or_report_names_the_file_and_keeps_the_old_one(
        run_copy, capsys, monkeypatch, command, written):
    target = run_copy / written
    before = target.read_bytes()
    fill_the_disk_when_writing(monkeypatch, target.name)
    code, stderr = _cli(capsys, command, "--run", run_copy)
    assert code == 2
    line = _error_line(stderr)
    assert f"cannot write {target}: No space left on device [ENOSPC]" in line
    assert f"the previous {target.name} is unchanged" in line
    assert target.read_bytes() == before
    assert not [p for p in run_copy.rglob("*") if p.name.endswith(".tmp")]



# --- a folder that cannot be written ---------------------------------------------------------------------------

def _inside(path: str | os.PathLike, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(folder)


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: the folder and everything in it made read-only (``chmod``), permissions put back
    afterwards.

    Root writes whatever the mode bits say, and these tests may run as root: then the calls the kernel would
    refuse another user are refused with ``PermissionError(EACCES)`` for paths inside the folder (opening a file
    to write, making a folder, removing or renaming an entry). The refusal is made at those system calls, below
    ``storage``, so a write that bypasses ``storage`` is refused too, as it would be for another user."""
    folders = []

    def make(folder: Path) -> Path:
        folder = Path(os.path.abspath(folder))
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        folders.append(folder)
        if os.geteuid() == 0:
            _refuse_writes_inside(monkeypatch, folder)
        return folder

    yield make
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def _refuse_writes_inside(monkeypatch, folder: Path) -> None:
    def refused(path) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_open = io.open

    def open_(*args, **kwargs):
        path = _opening_for_write(args, kwargs)
        if path is not None and _inside(path, folder):
            raise refused(path)
        return real_open(*args, **kwargs)

    def refuse_inside(real):
        def call(path, *args, **kwargs):
            if _inside(path, folder):
                raise refused(path)
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    for name in ("mkdir", "unlink", "remove", "rmdir", "rename", "replace"):
        monkeypatch.setattr(os, name, refuse_inside(getattr(os, name)))


def _permission_denied(line: str, path: Path, folder: Path) -> bool:
    return f"cannot write {path}: Permission denied [EACCES] (make {folder} writable for this user)" in line


def test_training_into_a_folder_that_cannot_be_written_is_one_error_naming_it(tmp_path, capsys, read_only):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    (tmp_path / "locked").mkdir()
    locked = read_only(tmp_path / "locked")
    code, stderr = _cli(capsys, "train", "--data", data, "--out", locked / "run")
    assert code == 2
    assert _permission_denied(_error_line(stderr), locked / "run", locked)
    assert not (locked / "run").exists()


@pytest.mark.parametrize("command, refused", [
    (["train", "--resume"], ".lock"),
    (["evaluate", "--run"], "eval"),
    (["explain", "--run"], "explain"),
    (["report", "--run"], "report.html"),
])
def test_a_run_that_cannot_be_written_is_one_error_naming_the_file(run_copy, capsys, read_only, command, refused):
    report = run_copy.joinpath("report.html").read_bytes()
    read_only(run_copy)
    code, stderr = _cli(capsys, *command, run_copy)
    assert code == 2
    path = run_copy / refused
    assert _permission_denied(_error_line(stderr), path, path if path.is_dir() else run_copy)
    assert run_copy.joinpath("report.html").read_bytes() == report
    assert not [p for p in run_copy.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".write-check")]


# --- a stop signal ---------------------------------------------------------------------------------------------

STOP_AT_STEP = """
import os, signal, sys
from simpsons_classifier import cli
from simpsons_classifier.training import trainer
train_step = trainer.train_step
def step(state, *args, **kwargs):
    if state.step == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler or docker stop would, during this step
    return train_step(state, *args, **kwargs)
trainer.train_step = step
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_a_checkpoint_that_resume_continues_to_the_same_weights(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)  # 10 training images: 5 steps an epoch
    overrides = dict(epochs=2, batch_size=2, num_workers=2, mix_prob=1.0)
    straight = trainer.train(tiny_config(**overrides), data, tmp_path / "straight", progress=False)

    run = tmp_path / "stopped"
    command = [sys.executable, "-c", STOP_AT_STEP, "7", "train", "--data", str(data), "--out", str(run),
               "--config", str(_config_file(tmp_path / "tiny.yaml", **overrides))]
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert f"stopped by SIGTERM in epoch 2/2 after step 3 of 5; saved in {run / 'last.pt'}" in stopped.stderr
    assert f"simpsons train --resume {run}" in stopped.stderr
    assert checkpoint.read(run / "last.pt")["progress"]["batches"] == 3
    assert not _processes_mentioning(run)  # its DataLoader workers went with it

    trainer.resume(run, progress=False)
    a, b = checkpoint.read(straight / "last.pt"), checkpoint.read(run / "last.pt")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    with open(straight / "metrics.csv") as one, open(run / "metrics.csv") as other:
        assert ([r["train_loss"] for r in csv.DictReader(one)] == [r["train_loss"] for r in csv.DictReader(other)])


def test_ctrl_c_stops_at_the_end_of_the_step_with_status_130(tmp_path, capsys, monkeypatch):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    config = _config_file(tmp_path / "tiny.yaml", epochs=1, batch_size=2)
    ctrl_c_at_step(monkeypatch, 1)
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background by a shell
    code, stderr = _cli(capsys, "train", "--data", data, "--out", tmp_path / "run", "--config", config)
    assert code == 130 and "Traceback" not in stderr
    assert "stopped by SIGINT in epoch 1/1 after step 2 of 5" in stderr
    assert checkpoint.read(tmp_path / "run" / "last.pt")["progress"]["batches"] == 2
    assert signal.getsignal(signal.SIGINT) is handler_before  # put back


def _processes_mentioning(text: Path) -> list[str]:
    time.sleep(0.5)  # let the kernel reap them
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(text).encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["lr=[1", "lr=!!python/object/apply:os.system ['true']"])
def test_a_bad_set_value_is_one_error_line(capsys, value):
    code, stderr = _cli(capsys, "train", "--data", "d", "--out", "r", "--set", value)
    assert code == 2 and stderr.count("\n") == 1
    assert _error_line(stderr).startswith(f"error: --set {value!r}: the value is not a plain YAML value")


def test_a_class_whose_files_all_vanish_is_one_warning_naming_it(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    scan = scan_dataset(data, progress=False)
    shutil.rmtree(data / "001_class1")
    dataset = ImageDataset(scan.samples, scan.classes, lambda image: 0)
    with pytest.warns(UserWarning) as caught:
        for i in range(len(dataset)):
            dataset[i]
    assert [str(w.message) for w in caught] == [
        "class '001_class1': none of its 5 files is there any more (deleted or moved while the run was reading them?); "
        "other images take their place"]


def test_a_file_where_a_class_folder_would_be_is_named_in_a_warning(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3, per_source=1)
    (data / "bart_simpson.zip").write_bytes(b"PK")
    with pytest.warns(UserWarning, match=r"bart_simpson.zip is a file beside the class folders, not in one"):
        scan = scan_dataset(data, progress=False)
    assert len(scan.classes) == 3


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_text("notes, not weights"), "not a readable checkpoint"),
    (lambda path: path.write_bytes(path.read_bytes()[:1000]), "not a readable checkpoint"),
    (lambda path: path.write_bytes(b""), "not a readable checkpoint"),
    (lambda path: torch.save(torch.zeros(3), path), "not a simpsons-classifier checkpoint"),
])
def test_a_damaged_checkpoint_is_one_error_naming_the_file(tmp_path, capsys, damage, problem):
    path = tmp_path / "best.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "model": {"w": torch.ones(300)}}, path)
    damage(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {problem}")):
        checkpoint.read(path)
