"""Reading micrographs (MRC variants, frames, PNG/JPG/TIFF) and writing denoised images."""

from __future__ import annotations

import cv2
import mrcfile
import numpy as np
import pytest

from converters import denoise as dn


def _noise(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def test_mrc_2d_and_voxel_size(tmp_path):
    data = _noise((40, 56))
    path = tmp_path / "a.mrc"
    mrcfile.write(path, data, voxel_size=(1.25, 1.25, 1.0))
    image, voxel = dn.read_micrograph(path)
    assert image.dtype == np.float32 and image.shape == (40, 56)
    np.testing.assert_array_equal(image, data)
    assert voxel[:2] == (1.25, 1.25)


def test_mrc_single_section_stack_is_squeezed(tmp_path):
    data = _noise((1, 32, 48), seed=1)
    path = tmp_path / "b.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.header.ispg = 1  # loads as (1, ny, nx) (formats.md section 11)
    image, _ = dn.read_micrograph(path)
    np.testing.assert_array_equal(image, data[0])


def test_mrc_frames_are_averaged(tmp_path):
    frames = np.stack([_noise((32, 40), seed=s, scale=5) for s in range(4)])
    path = tmp_path / "movie.mrcs"
    mrcfile.write(path, frames)
    image, _ = dn.read_micrograph(path)
    np.testing.assert_allclose(image, frames.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(dn.denoise_image(image), dn.denoise_image(frames.mean(axis=0)))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float16, np.int8])
def test_mrc_integer_and_half_modes_become_float32(tmp_path, dtype):
    data = (np.random.default_rng(2).integers(0, 100, size=(24, 30))).astype(dtype)
    path = tmp_path / f"m_{np.dtype(dtype).name}.mrc"
    mrcfile.write(path, data)
    image, _ = dn.read_micrograph(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, data.astype(np.float32))


def test_png_jpg_tiff_inputs(tmp_path):
    grey = (np.random.default_rng(3).integers(0, 255, size=(36, 44))).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.merge([grey, grey, grey]))
    cv2.imwrite(str(tmp_path / "g16.tif"), grey.astype(np.uint16) * 200)
    image, voxel = dn.read_micrograph(tmp_path / "g.png")
    np.testing.assert_array_equal(image, grey)
    assert voxel == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(dn.read_micrograph(tmp_path / "c.png")[0], grey)
    np.testing.assert_array_equal(dn.read_micrograph(tmp_path / "g16.tif")[0], grey * 200.0)
    cv2.imwrite(str(tmp_path / "j.jpg"), grey)
    assert dn.read_micrograph(tmp_path / "j.jpg")[0].shape == (36, 44)


def test_multipage_tiff_is_averaged(tmp_path):
    pages = [np.full((20, 24), v, dtype=np.uint16) for v in (10, 20, 60)]
    path = tmp_path / "frames.tif"
    assert cv2.imwritemulti(str(path), pages)
    image, _ = dn.read_micrograph(path)
    np.testing.assert_array_equal(image, np.full((20, 24), 30.0, dtype=np.float32))


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("bad.mrc", b"not an mrc", "not a readable MRC"),
        ("bad.png", b"not a png", "cannot read"),
        ("bad.xyz", b"", "unsupported extension"),
    ],
)
def test_unreadable_inputs_raise_one_line_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        dn.read_micrograph(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_missing_input_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mrc"):
        dn.read_micrograph(tmp_path / "nope.mrc")


def test_png_output_is_lossless(tmp_path):
    img = np.random.default_rng(4).integers(0, 256, size=(30, 50), dtype=np.uint8)
    dst = dn.write_image(img, tmp_path / "o.png", "png")
    np.testing.assert_array_equal(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), img)
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]  # no temporary left behind


def test_jpg_output_is_readable(tmp_path):
    img = cv2.GaussianBlur(
        np.random.default_rng(5).integers(0, 256, size=(64, 64), dtype=np.uint8), (9, 9), 0
    )
    dst = dn.write_image(img, tmp_path / "o.jpg", "jpg")
    back = cv2.imread(str(dst), cv2.IMREAD_GRAYSCALE)
    assert back.shape == img.shape
    assert np.abs(back.astype(int) - img).mean() < 3


def test_mrc_output_is_mode0_unsigned_with_voxel_size(tmp_path):
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    dst = dn.write_image(img, tmp_path / "o.mrc", "mrc", voxel_size=(1.06, 1.06, 1.06))
    with mrcfile.open(dst) as mrc:
        assert mrc.header.mode == 0
        np.testing.assert_allclose(mrc.voxel_size.x, 1.06, rtol=1e-6)
        np.testing.assert_array_equal(mrc.data.view(np.uint8), img)  # mrcfile says int8
        assert float(mrc.header.dmax) == 255.0
    back, voxel = dn.read_micrograph(dst)
    np.testing.assert_array_equal(back, img)  # IMOD stamp: unsigned bytes
    assert voxel[0] == pytest.approx(1.06, rel=1e-6)


def test_plain_mode0_without_imod_stamp_stays_signed(tmp_path):
    data = np.array([[-5, 3], [100, -128]] * 8, dtype=np.int8).reshape(16, 2)
    mrcfile.write(tmp_path / "s.mrc", np.tile(data, (1, 8)))
    back, _ = dn.read_micrograph(tmp_path / "s.mrc")
    assert back.min() == -128


def test_write_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        dn.write_image(np.zeros((4, 4), np.float32), tmp_path / "x.png", "png")


def test_denoise_file_round_trip(tmp_path):
    src = tmp_path / "mic.mrc"
    data = _noise((64, 72), seed=6)
    mrcfile.write(src, data, voxel_size=2.0)
    for fmt in ("png", "mrc"):
        dst = tmp_path / f"out.{fmt}"
        seconds = dn.denoise_file(src, dst, fmt)
        assert seconds > 0
        back, _ = dn.read_micrograph(dst)
        np.testing.assert_array_equal(back, dn.denoise_image(data))


def test_mrc_header_defect_is_read_permissively(tmp_path):
    data = _noise((16, 20), seed=7)
    path = tmp_path / "nomap.mrc"
    mrcfile.write(path, data)
    raw = bytearray(path.read_bytes())
    raw[208:212] = b"\0\0\0\0"  # no "MAP " stamp: mrcfile's strict mode refuses the file
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="Map ID"):
        mrcfile.open(path).close()  # strict
    image, _ = dn.read_micrograph(path)  # like PartiNet's mrcfile.read, which is permissive
    np.testing.assert_array_equal(image, data)
