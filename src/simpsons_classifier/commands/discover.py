"""``simpsons discover --run RUN --images DIR``: images the run rejects as unknown characters, grouped into
candidate new characters (``discovery/``)."""

from __future__ import annotations

import argparse
import sys

from . import add_run_argument


def register(subcommands) -> None:
    parser = subcommands.add_parser("discover", help="group images a run rejects as unknown into candidate new "
                                                     "characters")
    add_run_argument(parser)
    parser.add_argument("--images", required=True, metavar="DIR", help="a folder of images, searched recursively "
                                                                       "(only read)")
    parser.add_argument("--out", metavar="OUT", help="where the clusters go (default: RUN/discover); replaced when "
                                                     "it holds a previous discover output and nothing else")
    parser.add_argument("--every-image", action="store_true",
                        help="cluster every image beside the known characters, not only those the run's "
                             "unknown-character rule rejects, and take those in new clusters as unknown too: for a "
                             "folder of new characters drawn as the training images were, which the rule, judging "
                             "one image at a time, may accept")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..discovery.results import counted
    from ..discovery.run import discover
    from ..report import build_report
    from ..run_dir import RunDir

    found = discover(args.run, args.images, args.out, every_image=args.every_image)
    for skipped in found.skipped:
        print(f"{skipped.path}: {skipped.reason}; skipped", file=sys.stderr)
    if found.skipped:
        print(f"{len(found.skipped)} of {found.files} files could not be read", file=sys.stderr)
    print(found.summary() + (f" (images compared {found.detail.describe()})" if found.detail else ""))
    for cluster in found.clusters:
        print(f"  {cluster.name + '/':<28} {counted(cluster.size, 'image'):>11}  tightness {cluster.tightness:.2f}"
              + (f"  likely the same character as {', '.join(cluster.likely_same)}" if cluster.likely_same else ""))
    if found.known and not found.every_image:
        print(f"{counted(found.known, 'image')} accepted by the rule as known characters; --every-image "
              "clusters them too, to find new characters drawn as the training images were")
    print(f"wrote {found.out.clusters} and {found.out.page}")
    run_dir = RunDir(args.run)
    if found.out.path.resolve() == run_dir.discover_dir.path.resolve() and run_dir.report.is_file():
        print(f"report: {build_report(run_dir)} (links the page)")
    return 0
