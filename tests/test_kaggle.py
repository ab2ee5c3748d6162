"""The Kaggle downloads end to end on miniature copies: fetching (offline, without the client, without
credentials, and with the client's download stood in), training on the competition's train/ folder, and a
submission for its test set."""

import contextlib
import csv
import inspect
import io
import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch
from kaggle_layouts import (CHARACTERS, MOST_COMMON, TEST_IMAGES, UNREADABLE_TEST_IMAGES, make_characters_download,
                            make_journey_download)
from synthetic import tiny_config

from simpsons_classifier.cli import main
from simpsons_classifier.data import kaggle as kaggle_data
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.inference.predictor import Predictor
from simpsons_classifier.training import train


@pytest.fixture(autouse=True)
def no_kaggle_credentials(tmp_path, monkeypatch):
    """A home without Kaggle credentials, whatever the machine running the tests has."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / ".kaggle"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _next_commands(output: str) -> dict[str, list[str]]:
    """The commands `simpsons data kaggle` prints, by sub-command."""
    commands = [shlex.split(line) for line in output.splitlines() if line.startswith("  simpsons ")]
    return {words[1]: words[2:] for words in commands}


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ")
    return line


def _says_what_to_download(line: str, out, source: kaggle_data.KaggleSource) -> None:
    assert source.ref in line and source.url in line
    assert f"unzip it into {out} so that {out / source.train_folder} and {out / source.test_folder} exist" in line
    assert f"simpsons train --data {out / source.train_folder}" in line


@pytest.mark.timeout(60)  # the client's own retries and waits would take minutes
@pytest.mark.parametrize("dataset", ["characters", "journey"])
def test_fetch_fails_at_once_without_a_network_and_says_what_to_download(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    out = tmp_path / "download"
    assert main(["data", "kaggle", "--dataset", dataset, "--out", str(out)]) == 2
    line = _error_line(capsys)
    _says_what_to_download(line, out, kaggle_data.SOURCES[dataset])
    # With a network the made-up key is refused instead; either way nothing is left behind.
    assert "cannot reach" in line or "refused the credentials" in line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.timeout(60)
def test_the_clients_own_network_error_becomes_the_same_one_line_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kaggle_data, "check_reachable", lambda: None)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    out = tmp_path / "download"
    assert main(["data", "kaggle", "--dataset", "journey", "--out", str(out)]) == 2
    line = _error_line(capsys)
    _says_what_to_download(line, out, kaggle_data.JOURNEY)
    assert "the download from Kaggle failed" in line or "refused" in line


@pytest.mark.parametrize("missing", ["kaggle", "kaggle.api.kaggle_api_extended"])
def test_fetch_without_the_client(missing, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kaggle_data, "check_reachable", lambda: None)
    monkeypatch.setitem(sys.modules, missing, None)  # importing it now fails as if it were not installed
    out = tmp_path / "download"
    assert main(["data", "kaggle", "--dataset", "characters", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "pip install 'simpsons-classifier[kaggle]'" in line
    _says_what_to_download(line, out, kaggle_data.CHARACTERS)


def test_fetch_without_credentials(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kaggle_data, "check_reachable", lambda: None)
    out = tmp_path / "download"
    assert main(["data", "kaggle", "--dataset", "characters", "--out", str(out)]) == 2
    line = _error_line(capsys)  # the client's own page of help is not shown
    assert "no Kaggle credentials" in line and "~/.kaggle/kaggle.json" in line and "KAGGLE_USERNAME" in line
    _says_what_to_download(line, out, kaggle_data.CHARACTERS)


def _stand_in_download(real, miniature: Path, archive_name: str, calls: list):
    """A download method with the real one's signature that zips ``miniature`` to where the client would."""

    def download(self, *args, **kwargs):
        bound = inspect.signature(real).bind(self, *args, **kwargs)  # our call must fit the installed client
        calls.append(bound.arguments)
        archive = Path(bound.arguments["path"]) / archive_name
        shutil.make_archive(str(archive.with_suffix("")), "zip", miniature)

    return download


