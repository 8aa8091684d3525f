"""The live status line of ``python -m asynchdb query``, on stderr.

Two renderings of the same line: :class:`PlainLine` (nothing beyond Python:
carriage return, the line cut to the terminal's width, ``ESC [ K`` to clear)
and :class:`RichLine` (``rich``'s live display, from the optional extra
``asynchdb[cli]``).  Both show the phase, the elapsed time, a bar with a
percentage when the progress has a known end, and the driver's status text;
both are cut to one line one column narrower than the terminal (a line that
fills the last column makes some terminals wrap), re-measured on every redraw
so that a resized terminal stays correct; both leave a clean line when closed.

Threads: everything here runs on the thread that calls it (the CLI's main
thread); ``RichLine`` also has rich's own refresh thread while it is shown,
stopped and joined by :meth:`RichLine.close`.  Invariant: nothing here is ever
written to stdout (rows only go there).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional, Protocol, TextIO

__all__ = ["LineState", "PlainLine", "RichLine", "StatusLine", "fit", "make_status_line",
           "text_width"]

_SPINNER = "|/-\\"
#: The narrowest bar worth drawing, and the widest.
_BAR_MIN, _BAR_MAX = 8, 30


@dataclass(frozen=True)
class LineState:
    """What the line shows: ``done`` of ``total`` (``None``: no known end)."""

    phase: str
    elapsed: float
    done: int = 0
    total: Optional[int] = None
    text: str = ""


class StatusLine(Protocol):
    """A live line: ``show`` redraws it, ``close`` wipes it (idempotent)."""

    def show(self, state: LineState) -> None: ...

    def close(self) -> None: ...


def text_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (wide East Asian characters take two)."""
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, with an ellipsis when cut."""
    if width <= 0:
        return ""
    if text_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = text_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:4.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(frozen=True)
class Layout:
    """One line's pieces, already fitted to a width."""

    head: str          # "phase  12.3s"
    bar: int           # bar width in columns, 0 for none
    fraction: Optional[float]
    percent: str       # " 42%" or ""
    text: str          # the status text, cut to what is left


