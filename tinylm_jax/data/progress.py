"""One progress line per data-preparation stage: counts, rate and ETA.

On a terminal the line is redrawn in place; elsewhere (logs, CI, pipes) a plain line is
printed at most every `every_s` seconds and once at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress("packing train", total=n, unit="docs") as p: ... p.advance(k)`."""

    def __init__(
        self,
        stage: str,
        total: int | None = None,
        unit: str = "items",
        stream: TextIO | None = None,
        every_s: float = 10.0,
    ):
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.count = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = self._last = time.monotonic()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self._emit(final=True)
        elif self._tty:
            self.stream.write("\n")

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= (0.2 if self._tty else self.every_s):
            self._last = now
            self._emit(final=False)

    def line(self, final: bool = False) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.count / elapsed
        text = f"{self.stage}: {self.count:,}"
        if self.total:
            text += f"/{self.total:,}"
        text += f" {self.unit} ({rate:,.0f}/s"
        if final:
            text += f", {elapsed:.1f}s)"
        elif self.total and rate > 0:
            text += f", ETA {max(self.total - self.count, 0) / rate:.0f}s)"
        else:
            text += ")"
        return text

    def _emit(self, final: bool) -> None:
        text = self.line(final)
        if self._tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
