"""edgeflow._loopthread.stop_loop_thread: the one way the TCP server and the gateway stop their loop threads."""

from __future__ import annotations

import asyncio
import threading

from edgeflow._loopthread import new_event_loop, stop_loop_thread


def start_loop():
    """A loop serving in a thread until its stop event is set; (loop, stop event, thread, done event)."""
    ready, done = threading.Event(), threading.Event()
    box = {}

    async def main():
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()

    def run():
        loop = box["loop"] = new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            done.set()
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    return box["loop"], box["stop"], thread, done


def test_stops_the_loop_and_joins_its_thread():
    loop, stop, thread, done = start_loop()
    assert stop_loop_thread(loop, stop.set, thread=thread, done=done, timeout=5)
    assert not thread.is_alive() and loop.is_closed()


def test_a_closed_loop_or_none_only_joins():
    loop, stop, thread, done = start_loop()
    assert stop_loop_thread(loop, stop.set, thread=thread, timeout=5)
    assert stop_loop_thread(loop, stop.set, thread=thread, timeout=5)      # closed loop: no RuntimeError
    assert stop_loop_thread(None, None, thread=threading.Thread(target=print), timeout=0)   # never started


def test_a_loop_that_does_not_stop_in_time_is_reported():
    loop, stop, thread, done = start_loop()
    assert not stop_loop_thread(loop, None, thread=thread, timeout=0.05)   # nothing asked it to stop
    assert thread.is_alive()
    assert stop_loop_thread(loop, stop.set, thread=thread, timeout=5)


def test_from_inside_the_loop_it_only_requests_the_stop():
    loop, stop, thread, done = start_loop()
    answers = []
    loop.call_soon_threadsafe(lambda: answers.append(stop_loop_thread(loop, stop.set, thread=thread,
                                                                      timeout=5)))
    thread.join(5)
    assert answers == [False] and not thread.is_alive()
