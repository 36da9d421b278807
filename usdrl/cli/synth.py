"""``synth``: synthetic skeleton data in a raw dataset format, to try the whole command line without a dataset."""

import argparse
import sys


def _synth(args: argparse.Namespace) -> None:
    from ..data.synthetic_files import SYNTHETIC_FORMATS, write_synthetic
    from ..errors import ConfigError

    unit = SYNTHETIC_FORMATS[args.format][0]
    counts = {"clips": args.clips, "sequences": args.sequences}
    count = counts.pop(unit)
    if count is None or any(value is not None for value in counts.values()):
        raise ConfigError(f"{args.format} holds {unit}: give --{unit} N (and not --{', --'.join(counts)})")
    files = write_synthetic(args.format, args.out, count, seed=args.seed)
    sys.stdout.write(f"wrote {len(files)} {args.format} {'file' if len(files) == 1 else 'files'} to {args.out} "
                     f"({count} synthetic {unit}); next: usdrl prepare "
                     f"{SYNTHETIC_FORMATS[args.format][1].split(',')[0]} {args.out} OUT --benchmark ...\n")


def register(commands) -> None:
    from ..data.synthetic_files import SYNTHETIC_FORMATS

    formats = "; ".join(f"{name}: {unit}, read by usdrl prepare {sources}"
                        for name, (unit, sources) in SYNTHETIC_FORMATS.items())
    synth = commands.add_parser(
        "synth", help="write synthetic skeleton data in a raw dataset format (try every command without a dataset)",
        description="Draw clips (or untrimmed sequences with several actions) of the 29 classes of usdrl's "
                    "synthetic action generator and write them as the raw files of a dataset, laid out the way "
                    "`usdrl prepare` reads them: ntu, a folder of NTU RGB+D .skeleton files; pkummd1/pkummd2, a "
                    "PKU-MMD release folder (skeletons, labels, split files); uav, a folder of UAV-Human files; "
                    "ntu2d, a pyskl pickle of 2D keypoints (OUT is the .pkl file). Clips repeating an NTU name are "
                    "written once, so ntu and ntu2d may hold fewer clips than asked. Formats: " + formats + ".")
    synth.add_argument("format", metavar="FORMAT", choices=list(SYNTHETIC_FORMATS),
                       help=f"raw format: {', '.join(SYNTHETIC_FORMATS)}")
    synth.add_argument("out", metavar="OUT", help="folder to write into (ntu2d: the pickle file)")
    synth.add_argument("--clips", type=int, help="clips to draw (ntu, uav, ntu2d)")
    synth.add_argument("--sequences", type=int, help="untrimmed sequences to draw (pkummd1, pkummd2)")
    synth.add_argument("--seed", type=int, default=0, help="draws the data (default: 0)")
    synth.set_defaults(run=_synth, keyword_flags={"count": "--clips/--sequences"})
