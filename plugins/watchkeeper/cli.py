"""`watchkeeper`: the command line.

Starts fast: argparse and the standard library at import; each command imports what it needs.
Exit codes: 0 success, 1 a finding / a check that failed, 2 bad usage, bad input or an error
(with a message saying which file, field or model, and why; never a bare traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CliError(Exception):
    """An error worded for the user; printed without a traceback, exit 2."""


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# ----- check-config ---------------------------------------------------------------------------


def cmd_check_config(args) -> int:
    from watchkeeper import config_check
    from watchkeeper import spec as specmod

    target = Path(args.path) if args.path else None
    if target is not None and target.is_file():
        files = [target]
    else:
        files = specmod.spec_files(target)
        if not files:
            raise CliError(f"no model specs (*.yaml) in {target or specmod.paths.models_dir()}")
    if args.ds:
        _day_arg("--ds", args.ds)
    problems = 0
    for f in files:
        try:
            s = specmod.load_spec(f)
        except specmod.SpecError as err:
            print(f"FAIL {err}")
            problems += 1
            continue
        found = config_check.check_spec(s, ds=args.ds, data=not args.no_data)
        errors = [p for p in found if p.level == "error"]
        warnings = [p for p in found if p.level != "error"]
        if errors:
            problems += 1
            print(f"FAIL {f}: {len(errors)} problem(s)")
            for p in errors:
                print(f"  - {p.line()}")
        else:
            n = sum(1 for st in ("ingestion", "features") if s.suite_path(st))
            print(f"ok   {f}: model {s.name!r} ({s.task}, {len(s.features)} features, "
                  f"{n} suites, {len(s.slos)} SLOs)" + ("" if not args.no_data else
                                                         "; data not checked (--no-data)"))
        for p in warnings:
            print(f"  warning {p.line()}")
    print(f"{len(files) - problems} of {len(files)} specs valid")
    return 1 if problems else 0


def _day_arg(opt: str, value: str) -> str:
    from datetime import date

    try:
        date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{opt} {value!r}: expected a day YYYY-MM-DD") from None
    return value


# ----- history --------------------------------------------------------------------------------


def cmd_history(args) -> int:
    from watchkeeper import history
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    days = history.build(spec, _store())
    if args.json:
        _print_json(days)
    else:
        print(history.as_table(spec, days))
    return 0


# ----- suggest-suite --------------------------------------------------------------------------


def cmd_suggest_suite(args) -> int:
    from watchkeeper import quality, sources
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    training = spec.resolve_path(spec.reference.training)
    try:
        frame = sources.read_file(training).frame
    except sources.SourceError as err:
        raise CliError(f"cannot read the training set of {spec.name!r} (reference.training in "
                       f"{spec.spec_path}): {err}") from None
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    if missing:
        raise CliError(f"{training}: training set lacks feature column(s) {', '.join(missing)}")
    if args.rows_per_day is not None:
        if args.rows_per_day < 1:
            raise CliError(f"--rows-per-day {args.rows_per_day}: give a positive number of rows")
        rows, why = args.rows_per_day, "--rows-per-day"
    else:
        rows, why = _typical_rows_per_day(spec, frame)
    features = [quality.FeatureInfo(name=f.name, kind=f.kind, bounds=f.bounds, pii=f.pii)
                for f in spec.features]
    suite = quality.suggest_features_suite(frame, features, name=f"{spec.name}.features",
                                           daily_rows=rows)
    out = Path(args.out) if args.out else suggested_suite_path(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(suite, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(suite['expectations'])} expectations from {len(frame)} training "
          f"rows, sized for {rows} rows a day: {why})")
    print(f"  a healthy day fails some check with probability about "
          f"{suite['meta']['false_failure_rate_per_day']:.2g} (each expectation's notes say why)")
    print(f"review it, then point suites.features of {spec.spec_path} at it")
    return 0


# ----- suggest-slo ----------------------------------------------------------------------------


def cmd_suggest_slo(args) -> int:
    import dataclasses
    import statistics

    from watchkeeper import slo_suggest, sources
    from watchkeeper.spec import BOOLEAN_SLIS, get_spec
    from watchkeeper.store import StoreError

    spec = get_spec(args.model)
    if spec.labels is None:
        raise CliError(f"model {spec.name!r} has no `labels` block in {spec.spec_path}: quality "
                       "SLOs are computed from labels")
    if spec.task not in slo_suggest.METRICS:
        raise CliError(f"suggest-slo supports binary_classification and regression models; "
                       f"{spec.name!r} is {spec.task}")
    training = spec.resolve_path(spec.reference.training)
    try:
        frame = sources.read_file(training).frame
    except sources.SourceError as err:
        raise CliError(f"cannot read the training set of {spec.name!r}: {err}") from None
    other_col = spec.prediction.score if spec.task == "binary_classification" else spec.prediction.label
    missing = [c for c in (spec.labels.label_column, other_col) if c not in frame.columns]
    if missing:
        raise CliError(f"{training}: the training set lacks column(s) {', '.join(missing)} "
                       f"(labels.label_column and the model's {'score' if spec.task == 'binary_classification' else 'prediction'}"
                       "), so it cannot say how good a healthy day is")
    days, rows, source, notes = [], None, None, []
    try:
        store = _store()
        for m in store.metrics(spec.name, "quality"):
            p = m.payload or {}
            if m.subject == "overall" and not p.get("provisional", True) and p.get("metrics"):
                days.append(slo_suggest.StoredDay(ds=m.ds, metrics=p["metrics"],
                                                  n_labelled=int(p.get("n_labelled") or 0)))
        partition_rows = [pt.rows for pt in store.partitions(spec.name) if pt.rows]
    except StoreError as err:  # the reference alone still answers (with --rows-per-day); say why
        days, partition_rows = [], []
        notes.append(f"store not read ({err}): no stored days")
    if args.rows_per_day:
        rows, source = float(args.rows_per_day), "--rows-per-day"
    elif labelled := [d.n_labelled for d in days if d.n_labelled]:
        rows, source = float(statistics.median(labelled)), f"median of {len(labelled)} mature days"
    elif partition_rows:
        rows, source = float(statistics.median(partition_rows)), \
            f"median rows of {len(partition_rows)} partitions"
    else:
        raise CliError(f"no stored days of {spec.name!r} tell its batch size: pass --rows-per-day N "
                       "(labelled rows a day)")
    boolean = []
    for s in spec.slos:
        if s.kind != "timeslice" or s.sli not in BOOLEAN_SLIS:
            continue
        if s.sli == "feature_drift":
            r = spec.drift.daily_false_alarm_rate
            rate, why = 1 - (1 - r) ** 2, f"drift or skew, each at most {r:g} a day"
        elif s.sli == "prediction_stability":
            rate = spec.predictions.daily_false_alarm_rate
            why = "predictions.daily_false_alarm_rate"
        else:
            continue  # freshness: lateness is not a statistical false alarm
        boolean.append(slo_suggest.boolean_risk(s.name, s.sli, rate, why, s.objective, s.window_days))
    try:
        out = slo_suggest.suggest(
            model=spec.name, task=spec.task, y=frame[spec.labels.label_column].to_numpy(dtype="float64"),
            other=frame[other_col].to_numpy(dtype="float64"), rows_per_day=rows, rows_source=source,
            stored_days=days, decision_threshold=spec.prediction.threshold, slos=spec.slos,
            boolean=boolean)
    except slo_suggest.SuggestError as err:
        raise CliError(f"{spec.name}: {err}") from None
    if notes:
        out = dataclasses.replace(out, notes=out.notes + tuple(notes))
    if args.json:
        _print_json(out.to_dict())
    else:
        print(out.as_table())
    return 0



def suggested_suite_path(spec) -> Path:
    """Next to the spec's suites; without suites, next to the spec (so a spec kept outside
    include/models never writes into this checkout)."""
    for stage in ("features", "ingestion"):
        p = spec.suite_path(stage)
        if p is not None:
            return p.parent / "features.suggested.json"
    spec_file = Path(spec.spec_path).resolve() if spec.spec_path else None
    if spec_file is not None and not (spec_file.parent.name == "models"
                                      and spec_file.parent.parent.name == "include"):
        return spec_file.parent / f"{spec.name}.features.suggested.json"
    return spec.root() / "expectations" / spec.name / "features.suggested.json"


def _typical_rows_per_day(spec, training) -> tuple[int, str]:
    """The batch size to size bounds for: the median day stored for the model, else the
    training set's median rows per day (by columns.timestamp in the model's timezone)."""
    import pandas as pd

    try:
        counts = [p.rows for p in _store().partitions(spec.name)
                  if p.rows and p.status in ("ok", "late")]
    except Exception:  # noqa: BLE001 - no store yet is the usual case for a new model
        counts = []
    if counts:
        return int(pd.Series(counts).median()), f"the median of {len(counts)} stored days"
    ts = spec.columns.timestamp
    if ts in training.columns:
        t = pd.to_datetime(training[ts], errors="coerce", utc=True).dropna()
        if len(t):
            per_day = t.dt.tz_convert(spec.timezone).dt.date.value_counts()
            return int(per_day.median()), (f"the training set's median rows per day over "
                                           f"{len(per_day)} days of {ts}")
    raise CliError(f"cannot tell how many rows a day of {spec.name!r} has: no day is stored yet "
                   f"and the training set has no {ts!r} column to count days by; pass "
                   "--rows-per-day N")


# ----- init (issue 15): a new model from a day of its data and its training set ---------------

_DAY_IN_NAME = r"(\d{4}-\d{2}-\d{2})"


def cmd_init(args) -> int:
    import yaml

    from watchkeeper import onboard, paths, sources
    from watchkeeper import spec as specmod

    model = args.model
    if not specmod.NAME_RE.match(model):
        raise CliError(f"model name {model!r}: use lower-case letters, digits and underscores, "
                       "starting with a letter (it names the spec file and the DAGs)")
    sample, raw, ds, source = _init_sample(args)
    training_path = Path(args.training)
    try:
        training = sources.read_file(training_path).frame
    except sources.SourceError as err:
        raise CliError(f"--training: {err}") from None
    labels, arrivals, labels_ref = None, None, None
    if args.labels:
        labels, arrivals, labels_ref = _init_labels(args.labels, ds)
    try:
        p = onboard.infer(sample, training, model=model, ds=ds, task=args.task,
                          timezone_name=args.timezone, labels=labels, label_arrivals=arrivals,
                          label_source=args.labels or "")
    except onboard.OnboardError as err:
        raise CliError(str(err)) from None

    # where the files go: the folder the user names, else include/models and expectations/MODEL
    if args.out:
        out = Path(args.out)
        spec_file, suite_dir = out / f"{model}.yaml", out / model
    else:
        spec_file = paths.models_dir() / f"{model}.yaml"
        suite_dir = paths.project_root() / "expectations" / model
    targets = [spec_file, suite_dir / "ingestion.json", suite_dir / "features.json"]
    existing = [t for t in targets if t.exists()]
    if existing and not args.force:
        raise CliError(f"{', '.join(map(str, existing))} already exist(s); pass --force to "
                       "replace, or --out DIR to write elsewhere")

    ref = _spec_ref
    suites = {"ingestion": ref(suite_dir / "ingestion.json"),
              "features": ref(suite_dir / "features.json")}
    if source["kind"] == "file":
        source = {**source, "path": ref(Path(source["path"]))}
    text = onboard.render_spec(p, source=source, training_path=ref(training_path),
                               labels_path=ref(Path(labels_ref)) if labels_ref else None,
                               suites=suites)
    try:  # the proposal must load, or nothing is written
        specmod.parse_spec(yaml.safe_load(text), spec_file)
    except specmod.SpecError as err:
        raise CliError(f"the proposed spec does not validate (a bug in init, please report):\n"
                       f"{err}") from None
    ingestion = onboard.ingestion_suite(p, sample, training, raw=raw)
    features = onboard.features_suite(p, training)
    suite_dir.mkdir(parents=True, exist_ok=True)
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    (suite_dir / "ingestion.json").write_text(json.dumps(ingestion, indent=2) + "\n", encoding="utf-8")
    (suite_dir / "features.json").write_text(json.dumps(features, indent=2) + "\n", encoding="utf-8")
    spec_file.write_text(text, encoding="utf-8")

    print(f"{model}: {p.task.value}, {p.rows} rows on {ds} ({p.timezone.value})")
    print(f"  id {p.id.value}, timestamp {p.timestamp.value}"
          + (f", model_version {p.model_version.value}" if p.model_version else "")
          + ", outputs " + ", ".join(f"{k} {c.value}" for k, c in p.prediction.items()
                                     if k != "threshold" and c.value))
    print(f"  {len(p.features)} features ({', '.join(f.name for f in p.features)}); "
          f"segments: {', '.join(c.value for c in p.segments) or 'none'}"
          + (f"; left out: {', '.join(c for c, _ in p.left_out)}" if p.left_out else ""))
    print(f"  {len(p.slos)} SLOs: " + ", ".join(f"{s['name']} {s['objective']:g}" for s in p.slos))
    for n in p.notes:
        print(f"  note: {n}")
    print(f"wrote {spec_file}")
    print(f"wrote {suite_dir / 'ingestion.json'} ({len(ingestion['expectations'])} expectations)")
    print(f"wrote {suite_dir / 'features.json'} ({len(features['expectations'])} expectations, "
          f"sized for {p.rows} rows a day)")
    shown = _shown(spec_file)
    print(f"next: review the comments in {shown}, then `watchkeeper check-config {shown}` and "
          f"`watchkeeper run {model} --ds {ds}`"
          + (f" (with WATCHKEEPER_MODELS_DIR={spec_file.parent})" if args.out else ""))
    return 0


def _shown(path: Path) -> str:
    """A path relative to the working folder when it is inside it (what a user types)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _spec_ref(path: Path) -> str:
    """A path as a spec writes it: {home}/... under WATCHKEEPER_HOME, relative to the checkout
    inside it, absolute elsewhere."""
    from watchkeeper import paths

    p = Path(str(path).replace("{ds}", "DS-PLACEHOLDER")).resolve()  # relative: to the cwd
    for base, prefix in ((paths.home(), "{home}/"), (paths.project_root(), "")):
        try:
            rel = p.relative_to(base.resolve())
        except ValueError:
            continue
        out = prefix + rel.as_posix()
        break
    else:
        out = p.as_posix()
    return out.replace("DS-PLACEHOLDER", "{ds}")


