"""The pre-training study in miniature: does pre-training make a better detector, and which part
of the method does it?

Protocol (synthetic scenes, stand-in teacher, the tiny configs of ``cfgs/demo/``):

* pre-training on ``pretrain_frames`` unlabelled scenes (scene seed ``SEED.train``): one run per
  (arm, seed) for the arms of ``Grid.pretrain_per_seed`` (``picture``: the headline's spread covers
  pre-training), one shared run (seed ``Grid.shared_pretrain_seed``) for every other arm;
* fine-tuning of the stock CenterPoint-DSVT on a labelled pool, the first ``pool_frames`` of those
  scenes, at each budget (a nested prefix of the pool), with the identical recipe, data order and
  iteration count for every arm: only the initial encoder weights differ;
* evaluation on ``val_frames`` scenes of another scene seed (AP per class, BEV and 3-D);
* a frozen-encoder linear probe (:mod:`pcdet_seal.tools.probe`) per (arm, seed).

A study seed fixes, for its arm, the fine-tuning (initialisation of everything not transferred,
data order), the probe (subsample, initialisation, mini-batches) and, for the arms of
``Grid.pretrain_per_seed``, the pre-training (initialisation, data order, masking). The other arms'
spread covers fine-tuning and probe only. Scenes and the stand-in teacher's features do not
depend on the seed. On CPU a seed reproduces a unit bit for bit on the same machine and
installation (:func:`pcdet_seal.tools.training.reproducible_kernels`; docs/architecture.md §4.5);
on CUDA it does not.

Every arm is a set of config overrides (:data:`ARMS`), so users can rerun any arm with
``--set`` on the stock ``tools/train.py``. Results are appended to ``study.json`` unit by unit;
a rerun with the same settings resumes where it stopped.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN_CFG = ROOT / "cfgs" / "demo" / "seal_pretrain_tiny.yaml"
FINETUNE_CFG = ROOT / "cfgs" / "demo" / "finetune_tiny.yaml"
STUDY_VERSION = 1


class StudySetupError(ValueError):
    """The study cannot start as asked: unknown arms, no seeds, an output folder of another study."""


@dataclass(frozen=True)
class Arm:
    """One arm: pre-training config overrides (``None``: no pre-training) and its iteration factor.

    ``mask_ratio_of_picture``: the arm masks with ``RandomMask`` at the mean realised ratio that
    the ``picture`` arm measured with the same seed (recorded with the run).
    """

    name: str
    description: str
    overrides: Optional[dict[str, Any]]
    iters_factor: float = 1.0
    mask_ratio_of_picture: bool = False


ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    Arm("scratch", "no pre-training: the encoder starts from its random initialisation", None),
    Arm("coord", "coordinate reconstruction only (point cloud reconstruction), RandomMask at picture's ratio",
        {"MODEL.DENSE_HEAD.LOSS_WEIGHTS": [1.0, 0.0], "MODEL.MASKING.NAME": "RandomMask"}, mask_ratio_of_picture=True),
    Arm("seal", "Seal targets only, I2Mask", {"MODEL.DENSE_HEAD.LOSS_WEIGHTS": [0.0, 3.0]}),
    Arm("picture", "coordinates + Seal targets, I2Mask (the method's default)", {}),
    Arm("picture_random", "as picture, RandomMask at picture's ratio (Table D.8)",
        {"MODEL.MASKING.NAME": "RandomMask"}, mask_ratio_of_picture=True),
    Arm("picture_norm", "as picture, Seal targets standardised per channel over the batch (SEAL_TARGET_NORM: channel, "
        "a departure from the paper)", {"MODEL.DENSE_HEAD.SEAL_TARGET_NORM": "channel"}),
    Arm("picture_short", "as picture, 0.5x the pre-training iterations (Table D.1)", {}, iters_factor=0.5),
    Arm("picture_long", "as picture, 2x the pre-training iterations (Table D.1)", {}, iters_factor=2.0),
)}
DEFAULT_ARMS = ("scratch", "coord", "seal", "picture", "picture_random")
#: fine-tuning order: the headline pair first (every budget, every seed), then the ablations
DETECTION_PRIORITY = ("scratch", "picture", "picture_norm", "coord", "picture_random", "picture_short", "picture_long",
                      "seal")
SMALL, FULL = "small", "full"


@dataclass(frozen=True)
class Grid:
    """Sizes of one study. ``budgets`` maps a budget name to its labelled fraction of the pool and
    ``finetune_iters`` to its fine-tuning iterations (identical for every arm)."""

    pretrain_frames: int = 96
    pretrain_epochs: int = 6
    pool_frames: int = 96
    budgets: dict[str, float] = field(default_factory=lambda: {SMALL: 0.125, FULL: 1.0})
    #: the same for both budgets: at 240 iterations the detector has learnt nothing yet on either budget
    #: (stride-1 head, 96 scenes: mAP BEV 1.0), at 336 pedestrians start (stride 2: 22); bench/RESULTS.md
    finetune_iters: dict[str, int] = field(default_factory=lambda: {SMALL: 480, FULL: 480})
    val_frames: int = 32
    probe_train_frames: int = 12
    probe_val_frames: int = 8
    batch_size: int = 2
    #: budgets each arm is fine-tuned at (the study's priority; ``--all-detection`` fine-tunes every arm at every budget)
    detection: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "scratch": (SMALL, FULL), "picture": (SMALL, FULL), "picture_norm": (SMALL, FULL), "coord": (SMALL,),
        "picture_random": (SMALL,), "picture_short": (SMALL,), "picture_long": (SMALL,), "seal": ()})
    #: arms pre-trained once per study seed; every other arm is pre-trained once, with ``shared_pretrain_seed``,
    #: and that checkpoint serves all study seeds (the study's time budget; say so where spreads are shown)
    pretrain_per_seed: tuple[str, ...] = ("picture", "picture_norm")
    shared_pretrain_seed: int = 0

    def frames(self, budget: str) -> int:
        """Labelled scenes of ``budget`` (a prefix of the pool)."""
        return max(self.batch_size, int(round(self.pool_frames * self.budgets[budget])))

    def finetune_epochs(self, budget: str) -> int:
        """Epochs giving ``finetune_iters[budget]`` iterations; the iterations must be a whole number of epochs."""
        per_epoch = math.ceil(self.frames(budget) / self.batch_size)
        if self.finetune_iters[budget] % per_epoch:
            raise StudySetupError(f"study grid: {self.finetune_iters[budget]} fine-tuning iterations at budget {budget!r} "
                             f"are not a whole number of {per_epoch}-iteration epochs")
        return self.finetune_iters[budget] // per_epoch

    def with_finetune_iters(self, iters: int) -> "Grid":
        """This grid with ``iters`` fine-tuning iterations at every budget (for every arm: a recipe
        change, hence another config hash); whole epochs are checked when a :class:`Study` is built."""
        if int(iters) != iters or iters < 1:
            raise StudySetupError(f"study grid: fine-tuning iterations must be a positive whole number, not {iters!r}")
        return replace(self, finetune_iters={budget: int(iters) for budget in self.budgets})

    def pretrain_seed(self, arm: str, seed: int) -> int:
        """The pre-training seed whose checkpoint ``arm`` uses at study seed ``seed``."""
        return seed if arm in self.pretrain_per_seed else self.shared_pretrain_seed

    def pretrain_epochs_of(self, arm: Arm) -> int:
        epochs = self.pretrain_epochs * arm.iters_factor
        if epochs != int(epochs) or epochs < 1:
            raise StudySetupError(f"study grid: arm {arm.name!r} needs {epochs} pre-training epochs (a whole number >= 1)")
        return int(epochs)


QUICK_GRID = Grid(pretrain_frames=4, pretrain_epochs=2, pool_frames=4, budgets={SMALL: 0.5, FULL: 1.0},
                  finetune_iters={SMALL: 2, FULL: 4}, val_frames=2, probe_train_frames=2, probe_val_frames=2)


# --- configs ------------------------------------------------------------------------------------


def set_key(cfg: Any, dotted: str, value: Any) -> None:
    """``cfg[A][B][C] = value`` for ``dotted = "A.B.C"``; every key but the last must exist."""
    node = cfg
    parts = dotted.split(".")
    for part in parts[:-1]:
        if part not in node:
            raise KeyError(f"config override {dotted!r}: {part!r} is not a key of the config")
        node = node[part]
    if parts[-1] not in node:
        raise KeyError(f"config override {dotted!r}: {parts[-1]!r} is not a key of the config")
    node[parts[-1]] = copy.deepcopy(value)


def arm_overrides(arm: Arm, mask_ratio: Optional[float]) -> dict[str, Any]:
    """The arm's pre-training overrides, with ``MODEL.MASKING.MASK_RATIO`` where it copies picture's."""
    if arm.overrides is None:
        raise ValueError(f"arm {arm.name!r} has no pre-training")
    out = dict(arm.overrides)
    if arm.mask_ratio_of_picture:
        if mask_ratio is None:
            raise ValueError(f"arm {arm.name!r} needs the picture arm's measured mask ratio")
        out["MODEL.MASKING.MASK_RATIO"] = round(float(mask_ratio), 4)
    return out


def load_base_configs(optimizer: str = "all") -> tuple[Any, Any]:
    """The tiny pre-training and fine-tuning configs; ``optimizer="stock"`` puts both on OpenPCDet's
    ``adam_onecycle`` (which never trains attention in-projections) instead of ``adamw_onecycle``."""
    from pcdet_seal.tools.config_network import load_config

    if optimizer not in ("all", "stock"):
        raise ValueError(f"--optimizer must be 'all' or 'stock', got {optimizer!r}")
    pre, fine = load_config(PRETRAIN_CFG), load_config(FINETUNE_CFG)
    if optimizer == "stock":
        for cfg in (pre, fine):
            cfg.OPTIMIZATION.OPTIMIZER = "adam_onecycle"
    return pre, fine


def pretrain_config(base: Any, grid: Grid, arm: Arm, cache_dir: Path, mask_ratio: Optional[float]) -> Any:
    """Pre-training config of ``arm``: the base config, the grid's sizes, the offline stand-in
    cache and the arm's overrides."""
    cfg = copy.deepcopy(base)
    cfg.DATA_CONFIG.NUM_FRAMES.train = grid.pretrain_frames
    cfg.OPTIMIZATION.NUM_EPOCHS = grid.pretrain_epochs_of(arm)
    cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU = grid.batch_size
    cfg.MODEL.SEAL_TARGET.MODE = "cache"
    cfg.MODEL.SEAL_TARGET.CACHE_DIR = str(cache_dir)
    for key, value in arm_overrides(arm, mask_ratio).items():
        set_key(cfg, key, value)
    return cfg


