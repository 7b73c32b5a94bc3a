"""Child processes on private pipes: the render workers and the sender of a digest run.

One Python process cannot build pages and talk SMTP at full speed at once: the GIL makes the
sending thread wait behind the building one after every socket read. Children are plain
`python -c` processes on pipes rather than multiprocessing, so a script that embeds the daemon
needs no `__main__` guard, and the parent keeps every database decision it already makes.
Frames are pickles, length-prefixed; only the parent daemon ever writes to a child's pipe.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import IO, Any


def send_frame(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("!Q", len(data)))
    stream.write(data)
    stream.flush()


def recv_frame(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("child process closed its pipe")
    (size,) = struct.unpack("!Q", head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("child process closed its pipe")
    return pickle.loads(data)


def child_pipes() -> tuple[IO[bytes], IO[bytes]]:
    """In a child: (frames in, frames out); print() goes to stderr so nothing else hits the pipe."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    return stdin, stdout


class Child:
    """`python -c "from <module> import <entry>; <entry>()"`, with this checkout importable."""

    def __init__(self, module: str, entry: str) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {module} import {entry}; {entry}()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def send(self, obj: object) -> None:
        send_frame(self.stdin, obj)

    def receive(self) -> Any:
        return recv_frame(self.stdout)

    def stop(self, timeout: float = 10) -> None:
        """Close its input (the child's signal to finish) and wait; kill it if it will not go."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.stdout.close()
