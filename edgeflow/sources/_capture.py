"""What VideoSource asks OpenCV for: which backend a ``url`` means, and opening it off the node's thread.

- ``locate(node, url)`` sorts a ``url`` option into a file, a network stream (OpenCV's FFmpeg backend) or a
  camera (V4L2 on Linux), or raises a one-line ConfigError naming the node and the option.
- ``Opener`` opens a capture in a thread of its own, so that a camera or server that takes its time (FFmpeg
  probes a stream for seconds) never keeps the node from serving its statistics or from stopping: the node
  waits for it in short slices and walks away when asked to stop.
- ``quiet_opencv()``: OpenCV's and FFmpeg's own log lines (a warning per failed open, a decoder complaint for
  each picture of a stream joined between key frames) are left out unless their environment variables ask for
  them; VideoSource says in one line of its own what went wrong.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

import cv2

from edgeflow.connectors._base import did_you_mean, option_error, redact

# FFmpeg protocols VideoSource takes as network streams; a failed open of one over TCP is explained by a
# connection check
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443, "http": 80, "https": 443}
CHECK_TIMEOUT = 5.0        # seconds the connection check may take (at most the open timeout)


@dataclass(frozen=True)
class Location:
    """Where a source is: ``kind`` "file", "stream" or "camera"; ``target`` what VideoCapture is given;
    ``shown`` the url without a password (logs, statistics, meta); ``api`` the OpenCV backend; ``address``
    (host, port) to check when a stream over TCP did not open, else None."""

    kind: str
    target: Any
    shown: str
    api: int
    address: tuple[str, int] | None = None

    @property
    def live(self) -> bool:
        """A stream or a camera: frames come as they are captured; a failure is a loss to reconnect."""
        return self.kind != "file"


def locate(node: str, url: Any) -> Location:
    """The Location of a ``url`` option (an int or ``/dev/videoN``: a camera; ``scheme://``: a stream;
    anything else a file path, which must exist unless it is a ``%d`` image-sequence pattern).

    Raises:
        ConfigError: ``node 'N': option 'url': why``.
    """
    if isinstance(url, bool) or url is None or not isinstance(url, (int, str)) or url == "":
        raise option_error(node, "url", f"expected a file path, a stream URL (rtsp://, http://, ...) or a "
                                        f"camera index, got {url!r}")
    camera_api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    if isinstance(url, int):
        if url < 0:
            raise option_error(node, "url", f"a camera index is 0 or more, got {url}")
        return Location("camera", url, f"camera {url}", camera_api)
    if url.startswith("/dev/video"):
        return Location("camera", url, url, camera_api)
    if "://" in url:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise option_error(node, "url", f"{redact(url)!r} is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            return _file(node, urllib.parse.unquote(parts.path))
        if scheme not in STREAM_SCHEMES:
            expected = ", ".join(s + "://" for s in STREAM_SCHEMES)
            raise option_error(node, "url", f"unknown URL scheme {scheme}:// in {redact(url)!r} (expected "
                                            f"{expected} or a file path)"
                                            f"{did_you_mean(scheme, STREAM_SCHEMES)}")
        if not parts.hostname and scheme != "udp":
            raise option_error(node, "url", f"{redact(url)!r} names no host")
        port = port or DEFAULT_PORTS.get(scheme)
        address = (parts.hostname, port) if scheme in DEFAULT_PORTS or (scheme == "tcp" and port) else None
        return Location("stream", url, redact(url), cv2.CAP_FFMPEG, address)
    return _file(node, url)


def _file(node: str, path: str) -> Location:
    if "%" not in path:                       # img_%04d.png: FFmpeg's image sequence, no one file to look for
        if os.path.isdir(path):
            raise option_error(node, "url", f"{path!r} is a folder, not a video file")
        if not os.path.exists(path):
            raise option_error(node, "url", f"no such file {path!r} (looked from {os.getcwd()}); expected a "
                                            "video file, a stream URL (rtsp://, http://, ...) or a camera "
                                            "index")
    return Location("file", path, path, cv2.CAP_FFMPEG)


def check_reachable(address: tuple[str, int], timeout: float) -> str | None:
    """Why a TCP connection to ``address`` fails ("connection refused", ...), or None when it connects.

    OpenCV's VideoCapture says only that it could not open a URL; a plain connection after that tells a server
    that is down from a host that cannot be resolved or one that answers but sends no video."""
    host, port = address
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"


class Opener:
    """Opens one capture in a daemon thread: ``done`` is set once it opened (``capture``) or failed
    (``error``).

    ``abandon()`` (the node stops meanwhile) makes the thread release what it opens late."""

    def __init__(self, where: Location, params: list[int], check_timeout: float) -> None:
        self.where, self.params, self.check_timeout = where, params, check_timeout
        self.done = threading.Event()
        self.capture: Any = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._abandoned = False
        threading.Thread(target=self._run, name="video-open", daemon=True).start()

    def _run(self) -> None:
        capture, error = None, None
        try:
            capture = cv2.VideoCapture(self.where.target, self.where.api, self.params)
            if not capture.isOpened():
                capture.release()
                capture = None
                # only after a failure: a server that takes one client (ffmpeg -listen) would spend it on
                # a check made first
                if self.where.address is not None:
                    error = check_reachable(self.where.address, self.check_timeout)
                error = error or ("no such camera, or it is busy" if self.where.kind == "camera" else
                                  "OpenCV's FFmpeg backend could not open it (no video stream, an unknown "
                                  "codec, or no answer within the open timeout)")
        except Exception as exc:              # cv2.error and the like: reported as the attempt's failure
            capture, error = None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            if self._abandoned and capture is not None:
                capture.release()
                capture = None
            self.capture, self.error = capture, error
        self.done.set()

    def abandon(self) -> None:
        """Nobody waits any more: release the capture now, or when the thread gets it."""
        with self._lock:
            self._abandoned = True
            capture, self.capture = self.capture, None
        if capture is not None:
            capture.release()


def quiet_opencv() -> None:
    """Leave OpenCV's warnings and FFmpeg's decoder messages out of the node's log unless the user set
    ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL`` (process-wide: a node has its process to itself)."""
    if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "8"         # AV_LOG_FATAL; read when the backend first loads
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def set_rtsp_transport(transport: str | None) -> None:
    """Ask FFmpeg for RTP over ``transport`` ("tcp" or "udp") on RTSP: OpenCV passes FFmpeg's options only
    through ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (read at each open); a value the user set there is kept."""
    if transport is None:
        return
    current = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
    if "rtsp_transport" not in current:
        parts = (current, f"rtsp_transport;{transport}")
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(p for p in parts if p)


def set_probe_time(seconds: float) -> None:
    """Let FFmpeg read at most ``seconds`` of a network stream to learn its format (``analyzeduration``) before
    the first frame, unless the user set it in ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` (read at each open)."""
    current = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
    if "analyzeduration" not in current:
        parts = (current, f"analyzeduration;{int(seconds * 1e6)}")
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(p for p in parts if p)
