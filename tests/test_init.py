"""``simpsons train --init RUN``: a new run starts from another run's model, its head grown to the new classes."""

import csv
import shutil

import pytest
import torch
import torch.nn.functional as F
import yaml
from synthetic import make_dataset, tiny_config
from torch.utils.data import DataLoader

from simpsons_classifier.augment import build_eval_transform
from simpsons_classifier.cli import main
from simpsons_classifier.config import ConfigError
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.scan import scan_dataset
from simpsons_classifier.models import create_model
from simpsons_classifier.training import checkpoint, train
from simpsons_classifier.training.checkpoint import LoadedModel
from simpsons_classifier.training.grow import HeadPlan, grow_from_run, read_init_run
from simpsons_classifier.training.probe import pre_logit_features

CPU = torch.device("cpu")


def _name(c: int) -> str:
    return f"{c:03d}_class{c}"  # make_dataset's folder names


def _source(classes: list[str]) -> LoadedModel:
    """A stand-in for a trained run's best model: random weights, with biases that differ by class."""
    torch.manual_seed(0)
    model = create_model("resnet10t", len(classes)).eval()
    with torch.no_grad():
        model.get_classifier().bias.copy_(torch.randn(len(classes)))
    return LoadedModel(model, classes, tiny_config(), (0.5,) * 3, (0.5,) * 3)


def _new_class_loader(data, plan: HeadPlan) -> DataLoader:
    samples = [s for s in scan_dataset(data, progress=False).samples if s.label in plan.new]
    transform = build_eval_transform(32, (0.5,) * 3, (0.5,) * 3)
    return DataLoader(ImageDataset(samples, plan.classes, transform), batch_size=16)


@pytest.fixture
def grown(tmp_path):
    """A source that knows classes 0-3 (in a shuffled order), grown to data of classes 0, 1, 3, 4, 5."""
    source = _source([_name(c) for c in (3, 0, 2, 1)])
    data = make_dataset(tmp_path / "data", classes=6)
    shutil.rmtree(data / _name(2))
    classes = scan_dataset(data, progress=False).classes
    plan = HeadPlan(tuple(source.classes), tuple(classes))
    model = create_model("resnet10t", len(classes)).eval()
    loader = _new_class_loader(data, plan)
    grow_from_run(model, source, plan, loader, CPU, progress=False)
    return source, plan, model, loader


def test_known_rows_are_copied_bit_for_bit_in_the_new_data_order(grown):
    source, plan, model, _ = grown
    assert list(plan.classes) == [_name(c) for c in (0, 1, 3, 4, 5)]  # the new data's order, not the source's
    assert plan.kept == [_name(c) for c in (0, 1, 3)]
    assert plan.new == [_name(4), _name(5)] and plan.dropped == [_name(2)]
    head, known = model.get_classifier(), source.model.get_classifier()
    for name in plan.kept:
        row, from_row = plan.classes.index(name), source.classes.index(name)
        assert torch.equal(head.weight[row], known.weight[from_row]), name
        assert torch.equal(head.bias[row], known.bias[from_row]), name


def test_the_backbone_is_the_source_runs(grown):
    source, _, model, _ = grown
    theirs = source.model.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, theirs[key]), key


def test_new_rows_are_imprinted_from_their_classes_features(grown):
    source, plan, model, loader = grown
    weight, bias = (p.detach() for p in model.get_classifier().parameters())
    features, targets = (torch.as_tensor(a) for a in pre_logit_features(model, loader, CPU, progress=False))
    kept = torch.tensor([plan.classes.index(c) for c in plan.kept])
    new = [plan.classes.index(c) for c in plan.new]
    kept_norm = weight[kept].norm(dim=1).mean()
    means = {row: features[targets == row].mean(dim=0) for row in new}
    for row in new:
        unit_mean = F.normalize(features[targets == row], dim=1).mean(dim=0)
        assert torch.allclose(weight[row], F.normalize(unit_mean, dim=0) * kept_norm, atol=1e-6)
        assert bias[row].item() == pytest.approx(bias[kept].mean().item(), abs=1e-6)
        # each new row answers its own class's mean feature more strongly than any other new row does
        scores = {other: float(weight[other] @ means[row]) for other in new}
        assert max(scores, key=scores.get) == row
    # and the new classes' own images land on their rows among the new ones
    with torch.no_grad():
        logits = model(next(iter(DataLoader(loader.dataset, batch_size=len(loader.dataset))))[0])
    predicted = torch.tensor(new)[logits[:, new].argmax(dim=1)]
    assert (predicted == targets).float().mean() > 0.9


