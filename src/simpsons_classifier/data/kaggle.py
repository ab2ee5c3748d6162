"""The two Kaggle Simpsons downloads: where their training and test images lie, and fetching them.

``characters`` is the dataset alexattia/the-simpsons-characters-dataset: ``simpsons_dataset/`` (one folder per
character, doubly nested and sometimes with a duplicate inner copy, which the scan walks through) and
``kaggle_simpson_testset/`` (a flat test set whose file names carry the label). ``journey`` is the competition
journey-springfield: ``train/simpsons_dataset/`` and an unlabelled ``testset/`` of ``img<N>.jpg``, to be answered
with a submission of ``Id,Expected`` rows.

Fetching uses the official Kaggle client (the optional ``kaggle`` extra) with the user's credentials. Without the
client, the credentials or a network it fails at once, with one message that says what to download by hand and
where to unzip it: the reachability check has a short timeout of its own, because the client's requests have none
and would otherwise wait for the system's TCP timeout (minutes) on a network that drops packets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shlex
import socket
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UserError

API_HOST = "api.kaggle.com"
CONNECT_TIMEOUT_S = 5.0
INSTALL_HINT = "pip install 'simpsons-classifier[kaggle]'"
CREDENTIALS_HINT = ("create an API token at https://www.kaggle.com/settings/api and save it as "
                    "~/.kaggle/kaggle.json, or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)")


class DownloadError(UserError):
    """A Kaggle download that cannot be done here; the message says what to do by hand instead."""


@dataclass(frozen=True)
class KaggleSource:
    """One Kaggle download and the folders it unzips to."""

    name: str
    ref: str
    """``owner/dataset`` for a dataset, the competition's name for a competition."""
    competition: bool
    train_folder: str
    test_folder: str
    labelled_test: bool
    """The test set's file names carry the label (``bart_simpson_12.jpg``); otherwise it is answered by a
    submission."""

    @property
    def archive_name(self) -> str:
        """The zip file the client downloads."""
        return f"{self.ref.split('/')[-1]}.zip"

    @property
    def url(self) -> str:
        if self.competition:
            return f"https://www.kaggle.com/competitions/{self.ref}/data"
        return f"https://www.kaggle.com/datasets/{self.ref}"

    def describe(self) -> str:
        return f"the Kaggle {'competition' if self.competition else 'dataset'} {self.ref}"

    def present_in(self, folder: Path) -> bool:
        return (folder / self.train_folder).is_dir() and (folder / self.test_folder).is_dir()

    def next_commands(self, folder: Path) -> list[str]:
        """What to run once the download is unzipped in ``folder``."""
        run = f"runs/{self.name}"
        train = shlex.quote(str(folder / self.train_folder))
        test = shlex.quote(str(folder / self.test_folder))
        commands = [f"simpsons train --data {train} --out {run}"]
        if self.labelled_test:
            commands.append(f"simpsons evaluate --run {run} --data {test} --labels-from-filenames")
        else:
            commands.append(f"simpsons predict --run {run} {test} --format kaggle --out submission.csv")
        return commands

    def by_hand(self, folder: Path) -> str:
        """The manual route, in one sentence."""
        accept = ", accept the rules" if self.competition else ""
        return (f"download {self.describe()} from {self.url}{accept} and unzip it into {folder} so that "
                f"{folder / self.train_folder} and {folder / self.test_folder} exist; then run: "
                f"{self.next_commands(folder)[0]}")


CHARACTERS = KaggleSource("characters", "alexattia/the-simpsons-characters-dataset", competition=False,
                          train_folder="simpsons_dataset", test_folder="kaggle_simpson_testset", labelled_test=True)
JOURNEY = KaggleSource("journey", "journey-springfield", competition=True,
                       train_folder="train", test_folder="testset", labelled_test=False)
SOURCES = {source.name: source for source in (CHARACTERS, JOURNEY)}


def recognise_download(folder: Path) -> KaggleSource | None:
    """The Kaggle download unzipped in ``folder`` (its top level, not a dataset folder), if it is one."""
    return next((source for source in SOURCES.values() if source.present_in(folder)), None)


def fetch(source: KaggleSource, out: str | Path) -> bool:
    """Download and unzip ``source`` into ``out`` unless it is there already; True when it was downloaded."""
    out = Path(out)
    if source.present_in(out):
        return False
    try:
        api = _authenticated_client()
        out.mkdir(parents=True, exist_ok=True)
        _download(api, source, out)
    except DownloadError as error:
        raise DownloadError(f"{error}. Instead, {source.by_hand(out)}") from None
    if not source.present_in(out):
        found = ", ".join(sorted(p.name for p in out.iterdir())) or "nothing"
        raise DownloadError(f"downloaded {source.describe()} into {out}, but found {found} there instead of "
                            f"{source.train_folder}/ and {source.test_folder}/")
    return True


def check_reachable(host: str = API_HOST, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to ``host`` (or the HTTPS proxy in the environment) within ``timeout`` seconds, or raise."""
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        address = (parts.hostname or "", parts.port or 80)
    else:
        address = (host, 443)
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as error:
        raise DownloadError(f"cannot reach {address[0]}:{address[1]} ({error.strerror or error})") from None


def _authenticated_client():
    """The Kaggle client, authenticated. The network is checked before the import, because importing the
    client already authenticates, which may ask the network with no timeout."""
    if importlib.util.find_spec("kaggle") is None:
        raise DownloadError(f"the Kaggle client is not installed ({INSTALL_HINT})")
    check_reachable()
    # The client prints its own multi-page help when credentials are missing; our message replaces it.
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            from kaggle.api.kaggle_api_extended import KaggleApi
            from requests import RequestException

            api = KaggleApi()
            api.authenticate()
    except ImportError as error:
        raise DownloadError(f"the Kaggle client cannot be imported ({error}; {INSTALL_HINT})") from None
    except RequestException as error:
        raise DownloadError(f"the Kaggle API did not answer ({error})") from None
    except (SystemExit, OSError):  # SystemExit from kaggle >= 1.7, OSError from older clients
        raise DownloadError(f"no Kaggle credentials: {CREDENTIALS_HINT}") from None
    print(captured.getvalue(), end="", file=sys.stderr)
    return api


def _download(api, source: KaggleSource, out: Path) -> None:
    from requests import HTTPError, RequestException

    try:
        with contextlib.redirect_stdout(sys.stderr):  # the client's notes and progress, not our output
            if source.competition:
                api.competition_download_files(source.ref, path=str(out), quiet=False)
            else:
                api.dataset_download_files(source.ref, path=str(out), quiet=False)
    except HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise DownloadError(f"Kaggle refused the credentials (401): {CREDENTIALS_HINT}") from None
        if status == 403 and source.competition:
            raise DownloadError(f"Kaggle refused the download (403): accept the rules at "
                                f"https://www.kaggle.com/competitions/{source.ref}/rules first") from None
        raise DownloadError(f"Kaggle refused the download ({error})") from None
    except RequestException as error:
        raise DownloadError(f"the download from Kaggle failed ({error})") from None
    _unzip(out / source.archive_name)


def _unzip(archive: Path) -> None:
    """Unzip next to the archive and remove it. Older clients cannot unzip a competition's files, so this is
    done here for both kinds; ``zipfile`` keeps every member inside the folder."""
    if not archive.is_file():
        raise DownloadError(f"the Kaggle client left no {archive}")
    print(f"unzipping {archive}", file=sys.stderr)
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(archive.parent)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive} is not a complete zip file ({error}): delete it and fetch again") from None
    archive.unlink()
