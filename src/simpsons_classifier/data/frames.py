"""``simpsons data frames``: still frames from episode videos, for the folders a user labels, ``discover`` groups and
``train --unlabeled`` learns from.

A frame is named ``EPISODE__SECONDSs.jpg`` (``s01e01__000205.0s.jpg``): the name before ``__`` is the split's
source group (``split: group``), so the near-identical frames of one episode stay on one side of a split instead
of leaking between training and validation. Decoding is OpenCV's (its wheels carry FFmpeg): every frame is read
in order, which is exact whatever the container's index, and one every ``every_seconds`` is kept.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..storage import make_folder, write_atomic

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
"""What a folder given to ``simpsons data frames`` is searched for; a file named on its own is tried whatever its
suffix."""
JPEG_QUALITY = 95
MIN_EVERY_SECONDS = 0.1
"""The closest frames can be: :func:`frame_name` writes the time to the tenth of a second."""
TIME_TOLERANCE = 1e-6
"""Seconds within which a frame's time counts as the time a frame is due (timestamps are rounded milliseconds)."""


@dataclass
class FramesResult:
    """Frames written per video, and the videos that could not be read with why."""

    out: Path
    written: dict[Path, int] = field(default_factory=dict)
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


def extract_frames(videos: list[Path], out: str | Path, every_seconds: float = 1.0,
                   progress: bool = True) -> FramesResult:
    """Write one frame every ``every_seconds`` of each video into ``out``; an unreadable video is recorded and the
    others go on. Frames already there are written again (the same names), so an interrupted extraction is
    finished by running it again."""
    import cv2
    from tqdm import tqdm

    if every_seconds < MIN_EVERY_SECONDS:
        raise ValueError(f"--every {every_seconds}: must be at least {MIN_EVERY_SECONDS} s (frames are named to the "
                         "tenth of a second)")
    episodes = episode_names(videos)
    result = FramesResult(make_folder(out))
    for video, episode in episodes.items():
        if not video.is_file():
            result.unreadable[video] = "does not exist"
            continue
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            result.unreadable[video] = "not a video OpenCV's FFmpeg can decode"
            continue
        fps = capture.get(cv2.CAP_PROP_FPS)
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        written, due, index = 0, 0.0, 0
        with tqdm(total=total, desc=f"frames of {video.name}", unit="frame", disable=not progress,
                  leave=False) as bar:
            while capture.grab():
                # The container's timestamp where it has one (variable frame rates), else the frame's place.
                seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                if seconds <= 0 and fps > 0:
                    seconds = index / fps
                if seconds >= due - TIME_TOLERANCE:
                    ok, frame = capture.retrieve()
                    if ok:
                        encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1]
                        write_atomic(result.out / frame_name(episode, seconds), lambda f: f.write(encoded.tobytes()))
                        written += 1
                        due = (math.floor((seconds + TIME_TOLERANCE) / every_seconds) + 1) * every_seconds
                index += 1
                bar.update()
        capture.release()
        if written:
            result.written[video] = written
        else:
            result.unreadable[video] = "no frame could be decoded"
    return result
