"""``simpsons data frames``: still frames from episode videos, for the folders a user labels, ``discover`` groups and
``train --unlabeled`` learns from.

Decoding is OpenCV's (its wheels carry FFmpeg): every frame is read in order, which is exact whatever the
container's index, and one every ``every_seconds`` is considered. A frame that looks like the last one kept (the
same shot: a mouth moving, a blink) is left out, so that the frames are shots rather than many copies of each, which
would fill ``discover``'s clusters and weigh in pseudo-labels as copies do. A frame is named
``EPISODE__SECONDSs.jpg`` (``s01e01__000205.0s.jpg``): the name before ``__`` is the split's source group
(``split: group``), so the frames of one episode stay on one side of a split instead of leaking between training
and validation. Only the standard library is imported here at first, so that ``--help`` stays fast.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage import make_folder, write_atomic

if TYPE_CHECKING:
    import numpy as np

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
"""What a folder given to ``simpsons data frames`` is searched for; a file named on its own is tried whatever its
suffix."""
JPEG_QUALITY = 95
MIN_EVERY_SECONDS = 0.1
"""The closest frames can be: :func:`frame_name` writes the time to the tenth of a second."""
MIN_CHANGE = 0.02
"""A frame is kept when the mean absolute difference of its grey thumbnail from the last kept one's (0 to 1) is at
least this. ``benchmarks/frame_change.py`` measures it on a stand-in character on a photo: its next animation
frames differ by 0.011 and a JPEG re-encoding by 0.002 (left out); another character in the same place by 0.026, a
20 px move by 0.042, a pan or another background by 0.16 and more (kept)."""
THUMBNAIL = (64, 64)
TIME_TOLERANCE = 1e-6
"""Seconds within which a frame's time counts as the time a frame is due (timestamps are rounded milliseconds)."""


@dataclass
class FramesResult:
    """Frames written per video, frames left out as like the one before, and the videos that could not be read."""

    out: Path
    written: dict[Path, int] = field(default_factory=dict)
    alike: Counter[Path] = field(default_factory=Counter)
    unreadable: dict[Path, str] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(self.written.values())


def find_videos(paths: list[str | Path]) -> list[Path]:
    """Files as given, and the video files below folders (by suffix), in sorted order."""
    videos: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            videos += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                             and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            videos.append(path)
    return videos


def episode_names(videos: list[Path]) -> dict[Path, str]:
    """Each video's name in its frames' names: its stem, or ``FOLDER-STEM`` where two videos share a stem
    (``season1/e01.mp4`` and ``season2/e01.mp4``), so that no video's frames overwrite another's."""
    stems = Counter(video.stem for video in videos)
    names = {video: video.stem if stems[video.stem] == 1 else f"{video.parent.name}-{video.stem}" for video in videos}
    uses = Counter(names.values())
    clashes = sorted(str(video) for video, name in names.items() if uses[name] > 1)
    if clashes:
        raise ValueError(f"videos whose frames would share names: {', '.join(clashes)}; rename one of each")
    return names


def frame_name(episode: str, seconds: float) -> str:
    """``s01e01__000205.0s.jpg``: sorted by time, grouped by episode."""
    return f"{episode}__{seconds:08.1f}s.jpg"


def extract_frames(videos: list[Path], out: str | Path, every_seconds: float = 1.0, min_change: float = MIN_CHANGE,
                   progress: bool = True) -> FramesResult:
    """Write one frame every ``every_seconds`` of each video into ``out``, unless it differs from the last one
    written by less than ``min_change`` (0 keeps every one); an unreadable video is recorded and the others go on.
    Frames already there are written again (the same names), so an interrupted extraction is finished by running
    it again."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    if every_seconds < MIN_EVERY_SECONDS:
        raise ValueError(f"--every {every_seconds}: must be at least {MIN_EVERY_SECONDS} s (frames are named to the "
                         "tenth of a second)")
    result = FramesResult(make_folder(out))
    for video, episode in episode_names(videos).items():
        if not video.is_file():
            result.unreadable[video] = "does not exist"
            continue
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            result.unreadable[video] = "not a video OpenCV's FFmpeg can decode"
            continue
        last_kept = None
        with tqdm(total=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None, desc=f"frames of {video.name}",
                  unit="frame", disable=not progress, leave=False) as bar:
            for seconds, frame in _frames_due(capture, every_seconds, bar.update):
                thumbnail = grey_thumbnail(frame)
                if last_kept is not None and np.abs(thumbnail - last_kept).mean() < min_change:
                    result.alike[video] += 1
                    continue
                encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
                write_atomic(result.out / frame_name(episode, seconds), lambda handle: handle.write(encoded))
                result.written[video] = result.written.get(video, 0) + 1
                last_kept = thumbnail
        capture.release()
        if video not in result.written:
            result.unreadable[video] = "no frame could be decoded"
    return result


def _frames_due(capture, every_seconds: float, on_frame) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, BGR frame) of the first frame at or after each multiple of ``every_seconds``; ``on_frame`` is
    called for every frame read."""
    import cv2

    fps, index, due = capture.get(cv2.CAP_PROP_FPS), 0, 0.0
    while capture.grab():
        on_frame()
        # The container's timestamp where it has one (variable frame rates), else the frame's place.
        seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        if seconds <= 0 and fps > 0:
            seconds = index / fps
        index += 1
        if seconds < due - TIME_TOLERANCE:
            continue
        ok, frame = capture.retrieve()
        if ok:
            yield seconds, frame
            due = (math.floor((seconds + TIME_TOLERANCE) / every_seconds) + 1) * every_seconds


def grey_thumbnail(frame: np.ndarray) -> np.ndarray:
    """The frame in grey at ``THUMBNAIL`` pixels, 0 to 1: what two frames are compared on."""
    import cv2
    import numpy as np

    grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), THUMBNAIL, interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32) / 255
