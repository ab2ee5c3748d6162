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
from simpsons_classifier.training.probe import fit_head, pre_logit_features

CPU = torch.device("cpu")


def _name(c: int) -> str:
    return f"{c:03d}_class{c}"  # make_dataset's folder names


def _loader(data, classes) -> DataLoader:
    """The un-augmented images of ``classes`` in ``data``, labelled by their index in ``classes``."""
    samples = [s for s in scan_dataset(data, progress=False).samples if s.label in classes]
    return DataLoader(ImageDataset(samples, classes, build_eval_transform(32, (0.5,) * 3, (0.5,) * 3)), batch_size=64)


def _images(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(DataLoader(loader.dataset, batch_size=len(loader.dataset))))


@pytest.fixture
def grown(tmp_path):
    """A source that classifies classes 0-3 (kept in a shuffled order; a probe head on a random backbone), grown
    to data of classes 0, 1, 3, 4, 5."""
    data = make_dataset(tmp_path / "data", classes=6)
    known = [_name(c) for c in (3, 0, 2, 1)]
    torch.manual_seed(0)
    source = LoadedModel(create_model("resnet10t", len(known)).eval(), known, tiny_config(), (0.5,) * 3, (0.5,) * 3)
    fit_head(source.model, *pre_logit_features(source.model, _loader(data, known), CPU, progress=False))
    shutil.rmtree(data / _name(2))
    classes = scan_dataset(data, progress=False).classes
    plan = HeadPlan(tuple(source.classes), tuple(classes))
    model = create_model("resnet10t", len(classes)).eval()
    loader = _loader(data, classes)
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
    from simpsons_classifier.training.grow import imprint_rows

    source, plan, model, loader = grown
    features, targets = (torch.as_tensor(a) for a in pre_logit_features(model, loader, CPU, progress=False))
    kept = torch.tensor([plan.classes.index(c) for c in plan.kept])
    new = torch.tensor([plan.classes.index(c) for c in plan.new])
    kept_weight, kept_bias = (p.detach()[kept] for p in model.get_classifier().parameters())
    weight, bias = imprint_rows(features, targets, new, kept_weight, kept_bias)
    unit_means = torch.stack([F.normalize(features[targets == row], dim=1).mean(dim=0)
                              for row in range(len(plan.classes))])
    kept_norm = kept_weight.norm(dim=1).mean()
    for i, row in enumerate(new.tolist()):
        direction = F.normalize(unit_means[row] - unit_means.mean(dim=0), dim=0)
        assert torch.allclose(weight[i], direction * kept_norm, atol=1e-6)
        assert bias[i].item() == pytest.approx(kept_bias.mean().item(), abs=1e-6)
        # each new row answers its own class's mean feature more strongly than any other new row does
        scores = weight @ features[targets == row].mean(dim=0)
        assert int(scores.argmax()) == i


def test_new_rows_are_fitted_beside_the_kept_ones_to_take_their_own_images(grown):
    """The grown model's new rows, imprinted then fitted with the kept rows held, classify their classes' training
    images among all the classes, and lower the loss the imprinted rows start from."""
    from simpsons_classifier.training.grow import imprint_rows

    source, plan, model, loader = grown
    images, labels = _images(loader)
    new = torch.tensor([plan.classes.index(c) for c in plan.new])
    with torch.no_grad():
        logits = model(images)
    of_new = torch.isin(labels, new)
    assert (logits[of_new].argmax(dim=1) == labels[of_new]).float().mean() > 0.9  # among all the classes
    features, targets = (torch.as_tensor(a) for a in pre_logit_features(model, loader, CPU, progress=False))
    head = model.get_classifier()
    kept = torch.tensor([plan.classes.index(c) for c in plan.kept])
    weight, bias = imprint_rows(features, targets, new, head.weight.detach()[kept], head.bias.detach()[kept])
    imprinted_weight, imprinted_bias = head.weight.detach().clone(), head.bias.detach().clone()
    imprinted_weight[new], imprinted_bias[new] = weight, bias
    with torch.no_grad():
        fitted_loss = F.cross_entropy(head(features), targets)
    assert fitted_loss < F.cross_entropy(features @ imprinted_weight.T + imprinted_bias, targets)


