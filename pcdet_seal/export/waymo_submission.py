"""OpenPCDet Waymo detections (``result.pkl``) → Waymo leaderboard submission shards.

Mirrors what Waymo's ``create_submission`` tool writes: ``num_shards`` serialized
``Submission`` protos named ``<prefix><i>``, object i going to shard ``i % num_shards``, scores
below 0.03 dropped, box sizes at least 1e-6, packed into one ``.tar.gz``. Unlike that tool, bad
input is an error naming the frame (NaN boxes, unknown classes, frames without a timestamp).
The Waymo protos are imported lazily (``waymo-open-dataset-tf-2-12-0``, installed with
``--no-deps`` beside ``protobuf``).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

INSTALL_HINT = (
    "the Waymo protos are missing: pip install protobuf && "
    "pip install --no-deps waymo-open-dataset-tf-2-12-0==1.6.7"
)
#: OpenPCDet class name → Waymo ``Label.Type`` name.
CLASS_TO_TYPE = {
    "Vehicle": "TYPE_VEHICLE",
    "Pedestrian": "TYPE_PEDESTRIAN",
    "Cyclist": "TYPE_CYCLIST",
    "Sign": "TYPE_SIGN",
}
MIN_SCORE = 0.03  # the leaderboard tool drops lower scores
MIN_SIZE = 1e-6


class SubmissionError(ValueError):
    """Invalid detections or metadata; the message names the frame / field at fault."""


def waymo_protos():
    """Import and return ``(label_pb2, metrics_pb2, submission_pb2)``, or explain what to install."""
    try:
        from waymo_open_dataset import label_pb2
        from waymo_open_dataset.protos import metrics_pb2, submission_pb2
    except ImportError as exc:  # pragma: no cover - exercised where the package is absent
        raise ImportError(INSTALL_HINT) from exc
    return label_pb2, metrics_pb2, submission_pb2


@dataclass
class SubmissionMeta:
    """Account and method metadata of a leaderboard submission (``Submission`` proto fields)."""

    account_name: str
    unique_method_name: str
    authors: Sequence[str]
    affiliation: str
    description: str = ""
    method_link: str = ""
    sensor_type: str = "LIDAR_ALL"
    number_past_frames_exclude_current: int = 0
    number_future_frames_exclude_current: int = 0
    object_types: Sequence[str] = field(default_factory=lambda: ["Vehicle", "Pedestrian", "Cyclist"])
    latency_second: Optional[float] = None

    def validate(self) -> None:
        """Raise :class:`SubmissionError` for a field the leaderboard would reject."""
        if not self.account_name or "@" not in self.account_name:
            raise SubmissionError(f"account_name must be the e-mail of the Waymo account, got {self.account_name!r}")
        if not self.unique_method_name or len(self.unique_method_name) > 25:
            raise SubmissionError(
                f"unique_method_name must be 1-25 characters, got {self.unique_method_name!r}"
            )
        if not self.authors:
            raise SubmissionError("authors must name at least one author")
        if not self.affiliation:
            raise SubmissionError("affiliation must not be empty")
        unknown = [t for t in self.object_types if t not in CLASS_TO_TYPE]
        if unknown:
            raise SubmissionError(f"object_types {unknown} unknown; choose from {sorted(CLASS_TO_TYPE)}")


def frame_timestamps_from_infos(infos: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, int]]:
    """``frame_id`` → (context name, timestamp µs) from OpenPCDet Waymo infos (``metadata`` key)."""
    out = {}
    for info in infos:
        meta = info.get("metadata")
        if isinstance(meta, Mapping) and "context_name" in meta and "timestamp_micros" in meta:
            out[info["frame_id"]] = (str(meta["context_name"]), int(meta["timestamp_micros"]))
    return out


def _frame_key(det: Mapping[str, Any], index: int, timestamps: Mapping[str, tuple[str, int]]) -> tuple[str, int]:
    frame_id = det.get("frame_id", f"<entry {index}>")
    meta = det.get("metadata")
    if isinstance(meta, Mapping) and "context_name" in meta and "timestamp_micros" in meta:
        return str(meta["context_name"]), int(meta["timestamp_micros"])
    if frame_id in timestamps:
        return timestamps[frame_id]
    raise SubmissionError(
        f"frame {frame_id} (result entry {index}) has no timestamp: its 'metadata' lacks "
        "context_name/timestamp_micros and no --infos file provides it (regenerate the infos with "
        "OpenPCDet's waymo converter, which stores them, or pass --infos waymo_processed_data_*_infos_val.pkl)"
    )


def detections_to_objects(
    detections: Sequence[Mapping[str, Any]],
    timestamps: Optional[Mapping[str, tuple[str, int]]] = None,
    object_types: Sequence[str] = ("Vehicle", "Pedestrian", "Cyclist"),
):
    """Convert OpenPCDet result dicts to a ``metrics_pb2.Objects`` proto.

    Each detection dict has ``name`` (M,) class names, ``score`` (M,), ``boxes_lidar`` (M, 7+)
    as [x, y, z, dx (length), dy (width), dz (height), heading], ``frame_id`` and, from
    OpenPCDet's Waymo infos, ``metadata`` = {context_name, timestamp_micros}. Objects of a
    class not in ``object_types`` are skipped; unknown class names, NaN/inf values and
    frames without a timestamp raise :class:`SubmissionError`.
    """
    label_pb2, metrics_pb2, _ = waymo_protos()
    timestamps = timestamps or {}
    objects = metrics_pb2.Objects()
    for index, det in enumerate(detections):
        frame_id = det.get("frame_id", f"<entry {index}>")
        for key in ("name", "score", "boxes_lidar"):
            if key not in det:
                raise SubmissionError(f"frame {frame_id}: result entry {index} lacks the key '{key}'")
        names = np.asarray(det["name"]).reshape(-1)
        scores = np.asarray(det["score"], dtype=np.float64).reshape(-1)
        boxes = np.asarray(det["boxes_lidar"], dtype=np.float64).reshape(len(names), -1) if len(names) else np.zeros((0, 7))
        if not (len(names) == len(scores) == len(boxes)) or (len(boxes) and boxes.shape[1] < 7):
            raise SubmissionError(
                f"frame {frame_id}: name {names.shape}, score {scores.shape} and boxes_lidar {boxes.shape} "
                "disagree (boxes need at least 7 columns)"
            )
        if len(names) == 0:
            continue
        context, stamp = _frame_key(det, index, timestamps)
        for j, (name, score, box) in enumerate(zip(names, scores, boxes)):
            name = str(name)
            if name not in CLASS_TO_TYPE:
                raise SubmissionError(
                    f"frame {frame_id}, box {j}: class '{name}' is not a Waymo class {sorted(CLASS_TO_TYPE)}"
                )
            if not np.all(np.isfinite(box[:7])) or not math.isfinite(score):
                raise SubmissionError(f"frame {frame_id}, box {j} ({name}): non-finite box {box[:7].tolist()} or score {score}")
            if name not in object_types or score < MIN_SCORE:
                continue
            if not 0.0 <= score <= 1.0:
                raise SubmissionError(f"frame {frame_id}, box {j}: score {score} outside [0, 1]")
            o = objects.objects.add()
            o.context_name = context
            o.frame_timestamp_micros = stamp
            o.score = float(score)
            b = o.object.box
            b.center_x, b.center_y, b.center_z = (float(v) for v in box[:3])
            b.length, b.width, b.height = (max(float(v), MIN_SIZE) for v in box[3:6])
            b.heading = float(box[6])
            o.object.type = label_pb2.Label.Type.Value(CLASS_TO_TYPE[name])
    return objects


def build_submissions(objects, meta: SubmissionMeta, num_shards: int = 4) -> list:
    """Split ``objects`` round-robin into ``num_shards`` ``Submission`` protos carrying ``meta``."""
    if num_shards < 1:
        raise SubmissionError(f"num_shards must be >= 1, got {num_shards}")
    meta.validate()
    label_pb2, _, submission_pb2 = waymo_protos()
    template = submission_pb2.Submission()
    template.task = submission_pb2.Submission.Task.Value("DETECTION_3D")
    template.account_name = meta.account_name
    template.unique_method_name = meta.unique_method_name
    template.authors.extend(meta.authors)
    template.affiliation = meta.affiliation
    template.description = meta.description
    template.method_link = meta.method_link
    template.sensor_type = submission_pb2.Submission.SensorType.Value(meta.sensor_type)
    template.number_past_frames_exclude_current = meta.number_past_frames_exclude_current
    template.number_future_frames_exclude_current = meta.number_future_frames_exclude_current
    template.object_types.extend(label_pb2.Label.Type.Value(CLASS_TO_TYPE[t]) for t in meta.object_types)
    if meta.latency_second is not None:
        template.latency_second = meta.latency_second
    shards = []
    for _ in range(num_shards):
        s = submission_pb2.Submission()
        s.CopyFrom(template)
        shards.append(s)
    for i, obj in enumerate(objects.objects):
        shards[i % num_shards].inference_results.objects.append(obj)
    return shards


def write_submission_tar(shards: Sequence, out_path: Path, prefix: str = "submission.bin") -> Path:
    """Write the shards ``<prefix>0 … <prefix>{n-1}`` into ``out_path`` (.tar.gz), atomically."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for i, shard in enumerate(shards):
                data = shard.SerializeToString()
                info = tarfile.TarInfo(name=f"{out_path.name.split('.')[0]}/{prefix}{i}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def read_submission_tar(path: Path) -> list:
    """Parse every shard of a submission ``.tar.gz`` back into ``Submission`` protos."""
    _, _, submission_pb2 = waymo_protos()
    shards = []
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile():
                continue
            s = submission_pb2.Submission()
            s.ParseFromString(tar.extractfile(member).read())
            shards.append(s)
    return shards


def load_pickle(path: Path, what: str) -> Any:
    """Load a pickle, naming the file and what it should be when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        raise SubmissionError(f"{what} file {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise SubmissionError(f"{what} file {path} is not a readable pickle: {exc}") from None