def _init_sample(args):
    """(the sample day's frame with text timestamps parsed, the frame as the source hands it
    over, its day, the spec's source block)."""
    import re

    from watchkeeper import sources

    given = args.sample
    if re.match(r"^[a-z][a-z0-9+]*://", given) and not given.startswith("file://"):
        # a database: the day's rows of a table (the URL goes into the spec as it is given)
        if not (args.table and args.date_column and args.ds):
            raise CliError("--sample is a database URL: give --table, --date-column and --ds "
                           "(the day to read)")
        from watchkeeper.spec import SqlTableSource

        src = {"kind": "sql_table", "url": given, "table": args.table,
               "date_column": args.date_column}
        try:
            src_obj = SqlTableSource.model_validate(src)
        except Exception as err:  # noqa: BLE001 - pydantic's message names the field
            raise CliError(f"--table / --date-column: {err}") from None
        stub = _stub_spec(src_obj)  # a throwaway spec to read through the source edge
        try:
            part = sources.read_day(stub, src_obj, args.ds)
        except sources.SourceError as err:
            raise CliError(f"--sample: {err}") from None
        if "://" in given and ":" in given.split("://", 1)[1].split("@")[0] and "@" in given:
            print("note: the URL holds a password and goes into the spec as given; prefer an "
                  "Airflow connection (source.conn_id)", file=sys.stderr)
        raw = part.frame
        return _parse_times(raw), raw, args.ds, src
    path = Path(given.removeprefix("file://"))
    days = re.findall(_DAY_IN_NAME, path.name) or re.findall(_DAY_IN_NAME, str(path))
    ds = args.ds or (days[-1] if days else None)
    if ds is None:
        raise CliError(f"--sample {given}: the file name holds no day (YYYY-MM-DD); the source "
                       "must be one file per day named with its day, e.g. predictions/ds=2013-03-01.parquet")
    _day_arg("--ds", ds)
    if ds not in str(path):
        raise CliError(f"--sample {given}: the path does not contain the day {ds}, so no per-day "
                       "pattern can be made from it")
    head, _, tail = str(path).rpartition(ds)
    pattern = head + "{ds}" + tail
    try:
        frame = sources.read_file(path).frame
    except sources.SourceError as err:
        raise CliError(f"--sample: {err}") from None
    src = {"kind": "file", "path": pattern}
    return _parse_times(frame), frame, ds, src


