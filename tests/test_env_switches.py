"""PCDET_SEAL_AUTOLOAD / PCDET_SEAL_CPU: the usual spellings of on and off are honoured, anything
else is refused naming the variable, and CPU mode asked for with the start-up hook off says why it
is not on."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import pcdet_seal_autoload
from pcdet_seal_autoload import AUTOLOAD_ENV, CPU_ENV, env_flag

ON = ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " on "]
OFF = ["0", "false", "False", "no", "NO", "off", "Off"]


@pytest.mark.parametrize("value", ON + OFF)
def test_usual_spellings_are_honoured(monkeypatch, value):
    monkeypatch.setenv(CPU_ENV, value)
    assert env_flag(CPU_ENV, default=value in OFF) is (value in ON)


@pytest.mark.parametrize("value", ["2", "maybe", "enable", "-1", "y", "t"])
def test_other_values_are_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(AUTOLOAD_ENV, value)
    with pytest.raises(ValueError, match=rf"PCDET_SEAL_AUTOLOAD='{value}' is not an on/off switch; use 1/0, "
                                         r"true/false, yes/no or on/off"):
        env_flag(AUTOLOAD_ENV, True)


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv(CPU_ENV, raising=False)
    assert env_flag(CPU_ENV, False) is False and env_flag(CPU_ENV, True) is True
    monkeypatch.setenv(CPU_ENV, "")
    assert env_flag(CPU_ENV, True) is True


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in (AUTOLOAD_ENV, CPU_ENV)}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


WATCHING = "import sys; print(sum(type(f).__name__ == 'PcdetImportWatcher' for f in sys.meta_path))"


def _hook_runs_at_start_up() -> bool:
    return _python(WATCHING).stdout.strip() == "1"


@pytest.mark.parametrize("value,watching", [("false", "0"), ("OFF", "0"), ("no", "0"), ("yes", "1"), ("On", "1")])
def test_autoload_switch_spellings_at_interpreter_start(value, watching):
    if not _hook_runs_at_start_up():
        pytest.skip("the pcdet-seal .pth start-up hook is not installed (pip install -e . installs it)")
    assert _python(WATCHING, **{AUTOLOAD_ENV: value}).stdout.strip() == watching


def test_a_bad_autoload_value_stops_import_pcdet_naming_it(monkeypatch):
    watcher = pcdet_seal_autoload.PcdetImportWatcher(ValueError("PCDET_SEAL_AUTOLOAD='maybe' is not an on/off switch"))
    monkeypatch.setattr(sys, "meta_path", [watcher] + sys.meta_path)
    with pytest.raises(ImportError, match="pcdet-seal start-up hook: PCDET_SEAL_AUTOLOAD='maybe' is not an on/off"):
        watcher.find_spec("pcdet")
    monkeypatch.setenv(AUTOLOAD_ENV, "maybe")
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not isinstance(f, pcdet_seal_autoload.PcdetImportWatcher)])
    installed = pcdet_seal_autoload.install()
    assert installed in sys.meta_path and "PCDET_SEAL_AUTOLOAD='maybe'" in str(installed.error)


def test_a_bad_cpu_value_stops_the_hook_naming_it():
    if not _hook_runs_at_start_up():
        pytest.skip("the pcdet-seal .pth start-up hook is not installed (pip install -e . installs it)")
    run = _python("import pcdet", **{CPU_ENV: "sometimes"})
    assert run.returncode != 0
    assert "PCDET_SEAL_CPU='sometimes' is not an on/off switch" in run.stderr, run.stderr[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU mode is only required without CUDA")
def test_cpu_mode_with_the_hook_off_says_it_needs_the_hook_or_enable_cpu_mode():
    code = "from pcdet_seal import compat; compat.require_cuda_or_cpu_mode('pcdet_seal.register()')"
    run = _python(code, **{AUTOLOAD_ENV: "off", CPU_ENV: "true"})
    assert run.returncode != 0
    err = run.stderr.strip().splitlines()[-1]
    assert "CPU mode is off although PCDET_SEAL_CPU=true is set" in err
    assert "start-up hook" in err and "PCDET_SEAL_AUTOLOAD=off turns off" in err and "enable_cpu_mode()" in err


def test_cpu_switch_spelled_yes_enables_cpu_mode_through_the_hook():
    if not _hook_runs_at_start_up():
        pytest.skip("the pcdet-seal .pth start-up hook is not installed (pip install -e . installs it)")
    run = _python("import pcdet; from pcdet_seal import compat; print(compat.cpu_mode_enabled())", **{CPU_ENV: "Yes"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "True"
