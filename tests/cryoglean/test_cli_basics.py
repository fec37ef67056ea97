"""The CLI starts fast, lists every command with help, and never imports torch for --help."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cryoglean import __version__
from cryoglean.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_command(flag):
    result = CliRunner().invoke(cli, [flag])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert f"  {name}" in result.output, f"{name} missing from --help"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # a real description, not just the usage line
    assert len(result.output.splitlines()) > 4


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from cryoglean.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'cv2', 'matplotlib', 'numpy', 'scipy', 'pandas') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_unknown_command_is_one_clear_error():
    result = CliRunner().invoke(cli, ["crwal"])
    assert result.exit_code != 0
    assert "crwal" in result.output


@pytest.mark.slow
def test_wheel_ships_slurm_templates(tmp_path):
    """A non-editable install must find templates/slurm: check what the wheel carries.

    Built from a copy under tmp_path: setuptools writes build/ and *.egg-info into the source."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for pkg in ("cryoglean", "harvest", "converters", "trainers", "templates"):
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("cryoglean-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    templates = [n for n in names if n.startswith("templates/slurm/") and n.endswith((".j2", ".yaml"))]
    shipped = sorted(p.name for p in (REPO / "templates" / "slurm").iterdir()
                     if p.name.endswith((".j2", ".yaml")))
    assert shipped, "no templates in the checkout"
    assert sorted(Path(n).name for n in templates) == shipped
    modules = sorted(str(p.relative_to(REPO)) for pkg in ("cryoglean", "harvest", "converters",
                                                        "trainers", "templates")
                     for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts)
    assert modules and [m for m in modules if m not in set(names)] == []
