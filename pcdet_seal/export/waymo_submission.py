"""OpenPCDet Waymo detections (``result.pkl``) → Waymo leaderboard submission shards.

Mirrors what Waymo's ``create_submission`` tool writes: ``num_shards`` serialized
``Submission`` protos named ``<prefix><i>``, object i going to shard ``i % num_shards``, scores
below 0.03 dropped, box sizes at least 1e-6, packed into one ``.tar.gz``. Unlike that tool, bad
input is an error naming the frame (NaN boxes, unknown classes, frames without a timestamp,
arrays whose lengths disagree, negative sizes, non-integer timestamps). ``result.pkl`` and infos
are read with :func:`load_pickle`, a restricted unpickler that builds only numpy arrays, dtypes
and scalars and plain builtins, so a crafted pickle cannot run code. The Waymo protos are
imported lazily (``waymo-open-dataset-tf-2-12-0``, installed with ``--no-deps`` beside
``protobuf``).
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
#: The only globals :func:`load_pickle` resolves: what OpenPCDet's result.pkl and infos contain
#: (numpy arrays, dtypes and scalars, under numpy 1's ``numpy.core`` and numpy 2's ``numpy._core``)
#: and builtin value types. Anything else (``os.system``, ``builtins.eval``, ...) is refused.
SAFE_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # arrays in protocol-5 pickles
    ("_codecs", "encode"),  # bytes in protocol-2 pickles
    *(("builtins", name) for name in ("set", "frozenset", "complex", "slice", "range", "bytearray", "bytes",
                                      "list", "tuple", "dict", "int", "float", "str", "bool")),
})


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


def _timestamp(value: Any, where: str) -> int:
    """A Waymo timestamp: an integer (python or numpy), not a float, string or bool."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SubmissionError(f"{where}: timestamp_micros must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def frame_timestamps_from_infos(infos: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, int]]:
    """``frame_id`` → (context name, timestamp µs) from OpenPCDet Waymo infos (``metadata`` key)."""
    if not isinstance(infos, (list, tuple)):
        raise SubmissionError(f"infos must be a list of dicts, got {type(infos).__name__}")
    out = {}
    for index, info in enumerate(infos):
        if not isinstance(info, Mapping):
            raise SubmissionError(f"infos entry {index} is a {type(info).__name__}, not a dict")
        meta = info.get("metadata")
        if isinstance(meta, Mapping) and "context_name" in meta and "timestamp_micros" in meta:
            frame_id = info.get("frame_id", f"<infos entry {index}>")
            out[frame_id] = (str(meta["context_name"]), _timestamp(meta["timestamp_micros"], f"infos frame {frame_id}"))
    return out


def _frame_key(det: Mapping[str, Any], index: int, timestamps: Mapping[str, tuple[str, int]]) -> tuple[str, int]:
    frame_id = det.get("frame_id", f"<entry {index}>")
    meta = det.get("metadata")
    if isinstance(meta, Mapping) and "context_name" in meta and "timestamp_micros" in meta:
        return str(meta["context_name"]), _timestamp(meta["timestamp_micros"], f"frame {frame_id}")
    if frame_id in timestamps:
        return timestamps[frame_id]
    raise SubmissionError(
        f"frame {frame_id} (result entry {index}) has no timestamp: its 'metadata' lacks "
        "context_name/timestamp_micros and no --infos file provides it (regenerate the infos with "
        "OpenPCDet's waymo converter, which stores them, or pass --infos waymo_processed_data_*_infos_val.pkl)"
    )


def _frame_arrays(det: Mapping[str, Any], frame_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``name`` (M,), ``score`` (M,) float64 and ``boxes_lidar`` (M, ≥7) float64, shapes checked exactly."""
    try:
        names = np.asarray(det["name"])
        scores = np.asarray(det["score"], dtype=np.float64)
        boxes = np.asarray(det["boxes_lidar"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SubmissionError(f"frame {frame_id}: name/score/boxes_lidar are not numeric arrays of the expected "
                              f"types ({type(err).__name__}: {err})") from None
    if names.ndim != 1 or (names.size and (names.dtype.kind not in "UO"
                                           or not all(isinstance(v, str) for v in names.tolist()))):
        raise SubmissionError(f"frame {frame_id}: name must be a 1-D array of class-name strings, got "
                              f"{names.dtype} {names.shape}")
    m = len(names)
    if m == 0 and boxes.size == 0 and scores.size == 0:
        return names, scores.reshape(0), boxes.reshape(0, 7)
    if scores.shape != (m,) or boxes.ndim != 2 or boxes.shape[0] != m or boxes.shape[1] < 7:
        raise SubmissionError(
            f"frame {frame_id}: name {names.shape}, score {scores.shape} and boxes_lidar {boxes.shape} disagree "
            f"(expected ({m},), ({m},) and ({m}, >=7))"
        )
    return names, scores, boxes


def detections_to_objects(
    detections: Sequence[Mapping[str, Any]],
    timestamps: Optional[Mapping[str, tuple[str, int]]] = None,
    object_types: Sequence[str] = ("Vehicle", "Pedestrian", "Cyclist"),
    allow_empty: bool = False,
):
    """Convert OpenPCDet result dicts to a ``metrics_pb2.Objects`` proto.

    Each detection dict has ``name`` (M,) class names, ``score`` (M,), ``boxes_lidar`` (M, 7+)
    as [x, y, z, dx (length), dy (width), dz (height), heading], ``frame_id`` and, from
    OpenPCDet's Waymo infos, ``metadata`` = {context_name, timestamp_micros}. Objects of a
    class not in ``object_types`` are skipped; unknown class names, NaN/inf values and
    frames without a timestamp, non-integer timestamps, arrays whose shapes disagree and negative
    box sizes raise :class:`SubmissionError`; so does an empty result list unless ``allow_empty``.
    """
    label_pb2, metrics_pb2, _ = waymo_protos()
    timestamps = timestamps or {}
    if not isinstance(detections, (list, tuple)):
        raise SubmissionError(f"the result must be a list of per-frame dicts, got {type(detections).__name__}")
    if not detections and not allow_empty:
        raise SubmissionError("the result holds no frames (an empty list); pass --allow-empty to submit nothing")
    objects = metrics_pb2.Objects()
    for index, det in enumerate(detections):
        if not isinstance(det, Mapping):
            raise SubmissionError(f"result entry {index} is a {type(det).__name__}, not a per-frame dict")
        frame_id = det.get("frame_id", f"<entry {index}>")
        for key in ("name", "score", "boxes_lidar"):
            if key not in det:
                raise SubmissionError(f"frame {frame_id}: result entry {index} lacks the key '{key}'")
        names, scores, boxes = _frame_arrays(det, frame_id)
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
            if (box[3:6] < 0).any():
                raise SubmissionError(f"frame {frame_id}, box {j} ({name}): negative size (dx, dy, dz) = "
                                      f"{box[3:6].tolist()}")
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


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`SAFE_PICKLE_GLOBALS`; any other global is an UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays, dtypes, scalars and builtin "
                "values are allowed (OpenPCDet's result.pkl and infos need nothing else)"
            )
        return super().find_class(module, name)


def load_pickle(path: Path, what: str) -> Any:
    """Load an OpenPCDet pickle with a restricted unpickler (see :data:`SAFE_PICKLE_GLOBALS`),
    naming the file and what it should be when it cannot be read or holds other objects."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise SubmissionError(f"{what} file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a foreign file makes pickle raise anything
        raise SubmissionError(f"{what} file {path} is not a readable OpenPCDet pickle: {type(exc).__name__}: "
                              f"{exc}") from None
