"""Waymo leaderboard exporter: round trip through the protos and clear errors."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("waymo_open_dataset.protos.submission_pb2",
                    reason="Waymo protos not installed (pip install --no-deps waymo-open-dataset-tf-2-12-0)")

from pcdet_seal.export.waymo_submission import (  # noqa: E402
    SubmissionError,
    SubmissionMeta,
    build_submissions,
    detections_to_objects,
    read_submission_tar,
    write_submission_tar,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "waymo_submission.py"
META = SubmissionMeta(account_name="me@example.com", unique_method_name="PICTURE", authors=["A"], affiliation="Lab")


def _results(n_frames=3, seed=0, metadata=True):
    rng = np.random.default_rng(seed)
    out = []
    for f in range(n_frames):
        m = 5 + f
        det = {
            "frame_id": f"segment-{f}_with_camera_labels_{f:03d}",
            "name": np.array(["Vehicle", "Pedestrian", "Cyclist"])[rng.integers(0, 3, m)],
            "score": rng.uniform(0.05, 1.0, m),
            "boxes_lidar": np.concatenate([rng.normal(0, 20, (m, 3)), rng.uniform(0.5, 5, (m, 3)),
                                           rng.uniform(-np.pi, np.pi, (m, 1))], 1),
        }
        if metadata:
            det["metadata"] = {"context_name": f"ctx{f}", "timestamp_micros": 1_000_000 + f}
        out.append(det)
    return out


def test_round_trip(tmp_path):
    results = _results()
    objects = detections_to_objects(results)
    shards = build_submissions(objects, META, num_shards=4)
    path = write_submission_tar(shards, tmp_path / "sub.tar.gz")
    back = read_submission_tar(path)
    assert len(back) == 4
    assert all(s.account_name == "me@example.com" and s.unique_method_name == "PICTURE" for s in back)
    got = sorted(
        (o.context_name, o.frame_timestamp_micros, o.object.type, round(o.score, 5),
         tuple(round(v, 4) for v in (o.object.box.center_x, o.object.box.center_y, o.object.box.center_z,
                                     o.object.box.length, o.object.box.width, o.object.box.height,
                                     o.object.box.heading)))
        for s in back for o in s.inference_results.objects
    )
    types = {"Vehicle": 1, "Pedestrian": 2, "Cyclist": 4}
    want = sorted(
        (f"ctx{f}", 1_000_000 + f, types[str(n)], round(float(s), 5), tuple(round(float(v), 4) for v in b[:7]))
        for f, det in enumerate(results) for n, s, b in zip(det["name"], det["score"], det["boxes_lidar"])
    )
    assert got == want


def test_low_scores_dropped_and_sizes_clamped():
    det = {"frame_id": "f", "metadata": {"context_name": "c", "timestamp_micros": 5},
           "name": np.array(["Vehicle", "Vehicle"]), "score": np.array([0.01, 0.5]),
           "boxes_lidar": np.array([[0, 0, 0, 1, 1, 1, 0], [1, 2, 3, 0.0, 2, 2, 0.1]])}
    objects = detections_to_objects([det])
    assert len(objects.objects) == 1
    assert objects.objects[0].object.box.length == pytest.approx(1e-6)


def test_missing_timestamp_names_frame():
    results = _results(metadata=False)
    with pytest.raises(SubmissionError, match="segment-0_with_camera_labels_000.*timestamp"):
        detections_to_objects(results)
    # --infos supplies them.
    stamps = {r["frame_id"]: (f"ctx{i}", i) for i, r in enumerate(results)}
    assert len(detections_to_objects(results, stamps).objects) == sum(len(r["name"]) for r in results)


def test_nan_box_names_frame_and_box():
    results = _results()
    results[1]["boxes_lidar"][2, 4] = np.nan
    with pytest.raises(SubmissionError, match=r"segment-1_with_camera_labels_001, box 2"):
        detections_to_objects(results)


def test_unknown_class_is_named():
    results = _results()
    results[0]["name"][0] = "Truck"
    with pytest.raises(SubmissionError, match="Truck"):
        detections_to_objects(results)


def test_meta_validation():
    bad = SubmissionMeta(account_name="me@example.com", unique_method_name="x" * 26, authors=["A"], affiliation="L")
    with pytest.raises(SubmissionError, match="25"):
        bad.validate()


def test_cli_end_to_end_and_error(tmp_path):
    res = tmp_path / "result.pkl"
    res.write_bytes(pickle.dumps(_results()))
    out = tmp_path / "out" / "sub.tar.gz"
    args = [sys.executable, str(SCRIPT), str(res), "--out", str(out), "--account-name", "me@example.com",
            "--method-name", "PICTURE", "--authors", "A", "B", "--affiliation", "Lab", "--num-shards", "2"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(read_submission_tar(out)) == 2
    res.write_bytes(pickle.dumps(_results(metadata=False)))
    out2 = tmp_path / "out" / "sub2.tar.gz"
    done = subprocess.run(args[:4] + [str(out2)] + args[5:], capture_output=True, text=True)
    assert done.returncode == 2
    assert "segment-0_with_camera_labels_000" in done.stderr and not out2.exists()
    assert not list((tmp_path / "out").glob(".*part"))


# --- issue 13: malformed results are errors naming the frame; pickles cannot run code ----------

def _one(**changes):
    det = {"frame_id": "seg_007", "metadata": {"context_name": "c", "timestamp_micros": 5},
           "name": np.array(["Vehicle", "Cyclist"]), "score": np.array([0.5, 0.6]),
           "boxes_lidar": np.array([[0, 0, 0, 4, 2, 1.5, 0], [1, 2, 0, 1.8, 0.6, 1.7, 0.3]])}
    det.update(changes)
    return det


@pytest.mark.parametrize("changes,match", [
    ({"boxes_lidar": np.zeros((4, 7))}, r"frame seg_007: name \(2,\), score \(2,\) and boxes_lidar \(4, 7\) disagree"),
    ({"boxes_lidar": np.zeros((2, 8))[:, :5]}, r"boxes_lidar \(2, 5\) disagree \(expected \(2,\), \(2,\) and \(2, >=7\)\)"),
    ({"boxes_lidar": np.zeros(14)}, r"boxes_lidar \(14,\) disagree"),
    ({"score": np.array([0.5, 0.6, 0.7])}, r"score \(3,\)"),
    ({"score": np.array(["high", "low"])}, r"frame seg_007: name/score/boxes_lidar are not numeric"),
    ({"name": np.array([1, 2])}, r"frame seg_007: name must be a 1-D array of class-name strings"),
    ({"metadata": {"context_name": "c", "timestamp_micros": 5.5}}, r"frame seg_007: timestamp_micros must be an "
                                                                   r"integer, got float 5\.5"),
    ({"metadata": {"context_name": "c", "timestamp_micros": "5"}}, r"timestamp_micros must be an integer, got str"),
    ({"boxes_lidar": np.array([[0, 0, 0, 4, -2, 1.5, 0], [1, 2, 0, 1.8, 0.6, 1.7, 0.3]])},
     r"frame seg_007, box 0 \(Vehicle\): negative size \(dx, dy, dz\) = \[4\.0, -2\.0, 1\.5\]"),
])
def test_malformed_results_are_refused_naming_the_frame(changes, match):
    with pytest.raises(SubmissionError, match=match):
        detections_to_objects([_one(**changes)])


def test_result_containers_and_empty_results():
    with pytest.raises(SubmissionError, match="must be a list of per-frame dicts, got dict"):
        detections_to_objects(_one())
    with pytest.raises(SubmissionError, match="result entry 1 is a str"):
        detections_to_objects([_one(), "frame"])
    with pytest.raises(SubmissionError, match="no frames .*--allow-empty"):
        detections_to_objects([])
    assert len(detections_to_objects([], allow_empty=True).objects) == 0
    assert len(detections_to_objects([_one(name=np.array([]), score=np.array([]),
                                           boxes_lidar=np.zeros((0, 7)))]).objects) == 0
    assert len(detections_to_objects([_one(metadata={"context_name": "c", "timestamp_micros": np.int64(5)})]).objects) == 2


def _cli(tmp_path, result_bytes, *extra):
    res = tmp_path / "result.pkl"
    res.write_bytes(result_bytes)
    out = tmp_path / "sub.tar.gz"
    args = [sys.executable, str(SCRIPT), str(res), "--out", str(out), "--account-name", "me@example.com",
            "--method-name", "PICTURE", "--authors", "A", "--affiliation", "Lab", *extra]
    return subprocess.run(args, capture_output=True, text=True), out


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_cli_refuses_a_crafted_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    done, out = _cli(tmp_path, pickle.dumps([_one(), {"frame_id": _Evil(marker)}]))
    assert done.returncode == 2, done.stderr
    assert "refusing to load global builtins.exec" in done.stderr and "result.pkl" in done.stderr
    assert not marker.exists() and not out.exists()
    assert "restricted unpickler" in subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                                                    text=True).stdout


def test_cli_reads_numpy_1_and_numpy_2_pickles(tmp_path):
    data = pickle.dumps([_one(score=np.array([np.float32(0.5), np.float32(0.6)]))], protocol=2)
    assert b"numpy._core.multiarray" in data or b"numpy.core.multiarray" in data
    numpy1 = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # protocol 2: newline-ended names
    for payload in (data, numpy1):
        done, out = _cli(tmp_path, payload)
        assert done.returncode == 0, done.stderr
        assert sum(len(s.inference_results.objects) for s in read_submission_tar(out)) == 2


def test_cli_reads_protocol_5_pickles(tmp_path):
    """pickle.HIGHEST_PROTOCOL stores arrays through numpy's _frombuffer, not _reconstruct."""
    data = pickle.dumps([_one(score=np.array([0.5, 0.6], dtype=np.float32))], protocol=5)
    assert b"_frombuffer" in data
    done, out = _cli(tmp_path, data)
    assert done.returncode == 0, done.stderr
    assert sum(len(s.inference_results.objects) for s in read_submission_tar(out)) == 2


def test_cli_malformed_results_exit_2_naming_the_frame(tmp_path):
    done, out = _cli(tmp_path, pickle.dumps([_one(boxes_lidar=np.zeros((4, 7)))]))
    assert done.returncode == 2 and "frame seg_007" in done.stderr and not out.exists()
    done, out = _cli(tmp_path, pickle.dumps([_one(metadata={"context_name": "c", "timestamp_micros": 1.5})]))
    assert done.returncode == 2 and "frame seg_007: timestamp_micros must be an integer" in done.stderr
    done, out = _cli(tmp_path, pickle.dumps([]))
    assert done.returncode == 2 and "--allow-empty" in done.stderr
    done, out = _cli(tmp_path, pickle.dumps([]), "--allow-empty")
    assert done.returncode == 0 and len(read_submission_tar(out)) == 4
