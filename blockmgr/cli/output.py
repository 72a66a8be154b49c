"""Rendering, as openstackclient does it: ``-f table|json|yaml|value|csv`` and ``-c COLUMN``.

A *record* (one resource) is a two-column Field/Value table, its object as the server sent it
(JSON, YAML), its values one per line (``value``), or a header line of field names and one
line of values (``csv``). A *listing* is a table with the chosen columns, the list of full
objects (JSON, YAML: scripts get every field whatever the table shows), one line of
space-separated values per item (``value``), or a header line and one line per item
(``csv``). Values that are lists or objects are shown as compact JSON in a table cell.

``-c COLUMN`` (repeatable) keeps only those columns, in that order, in every format: a field
name for a record (``-c status``); for a listing a table header or a field of the items
(``-c ID``, ``-c id``, ``-c host``), case-insensitive. A column nothing has is a usage error
naming the columns there are.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any, Callable, Iterable, Sequence, TextIO

from blockmgr.cli import errors

FORMATS = ("table", "json", "yaml", "value", "csv")

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


def csv_text(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header line; numbers bare, everything else quoted (openstackclient's
    ``QUOTE_NONNUMERIC``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([v if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else cell(v) for v in row])
    return buffer.getvalue().rstrip("\n")


def yaml_text(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True,
                          allow_unicode=True).rstrip("\n")


def _value(item: dict, column: "str | Callable[[dict], Any]") -> Any:
    return column(item) if callable(column) else item.get(column)


class Output:
    """Writes results to ``stdout`` and notes (progress, hints) to ``stderr``.

    :param fmt: one of :data:`FORMATS`.
    :param columns: the ``-c`` selection (None or empty: every column).
    """

    def __init__(self, fmt: str = "table", stdout: TextIO | None = None,
                 stderr: TextIO | None = None, columns: Sequence[str] | None = None):
        if fmt not in FORMATS:
            raise errors.CliUsageError(reason="--format must be one of %s, not %r"
                                              % (", ".join(FORMATS), fmt))
        self.format = fmt
        self.columns = list(columns or [])
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    # --- results ------------------------------------------------------------------------------

    def record(self, item: dict, hidden: Iterable[str] = ("links",)) -> None:
        """One resource: every field except ``hidden`` ones (sorted by name) in a table;
        the whole object in JSON / YAML; only the ``-c`` fields, in that order, if given."""
        if self.columns:
            keys = self._record_keys(item)
            data = {key: item.get(key) for key in keys}
        else:
            skip = set(hidden)
            keys = sorted(k for k in item if k not in skip)
            data = item
        if self.format == "json":
            self._json(data)
        elif self.format == "yaml":
            self._write(yaml_text(data))
        elif self.format == "value":
            self._write("\n".join(cell(item.get(key)) for key in keys))
        elif self.format == "csv":
            self._write(csv_text(keys, [[item.get(key) for key in keys]]))
        else:
            self._write(table(("Field", "Value"), [(key, item.get(key)) for key in keys]))

    def listing(self, items: list[dict], columns: Sequence[Column]) -> None:
        """Several resources: ``columns`` in a table, value or csv; the full objects in JSON
        / YAML. ``-c`` narrows every format to the named columns."""
        if self.columns:
            columns = self._listing_columns(items, columns)
            if self.format in ("json", "yaml"):
                data = [{(c if isinstance(c, str) else h): _value(item, c)
                         for h, c in columns} for item in items]
                self._json(data) if self.format == "json" else self._write(yaml_text(data))
                return
        elif self.format == "json":
            self._json(items)
            return
        elif self.format == "yaml":
            self._write(yaml_text(items))
            return
        headers = [h for h, _ in columns]
        rows = [[_value(item, c) for _, c in columns] for item in items]
        if self.format == "value":
            if rows:
                self._write("\n".join(" ".join(cell(v) for v in row) for row in rows))
        elif self.format == "csv":
            self._write(csv_text(headers, rows))
        else:
            self._write(table(headers, rows))

    def note(self, text: str) -> None:
        """A message for the person at the terminal, never part of the result."""
        print(text, file=self.stderr, flush=True)

    # --- -c -----------------------------------------------------------------------------------

    def _record_keys(self, item: dict) -> list[str]:
        by_name = {key.lower(): key for key in item}
        keys, unknown = [], []
        for name in self.columns:
            key = name if name in item else by_name.get(name.lower())
            (keys if key is not None else unknown).append(key or name)
        if unknown:
            raise errors.CliUsageError(
                reason="no column %s here; the fields are: %s"
                       % (", ".join(repr(u) for u in unknown), ", ".join(sorted(item))))
        return keys

    def _listing_columns(self, items: list[dict], columns: Sequence[Column]) -> list[Column]:
        by_header = {header.lower(): (header, source) for header, source in columns}
        fields = {}
        for item in items:
            for key in item:
                fields.setdefault(key.lower(), key)
        chosen, unknown = [], []
        for name in self.columns:
            lowered = name.lower()
            if lowered in by_header:
                chosen.append(by_header[lowered])
            elif any(isinstance(source, str) and source.lower() == lowered
                     for _h, source in columns):
                chosen.append(next((h, s) for h, s in columns
                                   if isinstance(s, str) and s.lower() == lowered))
            elif lowered in fields:
                chosen.append((fields[lowered], fields[lowered]))
            elif not items:
                chosen.append((name, name))     # nothing listed: nothing to check against
            else:
                unknown.append(name)
        if unknown:
            known = [h for h, _ in columns] + sorted(
                set(fields.values()) - {s for _h, s in columns if isinstance(s, str)})
            raise errors.CliUsageError(
                reason="no column %s here; the columns are: %s"
                       % (", ".join(repr(u) for u in unknown), ", ".join(known)))
        return chosen

    # --- writing ------------------------------------------------------------------------------

    def _json(self, data: Any) -> None:
        self._write(json.dumps(data, indent=2, sort_keys=True))

    def _write(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)
