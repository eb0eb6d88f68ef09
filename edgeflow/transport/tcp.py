"""Direct TCP transport into the gateway: a reconnecting TcpSender and a TcpServer with per-topic subscribers.

Wire: length-prefixed messages (see ``_wire`` for the byte layout): a 16-byte prefix (magic ``EFTP``, version,
kind, header length, payload length), a header, then the payload raw (or as a codec's output when asked). A
dict/list message travels as edgeflow.transport.message's encoding (FRAME data kind 2). Meta is at most
8 KiB, as on every transport (codecs.MAX_META_BYTES).

Handshake and authentication: the server speaks first, with SERVER_HELLO (32 random bytes of nonce, whether a
token is required, its max frame size). The sender answers CLIENT_HELLO (its random 64-bit session id, its
app, and ``HMAC-SHA256(token, "edgeflow-tcp-auth/1\\0" + nonce + session + app)`` when it has a token). The
server compares the MAC with ``hmac.compare_digest`` (constant time) and answers ACCEPT, or REJECT and closes.
The token never crosses the wire and a recorded hello cannot be replayed (fresh nonce per connection). Frames
are not encrypted: across untrusted networks run the link inside a VPN or TLS tunnel.

Sender (REALTIME only): when the link is idle (connected, nothing pending or on the wire, no codec),
``publish`` writes the frame from the caller's thread: one non-blocking ``sendmsg`` of prefix+header and the
payload straight from the caller's array (no copy, no thread hop). Under back-pressure, when the socket takes
only part of it, the unsent tail is copied into one of a few reused buffers and the sender thread writes it.
Otherwise (back-pressure, reconnecting, a codec to apply) the frame is copied and handed to the sender thread
as *the* pending frame; a newer publish replaces an unsent one (counted as dropped). So a slow or absent
gateway never blocks the producer and memory stays bounded (at most: the frame on the wire, the pending one,
and two spare buffers). The thread connects on the first publish, reconnects with exponential back-off and
jitter, and gives up a connection whose gateway stops reading for ``stall_timeout`` seconds.

Server: one asyncio (uvloop) loop, in its own thread (``start()``) or in the caller's (``await serve()``).
Each connection reads straight into the frame's buffer (no copy for large payloads); buffers of 64 KiB and
more are reused once no frame refers to them any more (warm memory: no page faults per frame; bounded). A connection that sends a
malformed, oversized, unauthenticated or too slow message gets a REJECT naming the reason and is closed; the
reason is counted; every other connection carries on.

Limits (docs/limits.md): decoders are bounded before they run (lz4 output, PNG/JPEG dimensions from their
headers, declared array sizes, all against ``max_frame_bytes``; codec payloads decode in a small thread pool,
off the loop); connections have a 2 s hello deadline, caps for connections in their hello (64, the oldest is
evicted for a new one), per address (64) and in total (256), and an idle timeout (120 s); per-topic state is
capped (1024 topics, forgotten after 60 s without a frame). A full server answers REJECT
``too_many_connections``, which the sender reports as such and backs off from.

Example:
    >>> server = TcpServer(port=0); server.start()
    >>> sub = server.subscriber("camera")
    >>> with TcpSender("camera", "127.0.0.1", server.port, app="demo") as sender:
    ...     fid = sender.publish(np.zeros((480, 640, 3), np.uint8))
    ...     frame = sub.recv(timeout=1.0)
    >>> server.close()
"""


from edgeflow.transport._tcp_common import DEFAULT_MAX_FRAME_BYTES, REJECT_REASONS
from edgeflow.transport._tcp_sender import TcpLoan, TcpSender, TcpSenderStats
from edgeflow.transport._tcp_server import TcpServer, TcpServerStats, TcpSubscriber, TcpSubscriberStats

__all__ = ["TcpSender", "TcpLoan", "TcpServer", "TcpSubscriber", "TcpSenderStats", "TcpServerStats",
           "TcpSubscriberStats", "DEFAULT_MAX_FRAME_BYTES", "REJECT_REASONS"]
