"""check-config: everything about a model spec that can be validated without running a day.

The spec itself is validated when it loads (watchkeeper.spec). Here come the checks that need
more than the YAML: the suites it names, the SLIs its SLOs name (against the registry in
watchkeeper.slis, with "did you mean"), the metric names of its task, and, unless `data=False`,
the files it points at (training set, a day of the source, a label file, the landing manifest)
and the columns the spec names in them. Every problem says which file and which field.

Problems are errors (check-config fails) or warnings (worth a look, e.g. a segment whose values
never reach drift.min_segment_rows at the batch size seen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from watchkeeper import slis
from watchkeeper.spec import FileSource, ModelSpec, SqlTableSource


@dataclass(frozen=True)
class Problem:
    field: str  # the spec field, e.g. "slos[2].sli"
    message: str  # names the file it is about when that is not the spec itself
    level: str = "error"  # "error" | "warning"

    def line(self) -> str:
        return f"{self.field or '(top level)'}: {self.message}"


def check_spec(spec: ModelSpec, *, ds: str | None = None, data: bool = True) -> list[Problem]:
    """All problems of one loaded spec; [] when it is ready to run."""
    out = check_suites(spec) + check_slos(spec)
    if spec.task == "ranking" and not spec.prediction.item:
        out.append(Problem("prediction.item", "a ranking model's prediction monitors need the "
                                              "recommended item's column"))
    if data:
        out += check_data(spec, ds=ds)
    return out


# ----- suites ------------------------------------------------------------------------------------


def declared_columns(spec: ModelSpec) -> set[str]:
    cols = set(spec.numerical + spec.categorical) | {spec.columns.id, spec.columns.timestamp}
    cols |= {c for c in (spec.columns.model_version, spec.columns.feature_timestamp,
                         spec.prediction.score, spec.prediction.label,
                         spec.prediction.query_group, spec.prediction.item,
                         spec.landing.column if spec.landing.kind == "column" else None) if c}
    if spec.labels:
        cols |= {b.value_column for b in spec.labels.business_outcomes if b.value_column}
    return cols


def check_suites(spec: ModelSpec) -> list[Problem]:
    from watchkeeper import quality

    out = []
    declared = declared_columns(spec)
    for stage in ("ingestion", "features"):
        p = spec.suite_path(stage)
        field = f"suites.{stage}"
        if p is None:
            continue
        if not p.exists():
            out.append(Problem(field, f"{p} does not exist (`watchkeeper suggest-suite "
                                      f"{spec.name}` writes a features suite; `watchkeeper init` "
                                      "writes both)"))
            continue
        try:
            suite = quality.load_suite(p)
        except quality.SuiteConfigError as err:
            out.append(Problem(field, str(err)))
            continue
        unknown = sorted(c for c in quality.suite_columns(suite) if c not in declared)
        if unknown:
            out.append(Problem(field, f"{p}: expectations name columns the spec does not "
                                      f"declare: {', '.join(unknown)}"))
    return out


# ----- SLOs --------------------------------------------------------------------------------------


def check_slos(spec: ModelSpec) -> list[Problem]:
    outcomes = [b.name for b in spec.labels.business_outcomes] if spec.labels else []
    known = slis.known(spec.task, outcomes)
    out = []
    for i, slo in enumerate(spec.slos):
        field = f"slos[{i}]"
        info = known.get(slo.sli)
        if info is None:
            other = slis.task_of_metric(slo.sli)
            if other:
                msg = (f"{slo.sli!r} is a {' / '.join(other)} metric; a {spec.task} model's "
                       f"labels DAG computes {', '.join(slis.QUALITY_METRICS[spec.task])}")
            else:
                guess = slis.did_you_mean(slo.sli, known)
                msg = (f"unknown SLI {slo.sli!r}" + (f"; did you mean {guess!r}?" if guess else "")
                       + f" SLIs of a {spec.task} model: {', '.join(known)}")
            out.append(Problem(f"{field}.sli", msg))
            continue
        if slo.kind not in info.kinds:
            out.append(Problem(f"{field}.kind", f"{slo.sli} is a daily value: use kind "
                                                f"{' or '.join(info.kinds)}"
                                                + (" with a threshold" if "timeslice" in info.kinds else "")))
        if info.family == "monitor" and slo.quality:
            out.append(Problem(f"{field}.quality", f"{slo.sli} comes from the monitor DAG, not "
                                                   "from labels: remove `quality: true`"))
        if info.family != "monitor":
            if not slo.quality:
                out.append(Problem(f"{field}.quality", f"{slo.sli} is a model-quality value (the "
                                                       "labels DAG writes it only for SLOs with "
                                                       "`quality: true`): set `quality: true`"))
            if spec.labels is None:
                out.append(Problem(f"{field}.sli", f"{slo.sli} needs labels: the spec has no "
                                                   "`labels` block"))
            if slo.threshold is None:
                out.append(Problem(f"{field}.threshold", f"a day of {slo.sli} is good against a "
                                                         "threshold: set `threshold` and "
                                                         "`direction`"))
    return out


# ----- data --------------------------------------------------------------------------------------


def _pattern_regex(template: str) -> re.Pattern:
    parts = template.split("{ds}")
    return re.compile("^" + r"(\d{4}-\d{2}-\d{2})".join(re.escape(p) for p in parts) + "$")


def latest_day(spec: ModelSpec, template: str) -> tuple[str, Path] | None:
    """The newest day for which a file matching the per-day pattern exists, and that file."""
    resolved = str(spec.resolve_path(template))
    folder = Path(resolved.split("{ds}")[0]).parent
    if not folder.exists():
        return None
    rx = _pattern_regex(resolved)
    found = []
    for p in folder.rglob("*"):
        m = rx.match(str(p))
        if m and p.is_file():
            try:
                date.fromisoformat(m.group(1))
            except ValueError:
                continue
            found.append((m.group(1), p))
    return max(found) if found else None


def latest_table_day(spec: ModelSpec) -> str | None:
    """The newest value of a SQL table source's date column (quoted identifiers)."""
    from sqlalchemy import column, func, select, table
    from sqlalchemy.exc import SQLAlchemyError

    from watchkeeper import sources

    src = spec.source
    url = sources.sql_url(spec, src)
    schema, _, name = src.table.rpartition(".")
    stmt = select(func.max(column(src.date_column))).select_from(table(name, schema=schema or None))
    try:
        with sources.engine_for(url).connect() as conn:
            value = conn.execute(stmt).scalar()
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise sources.PartitionUnreadable(f"{sources.mask_url(url)} table {src.table}",
                                          sources.mask_url(reason)) from None
    if value is None:
        return None
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _read(path: Path):
    from watchkeeper import sources

    return sources.read_file(path).frame


