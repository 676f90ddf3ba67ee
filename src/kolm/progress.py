"""Progress display for long work: rich bars with rate and ETA, or silence.

Stages receive a `Progress` and open tasks on it; they never build their own
display. Disabled progress (the Python API default) keeps the same calls but
prints nothing, so stage code has one path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Progress", "ProgressTask"]


class ProgressTask:
    """One bar: `advance(n)`, `update(completed=..., info=...)`, `close()`; also a context manager."""

    def __init__(self, owner: Progress, task_id: Any | None) -> None:
        self._owner = owner
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        if self._id is not None:
            self._owner._rich.advance(self._id, n)

    def update(self, completed: float | None = None, total: float | None = None, info: str | None = None) -> None:
        """Set the position, total and/or the free-text info column (loss, lr, ...)."""
        if self._id is None:
            return
        kwargs: dict[str, Any] = {}
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if info is not None:
            kwargs["info"] = info
        self._owner._rich.update(self._id, **kwargs)

    def close(self) -> None:
        if self._id is not None:
            task = self._owner._rich.tasks[[t.id for t in self._owner._rich.tasks].index(self._id)]
            if task.total is not None:
                self._owner._rich.update(self._id, completed=task.total)
            self._owner._rich.stop_task(self._id)
            self._id = None

    def __enter__(self) -> ProgressTask:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _rate_column() -> Any:
    """Items per second of a task (rich ships only a bytes-per-second column)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.3g}/s", style="cyan")

    return RateColumn()


class Progress:
    """A shared live display of tasks, plus `log()` for plain lines above it."""

    def __init__(self, enabled: bool = True, console: Any | None = None) -> None:
        self.enabled = enabled
        self._rich = None
        self._console = console
        self._depth = 0
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._console = console or Console(stderr=True)
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                _rate_column(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self._console,
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._rich is not None and self._depth == 0:
            self._rich.start()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._rich is not None and self._depth == 0:
            self._rich.stop()

    def task(self, description: str, total: float | None = None) -> ProgressTask:
        """Open a bar; `total=None` shows an indeterminate bar."""
        if self._rich is None:
            return ProgressTask(self, None)
        return ProgressTask(self, self._rich.add_task(description, total=total, info=""))

    def log(self, message: str) -> None:
        """Print one line (rich markup allowed) above the bars."""
        if self._console is not None and self.enabled:
            self._console.print(message)