def test_the_known_classes_images_are_not_taken_by_the_new_rows(grown):
    """The rows are imprinted from centred features: raw class means of non-negative features all point the same
    way, and rows along them would outscore the known rows on every image."""
    source, plan, model, loader = grown
    images, labels = _images(loader)
    with torch.no_grad():
        before = [source.classes[i] for i in source.model(images).argmax(dim=1)]
        after = [plan.classes[i] for i in model(images).argmax(dim=1)]
    truth = [plan.classes[i] for i in labels]
    kept = [i for i, name in enumerate(truth) if name in plan.kept]
    assert sum(before[i] == truth[i] for i in kept) > 0.9 * len(kept)  # the source classifies them
    assert [after[i] for i in kept] == [before[i] for i in kept]


def test_a_new_class_without_training_images_starts_below_the_others():
    from simpsons_classifier.training.grow import imprint_rows

    kept_weight, kept_bias = torch.randn(3, 8), torch.tensor([1.0, 2.0, 3.0])
    features, targets = torch.randn(4, 8), torch.tensor([0, 0, 3, 3])
    weight, bias = imprint_rows(features, targets, torch.tensor([3, 4]), kept_weight, kept_bias)
    assert weight[0].norm() == pytest.approx(kept_weight.norm(dim=1).mean().item()) and bias[0] == 2.0
    assert torch.equal(weight[1], torch.zeros(8)) and bias[1] < kept_bias.min()
    # fitting moves only the rows that have images, and keeps the row without them as it started
    from simpsons_classifier.training.grow import fit_new_rows

    head_weight, head_bias = torch.cat([kept_weight, weight]), torch.cat([kept_bias, bias])
    fitted_weight, fitted_bias = fit_new_rows(features, targets, head_weight, head_bias, torch.tensor([3, 4]),
                                              weight, bias)
    assert not torch.equal(fitted_weight[0], weight[0])
    assert torch.equal(fitted_weight[1], weight[1]) and fitted_bias[1] == bias[1]


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
        read_init_run(tmp_path / "nothing", "resnet10t", tmp_path)
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match=r"unfinished: it has no best.pt"):
        read_init_run(tmp_path / "unfinished", "resnet10t", tmp_path)


def test_another_backbone_is_refused_naming_both(source_run, tmp_path):
    with pytest.raises(ConfigError, match="trained with backbone resnet10t, the config asks for resnet18"):
        train(tiny_config(backbone="resnet18", init_run=str(source_run)), make_dataset(tmp_path / "data"),
              tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before the run folder was written


def test_data_sharing_no_class_with_the_run_is_refused_before_the_scan_naming_both_folders(source_run, tmp_path,
                                                                                          capsys):
    data = make_dataset(tmp_path / "data", classes=2)
    for folder in data.iterdir():
        folder.rename(data / f"other_{folder.name}")
    (data / "other_000_class0" / "broken.png").write_bytes(b"not an image")  # a scan would open it
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--init", str(source_run),
                 "--config", str(source_run.config)]) == 2
    error = capsys.readouterr().err
    assert f"cannot start from run {source_run} with the data in {data}" in error
    assert "none of the start run's 4 classes" in error and "other_000_class0, other_001_class1" in error
    assert not out.exists()  # refused before the run folder, its config or a scan


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
    with pytest.warns(UserWarning, match=f"dropped from the new model: {_name(2)}$"):
        assert main(["train", "--data", str(data), "--out", str(out), "--init", str(source_run),
                     "--config", str(config)]) == 130
    printed = capsys.readouterr().out
    assert "3 classes kept, 2 new (imprinted, fitted), 1 dropped" in printed and "grown head (epoch 0)" in printed
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
    with open(out / "metrics.csv") as handle:  # ended with the weight ensemble of the grown start (start.pt)
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["-1", "0", "1", "2"]
