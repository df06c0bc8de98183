"""Bird's-eye-view pictures of one frame's pre-training signals (PNG, matplotlib's Agg backend):
Seal targets as PCA→RGB, k-means clusters, I2Mask partition sets and mask, reconstruction error.

Input is plain arrays (:class:`FramePictures`); matplotlib is imported only when drawing.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

PICTURES = ("targets_pca", "kmeans_clusters", "i2mask_partition", "i2mask_mask", "recon_error")
SET_NAMES = ("K1", "K2", "K3")


@dataclasses.dataclass
class FramePictures:
    """Per-voxel arrays of one frame (N valid DSVT voxels of the frame).

    xy: (N, 2) voxel centres in metres; targets: (N, C) Seal targets; cluster: (N,) k-means
    label; cluster_set: (N,) index of the I2Mask set (0 = K1, 1 = K2, 2 = K3) of the voxel's
    cluster; mask: (N,) bool, True = masked; recon_error: (N,) per-voxel error of the
    reconstructed Seal feature, NaN where not masked (None when no model was run);
    cluster_ratio: (K,) masking ratio of each cluster; title: shown above every picture.
    """

    xy: np.ndarray
    targets: np.ndarray
    cluster: np.ndarray
    cluster_set: np.ndarray
    mask: np.ndarray
    cluster_ratio: np.ndarray
    recon_error: Optional[np.ndarray] = None
    title: str = ""


def pca_rgb(feats: np.ndarray) -> np.ndarray:
    """(N, C) features → (N, 3) colours in [0, 1]: first three principal components, each
    stretched between its 1st and 99th percentile."""
    x = np.asarray(feats, dtype=np.float64)
    if len(x) < 2:
        return np.full((len(x), 3), 0.5)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:3].T
    if proj.shape[1] < 3:
        proj = np.pad(proj, ((0, 0), (0, 3 - proj.shape[1])))
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    return np.clip((proj - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)


def i2mask_pictures(xy: np.ndarray, targets: torch.Tensor, masker: Any, seed: int = 0,
                    title: str = "") -> FramePictures:
    """Run I2Mask's per-frame step on one frame's valid voxel targets and keep what it decided.

    Args:
        xy: (N, 2) voxel centres; targets: (N, C) their Seal targets (valid voxels only).
        masker: a :class:`pcdet_seal.masking.I2Mask`; seed: its generator seed (the detector
            uses ``MASKING.EVAL_SEED``, 0, in evaluation, so the same seed gives its mask).
    """
    generator = torch.Generator(device=targets.device).manual_seed(seed)
    mask, stats = masker.mask_frame(targets, generator)
    if stats.get("fallback"):
        raise ValueError(f"{title or 'frame'}: only {targets.shape[0]} valid voxels, fewer than "
                         f"{masker.n_clusters} clusters; nothing to picture")
    labels = stats["labels"].cpu().numpy()
    set_of_cluster = np.full(masker.n_clusters, -1)
    for index, members in enumerate(stats["partition"]):
        set_of_cluster[members.cpu().numpy()] = index
    return FramePictures(xy=np.asarray(xy), targets=targets.cpu().numpy(), cluster=labels,
                         cluster_set=set_of_cluster[labels], mask=mask.cpu().numpy(),
                         cluster_ratio=stats["ratio"].cpu().numpy(), title=title)


def _figure(data: FramePictures, what: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 6.4), dpi=110)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"{what}\n{data.title}" if data.title else what, fontsize=10)
    ax.set_facecolor("#f4f4f4")
    return fig, ax, plt


def _scatter(ax, xy: np.ndarray, **kwargs):
    return ax.scatter(xy[:, 0], xy[:, 1], s=kwargs.pop("s", 3), marker="s", linewidths=0, **kwargs)


def render(data: FramePictures, out_dir: Any, prefix: str = "", names: Sequence[str] = PICTURES) -> dict[str, Path]:
    """Write the pictures in ``names`` as ``<out_dir>/<prefix><name>.png``; returns name → path.

    ``recon_error`` is skipped when ``data.recon_error`` is None.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    n = len(data.xy)
    for name in names:
        if name == "recon_error" and data.recon_error is None:
            continue
        if name == "targets_pca":
            fig, ax, plt = _figure(data, f"Seal targets, PCA → RGB ({n} voxels, {data.targets.shape[1]}-d)")
            _scatter(ax, data.xy, c=pca_rgb(data.targets))
            ax.text(0.01, 0.01, "colour = first 3 principal components of the per-voxel targets",
                    transform=ax.transAxes, fontsize=8)
        elif name == "kmeans_clusters":
            k = int(data.cluster_ratio.shape[0])
            fig, ax, plt = _figure(data, f"k-means on the targets (K = {k})")
            cmap = plt.get_cmap("tab10")
            _scatter(ax, data.xy, c=[cmap(int(c) % 10) for c in data.cluster])
            sizes = np.bincount(data.cluster, minlength=k)
            handles = [Patch(color=cmap(c % 10), label=f"cluster {c}: {sizes[c]} voxels") for c in range(k)]
            ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)
        elif name == "i2mask_partition":
            fig, ax, plt = _figure(data, "I2Mask partition of the clusters (K1 masked most, K3 never)")
            colours = ("#d62728", "#ff7f0e", "#1f77b4")
            _scatter(ax, data.xy, c=[colours[s] if s >= 0 else "#999999" for s in data.cluster_set])
            handles = []
            for s, label in enumerate(SET_NAMES):
                clusters = sorted({int(c) for c in data.cluster[data.cluster_set == s]})
                detail = ", ".join(f"c{c} r={data.cluster_ratio[c]:.2f}" for c in clusters)
                handles.append(Patch(color=colours[s], label=f"{label}: {detail}"))
            ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85,
                      title="set: cluster, final ratio r = r_b·r_c", title_fontsize=7)
        elif name == "i2mask_mask":
            ratio = float(data.mask.mean()) if n else 0.0
            fig, ax, plt = _figure(data, f"I2Mask mask: {int(data.mask.sum())} of {n} voxels masked ({ratio:.1%})")
            _scatter(ax, data.xy[~data.mask], c="#2ca02c")
            _scatter(ax, data.xy[data.mask], c="#111111")
            handles = [Line2D([], [], marker="s", ls="", color="#2ca02c", label="visible (encoder input)"),
                       Line2D([], [], marker="s", ls="", color="#111111", label="masked (reconstructed)")]
            ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.85)
            ax.text(0.01, 0.01, "voxels of one column overlap in BEV; masked ones drawn on top",
                    transform=ax.transAxes, fontsize=8)
        elif name == "recon_error":
            err = data.recon_error
            shown = np.isfinite(err)
            fig, ax, plt = _figure(data, "Seal-feature reconstruction error of the masked voxels "
                                         "(pre-trained model)")
            _scatter(ax, data.xy[~shown], c="#cccccc")
            points = _scatter(ax, data.xy[shown], c=err[shown], cmap="inferno", s=4)
            bar = fig.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
            bar.set_label("‖predicted − target‖₂ per voxel")
            mean = float(err[shown].mean()) if shown.any() else float("nan")
            ax.text(0.01, 0.01, f"grey: visible voxels; mean error {mean:.3f} over {int(shown.sum())} masked",
                    transform=ax.transAxes, fontsize=8)
        else:
            raise KeyError(f"unknown picture {name!r}; choose from {PICTURES}")
        path = out_dir / f"{prefix}{name}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written[name] = path
    return written
