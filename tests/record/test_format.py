"""The recording format read back by independent readers: the ``mcap`` package's own reader, Foxglove's
protobuf classes and published JSON schemas, and our reader; every frame bit-exact with id, timestamp, meta."""

from __future__ import annotations

import base64
import json
import re

import jsonschema
import numpy as np
import pytest
from mcap.reader import make_reader

from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.record import McapRecorder, open_recording
from edgeflow.record import format as fmt
from edgeflow.record.writer import rotated_path

T0 = 1_765_000_000.123456789


def same(a, b) -> bool:
    """Bit-exact equality of payloads: arrays by dtype, shape and bytes; dicts and lists recursively."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def payloads(i: int) -> list[tuple[str, object]]:
    """One frame per topic of every kind: images, non-image arrays, bytes, dict messages."""
    rng = np.random.default_rng(i)
    structured = np.zeros(3, dtype=[("x", "<f4"), ("id", ">u2"), ("pad", "V3")])
    structured["x"] = rng.random(3)
    return [
        ("camera", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)),
        ("mono", rng.integers(0, 256, (8, 10), dtype=np.uint8)),
        ("rgba", rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)),
        ("depth", rng.integers(0, 65535, (12, 16), dtype=np.uint16)),
        ("lidar", rng.random((17, 3)).astype(np.float32)),
        ("big_endian", np.arange(6, dtype=">i4").reshape(2, 3)),
        ("scalar0d", np.array(i, dtype=np.int64)),
        ("structured", structured),
        ("empty", np.zeros((0, 4), np.float64)),
        ("raw", bytes(rng.integers(0, 256, 33, dtype=np.uint8))),
        ("detector.r0", {"boxes": rng.random((2, 4)), "label": "person", "score": 0.5 + i,
                         "nested": {"ids": np.arange(3, dtype=np.int16), "blob": b"\x00\x01"}}),
        ("detector.r1", {"count": i, "ok": True, "names": ["a", "b"], "none": None}),
        ("nan", {"v": float("nan"), "inf": float("-inf")}),
        ("alist", [1, 2.5, np.float32(3.5)]),
    ]


def write_recording(path, n=5, **options):
    """Frames of every kind written by McapRecorder; returns [(topic, Frame)] in writing order."""
    rec = McapRecorder(path, app="demo", **options)
    written = []
    for i in range(n):
        for k, (topic, data) in enumerate(payloads(i)):
            meta = {"edgeflow.trace": [["camera", 1_700_000_000_000_000 + i, 1_700_000_000_000_100 + i]],
                    "edgeflow.parents": [["camera", i + 1]], "k": k}
            frame = Frame(data, frame_id=(1 << 40) + i, timestamp=T0 + i * 0.1 + k * 1e-4, meta=meta)
            assert rec.write(topic, frame, node=topic.split(".")[0])
            written.append((topic, frame))
    rec.close()
    assert rec.stats()["frames"] == len(written) and rec.error is None
    return written


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_every_frame_read_back_exact_by_our_reader(tmp_path, compression):
    path = tmp_path / "run.mcap"
    written = write_recording(path, compression=compression, chunk_bytes=4096)
    rec = open_recording(path)
    assert rec.app == "demo" and rec.truncated == []
    assert rec.topics == sorted({t for t, _ in written})
    assert rec.nodes["detector.r1"] == "detector" and rec.kinds["camera"] == "image"
    assert rec.kinds["lidar"] == "array" and rec.kinds["raw"] == "bytes" and rec.kinds["alist"] == "message"
    got = list(rec.frames())
    assert len(got) == len(written)
    for (topic, want), (gtopic, frame) in zip(sorted(written, key=lambda x: x[1].timestamp), got):
        assert gtopic == topic == frame.topic
        assert frame.frame_id == want.frame_id and frame.timestamp == want.timestamp
        assert frame.meta == want.meta
        assert same(want.data, frame.data), topic


def test_mcap_reader_sees_channels_metadata_and_times(tmp_path):
    path = tmp_path / "run.mcap"
    written = write_recording(path, n=3, chunk_bytes=2048)
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == len(written)
        assert len(summary.chunk_indexes) > 1 and all(c.compression == "lz4" for c in summary.chunk_indexes)
        header = reader.get_header()
        assert header.profile == ""
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        assert meta["edgeflow"]["app"] == "demo" and "edgeflow_version" in meta["edgeflow"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*", meta["edgeflow"]["started"])
        channels = {c.topic: c for c in summary.channels.values()}
        assert channels["detector.r0"].metadata == {"edgeflow.topic": "detector.r0", "edgeflow.node": "detector",
                                                     "edgeflow.kind": "message"}
        assert channels["camera"].message_encoding == "protobuf"
        assert summary.schemas[channels["camera"].schema_id].name == "foxglove.RawImage"
        assert channels["lidar"].message_encoding == "edgeflow.frame" and channels["lidar"].schema_id == 0
        msgs = list(reader.iter_messages(log_time_order=False))
    by_key = {(c.topic, m.sequence, m.log_time): m for _s, c, m in msgs}
    for topic, frame in written:
        m = by_key[(topic, frame.frame_id & 0xFFFFFFFF, int(round(frame.timestamp * 1e9)))]
        assert m.publish_time >= m.log_time - 10**9 * 3600 * 24 * 365     # the recording time, in ns
        kind = channels[topic].metadata["edgeflow.kind"]
        data, fid, ts, meta = fmt.decode_frame(kind, channels[topic].message_encoding, m.data, topic)
        assert (fid, ts, meta) == (frame.frame_id, frame.timestamp, frame.meta) and same(frame.data, data)


def foxglove_json(msg) -> dict:
    """A decoded foxglove protobuf image as Foxglove's JSON encoding of it (time as {sec, nsec})."""
    out = {"timestamp": {"sec": msg.timestamp.seconds, "nsec": msg.timestamp.nanos}, "frame_id": msg.frame_id,
           "data": base64.b64encode(msg.data).decode()}
    for name in ("width", "height", "encoding", "step", "format"):
        if hasattr(msg, name):
            out[name] = getattr(msg, name)
    return out


