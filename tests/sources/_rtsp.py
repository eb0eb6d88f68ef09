"""A real RTSP server for the VideoSource tests: ffmpeg encodes a video (H.264, looped, in real time) to
RTP and a small RTSP server relays those packets to every client that PLAYs, interleaved on the RTSP
connection (RTP over TCP, RFC 2326 section 10.12).

Why not ffmpeg alone: its RTSP *output* only pushes to a server (ANNOUNCE/RECORD; ``-rtsp_flags listen`` is an
input option, for receiving a push), and mediamtx / gst-rtsp-server are not available here (Debian's
gst-rtsp-server has no server program, only a library for a GObject Python that is not this project's). The
server half is small and speaks the protocol to a client no one here wrote: OpenCV's FFmpeg backend.

    server = RtspServer(port).start()     # rtsp://127.0.0.1:<port>/x
    server.kill()                         # SIGKILL, server and encoder (the fault tests)
    server.start()                        # again, on the same port
    server.stop()

The server runs in a process of its own (this file run as a script) in a process group with its ffmpeg, so a
kill takes both, as a crashed camera or a restarted media server would. Only loopback, only the ports given.
UDP transport is refused with ``461 Unsupported Transport``: FFmpeg's client then asks for TCP, which is the
fallback it performs against real cameras too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VIDEO = ROOT / "examples" / "data" / "vtest.avi"
FFMPEG = "/usr/bin/ffmpeg"
START_TIMEOUT = 20.0


class RtspServer:
    """The server process, started and killed by the tests (``url`` is ``rtsp://127.0.0.1:<port>/x``)."""

    def __init__(self, port: int, video: Path = VIDEO, fps: int = 25) -> None:
        self.port, self.video, self.fps = port, Path(video), fps
        self.url = f"rtsp://127.0.0.1:{port}/x"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RtspServer":
        """Start it and wait until its encoder is sending and it accepts connections."""
        command = [sys.executable, __file__, str(self.port), str(self.video), str(self.fps)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = _readline(self.proc, START_TIMEOUT)       # "ready" once the SDP is known and it listens
        if line.strip() != "ready":
            err = self._end()
            raise RuntimeError(f"the RTSP server did not start on port {self.port}: {line.strip()} {err}")
        return self

    def kill(self) -> None:
        """SIGKILL the server and its encoder (no TEARDOWN, no FIN from a process that ends cleanly)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._end()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and reap it; idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._end()

    def _end(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        try:
            os.killpg(proc.pid, signal.SIGKILL)        # the encoder too, if the server went alone
        except ProcessLookupError:
            pass
        _, err = proc.communicate(timeout=10)
        return (err or "").strip()[-500:]

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """The first line of ``proc``'s stdout within ``timeout`` ("" when it exits or times out)."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


# -- the server process --------------------------------------------------------------------------------------

class _Relay:
    """RTP packets from the encoder (UDP on loopback) to every playing client's connection."""

    def __init__(self) -> None:
        self.rtp = _bind_udp_pair()
        self.clients: set = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        rtp, rtcp = self.rtp
        sockets = {rtp: 0, rtcp: 1}
        import selectors
        sel = selectors.DefaultSelector()
        for sock in sockets:
            sel.register(sock, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                packet = key.fileobj.recv(65536)
                frame = b"$" + bytes([sockets[key.fileobj]]) + len(packet).to_bytes(2, "big") + packet
                with self.lock:
                    clients = list(self.clients)
                for client in clients:
                    client.send(frame)


class _Client:
    """One RTSP connection: requests in, responses and (once playing) interleaved RTP out."""

    def __init__(self, conn: socket.socket, relay: _Relay, sdp: str, session: int) -> None:
        self.conn, self.relay, self.sdp, self.session = conn, relay, sdp, f"{session:08X}"
        self.wlock = threading.Lock()
        self.dead = False

    def send(self, data: bytes) -> None:
        if self.dead:
            return
        try:
            with self.wlock:
                self.conn.sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        self.dead = True
        with self.relay.lock:
            self.relay.clients.discard(self)
        try:
            self.conn.close()
        except OSError:
            pass

    def run(self) -> None:
        buf = b""
        try:
            while not self.dead:
                chunk = self.conn.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    if buf[:1] == b"$":                     # the client's interleaved RTCP: read past it
                        if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                            break
                        buf = buf[4 + int.from_bytes(buf[2:4], "big"):]
                        continue
                    head, sep, rest = buf.partition(b"\r\n\r\n")
                    if not sep:
                        break
                    lines = head.decode("latin-1").split("\r\n")
                    pairs = (h.partition(":") for h in lines[1:])
                    headers = {k.strip().lower(): v.strip() for k, _, v in pairs}
                    length = int(headers.get("content-length", 0))
                    if len(rest) < length:
                        break
                    buf = rest[length:]
                    self.answer(lines[0].split(" "), headers)
        except OSError:
            pass
        finally:
            self.close()

    def answer(self, request: list[str], headers: dict) -> None:
        method, url = request[0], request[1] if len(request) > 1 else ""
        cseq = headers.get("cseq", "0")
        extra, body, status = [], "", "200 OK"
        if method == "OPTIONS":
            extra.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER")
        elif method == "DESCRIBE":
            base = url.rstrip("/") + "/"
            extra += [f"Content-Base: {base}", "Content-Type: application/sdp"]
            body = self.sdp
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "RTP/AVP/TCP" not in transport:
                status = "461 Unsupported Transport"
            else:
                extra += ["Transport: RTP/AVP/TCP;unicast;interleaved=0-1",
                          f"Session: {self.session};timeout=60"]
        elif method == "PLAY":
            extra += [f"Session: {self.session}", "Range: npt=0.000-"]
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            extra.append(f"Session: {self.session}")
        elif method == "TEARDOWN":
            extra.append(f"Session: {self.session}")
        else:
            status = "405 Method Not Allowed"
        data = body.encode()
        response = "\r\n".join([f"RTSP/1.0 {status}", f"CSeq: {cseq}", *extra,
                                *([f"Content-Length: {len(data)}"] if data else []), "", ""]).encode() + data
        self.send(response)
        if method == "PLAY":
            with self.relay.lock:
                self.relay.clients.add(self)
        elif method == "TEARDOWN":
            self.close()


def _bind_udp_pair() -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on loopback ports n, n+1 (RTP, RTCP: ffmpeg sends its reports to n+1)."""
    for _ in range(100):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind(("127.0.0.1", port + 1))
                return rtp, rtcp
            except OSError:
                rtcp.close()
        rtp.close()
    raise RuntimeError("no free pair of UDP ports on loopback")


def _sdp_for_rtsp(sdp: str) -> str:
    """ffmpeg's RTP SDP, made an RTSP session description: no address or port, a control URL per stream."""
    out = []
    for line in sdp.strip().splitlines():
        if line.startswith("c="):
            line = "c=IN IP4 0.0.0.0"
        elif line.startswith("m="):
            kind, _, rest = line.partition(" ")
            line = f"{kind} 0 {rest.split(' ', 1)[1]}"
        out.append(line)
        if line.startswith("m="):
            out.append("a=control:streamid=0")
    return "\r\n".join(out) + "\r\n"


def serve(port: int, video: str, fps: int) -> None:
    """The server process: start the encoder, wait for its SDP, listen, print "ready", serve until killed."""
    relay = _Relay()
    rtp_port = relay.rtp[0].getsockname()[1]
    sdp_file = Path(f"/tmp/edgeflow-rtsp-{os.getpid()}.sdp")
    encoder = subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", video,
         "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-r", str(fps),
         # a key frame every 0.2 s (a client joining decodes at once), SPS/PPS in the SDP and in-band
         "-g", str(max(1, fps // 5)), "-flags", "+global_header", "-bsf:v", "dump_extra",
         "-f", "rtp", "-sdp_file", str(sdp_file), f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200"],
        stdout=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: (encoder.kill(), os._exit(0)))
    deadline = time.monotonic() + START_TIMEOUT
    while not (sdp_file.exists() and "m=video" in sdp_file.read_text()):
        if encoder.poll() is not None or time.monotonic() > deadline:
            print(f"the encoder did not start (exit {encoder.poll()})", flush=True)
            return
        time.sleep(0.02)                     # polling a file another process writes (no event to await)
    sdp = _sdp_for_rtsp(sdp_file.read_text())
    sdp_file.unlink()
    threading.Thread(target=relay.run, daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    print("ready", flush=True)
    session = 0x2A000000
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session += 1
        threading.Thread(target=_Client(conn, relay, sdp, session).run, daemon=True).start()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