@pytest.mark.parametrize("source, method, make_download", [
    (kaggle_data.CHARACTERS, "dataset_download_files", make_characters_download),
    (kaggle_data.JOURNEY, "competition_download_files", make_journey_download),
])
def test_fetch_downloads_unzips_and_prints_what_to_run_next(source, method, make_download, tmp_path, capsys,
                                                            monkeypatch):
    from kaggle.api.kaggle_api_extended import KaggleApi

    calls = []
    monkeypatch.setattr(kaggle_data, "check_reachable", lambda: None)
    monkeypatch.setattr(KaggleApi, "authenticate", lambda self: None)
    make_download(tmp_path / "miniature")
    monkeypatch.setattr(KaggleApi, method, _stand_in_download(getattr(KaggleApi, method), tmp_path / "miniature",
                                                             source.archive_name, calls))
    out = tmp_path / "download"
    assert main(["data", "kaggle", "--dataset", source.name, "--out", str(out)]) == 0
    assert len(calls) == 1 and source.ref in calls[0].values()
    assert source.present_in(out) and not (out / source.archive_name).exists()
    first = capsys.readouterr().out
    assert f"{source.describe()} downloaded into {out}" in first
    # A second time it is found where it was unzipped, and nothing is downloaded again.
    assert main(["data", "kaggle", "--dataset", source.name, "--out", str(out)]) == 0 and len(calls) == 1
    second = capsys.readouterr().out
    assert f"is already in {out}" in second and _next_commands(first) == _next_commands(second)


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The competition unzipped, what `simpsons data kaggle` says to run next, and a tiny run trained on the
    folder it names."""
    root = tmp_path_factory.mktemp("journey")
    truth = make_journey_download(root / "download")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["data", "kaggle", "--dataset", "journey", "--out", str(root / "download")]) == 0
    commands = _next_commands(printed.getvalue())
    data = commands["train"][commands["train"].index("--data") + 1]
    run = train(tiny_config(epochs=1), data, root / "run", progress=False)
    return root / "download", truth, commands, run


def test_training_on_the_competition_train_folder_finds_the_characters(journey):
    download, _, commands, run = journey
    assert commands["train"][:2] == ["--data", str(download / "train")]
    assert RunData.read(run).classes == sorted(CHARACTERS)
    assert commands["predict"][-4:] == ["--format", "kaggle", "--out", "submission.csv"]


def test_the_submission_has_every_test_image_in_natural_order(journey, tmp_path, capsys):
    download, truth, _, run = journey
    testset = download / "testset"
    out = tmp_path / "submission.csv"
    assert main(["predict", "--run", str(run), str(testset), "--format", "kaggle", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["Id", "Expected"]
    ids = [row[0] for row in rows[1:]]
    assert ids == [f"img{n}.jpg" for n in range(TEST_IMAGES)]  # img2 before img10, every Id once
    expected = dict(rows[1:])
    for name in UNREADABLE_TEST_IMAGES:
        assert expected[name] == MOST_COMMON
        assert f"{testset / 'testset' / name}: not a readable image" in captured.err
    predictor = Predictor.from_run(run)
    readable = sorted(truth)
    with torch.no_grad():
        logits = predictor.model(torch.stack([predictor.load(testset / "testset" / name) for name in readable]))
    # The top-1 character, even where the open-set threshold would say unknown.
    assert [expected[name] for name in readable] == [predictor.classes[i] for i in logits.argmax(1).tolist()]
    assert not list(tmp_path.glob("*.partial"))

    assert main(["predict", "--run", str(run), str(testset), "--format", "kaggle"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_two_test_images_of_one_name_are_refused_before_predicting(journey, tmp_path, capsys):
    download, _, _, run = journey
    image = download / "testset" / "testset" / "img0.jpg"
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "img0.jpg").write_bytes(image.read_bytes())
    assert main(["predict", "--run", str(run), str(image), str(tmp_path / "copy"), "--format", "kaggle"]) == 2
    assert "have the same file name" in _error_line(capsys)


def test_evaluating_on_the_characters_test_set_as_printed(journey, tmp_path, capsys):
    """The characters download's labelled test set, through the command `simpsons data kaggle` prints (with the
    run trained above: both downloads share the characters)."""
    _, _, _, run = journey
    make_characters_download(tmp_path / "characters")
    assert main(["data", "kaggle", "--dataset", "characters", "--out", str(tmp_path / "characters")]) == 0
    evaluate = _next_commands(capsys.readouterr().out)["evaluate"]
    evaluate[evaluate.index("--run") + 1] = str(run)
    assert main(["evaluate", *evaluate, "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 3 * len(CHARACTERS) and metrics["num_classes"] == len(CHARACTERS)
