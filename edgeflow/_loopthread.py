"""An asyncio event loop served from a background thread: making the loop, and stopping and joining it.

The TCP server (edgeflow.transport._tcp_server) and the gateway's web server (edgeflow.gateway.app) each run
an event loop in a thread of their own; both stop it the same way, with ``stop_loop_thread``: hand the loop a
stop request (``call_soon_threadsafe``; a loop that already ended is fine), then wait for the thread, bounded.
Called from inside the loop itself it only makes the request (a thread cannot join itself).

Importable from every layer (it imports nothing from edgeflow).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable

__all__ = ["new_event_loop", "stop_loop_thread"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when uvloop is installed (a dependency), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def stop_loop_thread(loop: asyncio.AbstractEventLoop | None, request_stop: Callable[[], None] | None, *,
                     thread: threading.Thread | None = None, done: threading.Event | None = None,
                     timeout: float | None = None) -> bool:
    """Ask ``loop`` to stop and wait until it did; True once it has (the thread ended, ``done`` is set).

    Args:
        loop: the loop serving in the background, or None when it never started (nothing is posted then).
        request_stop: called in the loop to make it stop (``stop_event.set``, ``loop.stop`` ...); None posts
            nothing and only waits.
        thread: the thread running the loop, joined (None: a loop run by someone else's thread).
        done: an event the loop's side sets once it has stopped, waited for before the join.
        timeout: seconds to wait in all (None: as long as it takes).

    From inside ``loop`` (a callback or task of it), ``request_stop`` runs directly and False is returned at
    once: the loop stops after the current callback, and its thread cannot be joined from itself.
    """
    if loop is not None and _running_loop() is loop:
        if request_stop is not None:
            request_stop()
        return False
    if loop is not None and request_stop is not None:
        try:
            loop.call_soon_threadsafe(request_stop)
        except RuntimeError:                       # the loop is closed: it stopped already
            pass
    deadline = None if timeout is None else time.monotonic() + timeout
    if done is not None:
        done.wait(timeout)
    if thread is not None and thread is not threading.current_thread() and thread.ident is not None:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return (done is None or done.is_set()) and (thread is None or not thread.is_alive())
