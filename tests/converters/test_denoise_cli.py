"""`cryoglean denoise` end to end on a temporary directory, and the directory library call."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from converters import denoise as dn
from converters.denoise_cli import denoise_command
from cryoglean.cli import cli

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} - .+$")


def _make_source(root: Path, n: int = 4, shape=(48, 64), bad: bool = False) -> Path:
    src = root / "raw"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mrcfile.write(
            src / f"mic_{i:02d}.mrc", rng.normal(size=shape).astype(np.float32), voxel_size=1.5
        )
    if bad:
        (src / "mic_bad.mrc").write_bytes(b"truncated")
    (src / "notes.txt").write_text("not a micrograph")
    return src


def _run(*args: str):
    # through the cryoglean group: it turns library errors into one line
    return CliRunner().invoke(cli, ["denoise", *args], catch_exceptions=False)


def test_cli_writes_images_and_log(tmp_path):
    src = _make_source(tmp_path)
    project = tmp_path / "proj"
    result = _run("--source", str(src), "--project", str(project))
    assert result.exit_code == 0, result.output
    outputs = sorted(p.name for p in (project / "denoised").iterdir())
    assert outputs == [f"mic_{i:02d}.png" for i in range(4)]
    for i in range(4):
        img = cv2.imread(str(project / "denoised" / f"mic_{i:02d}.png"), cv2.IMREAD_UNCHANGED)
        data, _ = dn.read_micrograph(src / f"mic_{i:02d}.mrc")
        np.testing.assert_array_equal(img, dn.denoise_image(data))  # no flip, no resize
    lines = (project / "partinet_denoise.log").read_text().splitlines()
    assert all(LOG_LINE.match(line) for line in lines)
    text = "\n".join(lines)
    assert "workers out of" in text and f"Processing raw micrographs in {src}" in text
    assert text.count("Processed image") == 4
    assert re.search(r"Done: 4 processed, 0 skipped, 0 failed in [\d.]+ s", text)
    assert "denoised 4" in result.output


def test_cli_mrc_and_legacy_flip(tmp_path):
    src = _make_source(tmp_path, n=1)
    project = tmp_path / "proj"
    result = _run(
        "--source",
        str(src),
        "--project",
        str(project),
        "--img_format",
        "mrc",
        "--legacy-flip",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    out, voxel = dn.read_micrograph(project / "denoised" / "mic_00.mrc")
    data, _ = dn.read_micrograph(src / "mic_00.mrc")
    np.testing.assert_array_equal(out, dn.denoise_image(data, legacy_flip=True))
    assert voxel[0] == pytest.approx(1.5)
    assert result.output == ""


def test_cli_skips_existing_unless_forced(tmp_path):
    src = _make_source(tmp_path, n=2)
    project = tmp_path / "proj"
    assert _run("--source", str(src), "--project", str(project), "-q").exit_code == 0
    target = project / "denoised" / "mic_00.png"
    target.write_bytes(b"sentinel")
    result = _run("--source", str(src), "--project", str(project), "--img_format", "png")
    assert result.exit_code == 0
    assert target.read_bytes() == b"sentinel"
    log = (project / "partinet_denoise.log").read_text()
    assert f"{target} already exists!" in log
    assert "Done: 0 processed, 2 skipped" in log
    assert _run("--source", str(src), "--project", str(project), "--force", "-q").exit_code == 0
    assert cv2.imread(str(target), cv2.IMREAD_UNCHANGED).shape == (48, 64)


def test_cli_bad_file_is_logged_others_written_exit_1(tmp_path):
    src = _make_source(tmp_path, n=3, bad=True)
    project = tmp_path / "proj"
    result = _run("--source", str(src), "--project", str(project))
    assert result.exit_code == 1
    assert sorted(p.name for p in (project / "denoised").iterdir()) == [
        "mic_00.png",
        "mic_01.png",
        "mic_02.png",
    ]
    assert f"failed: {src / 'mic_bad.mrc'}: not a readable MRC file" in result.output
    log = (project / "partinet_denoise.log").read_text()
    assert f"Failed to process {src / 'mic_bad.mrc'}: not a readable MRC" in log
    assert "Done: 3 processed, 0 skipped, 1 failed" in log


def test_cli_shards_partition_the_sorted_files(tmp_path):
    src = _make_source(tmp_path, n=5, shape=(32, 32))
    seen = []
    for k in range(3):
        project = tmp_path / f"shard{k}"
        result = _run("--source", str(src), "--project", str(project), "--shard", f"{k}/3", "-q")
        assert result.exit_code == 0, result.output
        names = sorted(p.stem for p in (project / "denoised").iterdir())
        seen.append(names)
        assert f"Shard {k}/3:" in (project / "partinet_denoise.log").read_text()
    assert seen == [["mic_00", "mic_01"], ["mic_02", "mic_03"], ["mic_04"]]


@pytest.mark.parametrize("shard", ["3/3", "1/0", "a/b", "1", "-1/2"])
def test_cli_rejects_bad_shard_in_one_line(tmp_path, shard):
    src = _make_source(tmp_path, n=1)
    result = CliRunner().invoke(
        denoise_command, ["--source", str(src), "--project", str(tmp_path / "p"), "--shard", shard]
    )
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert "--shard" in error_lines[0] and repr(shard) in error_lines[0]
    assert "K/N" in error_lines[0] or "0 <= K < N" in error_lines[0]
    assert not (tmp_path / "p").exists()


def test_cli_missing_or_empty_source(tmp_path):
    result = _run("--source", str(tmp_path / "nope"), "--project", str(tmp_path / "p"))
    assert result.exit_code == 1 and "source directory not found" in result.output
    (tmp_path / "empty").mkdir()
    result = _run("--source", str(tmp_path / "empty"), "--project", str(tmp_path / "p"))
    assert result.exit_code == 1 and "no micrographs" in result.output


def test_duplicate_stems_are_refused(tmp_path):
    src = _make_source(tmp_path, n=1)
    cv2.imwrite(str(src / "mic_00.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="mic_00"):
        dn.denoise_directory(src, tmp_path / "p", progress=False)


def test_shard_helpers():
    files = [Path(f"f{i}") for i in range(10)]
    chunks = [dn.shard_files(files, k, 3) for k in range(3)]
    assert [len(c) for c in chunks] == [4, 3, 3]
    assert sum(chunks, []) == files
    assert dn.shard_files(files[:2], 3, 4) == []
    assert dn.parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "x/2", "1/2/3", ""):
        with pytest.raises(ValueError, match="--shard"):
            dn.parse_shard(bad)


def test_empty_shard_is_fine(tmp_path):
    src = _make_source(tmp_path, n=2, shape=(24, 24))
    summary = dn.denoise_directory(src, tmp_path / "p", shard="3/4", progress=False)
    assert summary.ok and summary.selected == 0 and summary.processed == []


@pytest.mark.slow
def test_two_worker_processes(tmp_path):
    src = _make_source(tmp_path, n=3, shape=(40, 40), bad=True)
    summary = dn.denoise_directory(src, tmp_path / "p", num_workers=2, progress=False)
    assert summary.workers == min(2, dn.available_cpus())
    assert sorted(p.name for p in summary.processed) == ["mic_00.png", "mic_01.png", "mic_02.png"]
    assert [p.name for p, _ in summary.failed] == ["mic_bad.mrc"]
    data, _ = dn.read_micrograph(src / "mic_01.mrc")
    img = cv2.imread(str(tmp_path / "p" / "denoised" / "mic_01.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(img, dn.denoise_image(data))


def test_registered_in_cryoglean_cli(tmp_path):
    from cryoglean.cli import main

    src = _make_source(tmp_path, n=1, shape=(24, 24))
    assert main(["denoise", "--source", str(src), "--project", str(tmp_path / "p"), "-q"]) == 0
    assert (tmp_path / "p" / "denoised" / "mic_00.png").exists()


@given(n_files=st.integers(0, 60), n_shards=st.integers(1, 12))
def test_shards_partition_in_order(n_files, n_shards):
    files = [Path(f"m{i:03d}") for i in range(n_files)]
    chunks = [dn.shard_files(files, k, n_shards) for k in range(n_shards)]
    assert sum(chunks, []) == files
    sizes = [len(c) for c in chunks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
