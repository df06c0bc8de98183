"""Registration with OpenPCDet's tables and the start-up hook that triggers it."""
from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pcdet_seal import registry
from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV

WATCHER_PROBE = ("import sys; print(any(type(f).__name__ == 'PcdetImportWatcher' for f in sys.meta_path), "
                 "'pcdet_seal' in sys.modules, 'torch' in sys.modules)")


def _startup_pth_installed() -> bool:
    dirs = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    return any((Path(d) / "pcdet_seal.pth").is_file() for d in dirs)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in (AUTOLOAD_ENV, CPU_ENV)}
    environ.update(env, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)


def test_entries_name_known_tables():
    assert {entry.table for entry in registry.ENTRIES} <= set(registry.TABLES)
    names = [(entry.table, entry.name) for entry in registry.ENTRIES]
    assert len(names) == len(set(names))
    with pytest.raises(KeyError, match="unknown OpenPCDet table"):
        registry.table("no_such_table")
    with pytest.raises(KeyError, match="unknown OpenPCDet table"):
        registry.plugin_classes("no_such_table")


@pytest.mark.skipif(not _startup_pth_installed(), reason="pcdet-seal is not pip-installed here (no pcdet_seal.pth)")
def test_startup_hook_is_cheap_and_can_be_turned_off():
    on = _run(WATCHER_PROBE)
    assert on.stdout.split() == ["True", "False", "False"], on.stderr  # watching, nothing imported
    off = _run(WATCHER_PROBE, **{AUTOLOAD_ENV: "0"})
    assert off.stdout.split() == ["False", "False", "False"], off.stderr


@pytest.mark.pcdet
class TestWithPcdet:
    @pytest.fixture(autouse=True)
    def _pcdet(self):
        pytest.importorskip("pcdet", reason="needs OpenPCDet (pcdet) importable: a checkout + CPU mode is enough")

    def test_register_is_idempotent_and_reports_what_it_added(self, monkeypatch):
        registry.register()
        table = registry.table("dataset")
        monkeypatch.delitem(table, "SyntheticLidarDataset")
        assert registry.register() == ["dataset:SyntheticLidarDataset"]
        assert registry.register() == []
        assert set(registry.registered()) == {f"{e.table}:{e.name}" for e in registry.ENTRIES}

    def test_register_refuses_to_replace_a_stock_class(self, monkeypatch):
        import pcdet.datasets

        registry.register()
        monkeypatch.setitem(registry.table("dataset"), "SyntheticLidarDataset", pcdet.datasets.DatasetTemplate)
        with pytest.raises(registry.RegistryConflict, match="SyntheticLidarDataset.*DatasetTemplate"):
            registry.register()

    @pytest.mark.spconv
    def test_sealmae_builds_its_decoder_and_head_from_the_registry_entries(self, monkeypatch):
        """One table: a decoder name is valid for SealMAE exactly when ``registry.ENTRIES`` registers it."""
        pytest.importorskip("spconv", reason="needs spconv (pip install spconv-cu120)")
        from helpers_models import dataset, network, tiny_pretrain
        from pcdet_seal.models.decoders import DSVTMaskDecoder, SparseConvDecoder
        from pcdet_seal.models.seal_mae_head import SealMAEHead

        cfg = tiny_pretrain()
        ds = dataset(cfg)
        assert registry.plugin_classes("backbone_2d") == {"DSVTMaskDecoder": DSVTMaskDecoder,
                                                          "SparseConvDecoder": SparseConvDecoder}
        assert registry.plugin_classes("dense_head") == {"SealMAEHead": SealMAEHead}
        renamed = registry.Entry("backbone_2d", "RenamedDecoder", "pcdet_seal.models.decoders:DSVTMaskDecoder")
        monkeypatch.setattr(registry, "ENTRIES",
                            tuple(e for e in registry.ENTRIES if e.name != "DSVTMaskDecoder") + (renamed,))
        cfg.MODEL.DECODER.NAME = "RenamedDecoder"
        model = network(cfg, ds)
        assert type(model.backbone_2d) is DSVTMaskDecoder and type(model.dense_head) is SealMAEHead
        cfg.MODEL.DECODER.NAME = "DSVTMaskDecoder"  # no longer an entry, so no longer a decoder
        with pytest.raises(KeyError, match=r"DECODER.NAME 'DSVTMaskDecoder' is unknown; choose one of "
                                           r"\['RenamedDecoder', 'SparseConvDecoder'\]"):
            network(cfg, ds)

    @pytest.mark.skipif(not _startup_pth_installed(), reason="pcdet-seal is not pip-installed here (no pcdet_seal.pth)")
    def test_startup_hook_registers_when_pcdet_models_is_imported(self):
        probe = ("import pcdet.models, pcdet.datasets, sys; "
                 "print(sorted(k for k in sys.modules['pcdet_seal.registry'].registered()))")
        result = _run(probe, **{CPU_ENV: "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        expected = sorted(f"{e.table}:{e.name}" for e in registry.ENTRIES)
        assert result.stdout.strip().splitlines()[-1] == str(expected)