def supported_encodings(schema: dict) -> set[str]:
    return set(re.findall(r"`([^`]+)`", schema["properties"]["encoding"]["description"]))


def test_images_decode_with_foxglove_schemas_and_validate_against_published_json_schema(tmp_path):
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    path = tmp_path / "run.mcap"
    written = {(t, int(round(f.timestamp * 1e9))): f for t, f in write_recording(path, n=2)}
    schema = fmt.published_json_schema("RawImage")
    assert schema["title"] == "foxglove.RawImage"
    validator = jsonschema.Draft202012Validator(schema)
    expected = {"camera": "bgr8", "mono": "mono8", "rgba": "bgra8", "depth": "mono16"}
    seen = set()
    with open(path, "rb") as f:
        for sch, channel, message in make_reader(f).iter_messages(topics=list(expected)):
            assert sch.name == "foxglove.RawImage" and sch.encoding == "protobuf"
            img = RawImage()
            img.ParseFromString(message.data)
            frame = written[(channel.topic, message.log_time)]
            arr = frame.data
            assert img.encoding == expected[channel.topic] in supported_encodings(schema)
            assert (img.height, img.width) == arr.shape[:2] and img.step * img.height == len(img.data)
            assert img.data == arr.tobytes()
            assert img.timestamp.seconds * 10**9 + img.timestamp.nanos == message.log_time
            assert img.frame_id == channel.topic
            validator.validate(foxglove_json(img))
            seen.add(channel.topic)
    assert seen == set(expected)


def test_vendored_protobuf_schemas_match_foxglove_package():
    from google.protobuf import descriptor_pb2
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    for cls, jpeg in ((RawImage, False), (CompressedImage, True)):
        name, encoding, data = fmt.schema_for("image", jpeg=jpeg)
        assert (name, encoding) == (cls.DESCRIPTOR.full_name, "protobuf")
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        ours = {f.name: f for f in fds.file}
        theirs = descriptor_pb2.FileDescriptorProto()
        cls.DESCRIPTOR.file.CopyToProto(theirs)
        assert ours[theirs.name] == theirs
        numbers = {f.name: f.number for f in cls.DESCRIPTOR.fields}
        assert numbers == (fmt._COMPRESSED if jpeg else fmt._RAW)
        assert fmt.ENVELOPE_FIELD not in numbers.values()


