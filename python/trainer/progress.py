"""A one-line progress bar on stderr with no dependencies.

On a terminal it redraws one line; in a log file (not a TTY) it writes one line per update, so logs
stay readable. `write()` prints a message above the bar.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(
        self, total: int, initial: int = 0, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.initial = initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._drawn = False

    def update(self, step: int, fields: dict[str, str]) -> None:
        if not self.enabled:
            return
        frac = step / self.total if self.total else 1.0
        width = 24
        filled = int(width * frac)
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.start
        done = step - self.initial
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        eta_text = _duration(eta) if eta == eta else "?"
        parts = [f"step {step}/{self.total} [{bar}] {100 * frac:3.0f}%"]
        parts += [f"{k} {v}" for k, v in fields.items()]
        parts.append(f"eta {eta_text}")
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def write(self, message: str) -> None:
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
            self._drawn = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
