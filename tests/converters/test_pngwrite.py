"""converters.pngwrite: the PNG writer of image exports and denoised micrographs.

Decoded two ways: by OpenCV (libpng) and by a decoder written here from the specification
(chunk CRCs, IHDR fields, zlib stream, filters None/Up undone), so a file that only OpenCV
tolerates would fail."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from converters import images, pngwrite


def _decode(data: bytes) -> np.ndarray:
    """A strict reader of 8-bit greyscale, non-interlaced PNGs with filters None and Up."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + n
    assert pos == len(data)
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, comp, filt, interlace) == (8, 0, 0, 0, 0)
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    out = np.empty((h, w), np.uint8)
    prev = np.zeros(w, np.uint8)
    for y in range(h):
        kind, line = rows[y, 0], rows[y, 1:]
        assert kind in (0, 2), f"filter {kind}"
        out[y] = line if kind == 0 else line + prev  # uint8: modulo 256
        prev = out[y]
    return out


def _cases():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:97, 0:131]
    return {
        "noise": rng.integers(0, 256, (64, 80), dtype=np.uint8),
        "gradient": ((xx + 2 * yy) % 256).astype(np.uint8),
        "constant": np.full((5, 7), 200, np.uint8),
        "one pixel": np.array([[3]], np.uint8),
        "one row": rng.integers(0, 256, (1, 33), dtype=np.uint8),
        "one column": rng.integers(0, 256, (41, 1), dtype=np.uint8),
        "wraps": np.tile(np.array([[0], [255], [1], [254]], np.uint8), (3, 9)),
        "tall": rng.integers(0, 4, (700, 9), dtype=np.uint8),  # > the row sample: sampled choice
    }


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("filter_type", [None, pngwrite.NONE, pngwrite.UP])
def test_pixels_survive_both_decoders(name, filter_type):
    img = _cases()[name]
    data = pngwrite.encode(img, filter_type)
    np.testing.assert_array_equal(_decode(data), img)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), img)


def test_the_standard_library_zlib_writes_the_same_pixels(monkeypatch):
    img = _cases()["gradient"]
    with_isal = pngwrite.encode(img)
    monkeypatch.setattr(pngwrite, "_isal", None)
    plain = pngwrite.encode(img)
    np.testing.assert_array_equal(_decode(plain), img)
    np.testing.assert_array_equal(_decode(with_isal), img)


def test_filter_follows_the_image():
    rng = np.random.default_rng(1)
    # shot-noise-like: differencing rows widens the histogram by √2, so None is smaller
    noise = np.clip(np.rint(128 + 30 * rng.normal(size=(1024, 512))), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:1024, 0:512]
    smooth = (128 + 100 * np.sin(xx / 40.0) * np.cos(yy / 55.0)).astype(np.uint8)
    assert pngwrite.choose_filter(noise) == pngwrite.NONE
    assert pngwrite.choose_filter(smooth) == pngwrite.UP
    # the choice is the smaller file on the whole image too
    for img in (noise, smooth):
        sizes = {f: len(pngwrite.encode(img, f)) for f in (pngwrite.NONE, pngwrite.UP)}
        assert min(sizes, key=sizes.get) == pngwrite.choose_filter(img)


def test_a_micrograph_is_no_larger_than_opencv_writes_it():
    """Simulated micrograph (CTF-modulated particles, ice, carbon, noise) as exports write it,
    and a smoothed one (a denoised micrograph's kind of content)."""
    from scipy import ndimage

    from harvest.synth import FacilityConfig
    from harvest.synth.micrographs import simulate_micrograph

    mic, _ = simulate_micrograph(FacilityConfig(nx=512, ny=512), np.random.default_rng(0),
                                 with_carbon=True)
    for img in (images.to_uint8(mic), images.to_uint8(ndimage.gaussian_filter(mic, 3))):
        ours = pngwrite.encode(img)
        ok, theirs = cv2.imencode(".png", img)
        assert ok and len(ours) <= len(theirs.tobytes()), (len(ours), len(theirs.tobytes()))
        np.testing.assert_array_equal(_decode(ours), img)


def test_write_png_is_atomic_and_leaves_no_temporary(tmp_path):
    img = _cases()["noise"]
    dest = tmp_path / "a.png"
    dest.write_bytes(b"old")
    pngwrite.write_png(dest, img)
    np.testing.assert_array_equal(cv2.imread(str(dest), cv2.IMREAD_UNCHANGED), img)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
    with pytest.raises(OSError):
        pngwrite.write_png(tmp_path / "missing" / "b.png", img)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8),
                                 np.zeros((0, 4), np.uint8)])
def test_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="2-D uint8"):
        pngwrite.encode(bad)


def test_image_export_png_is_the_quantised_micrograph(tmp_path):
    """write_image's PNG decodes to to_uint8 of the micrograph (the export's pixels)."""
    import mrcfile

    rng = np.random.default_rng(3)
    data = rng.normal(size=(300, 420)).astype(np.float32)
    src = tmp_path / "m.mrc"
    with mrcfile.new(src) as m:
        m.set_data(data)
    dest = tmp_path / "out" / "m.png"
    job = images.ImageJob(src=str(src), dest=str(dest), mode="png", shape=(300, 420))
    assert images.write_image(job) == "write"
    np.testing.assert_array_equal(_decode(dest.read_bytes()), images.to_uint8(data))