def test_a_new_class_without_training_images_starts_below_the_others():
    from simpsons_classifier.training.grow import imprint_rows

    kept_weight, kept_bias = torch.randn(3, 8), torch.tensor([1.0, 2.0, 3.0])
    features, targets = torch.randn(4, 8), torch.tensor([3, 3, 3, 3])
    weight, bias = imprint_rows(features, targets, torch.tensor([3, 4]), kept_weight, kept_bias)
    assert weight[0].norm() == pytest.approx(kept_weight.norm(dim=1).mean().item()) and bias[0] == 2.0
    assert torch.equal(weight[1], torch.zeros(8)) and bias[1] < kept_bias.min()


def test_data_sharing_no_class_with_the_run_is_refused():
    with pytest.raises(ValueError, match="none of the start run's 2 classes"):
        HeadPlan(("bart", "homer"), ("lisa", "marge"))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny trained run of classes 0-3."""
    root = tmp_path_factory.mktemp("source")
    return train(tiny_config(epochs=1), make_dataset(root / "data", classes=4), root / "run", progress=False)


def test_a_missing_run_or_one_without_best_pt_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot start from run .*nothing: no such folder"):
        read_init_run(tmp_path / "nothing", "resnet10t")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match=r"unfinished: it has no best.pt"):
        read_init_run(tmp_path / "unfinished", "resnet10t")


def test_another_backbone_is_refused_naming_both(source_run, tmp_path):
    with pytest.raises(ConfigError, match="trained with backbone resnet10t, the config asks for resnet18"):
        train(tiny_config(backbone="resnet18", init_run=str(source_run)), make_dataset(tmp_path / "data"),
              tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run folder was written


def test_init_and_resume_together_are_refused(source_run, tmp_path, capsys):
    assert main(["train", "--resume", str(source_run), "--init", str(source_run)]) == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.slow
def test_train_init_through_the_cli_grows_scores_and_resumes(source_run, tmp_path, monkeypatch, capsys):
    data = make_dataset(tmp_path / "data", classes=6)
    shutil.rmtree(data / _name(2))
    config = tmp_path / "tiny.yaml"
    tiny_config(epochs=2).save(config)
    out = tmp_path / "grown"
    from simpsons_classifier.training import trainer

    real_epoch = trainer.train_one_epoch

    def interrupted(state, batches, epoch, *args, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt  # as a Ctrl-C would, in the second epoch
        return real_epoch(state, batches, epoch, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    with pytest.warns(UserWarning, match=f"drops: {_name(2)}$"):
        assert main(["train", "--data", str(data), "--out", str(out), "--init", str(source_run),
                     "--config", str(config)]) == 130
    printed = capsys.readouterr().out
    assert "3 classes kept, 2 new (imprinted), 1 dropped" in printed and "grown head (epoch 0)" in printed
    assert yaml.safe_load((out / "config.yaml").read_text())["init_run"] == str(source_run)
    with open(out / "metrics.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["-1", "0"]  # the grown head scored first

    monkeypatch.setattr(trainer, "train_one_epoch", real_epoch)
    moved = source_run.path.with_name("elsewhere")
    source_run.path.rename(moved)  # resuming does not need the start run any more
    try:
        assert main(["train", "--resume", str(out)]) == 0
    finally:
        moved.rename(source_run.path)
    best = checkpoint.read(out / "best.pt")
    assert best["classes"] == [_name(c) for c in (0, 1, 3, 4, 5)]
    assert checkpoint.read(out / "last.pt")["epoch"] == 2
