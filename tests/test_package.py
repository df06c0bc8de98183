"""Package-level promises: import cost, dependency direction, README ↔ CI agreement."""
import re
import subprocess
import sys
from pathlib import Path

from pcdet_seal_autoload import AUTOLOAD_ENV

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(stmt: str) -> set:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={AUTOLOAD_ENV: "0", "PATH": "/usr/bin:/bin"})
    return set(out.stdout.split())


def test_import_pcdet_seal_is_light():
    mods = _modules_after("import pcdet_seal")
    assert not {m for m in mods if m.split(".")[0] in {"pcdet", "spconv", "torch"}}


def test_core_does_not_import_pcdet_or_spconv():
    mods = _modules_after("import pcdet_seal.masking, pcdet_seal.losses")
    assert "torch" in mods
    assert not {m for m in mods if m.split(".")[0] in {"pcdet", "spconv"}}


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Tests", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines, f"README test command {command!r} is not run verbatim by .ci/run"


def test_ci_links_openpcdet_with_the_readme_setup_command():
    readme = (ROOT / "README.md").read_text()
    setup = re.search(r"```bash\n(.+?)\n```", readme.split("## Set-up", 1)[1], re.S).group(1)
    assert any(line.startswith("pcdet-seal-link-openpcdet ") for line in setup.splitlines()), setup
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pcdet-seal-link-openpcdet "$OPENPCDET_ROOT"' in ci
    assert "openpcdet_checkout.pth" not in ci, ".ci/run must not write the .pth by hand"
    assert '"pcdet-seal-link-openpcdet = pcdet_seal.link_openpcdet:main"' in (ROOT / "setup.py").read_text()
