"""Terminal output of the command line: log lines that leave progress bars intact, progress
that a log file can hold, and summaries as short tables."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from tqdm import tqdm

from facesets.orchestrator.settings import SETTINGS


class AroundProgressBars:
    """stderr for log lines: while a progress bar is drawn there, a line goes out through
    tqdm.write, which lifts the bar, prints the line and draws the bar again below it."""

    def write(self, text: str) -> int:
        if getattr(tqdm, "_instances", None):
            tqdm.write(text.rstrip("\n"), file=sys.stderr)
        else:
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


# --- progress ------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class PlainProgress:
    """Progress for a log file or a pipe: a plain line now and then (every progress_interval_s
    of the command's settings, FACESETS_PROGRESS_INTERVAL_S) and one at the end, without the
    carriage returns and cursor codes a terminal bar is drawn with.

    It takes tqdm's arguments and offers the part of its interface the commands use."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: float | None = None,
        unit: str = "it",
        disable: bool | None = False,
        **_terminal_only: Any,  # position, leave...: how a terminal bar is drawn
    ) -> None:
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.unit = unit or ""
        self.disable = bool(disable)
        self.n = 0
        self.postfix = ""
        self._started = time.monotonic()
        self._last = self._started
        self._closed = False

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()

    def update(self, n: float | None = 1) -> bool | None:
        self.n += int(n or 0)
        now = time.monotonic()
        if not self.disable and now - self._last >= SETTINGS.progress_interval_s:
            self._last = now
            self._print(self.line(now))
        return None

    def set_postfix_str(self, s: str = "", refresh: bool | None = True) -> None:
        self.postfix = s

    def set_postfix(
        self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any
    ) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and (self.n or self.total):
            self._print(self.line(time.monotonic(), final=True))

    def line(self, now: float, final: bool = False) -> str:
        """`embedding: 120/400 img (30%), 12.5 img/s, about 22 s left; <message>`."""
        elapsed = now - self._started
        unit = f" {self.unit}" if self.unit else ""
        total = int(self.total) if self.total else 0
        done = (
            f"{self.n}/{total}{unit} ({100 * self.n / total:.0f}%)" if total else f"{self.n}{unit}"
        )
        parts = [f"{self.desc}: {done}" if self.desc else done]
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif elapsed > 0 and self.n:
            rate = self.n / elapsed
            parts.append(f"{rate:.1f}{unit}/s" if rate >= 1 else f"{1 / rate:.1f} s per{unit}")
            if total > self.n:
                parts.append(f"about {_duration((total - self.n) / rate)} left")
        text = ", ".join(parts)
        return f"{text}; {self.postfix}" if self.postfix else text

    @staticmethod
    def _print(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar on a terminal; where stderr is a file or a pipe, PlainProgress (same
    arguments): periodic plain lines, no cursor codes."""
    if kwargs.get("disable") or sys.stderr.isatty():
        return tqdm(**kwargs)
    return PlainProgress(**kwargs)


# --- summaries -----------------------------------------------------------------------------
KEY_WIDTH = 28  # `key  value` lines: the key's column
INLINE_CHARS = 100  # a list or mapping whose JSON is at most this long stays on its key's line
TABLE_ROWS = 20  # rows (or entries) of a long list shown in text; --json shows every one
CELL_CHARS = 40  # a table cell longer than this is shortened (a path keeps its end)
ACROSS_COLUMNS = 24  # parallel lists (a histogram's bins and counts) up to this long go across


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


def _cell(value: Any) -> str:
    if value is None or value == "" or value == []:
        text = "-"  # a cell is never blank: each row splits into its columns
    elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict | list):
        text = _compact(value)
    else:
        text = _plain(value)
    if len(text) <= CELL_CHARS:
        return text
    if "/" in text and not text.startswith(("{", "[")):
        return "..." + text[-(CELL_CHARS - 3) :]  # a path: its end names the file
    return text[: CELL_CHARS - 3] + "..."


def _flatten(row: Mapping[str, object]) -> dict[str, object]:
    """A row's nested mappings one level up: {"years": {"first": 2001}} -> {"years.first": ...}."""
    flat: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, dict) and value and len(value) <= 8:
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
        else:
            flat[key] = value
    return flat


def _short_names(columns: list[str]) -> dict[str, str]:
    """A flattened column keeps its last part as its header where that part is unique."""
    leaves = [column.rsplit(".", 1)[-1] for column in columns]
    return {
        c: leaf if leaves.count(leaf) == 1 else c for c, leaf in zip(columns, leaves, strict=True)
    }


