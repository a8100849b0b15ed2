"""Where a command's output goes and in which form.

``--json``: one JSON document on stdout. On a terminal: rich tables and
progress bars (bars on stderr, so they never mix with data). In a pipe: plain
tab-separated lines, no colour, no bars, no headers. Notes (summaries) go to
stderr in a pipe so scripts read only data, and vanish with ``-q``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class Output:
    def __init__(self, *, json_mode: bool, quiet: bool) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.tty = sys.stdout.isatty()

    # -- data ------------------------------------------------------------------

    def json(self, data: Any) -> None:
        text = json.dumps(data, indent=2 if self.tty else None, default=str, ensure_ascii=False)
        sys.stdout.write(text + "\n")

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, plain: bool = False
    ) -> None:
        """Rows as a table on a terminal (none when empty), else as tab-separated lines."""
        if not rows:
            return
        if not self.tty or plain:
            for row in rows:
                sys.stdout.write("\t".join(row) + "\n")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*row)
        Console(highlight=False).print(table)

    def line(self, text: str, *, style: str | None = None) -> None:
        """One line of data (coloured on a terminal when ``style`` is given)."""
        if self.tty and style:
            from rich.console import Console
            from rich.text import Text

            Console(highlight=False, soft_wrap=True).print(Text(text, style=style))
        else:
            sys.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        """A summary for people: stdout on a terminal, stderr in a pipe, none with -q."""
        if self.quiet:
            return
        stream = sys.stdout if self.tty else sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def result(self, data: Any, *, note: str, line: str) -> None:
        """A command's one result: JSON, a sentence for people on a terminal, else a
        bare line a script can read (a sentence there would be data it must parse)."""
        if self.json_mode:
            self.json(data)
        elif self.tty and not self.quiet:
            self.note(note)
        else:
            self.line(line)

    # -- progress ----------------------------------------------------------------

    @contextlib.contextmanager
    def progress(self, total: int, what: str) -> Iterator[Callable[[int], None]]:
        """A byte progress bar (bytes, rate, ETA) on a terminal; elsewhere a no-op.

        Yields ``advance(n)``: call it with each number of bytes done.
        """
        if self.quiet or self.json_mode or not sys.stderr.isatty():
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda n: bar.advance(task, n)

    @contextlib.contextmanager
    def spinner(self, what: str) -> Iterator[None]:
        """A spinner with elapsed time, for work that reports no bytes."""
        if self.quiet or self.json_mode or not sys.stderr.isatty():
            yield
            return
        from rich.console import Console

        with Console(stderr=True).status(what):
            yield
