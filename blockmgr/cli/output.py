"""Rendering: boxed tables for people, JSON for scripts (``--format json``).

A *record* (one resource) is a two-column Field/Value table, or its JSON object as the server
sent it. A *listing* is a table with the chosen columns, or the JSON list of full objects, so
scripts always get every field whatever the table shows. Values that are lists or objects are
shown as compact JSON in a table cell.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Iterable, Sequence, TextIO

FORMATS = ("table", "json")

#: (header, key or function of the item)
Column = tuple[str, "str | Callable[[dict], Any]"]


def cell(value: Any) -> str:
    """A value as one table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value).replace("\n", " ")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A boxed table (``+----+`` borders) with one line per row."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values):
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = [rule, line(headers), rule]
    out += [line(row) for row in text_rows]
    out.append(rule)
    return "\n".join(out)


def _value(item: dict, column: "str | Callable[[dict], Any]") -> Any:
    return column(item) if callable(column) else item.get(column)


class Output:
    """Writes results to ``stdout`` and notes (progress, hints) to ``stderr``."""

    def __init__(self, fmt: str = "table", stdout: TextIO | None = None,
                 stderr: TextIO | None = None):
        if fmt not in FORMATS:
            raise ValueError("format must be one of %s" % ", ".join(FORMATS))
        self.format = fmt
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def record(self, item: dict, hidden: Iterable[str] = ("links",)) -> None:
        """One resource, every field except ``hidden`` ones in the table (sorted by name)."""
        if self.format == "json":
            self._json(item)
            return
        skip = set(hidden)
        rows = [(k, item[k]) for k in sorted(item) if k not in skip]
        self._write(table(("Field", "Value"), rows))

    def listing(self, items: list[dict], columns: Sequence[Column]) -> None:
        if self.format == "json":
            self._json(items)
            return
        self._write(table([h for h, _ in columns],
                          ([_value(item, c) for _, c in columns] for item in items)))

    def note(self, text: str) -> None:
        """A message for the person at the terminal, never part of the result."""
        print(text, file=self.stderr, flush=True)

    def _json(self, data: Any) -> None:
        self._write(json.dumps(data, indent=2, sort_keys=True))

    def _write(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)
