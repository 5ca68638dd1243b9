"""Problems that hold for the whole session (a bad config file): listed at the top until the app ends.

A notification fades after a few seconds and the status line is overwritten by the next message; a
mistake in the config file stays true all session, so it stays on screen, every problem on its own line.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ProblemsBar(Static):
    DEFAULT_CSS = """
    ProblemsBar { height: auto; max-height: 8; background: $error 25%; padding: 0 1; display: none; }
    ProblemsBar.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.problems: list[str] = []

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)
        text = Text()  # plain text: a message like "[keys] ..." must print as itself, never as markup
        for i, p in enumerate(self.problems):
            line = " ".join(p.split())
            text.append(("\n" if i else "") + (line if line.endswith(":") else "! " + line))
        self.update(text)
        self.add_class("-shown")
