"""VideoSource: frames from a video file, a network stream (RTSP, HTTP, ...) or a camera, with OpenCV.

    app.node(VideoSource, name="camera", url="rtsp://user:pw@10.0.0.5:554/stream1")
    app.node(VideoSource, name="clip", url="examples/data/vtest.avi", loop=True)
    app.node(VideoSource, name="webcam", url=0, width=640)

- ``url``: a file path (or ``file://``), a stream URL OpenCV's FFmpeg backend opens (``rtsp://``, ``http://``,
  ``rtmp://``, ``udp://``, ``srt://`` ...), or a camera: an index (``0``) or ``/dev/videoN`` (V4L2 on Linux).
- Pace: a file plays at its own frame rate unless ``fps`` is given (a number: that rate; None: as fast as the
  consumers take frames); a live source sends frames as they come, and a given ``fps`` takes at most that many
  a second, skipping the others without converting them (so a slow rate never builds up latency).
- Frames are HxWx3 uint8 BGR arrays, decoded into the node's output ring (see ``_take`` for what OpenCV
  copies), time-stamped when they were captured; ``width`` / ``height`` resize them (one of the two keeps the
  aspect ratio).
- A live source that goes away (a camera unplugged, an RTSP server restarted, the network cut: no frame within
  ``read_timeout`` seconds) is reopened with back-off, ``reconnect_min`` doubling up to ``reconnect_max``
  seconds; one that cannot be reached at the start is retried the same way, with one log line.
- A file that ends ends the stream (the consumers drain and finish) unless ``loop=True``.
- State: ``extra["source"]`` in the statistics (``connecting``, ``live``, ``lost``, ``ended``) and the
  connectors' ``extra["connections"]`` (``/readyz``, ``edgeflow_connector_up``); events ``reconnects``,
  ``lost``, ``loops``, ``skipped`` (frames left out for ``fps``) and ``size_changes``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import cv2
import numpy as np

from edgeflow.connectors._base import (Backoff, connector_options, count, opt_bool, opt_number, opt_str,
                                       option_error, unknown_options)
from edgeflow.errors import ConfigError
from edgeflow.frame import Frame
from edgeflow.nodes.base import EndOfStream, ProducerNode
from edgeflow.sources._capture import (CHECK_TIMEOUT, Location, Opener, locate, quiet_opencv,
                                       set_probe_time, set_rtsp_transport)

WAIT_SLICE = 0.05              # seconds between looks at an open in progress (and at stopping)
LOG_ATTEMPTS = (1, 10, 100)    # failed attempts of one outage that are logged (then every 1000th)
MAX_FPS = 1000.0               # a container's frame rate above this is taken as unknown (some report 90000)


class VideoSource(ProducerNode):
    """Sends the frames of a video file, a network stream or a camera (see edgeflow.sources.video).

    Options: ``url`` (required), ``fps``, ``loop`` (files), ``width`` / ``height``, ``open_timeout`` (s,
    default 10), ``read_timeout`` (s, default 3), ``reconnect_min`` / ``reconnect_max`` (s, default 0.5 / 30),
    ``rtsp_transport`` (``"tcp"`` or ``"udp"``; default FFmpeg's: UDP, then TCP), ``probe_s`` (network
    streams: how long FFmpeg may read to learn the stream's format before the first frame, default 0.3 s;
    FFmpeg's own 5 s makes an RTSP open take 1-1.5 s here, 0.3 s about 0.2 s).

    Each frame's meta: ``source_url`` (without a password), ``frame_index`` (a file: the frame's place in the
    file; live: frames sent since the node started), ``source_fps`` (the source's own rate, None when unknown)
    and, with ``loop=True``, ``source_loop`` (how many times the file started over).

    Guarantee: a file's frames are sent in order, each exactly once per pass; a live source's frames are the
    newest it delivers while connected (none are made up across a loss), and it is reconnected for as long as
    the node runs.
    """

    reports_connections: ClassVar[bool] = True   # /readyz waits for its connection state (connectors/_base)

    OPTIONS: ClassVar[tuple[str, ...]] = ("url", "loop", "width", "height", "open_timeout", "read_timeout",
                                          "reconnect_min", "reconnect_max", "rtsp_transport", "probe_s")
    fps: float | None = None         # not given: a file's own rate, a live source's as they come
    url: Any = None
    loop: bool = False               # an option here, not ProducerNode's alias of produce()
    width: int | None = None
    height: int | None = None
    open_timeout: float = 10.0
    read_timeout: float = 3.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    rtsp_transport: str | None = None
    probe_s: float = 0.3

    @classmethod
    def check_options(cls, name: str, options: dict[str, Any]) -> None:
        """Every option, at registration: a file that does not exist is refused here."""
        unknown_options(name, options, cls.OPTIONS)
        if options.get("url") is None:
            raise option_error(name, "url", "required (a file path, a stream URL such as rtsp://host/path, "
                                            "or a camera index)")
        where = locate(name, options["url"])
        if opt_bool(name, options, "loop") and where.live:
            raise option_error(name, "loop", f"only a file can loop; {where.shown!r} is a live source")
        for key in ("width", "height"):
            opt_number(name, options, key, low=1, high=16384, integer=True)
        opt_number(name, options, "open_timeout", low=0.1, high=3600)
        opt_number(name, options, "read_timeout", low=0.1, high=3600)
        low = opt_number(name, options, "reconnect_min", default=cls.reconnect_min, low=0.01, high=3600)
        high = opt_number(name, options, "reconnect_max", default=cls.reconnect_max, low=0.01, high=3600)
        if high < low:
            raise option_error(name, "reconnect_max", f"{high!r} is below reconnect_min ({low!r})")
        if opt_str(name, options, "rtsp_transport", choices=("tcp", "udp")) is not None and \
                not str(options["url"]).lower().startswith(("rtsp://", "rtsps://")):
            raise option_error(name, "rtsp_transport", "only for an rtsp:// or rtsps:// url")
        opt_number(name, options, "probe_s", low=0.01, high=60)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Check the options again in this process (a file may be gone, or this is another host), open a file
        at once (its frame rate paces the node), and leave a live source to the first ``produce()``."""
        self.check_options(self.name, connector_options(self))
        replicas = int(self.config.get("replicas", 1) or 1)
        if replicas > 1:
            raise option_error(self.name, "replicas", f"{replicas} replicas would each send every frame of "
                                                      "one source: a VideoSource has one replica")
        quiet_opencv()
        set_rtsp_transport(self.rtsp_transport)
        if str(self.url).lower().startswith(("rtsp://", "rtsps://", "http://", "https://")):
            set_probe_time(float(self.probe_s))
        self._where: Location = locate(self.name, self.url)
        self._state = SourceState(self, self._where.shown)
        self._backoff = Backoff(float(self.reconnect_min), float(self.reconnect_max))
        self._capture: Any = None
        self._opener: Opener | None = None
        self._shape: tuple | None = None       # (shape, dtype) the next frame is expected to have
        self._scratch: np.ndarray | None = None  # the decoded picture before a resize
        self._index = 0                          # frame_index of the next frame
        self._loops = 0
        self._in_pass = 0                        # frames of the file's current pass
        self._attempts = 0                       # failed opens in the current outage
        self._due: float | None = None           # live with fps: when the next frame may be taken
        given_fps = "fps" in self.config
        if self._where.live:
            self._rate = float(self.fps) if given_fps and self.fps else None
            self.fps = None                      # each produce() waits for the next frame itself
            return
        self._rate = None
        self._open_file()
        if not given_fps:
            self.fps = self._state.fps or 30.0   # paced at the file's own rate (unknown: 30)

    def produce(self) -> Any:
        """The next frame (a Frame in the output ring), None when stopping; EndOfStream when a file ended."""
        while True:
            if self._capture is None and not self._connect():
                return None                      # asked to stop
            frame = self._next()
            if frame is not None or self._stopping():
                return frame

    def teardown(self) -> None:
        """Release the capture (and one still opening)."""
        if getattr(self, "_opener", None) is not None:
            self._opener.abandon()
            self._opener = None
        self._release()

    # -- opening ---------------------------------------------------------------------------------------------
    def _open_file(self) -> None:
        locate(self.name, self.url)              # still there (each pass of a loop opens it again)
        capture = cv2.VideoCapture(self._where.target, self._where.api)
        if not capture.isOpened():
            capture.release()
            raise ConfigError(f"node '{self.name}': option 'url': {self._where.shown!r} cannot be opened as "
                              "a video by OpenCV's FFmpeg backend (not a video, or an unknown codec)")
        self._opened(capture)

    def _connect(self) -> bool:
        """Open the live source, retrying with back-off; False when the node is asked to stop first."""
        while True:
            opener = self._opener = Opener(self._where, self._params(),
                                           min(CHECK_TIMEOUT, float(self.open_timeout)))
            while not opener.done.wait(WAIT_SLICE if self.context is None else 0):
                if self._wait(WAIT_SLICE):
                    opener.abandon()
                    self._opener = None
                    return False
            self._opener = None
            if opener.capture is not None:
                if self._state.state == "lost":
                    count(self, "reconnects")
                self._opened(opener.capture)
                return True
            self._failed_open(opener.error or "cannot open")
            if self._wait(self._backoff.next()):
                return False

    def _params(self) -> list[int]:
        if self._where.kind != "stream":
            return []        # V4L2 refuses parameters it does not know; these two are FFmpeg's
        return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(float(self.open_timeout) * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(float(self.read_timeout) * 1000)]

    def _opened(self, capture: Any) -> None:
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._shape = ((height, width, 3), np.dtype(np.uint8)) if width > 0 and height > 0 else None
        self._in_pass = 0
        self._attempts = 0
        self._backoff.reset()
        self._state.live(fps if 0 < fps <= MAX_FPS else None, [width, height] if self._shape else None)
        if self._where.live:
            self.log.info("node '%s': %s live (%s at %s fps)", self.name, self._where.shown,
                          f"{width}x{height}" if self._shape else "size unknown", _fps_text(self._state.fps))

    def _failed_open(self, error: str) -> None:
        self._attempts += 1
        n = self._attempts
        if self._state.state == "lost":
            self._state.lost(error)
        else:
            self._state.connecting(error)
        if n in LOG_ATTEMPTS or n % 1000 == 0:
            again = "" if n == 1 else f" ({n} attempts so far)"
            self.log.warning("node '%s': cannot open %s: %s; retrying with back-off up to %g s%s", self.name,
                             self._where.shown, error, float(self.reconnect_max), again)

    # -- reading ---------------------------------------------------------------------------------------------
    def _next(self) -> Frame | None:
        """Grab, then decode the next frame to send; None after a loss (the caller reconnects)."""
        capture = self._capture
        while True:
            started = time.monotonic()
            if not capture.grab():
                return self._ended(time.monotonic() - started)
            stamp = time.time()                  # capture time: when the frame came out of the source
            if self._skip():
                count(self, "skipped")
                if self._wait(0):                # statistics and messages go on meanwhile
                    return None
                continue
            image = self._take()
            if image is None:
                return self._ended(time.monotonic() - started)
            meta = {"source_url": self._where.shown, "frame_index": self._in_pass if not self._where.live
                    else self._index, "source_fps": self._state.fps}
            if self.loop:
                meta["source_loop"] = self._loops
            self._index += 1
            self._in_pass += 1
            return Frame(image, timestamp=stamp, meta=meta)

    def _skip(self) -> bool:
        """Live with a given fps: whether this frame comes too soon after the last one taken."""
        if not self._rate:
            return False
        now, period = time.monotonic(), 1.0 / self._rate
        # half a source frame of slack: 10 fps taken from 25 stays 10, not 8.3 (every third frame)
        slack = 0.5 / self._state.fps if self._state.fps else 0.0
        if self._due is not None and now < self._due - slack:
            return True
        self._due = now + period if self._due is None or now - self._due > period else self._due + period
        return False

    def _take(self) -> np.ndarray | None:
        """Decode the grabbed frame into a loan of the output ring.

        What OpenCV copies (checked: the array ``retrieve(image=...)`` returns is the one given, same data
        pointer, tests/sources/test_video.py): its FFmpeg backend converts the decoded picture to BGR into a
        buffer of its own (sws_scale) and copies that into the given array, so a frame costs that one copy
        and no second one into the ring. When the size changed (a stream restarted at another resolution),
        OpenCV hands back a new array instead: that frame is sent by copy and the next loan has the new size.
        With ``width`` / ``height``, cv2.resize writes into the loan (``dst=``) from a scratch buffer.
        """
        capture = self._capture
        if self.width is None and self.height is None:
            loan = self.output(*self._shape) if self._shape is not None else None
            ok, image = capture.retrieve(image=loan) if loan is not None else capture.retrieve()
        else:
            ok, raw = capture.retrieve(image=self._scratch)
            if not ok or raw is None:
                return None
            self._scratch = raw
            height, width = raw.shape[:2]
            if self._state.size != [width, height]:
                self._state.resized([width, height])
            size = (int(self.width or round(width * self.height / height)),
                    int(self.height or round(height * self.width / width)))
            loan = self.output((size[1], size[0], *raw.shape[2:]), raw.dtype)
            image = cv2.resize(raw, size, dst=loan, interpolation=cv2.INTER_AREA)
            raw = None
        if not ok or image is None:
            return None
        if image is not loan:
            shape = (image.shape, image.dtype)
            if self._shape is not None and shape != self._shape:
                count(self, "size_changes")
                self.log.info("node '%s': %s now sends %dx%d frames", self.name, self._where.shown,
                              image.shape[1], image.shape[0])
            self._shape = shape
            self._state.resized([image.shape[1], image.shape[0]])
        return image

    def _ended(self, waited: float) -> Frame | None:
        """No frame: a file ended (start over with ``loop``, else EndOfStream); a live source is lost."""
        self._release()
        if not self._where.live:
            if self.loop and self._in_pass:
                self._loops += 1
                count(self, "loops")
                try:
                    self._open_file()
                except ConfigError as exc:       # removed or replaced while it played: the stream ends
                    self.log.error("%s; the stream ends", exc)
                    self._state.ended(str(exc))
                    raise EndOfStream from None
                return self._next()
            self._state.ended()
            if self.loop:
                self.log.warning("node '%s': %s gave no frame in a whole pass: the stream ends", self.name,
                                 self._where.shown)
            raise EndOfStream
        why = (f"no frame within {float(self.read_timeout):g} s" if waited >= 0.8 * float(self.read_timeout)
               else "the stream ended (the server closed it, or the device went away)")
        count(self, "lost")
        self._state.lost(why)
        self.log.warning("node '%s': lost %s: %s; reconnecting", self.name, self._where.shown, why)
        self._due = None
        return None

    def _release(self) -> None:
        capture, self._capture = getattr(self, "_capture", None), None
        if capture is not None:
            capture.release()

    # -- the runtime, when there is one ----------------------------------------------------------------------
    def _wait(self, seconds: float) -> bool:
        """Wait (serving statistics); True when the node is asked to stop."""
        wait = getattr(self.context, "wait", None)
        if wait is not None:
            return wait(seconds)
        time.sleep(seconds)                      # outside a runtime (edgeflow.testing): nothing to serve
        return False

    def _stopping(self) -> bool:
        stopping = getattr(self.context, "stopping", None)
        return stopping is not None and stopping.is_set()


class SourceState:
    """A source's state in its node's statistics: ``extra["source"]`` (connecting, live, lost, ended) and the
    connectors' ``extra["connections"][url]`` that ``/readyz`` and ``edgeflow_connector_up`` read (live is
    "up", lost and ended are "down", connecting stays "connecting" with the last error while it never was
    live)."""

    CONNECTION = {"connecting": "connecting", "live": "up", "lost": "down", "ended": "down"}

    def __init__(self, node: Any, url: str) -> None:
        self._node, self.url = node, url
        self.state, self.error = "connecting", None
        self.since = time.time()
        self.reconnects = 0
        self.fps: float | None = None
        self.size: list[int] | None = None
        self._was_live = False
        self._publish()

    def connecting(self, error: str) -> None:
        """An attempt failed before the source was ever live."""
        self._set("connecting", error)

    def live(self, fps: float | None, size: list[int] | None) -> None:
        """Opened: frames come."""
        if self._was_live and self.state != "live":
            self.reconnects += 1
        self._was_live = True
        self.fps, self.size = (round(fps, 3) if fps else None), size
        self._set("live", None)

    def lost(self, error: str) -> None:
        """Gone after being live (or an attempt to reopen it failed)."""
        self._set("lost", error)

    def ended(self, error: str = "the file ended") -> None:
        """A file ran out (or could not be read again for its next pass)."""
        self._set("ended", error)

    def resized(self, size: list[int]) -> None:
        """Frames of another size than the source said."""
        self.size = size
        self._publish()

    def _set(self, state: str, error: str | None) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.error = state, error
        self._publish()

    def _publish(self) -> None:
        metrics = getattr(getattr(self._node, "context", None), "metrics", None)
        if metrics is None:
            return
        since = round(self.since, 3)
        metrics.extra["source"] = {"state": self.state, "url": self.url, "since": since,
                                   "reconnects": self.reconnects, "error": self.error, "fps": self.fps,
                                   "size": self.size}
        connections = dict(metrics.extra.get("connections") or {})
        connections[self.url] = {"state": self.CONNECTION[self.state], "error": self.error, "since": since,
                                 "reconnects": self.reconnects}
        metrics.extra["connections"] = connections


def _fps_text(fps: float | None) -> str:
    return "unknown" if fps is None else f"{fps:g}"
