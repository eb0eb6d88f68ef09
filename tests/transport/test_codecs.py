"""edgeflow.transport.codecs: raw / jpeg / png / lz4 payloads and their headers, both ways (no sockets)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgeflow.errors import ConfigError, ProtocolError
from edgeflow.frame import Frame
from edgeflow.transport import codecs

rng = np.random.default_rng(7)

ARRAYS = {
    "uint8-image": lambda: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    "float32": lambda: np.linspace(-1e6, 1e6, 1001, dtype=np.float32).reshape(7, 11, 13),
    "int64-extremes": lambda: np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
    "big-endian": lambda: np.arange(6, dtype=">i4").reshape(2, 3),
    "bool": lambda: np.array([[True, False], [False, True]]),
    "complex128": lambda: np.array([1 + 2j, -3.5j]),
    "unicode": lambda: np.array(["a", "bcd", ""], dtype="U3"),
    "datetime64": lambda: np.array(["2024-01-01T00:00:00.000000001"], dtype="M8[ns]"),
    "structured": lambda: np.array([(1.5, 2, b"abc")], dtype=[("x", "<f4"), ("y", "<i2"), ("name", "S5")]),
    "structured-aligned": lambda: np.zeros(2, dtype=np.dtype([("x", "<f4"), ("y", "<f8")], align=True)),
    "subarray": lambda: np.zeros(1, dtype=[("id", "u1"), ("pos", "<f4", (3,))]),
    "0-d": lambda: np.array(3.25),
    "empty": lambda: np.zeros((3, 0, 2), np.uint16),
    "fortran": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": lambda: np.arange(100, dtype=np.int16)[::3],
}


def roundtrip(data, codec=None):
    header, payload = codecs.encode(data, codec)
    json.dumps(header)                                   # headers are JSON-able for any transport
    assert header["size"] == len(payload)
    return header, codecs.decode(json.loads(json.dumps(header)), bytes(payload))


@pytest.mark.parametrize("codec", [None, "raw", "lz4"])
@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip_exactly(name, codec):
    data = ARRAYS[name]()
    header, got = roundtrip(data, codec)
    assert header["codec"] == (codec or "raw") and header["kind"] == "array"
    assert (got.dtype, got.shape, got.dtype.names) == (data.dtype, data.shape, data.dtype.names)
    assert got.tobytes() == np.ascontiguousarray(data).tobytes()


@pytest.mark.parametrize("codec", [None, "lz4", "jpeg", "png"])
def test_bytes_and_dicts_round_trip(codec):
    for data in (b"\x00\x01binary" * 50, bytearray(b"ba"), memoryview(b"mv"), {"a": [1, 2.5, None, "x"]}, []):
        header, got = roundtrip(data, codec)
        expected = json.loads(json.dumps(data)) if isinstance(data, (dict, list)) else bytes(data)
        assert got == expected and type(got) is type(expected)
        assert header["codec"] == ("lz4" if codec == "lz4" else "raw"), "image codecs leave non-images raw"


def test_raw_arrays_are_not_copied_on_either_side():
    data = np.arange(1_000_000, dtype=np.uint8)
    header, payload = codecs.encode(data)
    assert isinstance(payload, memoryview) and np.shares_memory(np.frombuffer(payload, np.uint8), data)
    buf = bytes(payload)
    got = codecs.decode(header, buf)
    assert np.shares_memory(got, np.frombuffer(buf, np.uint8)) and not got.flags.writeable


@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1), (40, 60, 3)])
def test_jpeg_is_close_and_compresses(shape):
    img = np.zeros(shape, np.uint8)
    img[10:30, 20:40] = 200
    header, got = roundtrip(img, "jpeg")
    assert got.shape == img.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - img).mean() < 4
    assert header["size"] < img.nbytes


@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1), (40, 60, 3), (40, 60, 4)])
def test_png_is_lossless(shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    _, got = roundtrip(img, "png")
    np.testing.assert_array_equal(got, img)


def test_quality_changes_the_jpeg_size():
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    low, _ = codecs.encode(img, "jpeg", quality=20)
    high, _ = codecs.encode(img, "jpeg", quality=95)
    assert low["size"] < high["size"]


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((4,), np.uint8), np.zeros((0, 4, 3), np.uint8)])
@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_image_codecs_refuse_what_is_not_an_image(bad, codec):
    with pytest.raises(ValueError, match="uint8 images"):
        codecs.encode(bad, codec)


def test_png_takes_alpha_but_jpeg_does_not():
    rgba = np.zeros((4, 4, 4), np.uint8)
    codecs.encode(rgba, "png")
    with pytest.raises(ValueError):
        codecs.encode(rgba, "jpeg")


def test_a_frame_encodes_its_data():
    header, payload = codecs.encode(Frame(np.arange(3, dtype=np.int8), meta={"x": 1}))
    assert header["shape"] == [3] and bytes(payload) == b"\x00\x01\x02"


def test_unsendable_data_and_unknown_codecs_are_refused():
    with pytest.raises(TypeError, match="Python objects"):
        codecs.encode(np.array([object()]))
    with pytest.raises(TypeError, match="cannot send set"):
        codecs.encode({1, 2})
    with pytest.raises(TypeError, match="JSON"):
        codecs.encode({"x": object()})
    with pytest.raises(ConfigError, match="codec 'zip'"):
        codecs.encode(b"x", "zip")
    assert codecs.check_codec(None) == codecs.check_codec("raw") == "raw"


def test_lz4_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    with pytest.raises(ConfigError, match="pip install lz4"):
        codecs.check_codec("lz4")
    with pytest.raises(ConfigError, match="pip install lz4"):
        codecs.encode(b"x", "lz4")


def test_lz4_compresses_redundant_payloads():
    header, payload = codecs.encode(np.zeros((256, 256), np.float64), "lz4")
    assert len(payload) < 4096


BAD = [
    ({"kind": "array", "codec": "raw", "dtype": "<u2", "shape": [3], "size": 5}, b"12345"),   # needs 6 bytes
    ({"kind": "array", "codec": "raw", "dtype": "<u2", "shape": [3]}, b"12345"),
    ({"kind": "array", "codec": "raw", "dtype": "nonsense", "shape": [1]}, b"1"),
    ({"kind": "array", "codec": "raw", "dtype": "|O", "shape": [1]}, b"12345678"),
    ({"kind": "array", "codec": "raw", "dtype": "<u1", "shape": [-1]}, b"1"),
    ({"kind": "array", "codec": "raw", "dtype": "<u1", "shape": "3"}, b"123"),
    ({"kind": "array", "codec": "raw", "dtype": "D:[('x', 'nope')]", "shape": [1]}, b"1"),
    ({"kind": "array", "codec": "jpeg", "dtype": "|u1", "shape": [4, 4]}, b"not a jpeg"),
    ({"kind": "array", "codec": "lz4", "dtype": "|u1", "shape": [4]}, b"not lz4"),
    ({"kind": "json", "codec": "raw"}, b"{not json"),
    ({"kind": "video", "codec": "raw"}, b""),
    ({"kind": "bytes", "codec": "gzip"}, b""),
    (["not", "a", "dict"], b""),
]


@pytest.mark.parametrize("header,payload", BAD)
def test_malformed_input_raises_protocol_error(header, payload):
    with pytest.raises(ProtocolError):
        codecs.decode(header, payload)


def test_dtype_codes_round_trip_and_reject_garbage():
    for name in ("structured", "structured-aligned", "subarray", "unicode", "big-endian"):
        dtype = ARRAYS[name]().dtype
        assert codecs.dtype_from_code(codecs.dtype_code(dtype)) == dtype
    with pytest.raises(ProtocolError):
        codecs.dtype_from_code("D:" + "[" * 5000)
