"""One line at the bottom: what runs now (with a bar and how to cancel it), else the last message.

Errors land here (and in a notification) as one line; the app routes every failure to this widget, so a
user never sees a traceback and the app never ends because some work failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget


@dataclass
class JobView:
    label: str
    fraction: float = 0.0
    message: str = ""
    cancellable: bool = True


class StatusLine(Widget):
    DEFAULT_CSS = """
    StatusLine { height: 1; width: 1fr; background: $panel; color: $foreground; padding: 0 1; }
    StatusLine.-error { background: $error 35%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.jobs: dict[str, JobView] = {}
        self.message = "ready"

    def render(self) -> Text:
        if self.jobs:
            group, job = list(self.jobs.items())[-1]
            width = 12
            filled = int(round(max(0.0, min(1.0, job.fraction)) * width))
            text = Text()
            text.append(f"{job.label} ", style="bold")
            text.append("█" * filled + "░" * (width - filled))
            text.append(f" {job.fraction:4.0%} {job.message}")
            more = len(self.jobs) - 1
            if more:
                text.append(f" (+{more} more)")
            if job.cancellable:
                text.append("  Esc cancels", style="dim")
            return text
        return Text(self.message)

    def start(self, group: str, label: str, cancellable: bool = True) -> None:
        self.jobs.pop(group, None)
        self.jobs[group] = JobView(label, cancellable=cancellable)
        self.remove_class("-error")
        self.refresh()

    def progress(self, group: str, fraction: float, message: str) -> None:
        job = self.jobs.get(group)
        if job is not None:
            job.fraction, job.message = fraction, message
            self.refresh()

    def finish(self, group: str, message: str | None, error: bool = False) -> None:
        """End a job's bar; ``message`` None keeps the current message (for background chores)."""
        self.jobs.pop(group, None)
        if message is not None:
            self.message = message
        self.set_class(error, "-error")
        self.refresh()

    def say(self, message: str, error: bool = False) -> None:
        self.message = message
        self.set_class(error, "-error")
        self.refresh()
