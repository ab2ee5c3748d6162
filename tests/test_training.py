import csv

import pytest
import torch
from synthetic import make_dataset, tiny_config
from torchrun import torchrun_train

from simpsons_classifier.models import create_model, set_trainable_stages
from simpsons_classifier.models.stages import freeze_frozen_norms
from simpsons_classifier.training import checkpoint, trainer
from simpsons_classifier.training.schedule import active_stages
from simpsons_classifier.training.trainer import RunExistsError, resume, train


def _trainable_modules(model):
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_freezing_schedule_head_then_last_stage():
    config = tiny_config(unfreeze_epoch=5)
    model = create_model("resnet10t", 3)
    seen = {}
    for epoch in (0, 4, 5):
        set_trainable_stages(model, active_stages(config, epoch))
        model.zero_grad(set_to_none=True)
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        seen[epoch] = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert seen[0] == seen[4] == {"fc"}
    assert seen[5] == {"fc", "layer4"}


def test_frozen_batchnorm_statistics_do_not_move():
    model = create_model("efficientnet_lite0", 3)
    set_trainable_stages(model, ["head"])
    model.train()
    freeze_frozen_norms(model)
    frozen_before = model.bn1.running_mean.clone()
    head_before = model.bn2.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(model.bn1.running_mean, frozen_before)
    assert not model.bn1.training
    assert not torch.equal(model.bn2.running_mean, head_before)  # the head's own norm still learns