def finetune_config(base: Any, grid: Grid, budget: str) -> Any:
    """Fine-tuning config of ``budget`` (the same for every arm): the first ``grid.frames(budget)``
    pre-training scenes with their labels, evaluated on ``grid.val_frames`` val scenes."""
    cfg = copy.deepcopy(base)
    cfg.DATA_CONFIG.NUM_FRAMES.train = grid.frames(budget)
    cfg.DATA_CONFIG.NUM_FRAMES.test = grid.val_frames
    cfg.OPTIMIZATION.NUM_EPOCHS = grid.finetune_epochs(budget)
    cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU = grid.batch_size
    return cfg


def data_code_hash() -> str:
    """Hash of the code that makes the study's data: the scene generator and the stand-in teacher.
    A change there changes every scene and target, so results and caches of another version never mix."""
    from pcdet_seal import synthetic
    from pcdet_seal.seal import standin

    digest = hashlib.sha256()
    for path in sorted(Path(synthetic.__file__).parent.glob("*.py")) + [Path(standin.__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def config_hash(grid: Grid, optimizer: str, base_pre: Any, base_fine: Any, teacher: str = "stand-in") -> str:
    """Short hash of everything a study's cells share: grid, optimizer choice, both base configs, the
    probe's and the evaluation's fixed settings, the teacher (``"stand-in"`` or the Seal checkpoint's
    sha256) and the code that generates scenes and stand-in targets. What an arm changes is not in
    it: ``study.json`` records each arm's definition (:func:`arm_definition`) and a resumed study
    refuses an arm defined differently, so adding an arm keeps the other arms' results."""
    from pcdet_seal.tools.probe import ProbeRecipe
    from pcdet_seal.tools.training import LOOSE_IOU

    def plain(obj: Any) -> Any:
        return json.loads(json.dumps(obj, default=str, sort_keys=True))

    blob = json.dumps({"version": STUDY_VERSION, "grid": asdict(grid), "optimizer": optimizer, "teacher": teacher,
                       "pretrain": plain(base_pre), "finetune": plain(base_fine),
                       "probe": asdict(ProbeRecipe()),
                       "loose_iou": LOOSE_IOU, "data_code": data_code_hash()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def arm_definition(arm: Union[Arm, Mapping[str, Any]]) -> dict[str, Any]:
    """What makes an arm's results: its overrides, iteration factor and mask-ratio rule (not its
    description), in JSON form; of an :class:`Arm` or of an arm as ``study.json`` records it."""
    if not isinstance(arm, Arm):
        arm = Arm(**arm)
    return json.loads(json.dumps({"overrides": arm.overrides, "iters_factor": arm.iters_factor,
                                  "mask_ratio_of_picture": arm.mask_ratio_of_picture}, sort_keys=True))


# --- the result file ----------------------------------------------------------------------------


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``, else
    ``"unknown"``): a seed reproduces a CPU run bit for bit on the same machine and installation
    only (docs/architecture.md §4.5)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where the study ran: platform, CPU model and count, torch threads, load average, CUDA device if any."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def git_commit() -> str:
    """The project's commit (``+dirty`` with uncommitted changes), or ``"unknown"`` outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class StudyFile:
    """``study.json``: written atomically after every finished unit; refuses another study's folder.

    On resume the seeds and arms asked for are added to the header's, and every row records the
    commit that produced it.
    """

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.path = Path(out) / "study.json"
        self.commit = header["commit"]
        self.cpu = (header.get("machine") or {}).get("cpu")  # per row: a resumed study may change machines
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as error:
                raise StudySetupError(f"{self.path} is not a readable study ({error}); move it away or choose "
                                      f"another --out") from error
            if data.get("config_hash") != header["config_hash"]:
                raise StudySetupError(f"{self.path} holds a study with config hash {data.get('config_hash')}, not "
                                      f"{header['config_hash']} (other grid, configs, optimizer, teacher or scene "
                                      f"code): choose another --out")
            for name, arm in header["arms"].items():
                recorded = data.get("arms", {}).get(name)
                if recorded is not None and arm_definition(recorded) != arm_definition(arm):
                    raise StudySetupError(f"{self.path}: arm {name!r} was run with another definition "
                                          f"({arm_definition(recorded)}, now {arm_definition(arm)}): "
                                          f"choose another --out")
            data["seeds"] = sorted(set(data.get("seeds", [])) | set(header["seeds"]))
            data["arms"] = {**header["arms"], **data.get("arms", {})}
            self.data = data
            self.resumed = True
        else:
            self.data = {**header, "runs": [], "probes": [], "pretrain": []}
            self.resumed = False

    def find(self, section: str, **key: Any) -> Optional[dict]:
        for row in self.data[section]:
            if all(row.get(k) == v for k, v in key.items()):
                return row
        return None

    def put(self, section: str, row: dict, key: Sequence[str]) -> None:
        """Store ``row`` with this run's commit and CPU model, replacing the row of ``section`` with
        the same ``key`` fields, and save."""
        self.data[section] = [r for r in self.data[section] if any(r.get(k) != row[k] for k in key)]
        self.data[section].append({**row, "commit": self.commit, **({"cpu": self.cpu} if self.cpu else {})})
        self.save()

    def drop(self, section: str, **key: Any) -> None:
        """Remove every row of ``section`` matching ``key`` (results built on a replaced checkpoint)."""
        self.data[section] = [r for r in self.data[section] if not all(r.get(k) == v for k, v in key.items())]

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename; no partial file on a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- running ------------------------------------------------------------------------------------


def _mean_tail(values: Sequence[float], tail: int = 10) -> Optional[float]:
    values = list(values)[-tail:]
    return float(np.mean(values)) if values else None


def ap_row(ap: dict[str, float], class_names: Sequence[str]) -> dict[str, Any]:
    """The study's AP fields in % from :func:`evaluate_model`'s fractions (NaN → None)."""
    def pct(value: float) -> Optional[float]:
        return None if value is None or math.isnan(value) else round(100.0 * value, 3)

    return {"map_bev": pct(ap["mAP_BEV"]), "map_3d": pct(ap["mAP_3D"]),
            "ap": {name: {"bev": pct(ap[f"{name}/AP_BEV"]), "3d": pct(ap[f"{name}/AP_3D"])} for name in class_names},
            "map_bev_loose": pct(ap["mAP_BEV@0.3"]), "map_3d_loose": pct(ap["mAP_3D@0.3"]),
            "ap_loose": {name: {"bev": pct(ap[f"{name}/AP_BEV@0.3"]), "3d": pct(ap[f"{name}/AP_3D@0.3"])}
                         for name in class_names},
            "detections_per_frame": round(ap["detections_per_frame"], 2)}


@dataclass
class Study:
    """One study run: configs, grid, seeds, arms, output folder; :meth:`run` does the work."""

    out: Path
    seeds: Sequence[int] = (0, 1, 2)
    arms: Sequence[str] = DEFAULT_ARMS
    grid: Grid = field(default_factory=Grid)
    optimizer: str = "all"
    all_detection: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    #: budgets to fine-tune at (default: every budget of the grid); ``probes``: run the linear probe
    budgets: Optional[Sequence[str]] = None
    probes: bool = True
    #: a real Seal teacher instead of the stand-in (the demo's ``--seal-ckpt``)
    seal_ckpt: Optional[Path] = None
    #: remove a feature cache written by other scene/teacher code instead of refusing it (demo ``--overwrite``)
    replace_stale_cache: bool = False

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise StudySetupError(f"unknown arms {unknown}; choose from {sorted(ARMS)}")
        if not self.seeds:
            raise StudySetupError("the study needs at least one seed")
        for budget in self.grid.budgets:  # a bad grid fails now, not after hours of pre-training
            self.grid.finetune_epochs(budget)
        for name in self.arms:
            self.grid.pretrain_epochs_of(ARMS[name])
        self.out = Path(self.out).resolve()
        self.base_pre, self.base_fine = load_base_configs(self.optimizer)
        if self.seal_ckpt is None:
            self.teacher = "stand-in"
        else:
            from pcdet_seal.seal.checkpoint import file_sha256

            self.teacher = file_sha256(self.seal_ckpt)
        self.hash = config_hash(self.grid, self.optimizer, self.base_pre, self.base_fine, self.teacher)
        self.class_names = list(self.base_fine.CLASS_NAMES)

    # units, in the order they run ----------------------------------------------------------------

    def pretrain_arms(self) -> list[Arm]:
        """Arms that pre-train; ``picture`` first (others copy its measured mask ratio)."""
        names = [a for a in self.arms if ARMS[a].overrides is not None]
        if any(ARMS[a].mask_ratio_of_picture for a in names) and "picture" not in names:
            names.append("picture")
        return [ARMS[a] for a in sorted(names, key=lambda a: a != "picture")]

    def detection_budgets(self, arm: str) -> tuple[str, ...]:
        budgets = tuple(self.grid.budgets) if self.all_detection else self.grid.detection.get(arm, ())
        return tuple(b for b in budgets if b in self.grid.budgets and (self.budgets is None or b in self.budgets))

    def units(self) -> list[tuple]:
        """Work units in run order: every pre-training (a unit carries its pre-training seed and comes
        once, after the ``picture`` pre-training whose mask ratio it copies), every probe, then the
        fine-tunings in priority order (:data:`DETECTION_PRIORITY`: ``scratch`` and ``picture`` at
        every budget for every seed before any other arm), so an interrupted study holds the
        headline comparison first."""
        pretrain: list[tuple] = []
        for seed in self.seeds:
            for arm in self.pretrain_arms():
                pre_seed = self.grid.pretrain_seed(arm.name, seed)
                needed = ([("pretrain", "picture", pre_seed)] if arm.mask_ratio_of_picture else []) + \
                    [("pretrain", arm.name, pre_seed)]
                pretrain += [u for u in needed if u not in pretrain]
        probes = [("probe", arm, seed) for seed in self.seeds for arm in self.arms] if self.probes else []
        cells = [(arm, budget) for arm in self.arms for budget in self.detection_budgets(arm)]
        rank = {arm: i for i, arm in enumerate(DETECTION_PRIORITY)}
        cells.sort(key=lambda c: (rank.get(c[0], len(rank)) >= 2, list(self.grid.budgets).index(c[1]),
                                  rank.get(c[0], len(rank))))
        finetune = [("finetune", arm, seed, budget) for arm, budget in cells for seed in self.seeds]
        return pretrain + probes + finetune

    def done(self, store: StudyFile, unit: tuple) -> bool:
        kind, arm, seed = unit[:3]
        if kind == "pretrain":
            row = store.find("pretrain", arm=arm, seed=seed)
            return row is not None and Path(row["checkpoint"]).is_file()
        if kind == "probe":
            return store.find("probes", arm=arm, seed=seed) is not None
        return store.find("runs", arm=arm, seed=seed, budget=self.grid.budgets[unit[3]]) is not None

    # the work --------------------------------------------------------------------------------

    def run(self, log: Callable[[str], None] = print) -> dict:
        """Run every unit not yet in ``study.json``; returns the study's data."""
        header = {"version": STUDY_VERSION, "commit": git_commit(), "machine": machine_info(),
                  "config_hash": self.hash, "optimizer": self.optimizer, "grid": asdict(self.grid),
                  "seeds": list(self.seeds), "arms": {a: asdict(ARMS[a]) for a in self.arms},
                  "seed_controls": "per arm: fine-tuning (init of non-transferred parts, data order), probe "
                                   "(subsample, init, batches); pre-training (init, data order, masking) only for "
                                   f"{list(self.grid.pretrain_per_seed)}, every other arm uses one pre-training "
                                   f"with seed {self.grid.shared_pretrain_seed}"}
        store = StudyFile(self.out, header)
        units = self.units()
        finished = [u for u in units if self.done(store, u)]
        if store.resumed:
            log(f"study: resuming {store.path}: {len(finished)} of {len(units)} units already done")
        else:
            log(f"study: {len(units)} units into {store.path}")
        cache_dir = self.cache_dir()
        header_teacher = self.write_cache(cache_dir)
        store.data.setdefault("teacher", header_teacher)
        for number, unit in enumerate(units, 1):
            if self.done(store, unit):
                continue
            log(f"study: unit {number}/{len(units)}: {' '.join(map(str, unit))}")
            start = time.perf_counter()
            if unit[0] == "pretrain":
                self.run_pretrain(store, ARMS[unit[1]], unit[2], cache_dir)
            elif unit[0] == "probe":
                self.run_probe(store, unit[1], unit[2])
            else:
                self.run_finetune(store, unit[1], unit[2], unit[3])
            log(f"study: unit {number}/{len(units)} done in {time.perf_counter() - start:.0f} s")
        store.data["summary"] = summarize(store.data)
        store.save()
        return store.data

    def cache_dir(self) -> Path:
        """The offline feature cache of this study's teacher, inside the output folder."""
        if self.seal_ckpt is None:
            return self.out / "seal_cache_standin"
        return self.out / f"seal_cache_{Path(self.seal_ckpt).stem}_{self.teacher[:8]}"

    def write_cache(self, cache_dir: Path) -> dict[str, str]:
        """Targets of every pre-training scene (finished frames are kept); returns the teacher's identity.

        A cache written by other scene or stand-in code is refused (its frames would not match the
        scenes), or removed first with ``replace_stale_cache``.
        """
        from pcdet_seal.tools.synthetic_targets import write_targets

        key_file = cache_dir.with_name(cache_dir.name + ".datakey")
        key = data_code_hash()
        if cache_dir.exists() and (not key_file.is_file() or key_file.read_text().strip() != key):
            if not self.replace_stale_cache:
                raise StudySetupError(f"{cache_dir} was written by other scene or teacher code (key {key_file} "
                                      f"missing or not {key}): delete it or choose another --out")
            logger.warning("removing %s: written by other scene or teacher code", cache_dir)
            shutil.rmtree(cache_dir)
        write_atomic(key_file, key + "\n")

        cfg = pretrain_config(self.base_pre, self.grid, ARMS["picture"], cache_dir, None)
        cfg.DATA_CONFIG.NUM_FRAMES.train = max(self.grid.pretrain_frames, self.grid.pool_frames)
        return write_targets(cfg, cache_dir, self.seal_ckpt, self.device, progress=self.progress,
                             config_name=PRETRAIN_CFG.name)

    def picture_ratio(self, store: StudyFile, seed: int) -> float:
        row = store.find("pretrain", arm="picture", seed=seed)
        if row is None:
            raise RuntimeError(f"the picture arm's pre-training for seed {seed} must run first")
        return float(row["mask_ratio"])

    def pretrain_checkpoint(self, arm: str, seed: int) -> Path:
        return self.out / "pretrain" / f"{arm}_seed{seed}.pth"

    def initial_encoder(self, store: StudyFile, arm: str, seed: int) -> tuple[Optional[Path], Optional[dict]]:
        """Checkpoint and pre-training row that ``arm`` starts from at study seed ``seed`` (``None`` for scratch)."""
        if ARMS[arm].overrides is None:
            return None, None
        pre_seed = self.grid.pretrain_seed(arm, seed)
        return self.pretrain_checkpoint(arm, pre_seed), store.find("pretrain", arm=arm, seed=pre_seed)

    def run_pretrain(self, store: StudyFile, arm: Arm, seed: int, cache_dir: Path) -> None:
        from pcdet_seal.tools.training import train_model

        ratio = self.picture_ratio(store, seed) if arm.mask_ratio_of_picture else None
        cfg = pretrain_config(self.base_pre, self.grid, arm, cache_dir, ratio)
        start = time.perf_counter()
        model, info = train_model(cfg, self.device, seed, f"pre-train {arm.name} seed {seed}", self.grid.batch_size,
                                  stats_keys=("loss_coord", "loss_seal", "loss_seal_predict_mean", "mask_ratio"),
                                  progress=self.progress)
        ckpt = self.pretrain_checkpoint(arm.name, seed)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_name(f".{ckpt.name}.tmp")
        torch.save({"model_state": {k: v.cpu() for k, v in model.state_dict().items()}, "epoch": info["epochs"]}, tmp)
        os.replace(tmp, ckpt)
        hist = info["history"]
        store.drop("probes", arm=arm.name, pretrain_seed=seed)  # built on the checkpoint this run replaces
        store.drop("runs", arm=arm.name, pretrain_seed=seed)
        if arm.name == "picture":  # the arms that copied its mask ratio must copy the new one
            for other in ARMS.values():
                if other.mask_ratio_of_picture:
                    store.drop("pretrain", arm=other.name, seed=seed)
                    store.drop("probes", arm=other.name, pretrain_seed=seed)
                    store.drop("runs", arm=other.name, pretrain_seed=seed)
        store.put("pretrain", {
            "arm": arm.name, "seed": seed, "iterations": info["iterations"], "checkpoint": str(ckpt),
            "overrides": arm_overrides(arm, ratio), "mask_ratio": float(np.mean(hist.get("mask_ratio", [float("nan")]))),
            "loss_first": _mean_tail(hist["loss"][:10]), "loss_last": _mean_tail(hist["loss"]),
            "loss_coord_last": _mean_tail(hist.get("loss_coord", [])),
            "loss_seal_last": _mean_tail(hist.get("loss_seal", [])),
            "loss_seal_predict_mean_last": _mean_tail(hist.get("loss_seal_predict_mean", [])),
            "seconds": round(time.perf_counter() - start, 1)}, key=("arm", "seed"))

    def run_finetune(self, store: StudyFile, arm: str, seed: int, budget: str) -> None:
        from pcdet_seal.tools.training import evaluate_model, train_model

        cfg = finetune_config(self.base_fine, self.grid, budget)
        ckpt, pre = self.initial_encoder(store, arm, seed)
        start = time.perf_counter()
        model, info = train_model(cfg, self.device, seed, f"fine-tune {arm} seed {seed} {budget}", self.grid.batch_size,
                                  pretrained=ckpt, progress=self.progress)
        ap = evaluate_model(model, cfg, self.device, self.grid.batch_size, desc=f"evaluate {arm} seed {seed} {budget}",
                            progress=self.progress)
        store.put("runs", {
            "arm": arm, "budget": self.grid.budgets[budget], "budget_name": budget, "seed": seed,
            "pretrain_seed": pre["seed"] if pre else None, "pretrain_iters": pre["iterations"] if pre else None,
            "finetune_iters": info["iterations"],
            "labelled_frames": info["frames"], **ap_row(ap, self.class_names),
            "mask_ratio": pre["mask_ratio"] if pre else None, "transfer": info.get("transfer"),
            "finetune_loss_last": _mean_tail(info["history"]["loss"]),
            "seconds": round(time.perf_counter() - start, 1)}, key=("arm", "seed", "budget"))

    def run_probe(self, store: StudyFile, arm: str, seed: int) -> None:
        from pcdet_seal.tools.probe import encoder_probe

        ckpt, pre = self.initial_encoder(store, arm, seed)
        start = time.perf_counter()
        result = encoder_probe(self.base_fine, ckpt, seed, self.grid.probe_train_frames, self.grid.probe_val_frames,
                               self.device)
        store.put("probes", {"arm": arm, "seed": seed, "pretrain_seed": pre["seed"] if pre else None,
                             "probe_miou": round(100 * result["probe_miou"], 3),
                             "majority_miou": round(100 * result["majority_miou"], 3), "classes": result["classes"],
                             "seconds": round(time.perf_counter() - start, 1)}, key=("arm", "seed"))


# --- summaries ----------------------------------------------------------------------------------


def _stats(values: Iterable[Optional[float]]) -> Optional[dict[str, float]]:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def _arm_rank(arm: str) -> tuple[int, str]:
    """Sort key that lists arms in ``ARMS`` order (scratch first), unknown names last: one order
    for every table and both chart panels."""
    names = list(ARMS)
    return (names.index(arm) if arm in names else len(names), arm)


def summarize(data: dict) -> dict:
    """Per (arm, budget): mean ± std of mAP and per-class AP over seeds, and the paired difference
    arm − scratch (mean ± std, and per seed as ``[{"seed", "delta"}, ...]`` in seed order, only
    for seeds where both runs have an mAP); per arm: probe mIoU mean ± std."""
    out: dict[str, Any] = {"detection": [], "probe": []}
    runs = data["runs"]
    scratch = {(r["seed"], r["budget"]): r for r in runs if r["arm"] == "scratch"}
    keys = sorted({(r["arm"], r["budget"]) for r in runs}, key=lambda k: (k[1], _arm_rank(k[0])))
    for arm, budget in keys:
        rows = sorted((r for r in runs if r["arm"] == arm and r["budget"] == budget), key=lambda r: r["seed"])
        paired = [{"seed": r["seed"], "delta": r["map_bev"] - scratch[(r["seed"], budget)]["map_bev"]} for r in rows
                  if arm != "scratch" and (r["seed"], budget) in scratch
                  and r["map_bev"] is not None and scratch[(r["seed"], budget)]["map_bev"] is not None]
        classes = sorted(rows[0]["ap"])
        out["detection"].append({
            "arm": arm, "budget": budget, "seeds": [r["seed"] for r in rows],
            "map_bev": _stats(r["map_bev"] for r in rows), "map_3d": _stats(r["map_3d"] for r in rows),
            "ap_bev": {c: _stats(r["ap"][c]["bev"] for r in rows) for c in classes},
            "delta_map_bev_vs_scratch": _stats(p["delta"] for p in paired) if arm != "scratch" else None,
            "delta_per_seed": paired if arm != "scratch" else None})
    for arm in sorted({p["arm"] for p in data["probes"]}, key=_arm_rank):
        rows = [p for p in data["probes"] if p["arm"] == arm]
        out["probe"].append({"arm": arm, "probe_miou": _stats(p["probe_miou"] for p in rows),
                             "majority_miou": _stats(p["majority_miou"] for p in rows)})
    return out


def _pm(stats: Optional[dict], signed: bool = False) -> str:
    if not stats:
        return "–"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    if stats["n"] < 2:  # one seed: no spread to report
        return f"{fmt.format(stats['mean'])} (n=1)"
    return f"{fmt.format(stats['mean'])} ± {stats['std']:.1f}"


def markdown_table(data: dict) -> str:
    """The study's results as markdown: detection per (budget, arm) and probe per arm."""
    summary = data.get("summary") or summarize(data)
    grid = data["grid"]
    lines = [f"Study {data['config_hash']} at commit {data['commit']} (optimizer: {data['optimizer']}); "
             f"mean ± standard deviation over the seeds each row ran (n; seeds in the file: {data['seeds']}); "
             "Δ = paired difference arm − scratch per seed.",
             f"A seed controls: {data.get('seed_controls', 'see study.json')}.",
             "",
             f"Detection (BEV AP % at the config's IoU thresholds; {grid['val_frames']} val scenes; "
             f"labelled pool {grid['pool_frames']} scenes):", "",
             "| budget | arm | n | mAP BEV | Δ mAP BEV vs scratch | Vehicle | Pedestrian | Cyclist | mAP 3D |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["detection"]:
        ap = row["ap_bev"]
        n = row["map_bev"]["n"] if row["map_bev"] else 0
        lines.append(f"| {row['budget']:g} | {row['arm']} | {n} | {_pm(row['map_bev'])} | "
                     f"{_pm(row['delta_map_bev_vs_scratch'], signed=True)} | {_pm(ap.get('Vehicle'))} | "
                     f"{_pm(ap.get('Pedestrian'))} | {_pm(ap.get('Cyclist'))} | {_pm(row['map_3d'])} |")
    paired = [row for row in summary["detection"] if row["delta_per_seed"]]
    if paired:
        seeds = sorted({p["seed"] for row in paired for p in row["delta_per_seed"]})
        lines += ["", "Paired difference arm − scratch per seed (mAP BEV % points; – where the seed has no pair of "
                  "mAPs; counted better as shown, to 0.1):", "",
                  "| budget | arm | " + " | ".join(f"seed {s}" for s in seeds) + " | better than scratch |",
                  "|---|---|" + "---|" * (len(seeds) + 1)]
        for row in paired:
            delta = {p["seed"]: p["delta"] for p in row["delta_per_seed"]}
            cells = [f"{delta[s]:+.1f}" if s in delta else "–" for s in seeds]
            wins = sum(round(d, 1) > 0 for d in delta.values())
            lines.append(f"| {row['budget']:g} | {row['arm']} | " + " | ".join(cells) + f" | {wins}/{len(delta)} |")
    lines += ["", "Frozen-encoder linear probe (voxel superclass mIoU %, val scenes; chance = majority class):", "",
              "| arm | probe mIoU | majority-class mIoU |", "|---|---|---|"]
    for row in summary["probe"]:
        lines.append(f"| {row['arm']} | {_pm(row['probe_miou'])} | {_pm(row['majority_miou'])} |")
    return "\n".join(lines) + "\n"


def budget_label(fraction: float) -> str:
    """Chart legend of a label budget: ``"all labels"`` or e.g. ``"12.5 % of the labels"``."""
    return "all labels" if fraction >= 1 else f"{100 * fraction:g} % of the labels"


def chart(data: dict, path: Path) -> Path:
    """PNG: detection mAP BEV per arm and budget, and probe mIoU per arm, with error bars (std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = data.get("summary") or summarize(data)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    budgets = sorted({row["budget"] for row in summary["detection"]})
    arms = sorted({row["arm"] for row in summary["detection"]}, key=_arm_rank)
    width = 0.8 / max(1, len(budgets))
    for i, budget in enumerate(budgets):
        xs, means, stds = [], [], []
        for j, arm in enumerate(arms):
            row = next((r for r in summary["detection"] if r["arm"] == arm and r["budget"] == budget), None)
            if row and row["map_bev"]:
                xs.append(j + (i - (len(budgets) - 1) / 2) * width)
                means.append(row["map_bev"]["mean"])
                stds.append(row["map_bev"]["std"])
        axes[0].bar(xs, means, width, yerr=stds, capsize=3, label=budget_label(budget))
    axes[0].set_xticks(range(len(arms)), arms, rotation=20)
    axes[0].set_ylabel("mAP BEV (%)")
    axes[0].set_title("Fine-tuned detection (mean ± std over seeds)")
    axes[0].legend()
    probe = summary["probe"]
    axes[1].bar(range(len(probe)), [r["probe_miou"]["mean"] for r in probe],
                yerr=[r["probe_miou"]["std"] for r in probe], capsize=3, color="tab:green")
    if probe:
        axes[1].axhline(probe[0]["majority_miou"]["mean"], color="grey", ls="--", label="majority class")
        axes[1].legend()
    axes[1].set_xticks(range(len(probe)), [r["arm"] for r in probe], rotation=20)
    axes[1].set_ylabel("probe mIoU (%)")
    axes[1].set_title("Frozen-encoder linear probe (superclasses)")
    teacher = data.get("teacher", {}).get("teacher", "stand-in")
    fig.suptitle(f"pcdet-seal study {data['config_hash']} (synthetic scenes, {teacher} teacher)")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
