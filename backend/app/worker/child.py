"""The local training process of one job: ``python -m backend.app.worker.child``.

Protocol (the supervisor side is :mod:`backend.app.worker.executors.local`):

- stdin: the first line is the :class:`~backend.app.worker.protocol.JobSpec` as JSON (built by
  the supervisor from the database; the child never touches the database and gets no
  credentials), then one line per successful lease renewal. stdin is a lifeline: at end of
  file (the supervisor died), or when no renewal arrived for ``lease_seconds`` (the supervisor
  is frozen or cut off from the database, so the lease may be someone else's by now), the
  child exits at once without writing anything more.
- stdout: one :data:`~backend.app.worker.protocol.Event` per line; anything else the process
  prints goes to stderr.
- SIGTERM: stop between two batches (:class:`pmtl_core.engine.TrainingStopped`); the last
  epoch's checkpoint stays on disk and ``stopped`` is reported.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import TextIO

from backend.app.worker.protocol import Event, decode_spec, encode
from backend.app.worker.training import train_job

__all__ = ["ORPHANED", "main"]

log = logging.getLogger("backend.app.worker.child")

#: Exit status when the lifeline (stdin) closed or fell silent for a whole lease.
ORPHANED = 70


class _Events:
    """Event lines to the supervisor, flushed one by one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        line = encode(event)  # NaN/inf are allowed here; the queue stores them as null
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _Lifeline:
    """Exit the process when the supervisor dies or stops renewing the lease for a lease."""

    def __init__(self, stream: TextIO, lease_seconds: float) -> None:
        self.stream = stream
        self.lease_seconds = lease_seconds
        self.last = time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._listen, name="lifeline", daemon=True).start()
        threading.Thread(target=self._watch, name="lease-watch", daemon=True).start()

    def _listen(self) -> None:
        while self.stream.readline():
            self.last = time.monotonic()
        log.error("the supervisor went away; exiting")
        os._exit(ORPHANED)

    def _watch(self) -> None:
        while True:
            time.sleep(min(0.5, self.lease_seconds / 10))
            if time.monotonic() - self.last > self.lease_seconds:
                log.error("no lease renewal for %.1f s; exiting", self.lease_seconds)
                os._exit(ORPHANED)


def main() -> int:
    """Entry point: read the spec, train, report the outcome; the exit status says it too."""
    events = _Events(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # stray prints must not corrupt the event stream
    logging.basicConfig(level=logging.INFO, format="%(asctime)s child %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides, not the terminal
    line = sys.stdin.readline()
    if not line:
        return ORPHANED
    spec = decode_spec(line)
    _Lifeline(sys.stdin, spec.lease_seconds).start()
    return 0 if train_job(spec, events.send, stop.is_set) else 1


if __name__ == "__main__":
    sys.exit(main())