def test_jpeg_images_are_compressed_images(tmp_path):
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    path = tmp_path / "run.mcap"
    rec = McapRecorder(path, app="demo", jpeg=True)
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    rec.write("camera", Frame(img, frame_id=7, timestamp=T0, meta={"a": 1}))
    rec.write("depth", Frame(np.ones((4, 4), np.uint16), frame_id=1, timestamp=T0))   # stays raw: exact
    rec.close()
    validator = jsonschema.Draft202012Validator(fmt.published_json_schema("CompressedImage"))
    with open(path, "rb") as f:
        msgs = {c.topic: (s, c, m) for s, c, m in make_reader(f).iter_messages()}
    sch, channel, message = msgs["camera"]
    assert sch.name == "foxglove.CompressedImage" and channel.metadata["edgeflow.jpeg"] == "true"
    out = CompressedImage()
    out.ParseFromString(message.data)
    assert out.format == "jpeg" and out.data[:2] == b"\xff\xd8"
    validator.validate(foxglove_json(out))
    assert msgs["depth"][0].name == "foxglove.RawImage"
    frames = dict(open_recording(path).frames())
    back = frames["camera"]
    assert back.frame_id == 7 and back.meta == {"a": 1} and back.data.shape == img.shape
    assert np.abs(back.data.astype(int) - img).mean() < 3            # lossy, but the same picture
    assert same(frames["depth"].data, np.ones((4, 4), np.uint16))


def test_message_channels_are_json_with_a_json_schema(tmp_path):
    path = tmp_path / "run.mcap"
    write_recording(path, n=2)
    with open(path, "rb") as f:
        msgs = [(s, c, m) for s, c, m in make_reader(f).iter_messages(topics=["detector.r0", "detector.r1"])]
    assert msgs
    for sch, channel, message in msgs:
        assert channel.message_encoding == "json" and sch.encoding == "jsonschema"
        doc = json.loads(message.data)                  # strict JSON: what Foxglove parses
        jsonschema.Draft202012Validator(json.loads(sch.data)).validate(doc)
        if channel.topic == "detector.r1":              # JSON only: the message itself, no binary copy
            assert "efms" not in doc["edgeflow"] and doc["data"]["names"] == ["a", "b"]
        else:                                            # arrays: shown as lists, kept exact in efms
            assert len(doc["data"]["boxes"]) == 2 and "efms" in doc["edgeflow"]
    with open(path, "rb") as f:
        nan = [m for _s, _c, m in make_reader(f).iter_messages(topics=["nan"])]
    json.loads(nan[0].data, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_time_window_and_topic_filter(tmp_path):
    path = tmp_path / "run.mcap"
    written = write_recording(path, n=6, chunk_bytes=1024)
    rec = open_recording(path)
    start, end = T0 + 0.2, T0 + 0.4
    got = list(rec.frames(topics=["camera", "raw"], start=start, end=end))
    want = [(t, f) for t, f in written if t in ("camera", "raw") and start <= f.timestamp < end]
    assert [(t, f.frame_id, f.timestamp) for t, f in got] == \
        [(t, f.frame_id, f.timestamp) for t, f in sorted(want, key=lambda x: x[1].timestamp)]
    with pytest.raises(ConfigError, match="no topic nope"):
        list(rec.frames(topics=["nope"]))


def test_rotation_by_size_and_by_capture_time(tmp_path):
    path = tmp_path / "run.mcap"
    rec = McapRecorder(path, app="demo", rotate_bytes=20_000, chunk_bytes=4096, compression="none")
    for i in range(30):
        rec.write("camera", Frame(np.full((40, 50, 3), i, np.uint8), frame_id=i + 1, timestamp=T0 + i))
    rec.close()
    files = rec.stats()["files"]
    assert len(files) >= 3 and files[0] == str(rotated_path(path, 1)) and not path.exists()
    import os
    assert all(os.path.getsize(p) < 20_000 + 2_000 for p in files)      # under the limit but for the summary
    for p in files:                                                      # each file complete on its own
        with open(p, "rb") as f:
            assert make_reader(f).get_summary().statistics.message_count >= 1
    back = open_recording(path)                                          # run.mcap stands for its parts
    assert [f.frame_id for _, f in back.frames()] == list(range(1, 31))
    assert back.files == sorted(back.files)

    timed = tmp_path / "t" / "run.mcap"
    rec = McapRecorder(timed, app="demo", rotate_seconds=10)
    for i in range(25):
        rec.write("camera", Frame(np.zeros((2, 2), np.uint8), frame_id=i + 1, timestamp=T0 + i))
    rec.close()
    per_file = [[f.frame_id for _, f in open_recording(p).frames()] for p in rec.stats()["files"]]
    assert per_file == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]


