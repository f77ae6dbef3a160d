"""One timer thread for the whole core: singleshot vCPU timers and poll
time-outs fire here, as Xen's per-CPU timer softirq does."""
from __future__ import annotations

import heapq
import itertools
import threading
from typing import Callable

from .time import system_time_ns


class Timer:
    """A singleshot timer: `set(deadline_ns)` re-arms, `stop()` disarms."""

    def __init__(self, service: "TimerService", callback: Callable[[], None]):
        self._service = service
        self._callback = callback
        self.deadline: int | None = None
        self._seq = -1

    def set(self, deadline_ns: int) -> None:
        self._service._arm(self, deadline_ns)

    def stop(self) -> None:
        self._service._disarm(self)

    @property
    def armed(self) -> bool:
        return self.deadline is not None


class TimerService:
    def __init__(self):
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def timer(self, callback: Callable[[], None]) -> Timer:
        return Timer(self, callback)

    def _arm(self, t: Timer, deadline: int) -> None:
        with self._cond:
            t.deadline = deadline
            t._seq = next(self._seq)
            heapq.heappush(self._heap, (deadline, t._seq, t))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="xen-timers", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _disarm(self, t: Timer) -> None:
        with self._cond:
            t.deadline = None
            t._seq = -1  # stale heap entries are skipped by sequence number

    def _loop(self) -> None:
        while True:
            due = []
            with self._cond:
                while not self._closed:
                    while self._heap and self._heap[0][2]._seq != self._heap[0][1]:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = (self._heap[0][0] - system_time_ns()) / 1e9
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
                now = system_time_ns()
                while self._heap and self._heap[0][0] <= now:
                    _, seq, t = heapq.heappop(self._heap)
                    if t._seq == seq:
                        t.deadline = None
                        t._seq = -1
                        due.append(t)
            for t in due:
                try:
                    t._callback()
                except Exception:  # a timer must not take the service down
                    import logging
                    logging.getLogger(__name__).exception("timer callback failed")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
