"""harvest.imageio: the one micrograph reader, lister, extension list and header-only size, and
the callers that delegate to it (converters.images, converters.denoise, trainers.data)."""

from __future__ import annotations

import logging

import cv2
import mrcfile
import numpy as np
import pytest

from converters import denoise, images
from converters.formats import _common
from harvest import conventions, imageio
from harvest.imageio import MicrographError, NoMicrographsError
from trainers import data as tdata


def _noise(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _mrc(path, data, **kw):
    mrcfile.write(path, data, overwrite=True, **kw)
    return path


# --- the three callers read through one reader -------------------------------------------------


def test_extension_list_is_one_object_shared_by_every_caller():
    assert denoise.INPUT_SUFFIXES is imageio.IMAGE_SUFFIXES
    assert tdata.IMAGE_SUFFIXES is imageio.IMAGE_SUFFIXES
    assert _common.IMAGE_EXTENSIONS is conventions.MICROGRAPH_EXTENSIONS
    # what can be read is a subset of what a micrograph name may carry (naming strips all)
    assert set(imageio.IMAGE_SUFFIXES) <= set(conventions.MICROGRAPH_EXTENSIONS)
    assert set(imageio.MRC_HEADER_SUFFIXES) <= set(conventions.MICROGRAPH_EXTENSIONS)
    for ext in imageio.IMAGE_SUFFIXES:
        assert conventions.micrograph_stem(f"d/m{ext.upper()}") == "m"


@pytest.mark.parametrize("kind", ["stack", "png_colour", "tiff_pages", "imod_bytes"])
def test_callers_return_the_same_pixels(tmp_path, kind):
    if kind == "stack":
        frames = np.stack([_noise((24, 30), s) * 7 for s in range(5)])
        path = _mrc(tmp_path / "m.mrcs", frames, voxel_size=1.5)
        expected = frames.astype(np.float64).mean(axis=0).astype(np.float32)
    elif kind == "png_colour":
        grey = np.random.default_rng(1).integers(0, 255, (20, 26)).astype(np.uint8)
        colour = cv2.merge([grey, (grey // 2).astype(np.uint8), grey])
        path = tmp_path / "c.png"
        cv2.imwrite(str(path), colour)
        expected = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.float32)
    elif kind == "tiff_pages":
        pages = [np.full((12, 14), v, np.uint16) for v in (3, 5, 10)]
        path = tmp_path / "p.tif"
        assert cv2.imwritemulti(str(path), pages)
        expected = np.full((12, 14), 6.0, np.float32)
    else:
        img = np.arange(200, dtype=np.uint8).reshape(10, 20)
        path = denoise.write_image(img, tmp_path / "u.mrc", "mrc")
        expected = img.astype(np.float32)
    mic = imageio.read_micrograph(path)
    assert mic.image.dtype == np.float32
    np.testing.assert_array_equal(mic.image, expected)
    np.testing.assert_array_equal(denoise.read_micrograph(path)[0], expected)
    np.testing.assert_array_equal(images.read_micrograph(path)[0], expected)
    np.testing.assert_array_equal(tdata.read_image(path), expected)
    assert imageio.micrograph_shape(path) == (expected.shape[1], expected.shape[0])
    assert images.micrograph_shape(path) == (expected.shape[1], expected.shape[0])


def test_pixel_size_from_the_header_or_none(tmp_path):
    path = _mrc(tmp_path / "a.mrc", _noise((8, 10)), voxel_size=(1.25, 1.25, 1.0))
    assert imageio.read_micrograph(path).pixel_size == 1.25
    assert images.read_micrograph(path)[1] == 1.25
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 10), np.uint8))
    assert imageio.read_micrograph(tmp_path / "a.png").voxel_size == (0.0, 0.0, 0.0)
    assert images.read_micrograph(tmp_path / "a.png")[1] is None


# --- error paths ---------------------------------------------------------------------------------


READERS = {
    "imageio": lambda p: imageio.read_micrograph(p),
    "images": images.read_micrograph,
    "denoise": denoise.read_micrograph,
    "trainers": tdata.read_image,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_missing_file(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="nope.mrc: micrograph not found"):
        READERS[reader](tmp_path / "nope.mrc")


@pytest.mark.parametrize("reader", sorted(READERS))
def test_truncated_mrc_says_truncated(tmp_path, reader):
    path = _mrc(tmp_path / "cut.mrc", _noise((40, 50)))
    raw = path.read_bytes()
    path.write_bytes(raw[: 1024 + 3000])
    with pytest.raises(MicrographError) as info:
        READERS[reader](path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: truncated MRC file") and "\n" not in msg
    assert "9024 bytes" in msg and "has 4024" in msg and "shape ()" not in msg


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("short.mrc", b"not an mrc", "not a readable MRC file .*shorter than the 1024-byte"),
        ("junk.mrc", bytes(range(256)) * 8, "not a readable MRC file"),
        ("junk.png", b"\x00garbage" * 10, "OpenCV cannot read this image"),
        ("junk.tif", b"\x00garbage" * 10, "OpenCV cannot read this TIFF"),
        ("note.txt", b"hello", "unsupported extension '.txt'"),
    ],
)
def test_garbage_bytes_one_line_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    for reader in READERS.values():
        with pytest.raises(MicrographError, match=match) as info:
            reader(path)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_wrong_dimensionality_and_complex(tmp_path):
    path = tmp_path / "vols.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((2, 3, 8, 8), np.float32))  # a stack of volumes: 4-D
    with pytest.raises(MicrographError, match=r"vols.mrc: MRC data has shape \(2, 3, 8, 8\)"):
        imageio.read_micrograph(path)
    _mrc(tmp_path / "c.mrc", np.zeros((8, 8), np.complex64))
    with pytest.raises(MicrographError, match="complex MRC data"):
        imageio.read_micrograph(tmp_path / "c.mrc")
    assert issubclass(MicrographError, ValueError) and issubclass(images.ImageError, ValueError)