def fit(state: LineState, width: int, tick: int = 0) -> Layout:
    """Lay out ``state`` in at most ``width`` columns (``width`` >= 1).

    What goes first when the line is narrow: the status text, then the bar,
    then the phase's words (cut, then dropped); the elapsed time and the
    percentage stay while they fit at all.
    """
    spinner = _SPINNER[tick % len(_SPINNER)]
    elapsed = _elapsed(state.elapsed)
    fraction: Optional[float] = None
    percent = ""
    if state.total is not None and state.total > 0:
        fraction = max(0.0, min(1.0, state.done / state.total))
        percent = f" {fraction * 100:3.0f}%"
    head = f"{spinner} {state.phase} {elapsed}"
    if text_width(head) + len(percent) > width:
        # narrow: cut the phase's words first, keep the clock and the percentage
        room_for_phase = width - len(f"{spinner}  {elapsed}") - len(percent)
        if room_for_phase >= 3:
            head = f"{spinner} {_cut(state.phase, room_for_phase)} {elapsed}"
        else:
            head = _cut(f"{spinner} {elapsed.strip()}", width)
            if text_width(head) + len(percent) > width:
                percent = " " + percent.strip()  # " 42%", not "  42%"
            if text_width(head) + len(percent) > width:
                percent = ""
    room = width - text_width(head) - len(percent)
    bar = 0
    if percent and room >= _BAR_MIN + 1:  # the bar and the space before it
        bar = min(_BAR_MAX, max(_BAR_MIN, room // 3))
        room -= bar + 1
    dropped = fraction is not None and not percent  # no room even for the percentage
    text = _cut(" " + state.text, room) if state.text and room > 2 and not dropped else ""
    return Layout(head, bar, fraction, percent, text)


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        try:
            return int(os.environ.get("COLUMNS", "80"))
        except ValueError:
            return 80


class PlainLine:
    """The status line with nothing but Python: ``\\r``, the text, ``ESC [ K``.

    On a stream that is not a terminal (``--progress`` into a file) it pads
    with spaces instead of using the escape sequence.
    """

    def __init__(self, stream: TextIO, *, tty: bool) -> None:
        self._stream = stream
        self._tty = tty
        self._tick = 0
        self._shown = 0  # columns on screen; 0 = nothing to clear

    def render(self, state: LineState, width: int) -> str:
        """The line for ``state`` in ``width`` columns (the last one stays free)."""
        layout = fit(state, max(1, width - 1), self._tick)
        bar = ""
        if layout.bar and layout.fraction is not None:
            filled = round(layout.fraction * layout.bar)
            bar = " " + "#" * filled + "-" * (layout.bar - filled)
        return layout.head + bar + layout.percent + layout.text

    def show(self, state: LineState) -> None:
        self._tick += 1
        line = self.render(state, _terminal_width(self._stream))
        if self._tty:
            out = "\r" + line + "\x1b[K"
        else:
            out = "\r" + line + " " * max(0, self._shown - text_width(line))
        self._shown = text_width(line)
        self._write(out)

    def close(self) -> None:
        if self._shown:
            self._write("\r\x1b[K" if self._tty else "\r" + " " * self._shown + "\r")
            self._shown = 0

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr went away: the status line is not worth failing for


class RichLine:
    """The status line drawn by ``rich`` (``pip install 'asynchdb[cli]'``).

    A transient ``rich.live.Live`` on stderr: rich redraws it four times a
    second on its own thread (the spinner keeps turning while the driver is
    silent) and erases it on :meth:`close`.
    """

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=stream, stderr=True, highlight=False)
        self._state = LineState("starting", 0.0)
        self._live: Any = Live(self, console=self._console, refresh_per_second=4,
                               transient=True, redirect_stdout=False, redirect_stderr=False)
        self._started = False
        self._tick = 0

    # rich calls this on its refresh thread: build the line from the last state
    def __rich__(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        self._tick += 1
        width = max(1, self._console.width - 1)
        layout = fit(self._state, width, self._tick)
        grid = Table.grid(padding=0)
        row: list[Any] = [Text(layout.head, style="bold", no_wrap=True, overflow="crop")]
        if layout.bar:
            grid.add_column(no_wrap=True)
            grid.add_column(width=layout.bar + 1, no_wrap=True)
            row.append(ProgressBar(total=1000, completed=int((layout.fraction or 0) * 1000),
                                   width=layout.bar))
        else:
            grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        row.append(Text(layout.percent, no_wrap=True, overflow="crop"))
        row.append(Text(layout.text, style="dim", no_wrap=True, overflow="crop"))
        if layout.bar:
            row[1] = _Padded(row[1])
        grid.add_row(*row)
        return grid

    def show(self, state: LineState) -> None:
        self._state = state
        if not self._started:
            self._live.start()
            self._started = True
        self._live.refresh()

    def close(self) -> None:
        if self._started:
            self._started = False
            self._live.stop()


class _Padded:
    """A renderable with one space before it (the gap before the bar)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __rich__(self) -> Any:
        from rich.padding import Padding

        return Padding(self._inner, (0, 0, 0, 1))


def make_status_line(stream: TextIO, *, tty: bool, style: str = "auto") -> StatusLine:
    """The status line for ``stream``: rich on a terminal when installed, else plain.

    ``style`` is ``"auto"``, ``"rich"`` or ``"plain"`` (the environment variable
    ``ASYNCHDB_STATUS_STYLE`` sets it for the command line).
    """
    if os.environ.get("TERM") == "dumb":
        # a terminal with no cursor control (an editor's shell): spaces, no escapes
        return PlainLine(stream, tty=False)
    if style in ("auto", "rich") and tty:
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return RichLine(stream)
    return PlainLine(stream, tty=tty)