def check_data(spec: ModelSpec, *, ds: str | None = None) -> list[Problem]:
    from watchkeeper import sources

    out: list[Problem] = []
    # the training set
    training = spec.resolve_path(spec.reference.training)
    train = None
    if not training.exists():
        out.append(Problem("reference.training", f"{training} does not exist"))
    else:
        try:
            train = _read(training)
        except sources.SourceError as err:
            out.append(Problem("reference.training", str(err)))
    if train is not None:
        out += _columns_in(spec, train, f"the training set {training}", training=True)

    # a day of the source
    day = None
    where = None
    if isinstance(spec.source, FileSource):
        if ds is None:
            latest = latest_day(spec, spec.source.path)
            if latest is None:
                out.append(Problem("source.path", f"no file matches {spec.resolve_path(spec.source.path)} "
                                                  "(a typo in the pattern, or no day has landed yet)"))
            else:
                ds = latest[0]
    elif isinstance(spec.source, SqlTableSource) and ds is None:
        try:
            ds = latest_table_day(spec)
        except sources.SourceError as err:
            out.append(Problem("source", f"cannot find a day in the table: {err}"))
        else:
            if ds is None:
                out.append(Problem("source.table", f"{spec.source.table} has no rows "
                                                   f"(no {spec.source.date_column})"))
    if ds is not None:
        try:
            part = sources.read_partition(spec, ds)
            day, where = part.frame, f"the day {ds} ({part.location})"
        except sources.SourceError as err:
            out.append(Problem("source", f"cannot read the day {ds}: {err}"))
    if day is not None:
        if len(day) == 0:
            out.append(Problem("source", f"{where} has no rows: its columns cannot be checked",
                               "warning"))
        else:
            out += _columns_in(spec, day, where, training=False)
            out += _segment_sizes(spec, day, where)
            out += _decision_values(spec, day, where)

    # landing
    lc = spec.landing
    if lc.kind == "manifest" and not spec.resolve_path(lc.path).exists():
        out.append(Problem("landing.path", f"the landing manifest {spec.resolve_path(lc.path)} "
                                           "does not exist"))
    if lc.kind == "marker" and latest_day(spec, lc.path) is None:
        out.append(Problem("landing.path", f"no marker file matches {spec.resolve_path(lc.path)}",
                           "warning"))

    # labels
    if spec.labels is not None and isinstance(spec.labels.source, FileSource):
        ls = spec.labels
        latest = latest_day(spec, ls.source.path)
        if latest is None:
            out.append(Problem("labels.source.path", f"no file matches "
                                                     f"{spec.resolve_path(ls.source.path)}"))
        else:
            try:
                frame = _read(latest[1])
            except sources.SourceError as err:
                out.append(Problem("labels.source.path", str(err)))
            else:
                for field, col in (("labels.join_key", ls.join_key),
                                   ("labels.label_column", ls.label_column),
                                   ("labels.timestamp_column", ls.timestamp_column)):
                    if col and col not in frame.columns:
                        out.append(Problem(field, _missing(col, frame, f"the label file {latest[1]}")))
    return out