def _defective(tmp_path):
    data = _noise((16, 20), seed=7)
    path = _mrc(tmp_path / "nomap.mrc", data)
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"\0\0\0\0"  # no "MAP " stamp: mrcfile's strict mode refuses the file
    path.write_bytes(bytes(raw))
    return path, data


def test_header_defect_read_permissively_with_a_warning(tmp_path, caplog):
    path, data = _defective(tmp_path)
    with caplog.at_level(logging.WARNING, logger="harvest.imageio"):
        mic = imageio.read_micrograph(path)
    np.testing.assert_array_equal(mic.image, data)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert str(path) in warned[0] and "Map ID" in warned[0] and "read permissively" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harvest.imageio"):
        assert imageio.micrograph_shape(path) == (20, 16)
    assert any(str(path) in r.getMessage() and "Map ID" in r.getMessage() for r in caplog.records)


def test_a_good_file_warns_nothing(tmp_path, caplog):
    path = _mrc(tmp_path / "ok.mrc", _noise((8, 8)))
    with caplog.at_level(logging.DEBUG, logger="harvest.imageio"):
        imageio.read_micrograph(path)
        imageio.micrograph_shape(path)
    assert not caplog.records


def test_strict_mode_refuses_a_header_defect(tmp_path):
    path, _ = _defective(tmp_path)
    with pytest.raises(MicrographError, match=r"nomap.mrc: MRC header defect \(.*Map ID"):
        imageio.read_micrograph(path, permissive=False)
    with pytest.raises(MicrographError, match="MRC header defect"):
        imageio.micrograph_shape(path, permissive=False)


# --- header-only size ------------------------------------------------------------------------


def test_shape_reads_headers_only(tmp_path):
    path = _mrc(tmp_path / "big.mrc", np.zeros((30, 40), np.float32))
    assert imageio.micrograph_shape(path) == (40, 30)
    # pixels gone: a header that promises more than the file holds gives no size (issue 14:
    # header sizes must be consistent with the file length)
    path.write_bytes(path.read_bytes()[:1024])
    with pytest.raises(MicrographError, match=r"big\.mrc: MRC header inconsistent with the "
                       r"file \(nx=40, ny=30, nz=1, mode 2 in a 1024-byte file\)"):
        imageio.micrograph_shape(path)
    _mrc(tmp_path / "t.rec", np.zeros((3, 6, 5), np.float32))
    assert imageio.micrograph_shape(tmp_path / "t.rec") == (5, 6)
    png = tmp_path / "p.png"
    cv2.imwrite(str(png), np.zeros((7, 9), np.uint8))
    png.write_bytes(png.read_bytes()[:24])  # the size sits in the first 24 bytes
    assert imageio.micrograph_shape(png) == (9, 7)
    cv2.imwrite(str(tmp_path / "j.jpg"), np.zeros((11, 13), np.uint8))
    assert imageio.micrograph_shape(tmp_path / "j.jpg") == (13, 11)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(MicrographError, match="bad.png: not a PNG file"):
        imageio.micrograph_shape(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="gone.mrc"):
        imageio.micrograph_shape(tmp_path / "gone.mrc")


# --- the lister ------------------------------------------------------------------------------


def test_lister_sorted_regular_files_known_extensions_no_hidden(tmp_path):
    for name in ("b.mrc", "a.PNG", "c.tiff", ".hidden.mrc", "notes.txt", "m.eer"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.mrc").mkdir()
    expected = ["a.PNG", "b.mrc", "c.tiff"]
    assert [p.name for p in imageio.list_micrographs(tmp_path)] == expected
    assert [p.name for p in denoise.list_micrographs(tmp_path)] == expected
    assert [p.name for p in tdata.list_micrographs(tmp_path)] == expected


def test_lister_errors_missing_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: micrograph folder not found"):
        imageio.list_micrographs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere: source directory not found"):
        denoise.list_micrographs(tmp_path / "nowhere")
    (tmp_path / "only.txt").write_text("x")
    (tmp_path / ".h.mrc").write_bytes(b"x")
    for lister in (imageio.list_micrographs, denoise.list_micrographs, tdata.list_micrographs):
        with pytest.raises(NoMicrographsError, match=r"no micrographs \(\.mrc, .*\.tiff\)") as e:
            lister(tmp_path)
        assert isinstance(e.value, FileNotFoundError) and "\n" not in str(e.value)


# --- the one 8-bit conversion -------------------------------------------------------------------


def test_to_uint8_rounds_to_nearest_not_truncates():
    img = np.array([[0.0, 0.6, 127.5, 128.5, 254.4, 255.0]])
    # minmax over 0..255 keeps the values; they are rounded (halves to even), not truncated
    assert images.to_uint8(img, "minmax").tolist() == [[0, 1, 128, 128, 254, 255]]
    assert images.to_uint8(img * 3 - 7, "minmax").tolist() == [[0, 1, 128, 128, 254, 255]]
