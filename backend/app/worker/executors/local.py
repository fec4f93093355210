"""The local executor: each job in its own ``python -m backend.app.worker.child`` process.

The process sees only its device (``CUDA_VISIBLE_DEVICES``) and no credentials; it reads the
spec and lease renewals on stdin (its lifeline) and writes one event per line on stdout.
SIGTERM stops it between two batches; SIGKILL at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from backend.app.worker.devices import child_environment
from backend.app.worker.executors import EventQueue
from backend.app.worker.protocol import JobSpec, decode_event, encode

__all__ = ["LocalTraining"]

log = logging.getLogger("backend.app.worker")


class LocalTraining:
    """A training child process on one local device (``cpu`` or ``cuda:N``)."""

    def __init__(self, slot_device: str) -> None:
        self.slot_device = slot_device
        self.env, self.device = child_environment(slot_device)
        self.proc: subprocess.Popen[str] | None = None
        self.reader: threading.Thread | None = None
        self.job_id: int | None = None

    def start(self, spec: JobSpec, events: EventQueue) -> None:
        """Start the child, send it the spec and read its events in a thread."""
        self.job_id = spec.job_id
        Path(spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend.app.worker.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
        )
        log.info("job %s: training process %d on %s", spec.job_id, self.proc.pid, self.slot_device)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(encode(spec) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the child died at start; its exit status says why
        self.reader = threading.Thread(
            target=self._read, args=(self.proc.stdout, events), daemon=True
        )
        self.reader.start()

    def _read(self, stream: IO[str], events: EventQueue) -> None:
        """Reader thread: the child's events onto ``events``, then None at end of file."""
        try:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    events.put(decode_event(line))
                except ValueError:
                    log.warning("job %s: unreadable event %r", self.job_id, line[:200])
        except (OSError, ValueError):  # the stream broke: treat as end of file
            pass
        finally:
            events.put(None)

    def renewed(self) -> None:
        """Tell the child the lease was renewed."""
        stream = self.proc.stdin if self.proc is not None else None
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):  # the child is gone or going
            stream.write("renewed\n")
            stream.flush()

    def terminate(self) -> None:
        """SIGTERM: the child stops between two batches."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child (if it still runs) and reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - an unkillable process
            log.error("training process %d did not die", proc.pid)

    def poll(self) -> int | None:
        """The child's exit status, or None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def describe(self, status: int) -> str:
        """``the training process was killed by signal 9`` / ``exited with status 1``."""
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        return f"the training process {how}"

    def close(self) -> None:
        """Close the pipes once the reader thread is done with them."""
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.proc is not None:
            log.info(
                "job %s: training process %d exited with status %s",
                self.job_id,
                self.proc.pid,
                self.proc.returncode,
            )
        for stream in (self.proc.stdin, self.proc.stdout) if self.proc is not None else ():
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