def table(rows: Sequence[Mapping[str, object]], first: str | None = None) -> list[str]:
    """Rows (mappings) as aligned columns under a header; numbers right-aligned, long text
    (paths) in the last columns. `first`: the name of a leading column (the rows' keys)."""
    flat = [_flatten(row) for row in rows]
    columns: list[str] = []
    for row in flat:
        columns += [key for key in row if key not in columns]
    cells = [[_cell(row.get(column)) for column in columns] for row in flat]
    wide = {i for i, _ in enumerate(columns) if any(len(r[i]) > 16 for r in cells)}
    numbers = {i for i, c in enumerate(columns) if all(_is_number(row.get(c)) for row in flat)}
    # Names first, then counts, then long text (paths): a row reads from what it is about.
    order = sorted(range(len(columns)), key=lambda i: (i in wide, i in numbers, i))
    if first is not None:
        order = [columns.index(first)] + [i for i in order if columns[i] != first]
    names = _short_names(columns)
    header = [names[columns[i]] for i in order]
    body = [[row[i] for i in order] for row in cells]
    numeric = [i in numbers for i in order]
    widths = [max(len(h), *(len(row[j]) for row in body)) for j, h in enumerate(header)]

    def line(values: list[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(row) for row in body)]


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _parallel(value: Mapping[str, object]) -> tuple[list[str], int] | None:
    """The keys of a mapping's equally long lists of plain values (a histogram's bins and
    counts), and their length; None when it has fewer than two."""
    lists = {
        key: len(item)
        for key, item in value.items()
        if isinstance(item, list) and item and all(not isinstance(v, dict | list) for v in item)
    }
    lengths = set(lists.values())
    if len(lists) < 2 or len(lengths) != 1:
        return None
    return list(lists), lengths.pop()


def _more(shown: int, total: int) -> list[str]:
    return [f"... and {total - shown} more (--json shows all)"] if total > shown else []


def _plain(value: Any) -> str:
    """A plain value as text; a float to 6 significant digits (0.6, not 0.6000000238418579)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def value_lines(value: Any, width: int = KEY_WIDTH) -> tuple[str, list[str]]:
    """A summary value as the text on its key's line and the lines below it (indented by the
    caller): tables for lists of records and mappings of records, rows across for parallel
    lists, the first TABLE_ROWS entries of anything long."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        rows = value[:TABLE_ROWS]
        return str(len(value)), table(rows) + _more(len(rows), len(value))
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        keys = list(value)[:TABLE_ROWS]
        rows = [{"name": key, **value[key]} for key in keys]
        return str(len(value)), table(rows, first="name") + _more(len(keys), len(value))
    if isinstance(value, dict) and (parallel := _parallel(value)):
        keys, length = parallel
        rest = {k: v for k, v in value.items() if k not in keys}
        head = ", ".join(f"{k} {_cell(v)}" for k, v in rest.items())
        if length <= ACROSS_COLUMNS:
            across = [{"": key, **{str(i): value[key][i] for i in range(length)}} for key in keys]
            lines = table(across)[1:]  # the row names say what each row holds
        else:
            down = [{key: value[key][i] for key in keys} for i in range(min(length, TABLE_ROWS))]
            lines = table(down) + _more(min(length, TABLE_ROWS), length)
        return head, lines
    if not isinstance(value, dict | list):
        return _plain(value), []
    if len(_compact(value)) <= INLINE_CHARS:
        return _compact(value), []
    if isinstance(value, list):
        shown = value[:TABLE_ROWS]
        items = [_plain(v) if not isinstance(v, dict | list) else _compact(v) for v in shown]
        return str(len(value)), items + _more(len(shown), len(value))
    keys = list(value)[:TABLE_ROWS]
    lines = []
    for key in keys:
        # Indented two more than its parent, so the values still line up in one column.
        text, below = value_lines(value[key], width - 2)
        lines.append(f"{key:<{width - 2}} {text}".rstrip())
        lines += [f"  {line}" for line in below]
    return "", lines + _more(len(keys), len(value))


def summary_lines(values: Mapping[str, object]) -> list[str]:
    """A job's summary for a person: `key  value` lines, tables below the keys that hold
    records (the full form is --json)."""
    out = []
    for key, value in values.items():
        text, below = value_lines(value)
        out.append(f"{key:<{KEY_WIDTH}} {text}".rstrip())
        out += [f"  {line}" for line in below]
    return out