def _missing(col: str, frame, where: str) -> str:
    guess = slis.did_you_mean(col, [str(c) for c in frame.columns])
    return (f"column {col!r} is not in {where}" + (f"; did you mean {guess!r}?" if guess else "")
            + f" (columns: {', '.join(map(str, frame.columns))})")


def _columns_in(spec: ModelSpec, frame, where: str, *, training: bool) -> list[Problem]:
    named: list[tuple[str, str | None]] = [
        (f"features[{i}].name", f.name) for i, f in enumerate(spec.features)]
    # the prediction monitors compare the day's outputs with the model's outputs on training
    named += [("prediction.score", spec.prediction.score), ("prediction.label", spec.prediction.label),
              ("prediction.query_group", spec.prediction.query_group),
              ("prediction.item", spec.prediction.item)]
    if not training:
        named += [("columns.id", spec.columns.id), ("columns.timestamp", spec.columns.timestamp),
                  ("columns.model_version", spec.columns.model_version),
                  ("columns.feature_timestamp", spec.columns.feature_timestamp)]
        if spec.landing.kind == "column":
            named.append(("landing.column", spec.landing.column))
        if spec.labels:
            named += [(f"labels.business_outcomes[{i}].value_column", b.value_column)
                      for i, b in enumerate(spec.labels.business_outcomes)]
    return [Problem(field, _missing(col, frame, where)) for field, col in named
            if col and col not in frame.columns]


def _segment_sizes(spec: ModelSpec, frame, where: str) -> list[Problem]:
    out = []
    for i, seg in enumerate(spec.segments):
        if seg not in frame.columns:
            continue
        counts = frame[seg].value_counts(dropna=False)
        if counts.empty or int(counts.iloc[0]) < spec.drift.min_segment_rows:
            top = f"{counts.index[0]} with {int(counts.iloc[0])} rows" if len(counts) else "no rows"
            out.append(Problem(f"segments[{i}]", f"no value of {seg!r} reaches "
                                                 f"drift.min_segment_rows={spec.drift.min_segment_rows} "
                                                 f"in {where} (largest: {top}): the segment will "
                                                 "be skipped; lower drift.min_segment_rows",
                               "warning"))
    return out


def _decision_values(spec: ModelSpec, frame, where: str) -> list[Problem]:
    import pandas as pd

    col = spec.prediction.label
    if spec.task != "binary_classification" or not col or col not in frame.columns:
        return []
    v = pd.to_numeric(frame[col], errors="coerce")
    bad = frame[col][(v.isna() & frame[col].notna()) | (v.notna() & ~v.isin([0, 1]))]
    if len(bad):
        return [Problem("prediction.label", f"a binary model's prediction.label is its 0/1 "
                                            f"decision; {where} holds {bad.iloc[0]!r} in {col!r}")]
    return []
