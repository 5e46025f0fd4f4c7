"""Labels in and out as CSV: importing answers given outside Label Studio, exporting for review or hand-labeling.

Columns: ``key,label,source,time[,annotator,external_id]``.  Text a spreadsheet
would run as a formula (``= + - @``, tab, CR first) is written with a leading
``'`` (OWASP CSV injection) and read back without it, so exports re-import as is.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from activeadv.app.workspace import Workspace
from activeadv.errors import ConfigError, LabelError
from activeadv.records import Annotation

CSV_COLUMNS = ("key", "label", "source", "time", "annotator", "external_id")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_value(cell: str | None) -> str:
    """A cell as read back: stripped, and a ``csv_cell`` escape removed."""
    text = (cell or "").strip()
    if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
        return text[1:]
    return text


def _csv_writer(path: Path) -> tuple[Any, Any]:
    """``(file, writer)`` for an export, with a one-line error when the path cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return fh, csv.writer(fh)


def read_labels_csv(path: Path, key_ids: dict[str, int], class_names: tuple[str, ...]
                    ) -> tuple[list[Annotation], int]:
    """``(annotations, rows_without_label)``; ``LabelError`` on the first bad row (nothing is stored)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise LabelError(f"{path}: no rows (expected a header {','.join(CSV_COLUMNS[:4])})")
    missing = {"key", "label"} - set(header)
    if missing:
        raise LabelError(f"{path}: missing column(s) {', '.join(sorted(missing))} (header: {','.join(header)})")
    out, blank = [], 0
    for line, row in enumerate(rows, start=2):
        key, label = csv_value(row.get("key")), csv_value(row.get("label"))
        if not label:
            blank += 1  # a requested item not annotated yet (`labels export --requested`)
            continue
        if key not in key_ids:
            raise LabelError(f"{path}:{line}: unknown item key '{key}'; nothing was stored")
        if label not in class_names:
            raise LabelError(f"{path}:{line}: unknown label '{label}' (classes: {', '.join(class_names)}); "
                             "nothing was stored")
        source = csv_value(row.get("source")) or "import"
        stamp = (row.get("time") or "").strip()
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
        except ValueError:
            raise LabelError(f"{path}:{line}: time '{stamp}' is not ISO 8601; nothing was stored") from None
        annotator = csv_value(row.get("annotator")) or None
        external = csv_value(row.get("external_id")) or "csv:" + hashlib.sha1(
            "\x1f".join((key, label, source, stamp, annotator or "")).encode()).hexdigest()
        out.append(Annotation(item_id=key_ids[key], label=label, source=source, annotator=annotator,
                              external_id=external, created_at=when))
    return out, blank


@dataclass(frozen=True)
class ImportOutcome:
    added: int
    duplicates: int
    superseded: int
    blank: int  # rows without a label, left for later


def import_labels(ws: Workspace, name: str | None, csv_file: Path) -> ImportOutcome:
    """Store every row of ``csv_file`` or none (an unknown key or label refuses the whole file)."""
    project = ws.project(name)
    annotations, blank = read_labels_csv(csv_file, ws.store.item_keys(project.id, split="pool"),
                                         project.class_names)
    counts = ws.store.add_labels(project.id, annotations, strict=True)
    return ImportOutcome(counts.added, counts.duplicates, counts.superseded, blank)


def export_labels(ws: Workspace, name: str | None, csv_file: Path, *, history: bool = False) -> int:
    """Write the current labels (with ``history``: the replaced ones too) to ``csv_file``; returns the row count."""
    project = ws.project(name)
    rows = ws.store.label_rows(project.id, history=history)
    fh, writer = _csv_writer(csv_file)
    with fh:
        writer.writerow(CSV_COLUMNS + (("current",) if history else ()))
        for r in rows:
            writer.writerow([csv_cell(c) for c in (r.key, r.label, r.source, r.created_at.isoformat(),
                                                    r.annotator or "", r.external_id or "")]
                            + ([int(r.current)] if history else []))
    return len(rows)


def export_requested(ws: Workspace, name: str | None, csv_file: Path) -> int:
    """The items waiting for a label, best first per round, with the model's guess: to fill in and import."""
    project = ws.project(name)
    store = ws.store
    keys = {i: k for k, i in store.item_keys(project.id).items()}
    pending = [(store.get_round(rid).number, sel) for rid, sel in store.pending(project.id)]
    n = 0
    fh, writer = _csv_writer(csv_file)
    with fh:
        writer.writerow(["key", "label", "source", "time", "predicted", "confidence", "round"])
        for number, sel in pending:
            for pos, item_id in enumerate(sel.item_ids):
                guess = "" if sel.predicted is None else project.class_names[int(sel.predicted[pos])]
                conf = "" if sel.confidence is None else f"{float(sel.confidence[pos]):.4f}"
                writer.writerow([csv_cell(c) for c in (keys[int(item_id)], "", "annotator", "", guess, conf, number)])
                n += 1
    return n
