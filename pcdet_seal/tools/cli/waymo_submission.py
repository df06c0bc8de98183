"""Convert OpenPCDet's Waymo ``result.pkl`` into a leaderboard submission ``.tar.gz``.

    python scripts/waymo_submission.py output/.../eval/epoch_12/val/default/result.pkl \\
        --out submissions/picture_val.tar.gz --account-name you@example.com \\
        --method-name PICTURE-DSVT --authors "A. Author" "B. Author" --affiliation "Lab"

Frames need their context name and timestamp: OpenPCDet's Waymo infos store them in
``metadata`` and the test loop copies them into result.pkl; otherwise pass ``--infos``.

result.pkl and --infos are unpickled with a restricted unpickler that builds only numpy arrays,
dtypes and scalars and builtin values (what OpenPCDet writes), so a crafted file cannot run code.
Exit status: 0 written, 2 malformed input (named frame) or missing Waymo protos.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pcdet_seal.export.waymo_submission import (
    CLASS_TO_TYPE,
    SubmissionError,
    SubmissionMeta,
    build_submissions,
    detections_to_objects,
    frame_timestamps_from_infos,
    load_pickle,
    write_submission_tar,
)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", type=Path, help="OpenPCDet result.pkl (Waymo val or test split)")
    ap.add_argument("--out", type=Path, required=True, help="output .tar.gz")
    ap.add_argument("--infos", type=Path, help="Waymo infos .pkl giving timestamps for frames without metadata")
    ap.add_argument("--account-name", required=True, help="e-mail of the Waymo account")
    ap.add_argument("--method-name", required=True, help="unique method name, at most 25 characters")
    ap.add_argument("--authors", nargs="+", required=True)
    ap.add_argument("--affiliation", required=True)
    ap.add_argument("--description", default="")
    ap.add_argument("--method-link", default="")
    ap.add_argument("--sensor-type", default="LIDAR_ALL")
    ap.add_argument("--num-past-frames", type=int, default=0, help="past frames the model used (DSVT: 0)")
    ap.add_argument("--object-types", nargs="+", default=["Vehicle", "Pedestrian", "Cyclist"],
                    choices=sorted(CLASS_TO_TYPE))
    ap.add_argument("--latency-second", type=float)
    ap.add_argument("--num-shards", type=int, default=4)
    ap.add_argument("--allow-empty", action="store_true", help="accept a result.pkl without any frame")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        detections = load_pickle(args.result, "result")
        timestamps = frame_timestamps_from_infos(load_pickle(args.infos, "infos")) if args.infos else {}
        meta = SubmissionMeta(
            account_name=args.account_name, unique_method_name=args.method_name, authors=args.authors,
            affiliation=args.affiliation, description=args.description, method_link=args.method_link,
            sensor_type=args.sensor_type, number_past_frames_exclude_current=args.num_past_frames,
            object_types=args.object_types, latency_second=args.latency_second,
        )
        meta.validate()
        objects = detections_to_objects(detections, timestamps, args.object_types, allow_empty=args.allow_empty)
        shards = build_submissions(objects, meta, args.num_shards)
        out = write_submission_tar(shards, args.out)
    except (SubmissionError, ImportError) as exc:
        print(f"waymo_submission: error: {exc}", file=sys.stderr)
        return 2
    logging.info("wrote %s: %d objects from %d frames in %d shards", out, len(objects.objects), len(detections),
                 len(shards))
    return 0


if __name__ == "__main__":
    sys.exit(main())
