"""Shared fixtures."""

from pathlib import Path

import pytest
from synthetic import make_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory) -> Path:
    """The calibrated tiny run the serve tests share, trained once per session."""
    from tiny_runs import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def serve_predictor(serve_run):
    from simpsons_classifier.inference.predictor import Predictor

    return Predictor.from_run(serve_run)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (``make test`` installs both)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the tests through `make test`, which installs it")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