def _parse_times(frame):
    """Text columns holding ISO timestamps (CSV, SQLite) as naive-UTC datetimes, for inference;
    the source edge parses the spec's timestamp column the same way."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object:
            parsed = _maybe_times(out[c])
            if parsed is not None:
                out[c] = parsed
    return out


def _maybe_times(col):
    import pandas as pd

    from watchkeeper.onboard import _parses_as_time

    if not _parses_as_time(col):
        return None
    return pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601").dt.tz_convert(None)


def _stub_spec(src):
    """The least spec the source edge reads a day through (name, columns and features are not
    used for reading)."""
    from watchkeeper.spec import parse_spec

    return parse_spec({"name": "init_sample", "task": "regression", "source": src.model_dump(),
                       "columns": {"id": "id", "timestamp": "ts"},
                       "features": [{"name": "x", "kind": "numerical"}],
                       "prediction": {"label": "y"}, "reference": {"training": "unused"}})


def _init_labels(pattern: str, ds: str):
    """The label files that arrived from the sample's day on (at most 60 days): rows, the arrival
    day of each, and the pattern for the spec."""
    from datetime import date, timedelta

    import pandas as pd

    from watchkeeper import sources

    if "{ds}" not in pattern:
        raise CliError(f"--labels {pattern}: give the label files' pattern with {{ds}} for the "
                       "day they arrived, e.g. labels/arrived={ds}.parquet")
    start = date.fromisoformat(ds)
    frames, arrivals = [], []
    for i in range(61):
        d = (start + timedelta(days=i)).isoformat()
        f = Path(pattern.replace("{ds}", d))
        if not f.exists():
            continue
        try:
            frame = sources.read_file(f).frame
        except sources.SourceError as err:
            raise CliError(f"--labels: {err}") from None
        if len(frame):
            frames.append(frame)
            arrivals += [d] * len(frame)
    if not frames:
        raise CliError(f"--labels {pattern}: no label file arrived on {ds} or in the 60 days "
                       f"after it (looked for {pattern.replace('{ds}', ds)}, ...)")
    return (pd.concat(frames, ignore_index=True), pd.Series(arrivals), pattern)


# ----- gate, override, status ------------------------------------------------------------------


def cmd_gate(args) -> int:
    from watchkeeper import gatekeeper

    d = gatekeeper.ask(args.model, args.scope, as_of=args.as_of, asked_by=args.by, via="cli")
    if args.json:
        _print_json(d.to_json_dict())
    else:
        print(d.verdict_text())
        for r in d.reasons:
            print(f"  - {r.get('slo')}: {r.get('text') or r}")
        for n in d.notes:
            print(f"  note: {n}")
    return d.exit_code()


def cmd_override(args) -> int:
    from watchkeeper import gatekeeper

    o = gatekeeper.override(args.model, reason=args.reason, expires=args.expires, by=args.by,
                            scope=args.scope)
    print(f"override stored: {o.model} ({o.scope}) open until {o.expires_at.isoformat()} "
          f"by {o.created_by}: {o.reason}")
    return 0


# ----- accept (issue 14: expected change) ------------------------------------------------------


def _acceptance_line(a, today: str) -> str:
    until = a.until or "open-ended"
    line = (f"{a.id}  {a.status(today):<13} {a.what:<28} since {a.since}  until {until:<10}  "
            f"known {a.known_on} by {a.created_by}: {a.reason}")
    if a.revoked_on:
        line += f"  (revoked {a.revoked_on} by {a.revoked_by}" + \
            (f": {a.revoke_reason})" if a.revoke_reason else ")")
    return line


def cmd_accept(args) -> int:
    from watchkeeper import gatekeeper
    from watchkeeper.acceptance import AcceptanceError
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    today = gatekeeper.today(spec).isoformat()
    store = _store()
    if args.list:
        items = gatekeeper.acceptances(store, spec.name)
        if args.json:
            _print_json({"model": spec.name, "as_of": today,
                         "acceptances": [a.to_dict() | {"status": a.status(today)} for a in items]})
        elif not items:
            print(f"{spec.name}: no acceptances of expected change")
        else:
            for a in items:
                print(_acceptance_line(a, today))
        return 0
    try:
        if args.revoke:
            out = gatekeeper.revoke_acceptance(spec.name, args.revoke, reason=args.reason,
                                               as_of=args.as_of, by=args.by, store=store)
        else:
            if not args.feature:
                raise CliError("accept: --feature is required (the feature whose change is "
                               "expected), or use --list / --revoke ID")
            out = gatekeeper.accept(spec.name, feature=args.feature, reason=args.reason,
                                    segment=args.segment, since=args.since, until=args.until,
                                    as_of=args.as_of, by=args.by, store=store)
    except AcceptanceError as err:
        raise CliError(str(err)) from None
    if args.json:
        _print_json(out.to_dict())
        return 0
    a = out.acceptance
    if args.revoke:
        print(f"acceptance {a.id} of {spec.name} revoked as of {a.revoked_on} by {a.revoked_by}: "
              f"{a.what} is measured against its usual reference again")
    else:
        print(f"acceptance {a.id} stored for {spec.name}: {a.describe()}")
        print(f"  incidents closed: {', '.join(out.closed_incidents or []) or 'none open'}")
    for ds, known in out.reevaluated:
        print(f"  budgets of {ds} re-evaluated as known on {known}")
    return 0


def _bar(remaining, width: int = 20) -> str:
    if remaining is None:
        return "[" + "?" * width + "]"
    filled = max(0, min(width, round(remaining * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _burn_where(snap: dict) -> str:
    """Quality SLOs burn over their newest mature days (labels arrive late): say up to which."""
    if not snap.get("quality") or "ds" not in snap:
        return ""
    if snap.get("burn_as_of") is None:
        return "  (no mature day in the window to measure burn on)"
    return f"  (burn over the newest mature days, to {snap['burn_as_of']})"


def cmd_status(args) -> int:
    from watchkeeper import budgets, gatekeeper
    from watchkeeper.spec import get_spec, load_all

    store = _store()
    names = [args.model] if args.model else [s.name for s in load_all()[0]]
    out = []
    for name in names:
        spec = get_spec(name)
        as_of = gatekeeper.today(spec).isoformat()
        snaps = {s.slo: s for s in budgets.latest_snapshots(store, name, as_of)}
        dec = {sc: gatekeeper.ask(name, sc, store=store, record=False) for sc in ("model", "features")}
        active = [o.to_dict() for o in gatekeeper.overrides(store, name)
                  if o.is_active(gatekeeper.now_utc())]
        out.append({
            "model": name,
            "gate": {sc: d.decision for sc, d in dec.items()},
            "slos": [dict(snaps[s.name].to_dict(), gates=list(s.gates), quality=s.quality)
                     if s.name in snaps
                     else {"slo": s.name, "budget_remaining": None, "note": "no snapshot yet",
                           "quality": s.quality}
                     for s in spec.slos],
            "overrides": active,
            "recent_decisions": gatekeeper.recent_decisions(store, name),
        })
    if args.json:
        _print_json(out if not args.model else out[0])
        return 0
    for m in out:
        print(f"{m['model']}: gate model={m['gate']['model'].upper()} "
              f"features={m['gate']['features'].upper()}")
        for s in m["slos"]:
            rem = s.get("budget_remaining")
            burns = " ".join(f"{w}={s.get('burn_' + w):.2f}" if s.get("burn_" + w) is not None
                             else f"{w}=-" for w in ("1d", "3d", "7d"))
            print(f"  {s['slo']:<22} {_bar(rem)} "
                  f"{'no data' if rem is None else f'{rem:6.1%}':>8}  burn {burns}  "
                  f"{(s.get('alert') or '').upper()}{_burn_where(s)}")
        for o in m["overrides"]:
            print(f"  OVERRIDE until {o['expires_at']} by {o['created_by']}: {o['reason']}")
        for d in m["recent_decisions"]:
            print(f"  asked {d['at']} by {d['by']} via {d['via']}: {d['scope']} -> {d['decision']}")
    return 0


# ----- alerts and silences --------------------------------------------------------------------


def cmd_silence(args) -> int:
    from watchkeeper import alerts
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    try:
        s = alerts.add_silence(_store(), spec, until=args.until, reason=args.reason,
                               kind=args.kind, subject=args.subject, by=args.by)
    except alerts.AlertError as err:
        raise CliError(str(err)) from None
    print(f"silence stored for {spec.name}: {s.describe()} "
          f"(expires {s.expires_at.isoformat()}, id {s.id})")
    return 0


def cmd_alerts(args) -> int:
    from watchkeeper import alerts
    from watchkeeper.spec import get_spec, load_all

    store = _store()
    try:
        if args.alerts_command == "deliver":
            names = [args.model] if args.model else [s.name for s in load_all()[0]]
            out = [alerts.deliver(store, get_spec(n), resend_failed=args.resend_failed,
                                  echo=None if args.json else print) for n in names]
            if args.json:
                _print_json([r.to_dict() for r in out])
            else:
                for r in out:
                    print(r.summary())
                    for f in r.failed:
                        print(f"  FAILED {f['dedupe_key']}: {f['reason']}")
                    for f in r.retry_later:
                        print(f"  retry later {f['dedupe_key']}: {f['reason']}")
            return 1 if any(r.failed for r in out) else 0
        if args.alerts_command == "resend":
            keys = alerts.requeue_failed(store, args.model, args.key or None)
            print(f"{len(keys)} failed alert(s) of {args.model} queued again; "
                  "`watchkeeper alerts deliver` sends them")
            return 0
        spec = get_spec(args.model)
        rows = alerts.list_alerts(store, spec.name, statuses=args.status, limit=args.limit)
        active = alerts.silences(store, spec.name, active_at=alerts._now())
        if args.json:
            _print_json({"model": spec.name, "silences": [s.to_dict() for s in active],
                         "alerts": rows,
                         "problems": alerts.delivery_problems(store, spec.name)})
            return 0
        for s in active:
            print(f"SILENCE {s.describe()}")
        if not rows:
            print(f"{spec.name}: no alerts" + (f" with status {', '.join(args.status)}"
                                               if args.status else ""))
        for r in rows:
            extra = r["last_error"] or r["note"] or ""
            print(f"{r['ds']}  {r['severity']:<6} {r['status']:<9} {r['kind']:<18} "
                  f"{r['subject'][:28]:<28} {r['channel'] or '-':<16} x{r['attempts']}"
                  + (f"  {extra}" if extra else ""))
        return 0
    except alerts.AlertError as err:
        raise CliError(str(err)) from None


# ----- incidents (issue 14) -------------------------------------------------------------------


def cmd_incidents(args) -> int:
    from datetime import date

    from watchkeeper import alerts, incidents

    store = _store()
    if args.as_of:
        try:
            date.fromisoformat(args.as_of)
        except ValueError:
            raise CliError(f"--as-of {args.as_of!r}: expected a day YYYY-MM-DD") from None
    known = store.outbox_models()
    if args.model:
        if args.model not in known:
            from watchkeeper.spec import get_spec

            get_spec(args.model)  # an unknown name is an error; a known model may have none yet
        names = [args.model]
    else:
        names = known
    found = [i for n in names for i in alerts.list_incidents(store, n, as_of=args.as_of)
             if i.is_open or not args.open]
    if args.json:
        _print_json({"as_of": args.as_of, "models": names,
                     "incidents": [i.to_dict() for i in found]})
        return 0
    if not found:
        what = "open incidents" if args.open else "incidents"
        print(f"no {what} for {', '.join(names) or 'any model'}"
              + (f" as of {args.as_of}" if args.as_of else ""))
        return 0
    print(incidents.table(found))
    return 0


# ----- reports and triage ---------------------------------------------------------------------


def cmd_report(args) -> int:
    from watchkeeper import paths, reports
    from watchkeeper.spec import get_spec, load_all

    if args.model:
        specs = [get_spec(m) for m in args.model]
    else:
        specs, errors = load_all()
        for e in errors:
            print(f"skipping invalid spec: {e}", file=sys.stderr)
    try:
        b = reports.build_site(_store(), specs, days=args.ds or None)
    except reports.ReportError as err:
        raise CliError(str(err)) from None
    print(f"site rebuilt in {b.seconds:.1f} s: {len(b.model_pages)} model page(s), "
          f"{len(b.day_pages)} day page(s), {len(b.triage_pages)} triage page(s)"
          + (f", {len(b.pruned)} old file(s) pruned" if b.pruned else ""))
    for problem in b.problems:
        print(f"  problem: {problem}")
    print(f"open {paths.reports_dir() / 'index.html'}")
    return 1 if b.problems else 0


def cmd_triage(args) -> int:
    from watchkeeper import reports
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    try:
        t = reports.triage(spec, args.ds, _store())
    except (reports.TriageUnavailable, reports.ReportError) as err:
        raise CliError(str(err)) from None
    if args.json:
        _print_json(t.result.to_json())
        return 0
    r = t.result
    print(f"triage {r.model} {r.ds}")
    print(f"1. timing: {r.onset.text}")
    print(f"2. predictions: {r.predictions.get('text')}")
    print("3. features, worst first:")
    for f in r.features[:8]:
        print(f"   {f.score:10.4g}  {f.text}")
    print("4. segments, worst first:")
    for s in r.segments[:5]:
        print(f"   {s.impact:10.4g}  {s.text}")
    print(f"5. infrastructure: {r.infrastructure.get('text')}")
    for n in r.notes:
        print(f"   note: {n}")
    print(f"page: {t.path}")
    return 0


# ----- compare (issue 10: shadow and canary rollouts) --------------------------------------------


def cmd_compare(args) -> int:
    from datetime import date

    from watchkeeper import rollout
    from watchkeeper.gatekeeper import today
    from watchkeeper.spec import get_spec

    spec = get_spec(args.model)
    if spec.candidate is None:
        raise CliError(f"model {spec.name!r} has no candidate: add a `candidate:` block to "
                       f"{spec.spec_path} (see README 'Shadow and canary rollouts')")
    store = _store()
    as_of = args.as_of
    if as_of:
        try:
            date.fromisoformat(as_of)
        except ValueError:
            raise CliError(f"--as-of {as_of!r}: expected a day YYYY-MM-DD") from None
    else:  # the newest day the labels DAG compared, else today
        stored = store.events(spec.name, kinds=rollout.DECISION_EVENT)
        as_of = max((e.ds for e in stored), default=today(spec).isoformat())
    try:
        # Recomputed from the same inputs as the compare task, without storing or alerting.
        out = rollout.run_compare(spec, as_of, store, record=False, ingest_missing=False)
    except rollout.RolloutError as err:
        raise CliError(str(err)) from None
    if args.json:
        _print_json(out)
        return 0
    ev = out.get("evidence") or {}
    print(f"{out['model']} {as_of}: candidate {out['candidate']} vs {out['incumbent'] or 'incumbent'} "
          f"at stage {out['stage']} ({out['status']}): {out['decision'].upper()}")
    for t in ev.get("metrics") or []:
        print(f"  {t['metric']}: quality gain {t['delta'] if t['delta'] is None else format(t['delta'], '+.4g')}"
              f", sequence [{t['lower'] if t['lower'] is None else format(t['lower'], '+.4g')}, "
              f"{t['upper'] if t['upper'] is None else format(t['upper'], '+.4g')}] on {t['n']:,} "
              f"units (margin {t['margin']:g})")
    for r in ev.get("reasons") or []:
        print(f"  - {r}")
    d = ev.get("distribution") or {}
    if d:
        print(f"  predictions: PSI {d.get('psi')}, KS {d.get('ks')}")
    for o in ev.get("outcomes") or []:
        print(f"  {o['name']}: incumbent {o['incumbent']} -> candidate {o['candidate']}")
    if ev.get("note"):
        print(f"  {ev['note']}")
    change = out.get("stage_change")
    if change:
        print(f"  the rollout DAG acted on {as_of}: {change['action']} from {change['from']} "
              f"to {change['to']}" + (f" (traffic steps {change['steps']})" if change.get("steps") else ""))
    return 0


# ----- demo and runs --------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from watchkeeper import demo_runner

    return demo_runner.main(end=args.end, rows_per_day=args.rows_per_day, fresh=not args.keep)


def cmd_run(args) -> int:
    from watchkeeper import demo_runner

    for opt, value in (("--ds", args.ds), ("--to", args.to)):
        if value is not None:
            _day_arg(opt, value)
    try:
        return demo_runner.run_range(args.model, args.ds, args.to or args.ds, dags=args.dag)
    except demo_runner.RunRefused as err:
        raise CliError(str(err)) from None


# ----- backtest (issue 9) ---------------------------------------------------------------------


def cmd_backtest(args) -> int:
    from watchkeeper import backtest

    def progress(r) -> None:
        if not args.json:
            verdicts = ", ".join(o.verdict for o in r.outcomes)
            print(f"replayed {r.name}: {r.days} days in {r.seconds:.0f} s ({verdicts})",
                  file=sys.stderr, flush=True)

    try:
        results = backtest.run(args.library, args.incident, progress=progress, jobs=args.jobs,
                               keep=args.keep)
    except backtest.IncidentError as err:
        raise CliError(str(err)) from None
    if args.json:
        _print_json({"passed": backtest.passed(results), **backtest.summary(results),
                     "incidents": [r.to_dict() for r in results]})
    else:
        print(backtest.table(results))
    return 0 if backtest.passed(results) else 1


# ----- end backtest ---------------------------------------------------------------------------


def _store():
    from watchkeeper.store import open_store

    return open_store()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="watchkeeper",
        description="SRE practice for ML models: data checks, drift, labels, SLOs and a gate.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check-config", help="validate every model spec, its suites, SLOs and data")
    c.add_argument("path", nargs="?", help="a spec file or a folder of specs (default include/models)")
    c.add_argument("--ds", help="check the columns against this day of the source (default: the "
                                "newest file of a file source; SQL sources only with --ds)")
    c.add_argument("--no-data", dest="no_data", action="store_true",
                   help="check the specs, suites and SLOs only, not the files they point at")
    c.set_defaults(func=cmd_check_config)

    c = sub.add_parser("history", help="per-day results of a model")
    c.add_argument("model")
    c.add_argument("--json", action="store_true", help="print JSON (one object per day)")
    c.set_defaults(func=cmd_history)

    c = sub.add_parser("suggest-suite", help="derive a features suite from the training set")
    c.add_argument("model")
    c.add_argument("--out", help="where to write it (default: features.suggested.json next to the "
                                 "spec's suites)")
    c.add_argument("--rows-per-day", dest="rows_per_day", type=int,
                   help="the day's batch size the bounds are sized for (default: the median "
                        "stored day, else the training set's rows per day)")
    c.set_defaults(func=cmd_suggest_suite)

    c = sub.add_parser("suggest-slo", help="quality SLOs the data supports at the batch size, "
                                           "with the false alarms each implies")
    c.add_argument("model")
    c.add_argument("--rows-per-day", dest="rows_per_day", type=float,
                   help="labelled rows a day (default: the stored mature days' median, else the "
                        "partitions' median rows)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_suggest_slo)

    c = sub.add_parser("init", help="a new model: spec, suites and SLOs proposed from a day of "
                                    "its data and its training set")
    c.add_argument("model", help="the model's name (lower-case, digits, underscores)")
    c.add_argument("--sample", required=True,
                   help="a day of predictions: a file named with its day (ds=YYYY-MM-DD.parquet "
                        "or .csv), or a database URL with --table, --date-column and --ds")
    c.add_argument("--training", required=True, help="the training set (parquet or csv) with the "
                                                     "model's outputs on it")
    c.add_argument("--task", choices=["binary_classification", "regression", "ranking"],
                   help="default: inferred from the outputs")
    c.add_argument("--labels", help="the label files' pattern, {ds} = the day they arrived")
    c.add_argument("--timezone", help="the model's day is this timezone's (default: the "
                                      "timestamps' own, else UTC)")
    c.add_argument("--ds", help="the sample's day (default: from its file name)")
    c.add_argument("--table", help="with a database URL: the table")
    c.add_argument("--date-column", dest="date_column", help="with a database URL: its day column")
    c.add_argument("--out", help="write the spec and suites here (default include/models and "
                                 "expectations/MODEL)")
    c.add_argument("--force", action="store_true", help="replace files that exist")
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("gate", help="may this model ship now? exit 0 open, 1 closed, 2 inconclusive")
    c.add_argument("model")
    c.add_argument("--scope", choices=["model", "features"], default="model")
    c.add_argument("--json", action="store_true")
    c.add_argument("--as-of", dest="as_of", help="evaluate as of this day (default: today)")
    c.add_argument("--by", help="who asks (default: the OS user), for the audit trail")
    c.set_defaults(func=cmd_gate)

    c = sub.add_parser("override", help="break-glass: open a closed gate for a bounded time")
    c.add_argument("model")
    c.add_argument("--reason", required=True)
    c.add_argument("--expires", required=True, help="a duration: 90m, 4h, 2d, 1w")
    c.add_argument("--by", help="who opens it (default: the OS user)")
    c.add_argument("--scope", choices=["model", "features"], default="model")
    c.set_defaults(func=cmd_override)

    c = sub.add_parser("accept", help="accept a feature's change as the new normal (audited); "
                                      "--list shows acceptances, --revoke ID ends one")
    c.add_argument("model")
    c.add_argument("--feature", help="the feature whose new distribution is expected")
    c.add_argument("--segment", help="only this segment's rows: COLUMN=VALUE (a segment column)")
    c.add_argument("--reason", help="why the change is expected (required; with --revoke: why it ends)")
    c.add_argument("--until", help="last day it applies, YYYY-MM-DD inclusive (default: open-ended)")
    c.add_argument("--since", help="first day of the new normal (default: the onset of the "
                                   "feature's open drift/skew incident, else the acceptance day)")
    c.add_argument("--as-of", dest="as_of", help="the day it becomes known (default: today in the "
                                                 "model's timezone); runs as of earlier days never see it")
    c.add_argument("--by", help="who accepts (default: the OS user), for the audit trail")
    c.add_argument("--list", action="store_true", help="list the model's acceptances")
    c.add_argument("--revoke", metavar="ID", help="revoke the acceptance ID as of --as-of / today")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_accept)

    c = sub.add_parser("status", help="SLO budgets, burn rates, gates, overrides, recent decisions")
    c.add_argument("model", nargs="?")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser("demo", help="generate the demo world and run its DAGs for 42 days")
    c.add_argument("--end", help="last demo day (default: yesterday)")
    c.add_argument("--rows-per-day", type=int, default=20000)
    c.add_argument("--keep", action="store_true", help="keep the existing store and reports")
    c.set_defaults(func=cmd_demo)

    c = sub.add_parser("run", help="run a model's DAGs for a day or a range (embedded Airflow)")
    c.add_argument("model")
    c.add_argument("--ds", required=True, help="first day, YYYY-MM-DD")
    c.add_argument("--to", help="last day (default: --ds)")
    c.add_argument("--dag", action="append", choices=["monitor", "labels"], help="which DAGs (default all)")
    c.set_defaults(func=cmd_run)

    c = sub.add_parser("report", help="rebuild the reviewers' static site (WATCHKEEPER_HOME/reports)")
    c.add_argument("--model", action="append", help="only this model (repeatable; default all)")
    c.add_argument("--ds", action="append", help="only this day's page (repeatable; default all)")
    c.set_defaults(func=cmd_report)

    c = sub.add_parser("triage", help="the incident checklist for a model and day (writes triage.html)")
    c.add_argument("model")
    c.add_argument("--ds", required=True, help="the day, YYYY-MM-DD")
    c.add_argument("--json", action="store_true", help="print the answers as JSON")
    c.set_defaults(func=cmd_triage)

    c = sub.add_parser("compare", help="a candidate model against the incumbent: promote, hold or rollback")
    c.add_argument("model")
    c.add_argument("--json", action="store_true")
    c.add_argument("--as-of", dest="as_of", help="compare as known on this day (default: the newest compared day)")
    c.set_defaults(func=cmd_compare)

    c = sub.add_parser("silence", help="silence a model's alerts until a day (recorded, shown, not sent)")
    c.add_argument("model")
    c.add_argument("--kind", help="only this alert kind (e.g. drift, budget_burn); default all")
    c.add_argument("--subject", help="only this subject (a feature set, an SLO name, a stage)")
    c.add_argument("--until", required=True, help="last silenced day, YYYY-MM-DD (inclusive)")
    c.add_argument("--reason", required=True, help="why: a maintenance window, a known issue")
    c.add_argument("--by", help="who silences (default: the OS user)")
    c.set_defaults(func=cmd_silence)

    c = sub.add_parser("alerts", help="the Slack alert outbox: deliver, list, resend")
    alerts_sub = c.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    a = alerts_sub.add_parser("deliver", help="send pending alerts (Slack, or console + outbox file)")
    a.add_argument("model", nargs="?", help="one model (default: all)")
    a.add_argument("--resend-failed", action="store_true",
                   help="first put permanently failed alerts back in the queue")
    a.add_argument("--json", action="store_true")
    a = alerts_sub.add_parser("list", help="a model's alerts, newest first, and active silences")
    a.add_argument("model")
    a.add_argument("--status", action="append",
                   choices=["pending", "sending", "sent", "failed", "silenced", "digest",
                            "digested", "folded", "grouped"])
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a = alerts_sub.add_parser("resend", help="queue permanently failed alerts again")
    a.add_argument("model")
    a.add_argument("--key", action="append", help="only this dedupe key (repeatable)")
    c.set_defaults(func=cmd_alerts)

    c = sub.add_parser("incidents", help="open and closed alert incidents: onset, last seen, "
                                         "duration, time to detect, worst value, messages")
    c.add_argument("model", nargs="?", help="one model (default: every model in the store)")
    c.add_argument("--json", action="store_true", help="print JSON (stable keys, see README)")
    c.add_argument("--open", action="store_true", help="only incidents still open")
    c.add_argument("--as-of", dest="as_of", help="as the outbox stood up to this day (YYYY-MM-DD)")
    c.set_defaults(func=cmd_incidents)

    c = sub.add_parser("backtest", help="replay the incident library through the current monitors; "
                                        "exit 0 when every incident is caught in time")
    c.add_argument("--incident", action="append", help="only this incident (repeatable)")
    c.add_argument("--library", help="a folder of incidents (default include/incidents)")
    c.add_argument("--json", action="store_true", help="print the results as JSON")
    c.add_argument("--jobs", type=int, default=1, help="replay this many incidents at once")
    c.add_argument("--keep", help="replay in this (empty) folder and keep each incident's home "
                                  "(store, outbox, reports) for a closer look")
    c.set_defaults(func=cmd_backtest)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `watchkeeper history fraud | head`
        sys.stderr.close()
        return 0
    except CliError as err:
        print(f"watchkeeper: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # typed errors of the library carry a worded message
        from watchkeeper.gate import GateError
        from watchkeeper.spec import SpecError, UnknownModel

        known = (SpecError, UnknownModel, GateError)
        try:
            from watchkeeper.store import StoreUnavailable

            known = known + (StoreUnavailable,)
        except ImportError:
            pass
        if isinstance(err, known):
            print(f"watchkeeper: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