def test_bad_options_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="compression='gzip'"):
        McapRecorder(tmp_path / "a.mcap", app="x", compression="gzip")
    with pytest.raises(ConfigError, match="rotate_bytes=0"):
        McapRecorder(tmp_path / "a.mcap", app="x", rotate_bytes=0)
    with pytest.raises(ConfigError, match="no such file"):
        open_recording(tmp_path / "missing.mcap")


def test_a_topic_that_changes_kind_drops_the_frame_not_the_recording(tmp_path, caplog):
    path = tmp_path / "run.mcap"
    rec = McapRecorder(path, app="demo")
    assert rec.write("camera", Frame(np.zeros((4, 4), np.uint8), frame_id=1, timestamp=T0))
    assert not rec.write("camera", Frame({"a": 1}, frame_id=2, timestamp=T0 + 1))
    assert rec.write("camera", Frame(np.ones((4, 4), np.uint8), frame_id=3, timestamp=T0 + 2))
    rec.close()
    assert rec.stats()["drops"] == 1 and "the channel was image" in caplog.text
    assert [f.frame_id for _, f in open_recording(path).frames()] == [1, 3]


def test_ros2_recording_read_back_by_rosbags_and_exact_by_ours(tmp_path):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_HUMBLE)
    path = tmp_path / "run.mcap"
    written = write_recording(path, n=3, ros2=True, chunk_bytes=3000, compression="zstd")
    by_key = {(t, f.frame_id & 0xFFFFFFFF, int(round(f.timestamp * 1e9))): f for t, f in written}
    ros = {"camera": "/camera", "detector.r0": "/detector/r0", "raw": "/raw", "lidar": "/lidar"}
    with open(path, "rb") as f:
        assert make_reader(f).get_header().profile == "ros2"
    with Reader(path) as bag:
        types = {c.topic: c.msgtype for c in bag.connections}
        assert types["/camera"] == "sensor_msgs/msg/Image" and types["/camera/edgeflow"] == "std_msgs/msg/String"
        assert types["/detector/r0"] == "std_msgs/msg/String" and "/detector/r0/edgeflow" not in types
        assert types["/lidar"] == types["/raw"] == "std_msgs/msg/UInt8MultiArray"
        assert bag.message_count == len(written) + sum(1 for t, _ in written if t not in
                                                       ("detector.r0", "detector.r1", "nan", "alist"))
        seen = set()
        for connection, stamp, raw in bag.messages(connections=[c for c in bag.connections
                                                                if c.topic in ros.values()]):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            topic = next(t for t, r in ros.items() if r == connection.topic)
            frames = [f for (t, _seq, ns), f in by_key.items() if t == topic and ns == stamp]
            assert len(frames) == 1
            frame = frames[0]
            if topic == "camera":
                assert (msg.height, msg.width, msg.encoding, msg.step) == (24, 32, "bgr8", 96)
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
                assert bytes(msg.data) == frame.data.tobytes()
                assert bytes(store.serialize_cdr(msg, connection.msgtype)) == bytes(raw)   # CDR as rosbags writes
            elif topic == "detector.r0":
                doc = json.loads(msg.data)
                assert doc["edgeflow"]["id"] == frame.frame_id and doc["data"]["label"] == "person"
            else:
                want = frame.data if isinstance(frame.data, bytes) else frame.data.tobytes()
                assert bytes(msg.data) == want
                assert bytes(store.serialize_cdr(msg, connection.msgtype)) == bytes(raw)
            seen.add(topic)
        assert seen == set(ros)
    got = list(open_recording(path).frames())
    assert len(got) == len(written)
    for (topic, want), (gtopic, frame) in zip(sorted(written, key=lambda x: x[1].timestamp), got):
        assert gtopic == topic and frame.frame_id == want.frame_id and frame.timestamp == want.timestamp
        assert frame.meta == want.meta and same(want.data, frame.data), topic