def test_a_run_writes_its_files_and_best_holds_the_ema_weights(tmp_path, dataset):
    run = train(tiny_config(epochs=1), dataset, tmp_path / "run", progress=False)
    for name in ("config.yaml", "split.csv", "skipped.csv", "dataset.json", "metrics.csv", "curves.png",
                 "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    last = checkpoint.read(run / "last.pt")
    best = checkpoint.read(run / "best.pt")
    assert best["classes"] == [f"{c:03d}_class{c}" for c in range(4)]
    for key, value in best["model"].items():
        assert torch.equal(value, last["ema"][key]), key
    assert any(not torch.equal(v, last["model"][k]) for k, v in best["model"].items() if v.is_floating_point())
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["0"] and 0 <= float(rows[0]["val_top1"]) <= 1
    optimizer = last["optimizer"]["param_groups"]
    assert optimizer[1]["lr"] == pytest.approx(optimizer[0]["lr"] * 0.1)
    with pytest.raises(RunExistsError, match="--resume"):
        train(tiny_config(epochs=1), dataset, run, progress=False)


def test_resume_after_an_interruption_ends_with_the_same_weights(tmp_path, dataset, monkeypatch):
    config = tiny_config(epochs=3, unfreeze_epoch=1, mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=1.0,
                         outlier_exposure=0.5)
    straight = train(config, dataset, tmp_path / "straight", progress=False)

    real_epoch = trainer.train_one_epoch

    def interrupted(state, batches, epoch, *args, **kwargs):
        if epoch == 1:  # stop as a Ctrl-C would, during the second epoch
            raise KeyboardInterrupt
        return real_epoch(state, batches, epoch, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset, tmp_path / "resumed", progress=False)
    assert checkpoint.read(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(trainer, "train_one_epoch", real_epoch)
    resume(tmp_path / "resumed", progress=False)

    a = checkpoint.read(straight / "last.pt")
    b = checkpoint.read(tmp_path / "resumed" / "last.pt")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    with open(tmp_path / "resumed" / "metrics.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2"]


@pytest.mark.slow
def test_two_process_torchrun_on_gloo(tmp_path):
    data = make_dataset(tmp_path / "data", classes=3, per_source=2)
    result = torchrun_train(data, tmp_path / "run", tiny_config(epochs=2), 29517, "--budget", "1h")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 2/2" in result.stdout and result.stdout.count("epoch 2/2") == 1  # only rank 0 prints
    assert checkpoint.read(tmp_path / "run" / "last.pt")["epoch"] == 2
    assert (tmp_path / "run" / "eval" / "metrics.json").is_file()


def _least_epochs_of_two_ranks(rank: int, port: int, agreed) -> None:
    import torch.distributed as dist

    from simpsons_classifier.training import distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    agreed[rank] = distributed.min_across([7, 5][rank], distributed.Context(rank, 2, torch.device("cpu")))
    dist.destroy_process_group()


def test_processes_agree_on_the_least_number_of_epochs_their_timings_allow():
    """Each process times its own steps for --budget; one that ran an epoch more than the others would hang."""
    agreed = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(_least_epochs_of_two_ranks, args=(29531, agreed), nprocs=2)
    assert dict(agreed) == {0: 5, 1: 5}


@pytest.mark.parametrize("classes", [2, 4])
def test_probe_head_classifies_the_training_images_before_fine_tuning(tmp_path, classes):
    from torch.utils.data import DataLoader

    from simpsons_classifier.augment import build_eval_transform
    from simpsons_classifier.data.dataset import ImageDataset
    from simpsons_classifier.data.scan import scan_dataset
    from simpsons_classifier.training.probe import fit_head, pre_logit_features

    data = make_dataset(tmp_path / "data", classes=classes)
    scan = scan_dataset(data, progress=False)
    torch.manual_seed(0)
    model = create_model("resnet10t", classes).eval()
    loader = DataLoader(ImageDataset(scan.samples, scan.classes, build_eval_transform(32, (0.5,) * 3, (0.5,) * 3)),
                        batch_size=16)
    images, targets = next(iter(DataLoader(loader.dataset, batch_size=len(scan.samples))))
    with torch.no_grad():
        before = (model(images).argmax(1) == targets).float().mean().item()
    probe_accuracy = fit_head(model, *pre_logit_features(model, loader, torch.device("cpu"), progress=False))
    with torch.no_grad():
        after = (model(images).argmax(1) == targets).float().mean().item()
    assert after == pytest.approx(probe_accuracy)  # the classifier now computes the probe exactly
    assert after > 1.5 / classes and after > before


def test_probe_run_keeps_frozen_batchnorm_statistics(tmp_path, dataset):
    run = train(tiny_config(epochs=1, unfreeze_epoch=5, head_init="probe"), dataset, tmp_path / "run",
                progress=False)
    weights = checkpoint.read(run / "last.pt")["model"]
    assert torch.equal(weights["bn1.running_mean"], torch.zeros_like(weights["bn1.running_mean"]))
    assert torch.equal(weights["layer4.0.bn1.running_var"], torch.ones_like(weights["layer4.0.bn1.running_var"]))


def test_weight_ensemble_interpolates_floats_and_keeps_the_fine_tuned_counters():
    from simpsons_classifier.training.weight_ensemble import weight_ensemble

    start = {"w": torch.zeros(3), "n": torch.tensor(0)}
    tuned = {"w": torch.tensor([2.0, 4.0, -8.0]), "n": torch.tensor(7)}
    mixed = weight_ensemble(start, tuned, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([0.5, 1.0, -2.0])) and mixed["n"].item() == 7
    assert torch.equal(weight_ensemble(start, tuned, 1.0)["w"], tuned["w"])
    with pytest.raises(ValueError, match="different models"):
        weight_ensemble({"w": torch.zeros(3)}, tuned, 0.5)


def test_probe_run_ends_with_the_weight_ensemble_of_its_start_and_its_fine_tuned_weights(tmp_path, dataset,
                                                                                          monkeypatch):
    config = tiny_config(epochs=2, head_init="probe", wise_alpha=0.5)
    fine_tuned = train(tiny_config(epochs=2, head_init="probe", wise_alpha=1.0), dataset, tmp_path / "fine-tuned",
                       progress=False)
    assert not (fine_tuned / "start.pt").exists()  # nothing to mix: the run ends with its fine-tuned weights

    def stopped(*args):  # training is over, the ensemble not made yet: as a Ctrl-C then would
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "weight_ensemble", stopped)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset, tmp_path / "ensembled", progress=False)
    monkeypatch.undo()
    run = resume(tmp_path / "ensembled", progress=False)

    start = checkpoint.read(run / "start.pt")["model"]
    tuned, mixed = checkpoint.read(fine_tuned / "last.pt")["ema"], checkpoint.read(run / "last.pt")["ema"]
    assert any(not torch.equal(start[k], tuned[k]) for k in start if start[k].is_floating_point())
    for key, value in mixed.items():
        expected = (start[key] + tuned[key]) / 2 if value.is_floating_point() else tuned[key]
        torch.testing.assert_close(value, expected, msg=key)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["-1", "0", "1", "2"] and rows[-1]["train_loss"] == "nan"
    resume(run, progress=False)  # a finished run is not ensembled twice
    assert torch.equal(checkpoint.read(run / "last.pt")["ema"]["fc.weight"], mixed["fc.weight"])
