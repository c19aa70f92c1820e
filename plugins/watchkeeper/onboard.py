"""`watchkeeper init`: a model's spec and suites proposed from a day of its data and its training
set, each choice with its reason (written as YAML comments for the reviewer).

Pure core: DataFrames and plain values in, a `Proposal` and text / JSON-ready dicts out. The CLI
reads the files and writes the results (watchkeeper.cli `init`).

What is inferred, and how (the README's "Monitor your own model" walks through it):
- roles: the id (unique in the day; the label files' key when labels are given), the event
  timestamp (a timestamp column inside the sample's day), a landing time column (named like
  loaded_at and after the day ended), the model version (a text column with one or a few
  values named like it), the outputs: a score in [0, 1] and a 0/1 decision for a binary model,
  the predicted value for regression, query group and item for ranking;
- features: the other columns the training set also has, numerical or categorical by dtype;
  PII by name (email, phone, name, address, ...); left out when nearly every value is distinct
  (identifiers, free text: their drift would be noise);
- candidate segments: categorical features with 2-12 values of which at least two groups reach
  drift.min_segment_rows in the sample (itself sized to the batch);
- the task (when not given), the threshold the decision follows, the label delay;
- both suites sized to the sample's batch size, and SLOs (`propose_slos`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from watchkeeper import slis


class OnboardError(ValueError):
    """The sample, training set or labels cannot be turned into a spec; says which and why."""


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str


@dataclass(frozen=True)
class FeatureChoice:
    name: str
    kind: str
    reason: str
    pii: bool = False
    bounds: tuple[float, float] | None = None
    drift_method: str | None = None


@dataclass
class Proposal:
    model: str
    ds: str
    rows: int
    task: Choice
    timezone: Choice
    id: Choice
    timestamp: Choice
    model_version: Choice | None
    prediction: dict[str, Choice]  # score / label / threshold / query_group / item
    landing: Choice  # value: the landing dict of the spec
    features: list[FeatureChoice]
    left_out: list[tuple[str, str]]
    segments: list[Choice]  # value: column
    not_segments: list[tuple[str, str]]
    min_segment_rows: Choice
    labels: dict[str, Choice] | None = None
    reference: dict[str, Any] = field(default_factory=dict)  # metrics of the model on training
    slos: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Every column the spec names in the day's batch."""
        cols = [self.id.value, self.timestamp.value]
        if self.model_version:
            cols.append(self.model_version.value)
        cols += [c.value for k, c in self.prediction.items() if k != "threshold" and c.value]
        if self.landing.value.get("kind") == "column":
            cols.append(self.landing.value["column"])
        cols += [f.name for f in self.features]
        return list(dict.fromkeys(cols))


# ----- small helpers -----------------------------------------------------------------------------

_PII = re.compile(r"(e_?mail|phone|mobile|first_?name|last_?name|full_?name|^name$|surname|"
                  r"address|street|ssn|social_security|passport|birth|dob|ip_?addr|^ip$|iban|"
                  r"card_?number|credit_?card|national_id|tax_id)", re.I)
_ID = re.compile(r"(^id$|_id$|^id_|uuid|guid|_key$|^key$)", re.I)
_TS = re.compile(r"(_ts$|^ts$|time|_at$|date|created|event|scored|predicted_at)", re.I)
_LANDED = re.compile(r"^(loaded|landed|ingested|arrived|inserted|written)(_at|_ts|_time)?$", re.I)
_VERSION = re.compile(r"(version|^model$|model_id|model_name)", re.I)
_SCORE = re.compile(r"(score|prob|proba|probability|^p_|likelihood|confidence)", re.I)
_DECISION = re.compile(r"(pred|decision|flag|label|^is_|outcome|class)", re.I)
_REGRESSION = re.compile(r"(pred|estimate|forecast|yhat|y_hat|expected|eta)", re.I)
_QUERY = re.compile(r"(query|session|search|request|user|basket)", re.I)
_ITEM = re.compile(r"(item|product|doc|sku|article|content)", re.I)


def _is_time(s: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(s.dtype)


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _is_text(s: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return True
    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")


def _binary_values(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s.dtype):
        return True
    if not _is_number(s):
        return False
    v = s.dropna()
    return len(v) > 0 and bool(v.isin([0, 1]).all()) and v.nunique() == 2


def _as_utc(s: pd.Series) -> pd.Series:
    t = pd.to_datetime(s, errors="coerce")
    return t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")


def day_bounds_utc(ds: str, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    d = date.fromisoformat(ds)
    zone = ZoneInfo(tz)
    start = datetime(d.year, d.month, d.day, tzinfo=zone)
    end = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")


def _share_in_day(s: pd.Series, ds: str, tz: str) -> float:
    t = _as_utc(s).dropna()
    if t.empty:
        return 0.0
    lo, hi = day_bounds_utc(ds, tz)
    return float(((t >= lo) & (t < hi)).mean())


def _fmt_rows(n: int) -> str:
    return f"{n:,}"


# ----- inference ---------------------------------------------------------------------------------


def infer(sample: pd.DataFrame, training: pd.DataFrame, *, model: str, ds: str,
          task: str | None = None, timezone_name: str | None = None,
          labels: pd.DataFrame | None = None, label_arrivals: pd.Series | None = None,
          label_source: str = "the label files") -> Proposal:
    """Propose a spec for `model` from its day `ds` (`sample`) and its training set.

    `labels`: label rows read from the label files, with `label_arrivals` (the arrival day of
    each row, YYYY-MM-DD) when known: the join key, the label column and the delay come from
    them.
    """
    if len(sample) == 0:
        raise OnboardError("the sample day has no rows: give a day with data")
    if len(training) == 0:
        raise OnboardError("the training set has no rows")
    notes: list[str] = []
    taken: set[str] = set()

    # --- timestamp and timezone ---
    tz = _choose_timezone(sample, ds, timezone_name)
    ts = _choose_timestamp(sample, ds, tz.value)
    taken.add(ts.value)

    # --- landing ---
    landing = _choose_landing(sample, ds, tz.value, exclude={ts.value})
    if landing.value.get("kind") == "column":
        taken.add(landing.value["column"])

    # --- id (the label files' key when labels are given) ---
    ident = _choose_id(sample, labels, exclude=taken)
    taken.add(ident.value)

    # --- model version ---
    version = _choose_version(sample, exclude=taken)
    if version:
        taken.add(version.value)

    # --- labels: key and label column ---
    label_info = None
    truth_col = None
    if labels is not None:
        label_info = _choose_labels(labels, label_arrivals, sample, ident.value, label_source, ds)
        truth_col = label_info["label_column"].value

    # --- task and outputs ---
    task_choice, prediction = _choose_outputs(sample, training, task, exclude=taken,
                                              truth=truth_col, labels=labels)
    for k, c in prediction.items():
        if k != "threshold" and c.value:
            taken.add(c.value)

    # --- features ---
    features, left_out = _choose_features(sample, training, exclude=taken | {truth_col})
    if not features:
        raise OnboardError("no feature columns: the sample and the training set share no column "
                           "besides ids, timestamps and outputs")

    rows = len(sample)
    msr = min(500, max(30, rows // 5))
    msr_reason = (f"a value needs a fifth of a {_fmt_rows(rows)}-row day ({msr} rows) to be "
                  "compared on its own" if msr < 500 else "the default: 500 rows per value")
    segments, not_segments = _choose_segments(sample, features, msr)

    p = Proposal(model=model, ds=ds, rows=rows, task=task_choice, timezone=tz, id=ident,
                 timestamp=ts, model_version=version, prediction=prediction, landing=landing,
                 features=features, left_out=left_out, segments=segments,
                 not_segments=not_segments, min_segment_rows=Choice(msr, msr_reason),
                 labels=label_info, notes=notes)
    p.reference = reference_metrics(training, p, truth_col)
    p.slos = propose_slos(training, task_choice.value, rows, proposal=p)
    return p


def _choose_timezone(sample: pd.DataFrame, ds: str, given: str | None) -> Choice:
    if given:
        try:
            ZoneInfo(given)
        except Exception:  # noqa: BLE001 - ZoneInfo raises several kinds
            raise OnboardError(f"--timezone {given!r}: not an IANA timezone name (such as "
                               "America/New_York)") from None
        return Choice(given, "given with --timezone")
    zones = {str(sample[c].dt.tz) for c in sample.columns
             if _is_time(sample[c]) and getattr(sample[c].dt, "tz", None) is not None}
    zones.discard("UTC")
    if len(zones) == 1:
        (z,) = zones
        return Choice(z, f"the sample's timestamps carry the timezone {z}")
    return Choice("UTC", "the sample's timestamps carry no timezone: taken as UTC (pass "
                         "--timezone for a model whose day is another timezone's)")


def _choose_timestamp(sample: pd.DataFrame, ds: str, tz: str) -> Choice:
    cands = []
    for c in sample.columns:
        s = sample[c]
        if not _is_time(s) and not (s.dtype == object and _parses_as_time(s)):
            continue
        if _LANDED.match(str(c)):
            continue
        share = _share_in_day(s, ds, tz)
        cands.append((share >= 0.99, bool(_TS.search(str(c))), share, str(c)))
    if not cands:
        raise OnboardError("no timestamp column in the sample: the monitor needs each "
                           "prediction's time (a datetime column)")
    cands.sort(reverse=True)
    inside, _, share, col = cands[0]
    if not inside:
        lo, hi = day_bounds_utc(ds, tz)
        raise OnboardError(
            f"no timestamp column lies inside the day {ds} in {tz} ({lo:%Y-%m-%d %H:%M} to "
            f"{hi:%Y-%m-%d %H:%M} UTC): the best, {col!r}, has {share:.0%} of its values inside. "
            "Give the sample's day with --ds, or the model's timezone with --timezone")
    return Choice(col, f"a timestamp with {share:.0%} of its values inside {ds} ({tz})")


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _parses_as_time(s: pd.Series) -> bool:
    """Text holding ISO timestamps (a CSV's), checked on the first 50 values."""
    v = s.dropna().head(50)
    if v.empty or pd.api.types.infer_dtype(v, skipna=True) != "string":
        return False
    return bool(v.map(lambda x: bool(_ISO.match(x.strip()))).all())


def _choose_landing(sample: pd.DataFrame, ds: str, tz: str, exclude: set[str]) -> Choice:
    _, day_end = day_bounds_utc(ds, tz)
    for c in sample.columns:
        if c in exclude or not _LANDED.match(str(c)) or not _is_time(sample[c]):
            continue
        landed = _as_utc(sample[c]).max()
        if pd.isna(landed):
            continue
        late = (landed - day_end).total_seconds() / 3600
        if late < 0:
            continue
        deadline = 6.0 if late <= 4 else float(math.ceil(late * 1.5))
        return Choice({"kind": "column", "column": str(c), "deadline_hours": deadline},
                      f"{c!r} says when the day landed: {late:.1f} h after the day ended on the "
                      f"sample day; due {deadline:g} h after the day ends")
    return Choice({"kind": "none"},
                  "no landing time in the data: freshness says only whether the day arrived. "
                  "For a deadline use kind manifest (a JSON of landing times), marker (a file "
                  "per day) or column (a loaded_at column)")


def _choose_id(sample: pd.DataFrame, labels: pd.DataFrame | None, exclude: set[str]) -> Choice:
    cands = []
    n = len(sample)
    for c in sample.columns:
        if c in exclude:
            continue
        s = sample[c]
        if _is_time(s) or pd.api.types.is_float_dtype(s.dtype):
            continue
        if s.isna().any() or s.nunique() != n:
            continue
        overlap = 0.0
        if labels is not None and c in labels.columns:
            overlap = float(s.astype(str).isin(set(labels[c].astype(str))).mean())
        cands.append((overlap, bool(_ID.search(str(c))), _is_text(s), str(c)))
    if not cands:
        raise OnboardError("no id column in the sample: the monitor needs a column whose values "
                           "are unique in the day (it joins the labels on it)")
    cands.sort(reverse=True)
    overlap, named, _, col = cands[0]
    why = f"unique in all {_fmt_rows(n)} rows"
    if overlap:
        why += f"; {overlap:.0%} of them appear in the label files"
    elif named:
        why += "; named like an id"
    return Choice(col, why)


def _choose_version(sample: pd.DataFrame, exclude: set[str]) -> Choice | None:
    for c in sample.columns:
        if c in exclude or not _VERSION.search(str(c)):
            continue
        s = sample[c]
        if (_is_text(s) or pd.api.types.is_integer_dtype(s.dtype)) and 1 <= s.nunique() <= 3:
            vals = ", ".join(map(str, s.dropna().unique()[:3]))
            return Choice(str(c), f"named like a model version, {s.nunique()} value(s): {vals}")
    return None


def _choose_labels(labels: pd.DataFrame, arrivals: pd.Series | None, sample: pd.DataFrame,
                   id_col: str, source: str, ds: str) -> dict[str, Choice]:
    key = id_col if id_col in labels.columns else None
    if key is None:
        for c in labels.columns:
            if sample[id_col].astype(str).isin(set(labels[c].astype(str))).any():
                key = str(c)
                break
    if key is None:
        raise OnboardError(f"{source}: no column holds the sample's ids ({id_col!r}), so the "
                           "labels cannot be joined to the predictions")
    out = {"join_key": Choice(key, f"holds the predictions' {id_col}")}
    rest = [c for c in labels.columns if c != key]
    times = [c for c in rest if _is_time(labels[c])]
    values = [c for c in rest if c not in times]
    if len(values) != 1:
        raise OnboardError(f"{source}: expected one label column besides {key!r} and timestamps, "
                           f"found {', '.join(map(str, values)) or 'none'}")
    out["label_column"] = Choice(values[0], "the one value column of the label files")
    if times:
        out["timestamp_column"] = Choice(times[0], "when each label became known (the latest "
                                                   "wins among duplicates)")
    # the delay: arrival day of each label of the sample's predictions minus the sample's day
    if arrivals is not None:
        arrived = pd.to_datetime(pd.Series(arrivals).reset_index(drop=True))
        ours = labels[key].astype(str).isin(set(sample[id_col].astype(str))).to_numpy()
        if ours.any():
            delays = (arrived[ours] - pd.Timestamp(ds)).dt.days
            delay = int(delays.max())
            coverage = float(labels.loc[ours, key].astype(str).nunique() / len(sample))
            out["coverage"] = Choice(coverage, f"{coverage:.0%} of the sample's predictions have "
                                               "a label")
            max_delay = int(min(365, max(delay + 3, math.ceil(delay * 1.5))))
            out["max_delay_days"] = Choice(
                max_delay, f"the sample's labels arrived 0-{delay} days after it ({coverage:.0%} "
                           "of its predictions labelled); half as long again, at least 3 more")
    return out


def _choose_outputs(sample: pd.DataFrame, training: pd.DataFrame, task: str | None,
                    exclude: set[str], truth: str | None, labels: pd.DataFrame | None):
    free = [c for c in sample.columns if c not in exclude and c != truth]
    in_training = set(training.columns)

    def probs(c):
        s = sample[c]
        return (_is_number(s) and not _binary_values(s) and s.dropna().between(0, 1).all()
                and s.nunique() > 10)

    scores = sorted((c for c in free if probs(c)), key=lambda c: (not _SCORE.search(str(c)), str(c)))
    decisions = [c for c in free if _binary_values(sample[c])]
    numeric = [c for c in free if _is_number(sample[c]) and not _binary_values(sample[c])]
    reg = sorted((c for c in numeric if _REGRESSION.search(str(c)) and c not in scores),
                 key=str)
    if task is None:
        if scores and (_SCORE.search(str(scores[0])) or decisions):
            task_choice = Choice("binary_classification",
                                 f"{scores[0]!r} is a score in [0, 1]"
                                 + (f" and {decisions[0]!r} a 0/1 decision" if decisions else ""))
        elif reg:
            task_choice = Choice("regression", f"{reg[0]!r} is named like a predicted value")
        else:
            raise OnboardError("cannot tell the model's task from the sample (no score in [0, 1], "
                               "no column named like a prediction): pass --task")
    else:
        task_choice = Choice(task, "given with --task")
    t = task_choice.value
    out: dict[str, Choice] = {}
    if t == "binary_classification":
        if not scores:
            raise OnboardError("a binary model needs its score: no column of the sample holds "
                               "values in [0, 1]")
        s = scores[0]
        # the served decision follows the score: a 0/1 feature (is_premium) does not
        decisions = sorted((c for c in decisions if _agreement(sample[s], sample[c]) > 0.5),
                           key=lambda c: (-_agreement(sample[s], sample[c]), str(c)))
        out["score"] = Choice(s, "values in [0, 1], the model's probability of the positive class")
        if decisions:
            d = decisions[0]
            out["label"] = Choice(d, "0/1: the decision the model served; accuracy, precision, "
                                     "recall and f1 count it")
            out["threshold"] = _threshold(sample[s], sample[d])
        else:
            out["threshold"] = Choice(0.5, "no decision column: a score >= 0.5 counts as positive")
    elif t == "regression":
        cands = reg or [c for c in numeric if c not in scores]
        if not cands:
            raise OnboardError("a regression model needs its predicted value: no numeric column "
                               "named like one (pred, estimate, forecast, ...)")
        out["label"] = Choice(cands[0], "the predicted value")
    elif t == "ranking":
        n = len(sample)
        qs = [c for c in free if _QUERY.search(str(c)) and sample[c].nunique() < n]
        items = [c for c in free if _ITEM.search(str(c))]
        if not (qs and items and (scores or numeric)):
            raise OnboardError("a ranking model needs a query column (repeated, named like query "
                               "or session), an item column and a score")
        out["query_group"] = Choice(qs[0], f"{sample[qs[0]].nunique()} groups in the day")
        out["item"] = Choice(items[0], "the recommended item")
        sc = (scores or [c for c in numeric if c not in qs])[0]
        out["score"] = Choice(sc, "the ranking score")
    else:
        raise OnboardError(f"--task {t!r}: use binary_classification, regression or ranking")
    missing = [c.value for k, c in out.items() if k != "threshold" and c.value not in in_training]
    if missing:
        raise OnboardError(
            f"the training set lacks the model's output column(s) {', '.join(missing)}: the "
            "prediction monitors compare each day's outputs with the model's outputs on its "
            "training set, so score the training set and keep them as columns of the same names")
    return task_choice, out


def _agreement(score: pd.Series, decision: pd.Series) -> float:
    """Correlation of a 0/1 column with the score (a decision taken on the score is near 1)."""
    a = pd.to_numeric(score, errors="coerce")
    b = pd.to_numeric(decision, errors="coerce").astype(float)
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or b[ok].nunique() < 2:
        return 0.0
    r = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return 0.0 if math.isnan(r) else r


def _threshold(score: pd.Series, decision: pd.Series) -> Choice:
    s, d = pd.to_numeric(score, errors="coerce"), pd.to_numeric(decision, errors="coerce")
    ok = s.notna() & d.notna()
    s, d = s[ok], d[ok].astype(int)
    if (d == 1).any() and (d == 0).any():
        lo, hi = float(s[d == 0].max()), float(s[d == 1].min())
        if lo < hi:
            t = _round_between(lo, hi)
            return Choice(t, f"the decision is 1 exactly when the score is >= {t:g} (in the "
                             "sample); the estimate before labels uses it")
        return Choice(0.5, "the decision does not follow one threshold on the score (0 and 1 "
                           "overlap); metrics count the decision, the estimate before labels "
                           "uses 0.5")
    return Choice(0.5, "the sample's decisions are all the same value; the default 0.5")


def _round_between(lo: float, hi: float) -> float:
    for digits in range(1, 7):
        f = 10 ** digits
        t = math.ceil(lo * f + 1e-12) / f
        if lo < t <= hi:
            return round(t, digits)
    return round(hi, 6)


def _choose_features(sample: pd.DataFrame, training: pd.DataFrame, exclude: set):
    features, left_out = [], []
    n = len(sample)
    for c in sample.columns:
        if c in exclude:
            continue
        col = str(c)
        s = sample[c]
        if c not in training.columns:
            left_out.append((col, "not in the training set, so nothing to compare it with"))
            continue
        pii = bool(_PII.search(col))
        if _is_time(s):
            left_out.append((col, "a timestamp; not a model input the monitors compare"))
            continue
        distinct = s.nunique()
        if not _is_number(s) and distinct > max(50, 0.5 * n):
            left_out.append((col, f"{distinct} distinct values in {_fmt_rows(n)} rows: an "
                                  "identifier or free text, whose drift would be noise"
                                  + ("; looks like PII: if you add it, mark it pii: true"
                                     if pii else "")))
            continue
        few = int(training[c].nunique())
        # Evidently tests a column with few values (up to 5 in the reference) by chi-square while
        # the reference is under 1,000 rows (a model's first days, every small segment): a value
        # the reference lacks is then infinitely unlikely, so one rare value of a small day
        # "drifts". Jensen-Shannon, Evidently's own choice for larger references, weighs it by
        # its share instead. A numerical column with up to 10 values can show 5 in a small window.
        js = (not _is_number(s) and few > 2) or (_is_number(s) and few <= 10)
        method = "jensenshannon" if js else None
        js_why = ("; drift by Jensen-Shannon (chi-square, Evidently's choice for a reference under "
                  "1,000 rows, calls a value the reference lacks infinitely unlikely)") if js else ""
        if _is_number(s):
            why = f"numbers, {distinct} distinct values in the sample" + js_why
            features.append(FeatureChoice(col, "numerical", why, pii, _bounds(col, training[c]),
                                          method))
        else:
            vals = ", ".join(map(str, s.value_counts().index[:4]))
            why = f"{distinct} categories ({vals}{', ...' if distinct > 4 else ''})"
            features.append(FeatureChoice(col, "categorical", why + ("; PII by its name: values "
                                                                     "never shown" if pii else "")
                                          + js_why, pii, None, method))
    return features, left_out


def _bounds(name: str, training: pd.Series) -> tuple[float, float] | None:
    v = pd.to_numeric(training, errors="coerce").dropna()
    if v.empty:
        return None
    lo, hi = float(v.min()), float(v.max())
    if re.search(r"(^|_)hour(s)?($|_)", name) and lo >= 0 and hi <= 23:
        return (0, 23)
    if re.search(r"(pct|percent)", name) and lo >= 0 and hi <= 100:
        return (0, 100)
    if re.search(r"(rate|ratio|share|fraction|prob)", name) and lo >= 0 and hi <= 1:
        return (0, 1)
    return None


def _choose_segments(sample: pd.DataFrame, features: list[FeatureChoice], min_rows: int):
    chosen, rejected = [], []
    for f in features:
        if f.kind != "categorical":
            continue
        if f.pii:
            rejected.append((f.name, "PII: never a segment"))
            continue
        counts = sample[f.name].value_counts()
        k = len(counts)
        if not 2 <= k <= 12:
            rejected.append((f.name, f"{k} values; segments need 2-12"))
            continue
        big = counts[counts >= min_rows]
        rest = int(counts[counts < min_rows].sum())
        groups = len(big) + (1 if rest >= min_rows else 0)
        if groups < 2:
            rejected.append((f.name, f"only {len(big)} value(s) reach {min_rows} rows in the "
                                     "sample: nothing to compare it with"))
            continue
        sizes = ", ".join(f"{v} {int(n)}" for v, n in big.items())
        why = f"{k} values; {len(big)} reach {min_rows} rows in the sample ({sizes})"
        if rest:
            why += (f"; the rest ({rest} rows) " + ("pooled as (other)" if rest >= min_rows
                                                    else "skipped"))
        chosen.append(Choice(f.name, why))
    chosen = chosen[:3]
    return chosen, rejected


# ----- the model on its training set, and SLOs -----------------------------------------------------


def reference_metrics(training: pd.DataFrame, p: Proposal, truth: str | None) -> dict:
    """The model's quality on its own training set (needs the truth there): the reference the
    quality SLO is set against. {} when the training set has no truth column."""
    if not truth or truth not in training.columns:
        return {}
    from watchkeeper import performance as perf

    rows = training.drop(columns=["label"]) if truth != "label" and "label" in training else training
    rows = rows.rename(columns={truth: "label"})
    t = p.task.value
    try:
        rep = perf.evaluate(rows, task=t, label_col="label",
                            score_col=p.prediction.get("score", Choice(None, "")).value,
                            prediction_col=p.prediction.get("label", Choice(None, "")).value,
                            threshold=float(p.prediction.get("threshold", Choice(0.5, "")).value),
                            query_col=p.prediction.get("query_group", Choice(None, "")).value)
    except perf.MetricInputError as err:
        return {"error": str(err)}
    values = {k: v for k, v in rep.overall.values.items() if v is not None}
    out = {"metrics": values, "n": rep.overall.n, "truth": truth}
    if t == "binary_classification":
        out["positive_rate"] = values.get("positive_rate")
        out["predicted_positive_rate"] = values.get("predicted_positive_rate")
    if t == "regression":
        pred = p.prediction["label"].value
        err = (rows[pred] - rows["label"]).abs().dropna()
        out["abs_error_sd"] = float(err.std(ddof=1)) if len(err) > 1 else 0.0
    return out


# A page needs the 3-day and 1-day burn rates both >= 2.8 and, for a timeslice, two bad days in
# those three (README "SLOs, error budgets and the gate"; watchkeeper.budgets).
PAGE_BURN = 2.8
PAGE_CHANCE = 1e-3  # the chance a healthy day pages that a proposed objective may have
SPENT_CHANCE = 0.05  # the chance healthy days spend a whole window's budget
WINDOW_DAYS = 28
OBJECTIVES = (0.99, 0.98, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
QUALITY_BAD_DAY = 0.01  # a healthy mature day misses the quality threshold this often


def _page_chance(p_bad: float, objective: float) -> float:
    """P(a healthy day pages) for a daily timeslice SLO whose days are bad independently with
    probability p_bad: the day is bad and enough of the last three are (the 3-day burn, at least
    two for a timeslice)."""
    from scipy.stats import binom

    need = max(2, math.ceil(3 * PAGE_BURN * (1 - objective) - 1e-9))
    if need > 3:
        return 0.0
    return float(p_bad * binom.sf(need - 2, 2, p_bad))


def _spent_chance(p_bad: float, objective: float, window: int = WINDOW_DAYS) -> float:
    """P(healthy days spend the whole budget of a window): bad days >= (1 - O) x window."""
    from scipy.stats import binom

    allowed = (1 - objective) * window
    return float(binom.sf(math.ceil(allowed - 1e-9) - 1, window, p_bad))


def _objective_for(p_bad: float) -> tuple[float, float]:
    """The strictest objective whose healthy days page at most PAGE_CHANCE of the time and
    spend a 28-day budget with probability at most SPENT_CHANCE. Returns (objective, its page
    chance)."""
    for o in OBJECTIVES:
        chance = _page_chance(p_bad, o)
        if chance <= PAGE_CHANCE and _spent_chance(p_bad, o) <= SPENT_CHANCE:
            return o, chance
    return OBJECTIVES[-1], _page_chance(p_bad, OBJECTIVES[-1])


def propose_slos(training: pd.DataFrame, task: str, rows_per_day: int, *,
                 proposal: Proposal | None = None, drift_false_alarm_rate: float | None = None,
                 prediction_false_alarm_rate: float | None = None,
                 data_quality_false_failure: float = 0.005) -> list[dict]:
    """SLOs for a new model, each with its reasoning (`why`, written as a YAML comment).

    The SLO part of `watchkeeper init`, kept behind this one function so it can be pointed at
    `watchkeeper.slo_suggest` (issue 11's suggest-slo) once that lands. The reasoning, stated:

    - monitor SLIs: a healthy day is bad with the monitors' own false-alarm rates (drift and skew
      `drift_false_alarm_rate` each, the prediction monitors `prediction_false_alarm_rate`); the
      objective is the strictest of 0.99 ... 0.7 whose healthy days page less than once in
      1,000 days (two bad days in three at 0.9, three in a row at 0.75) and spend a 28-day
      budget less than 5% of the time (allowed bad days = (1 - objective) x 28). data_quality is a ratio of check results: the suites are sized so a healthy
      day fails some check with probability `data_quality_false_failure`, one check of many, so
      0.95 never pages on healthy data;
    - the model-quality SLO: the model's metric on its training set (the reference), the day's
      spread from the binomial at the batch size (precision: over the predicted positives of a
      day; recall: over its positives; accuracy: over its rows; mae: sd of |error| / sqrt(rows)),
      and a threshold that a healthy mature day misses 1% of the time (z = 2.33), objective as
      above.
    """
    from scipy.stats import norm

    from watchkeeper.spec import DriftSpec, PredictionMonitorSpec

    # the rates the proposed spec will run with: its (default) drift and predictions sections
    if drift_false_alarm_rate is None:
        drift_false_alarm_rate = DriftSpec().daily_false_alarm_rate
    if prediction_false_alarm_rate is None:
        prediction_false_alarm_rate = PredictionMonitorSpec().daily_false_alarm_rate
    out = []
    out.append({"name": "data-quality", "sli": "data_quality", "kind": "ratio",
                "objective": 0.95, "gates": ["model", "features"],
                "why": (f"expectation results passing, both stages; the suites fail a healthy "
                        f"day with probability about {data_quality_false_failure:.1g} (one check "
                        "of many), so 0.95 pages only when 14% of results fail for 3 days")})
    fresh_bad = 0.002
    o, chance = _objective_for(fresh_bad)
    o = min(o, 0.9)  # a day's partition can be late for reasons no model controls
    out.append({"name": "freshness", "sli": "freshness", "kind": "timeslice", "objective": o,
                "gates": ["model", "features"],
                "why": "a day is good when its partition arrived (landed by the deadline); 0.9 "
                       "allows 2.8 late days in 28"})
    o, chance = _objective_for(prediction_false_alarm_rate)
    out.append({"name": "prediction-stability", "sli": "prediction_stability",
                "kind": "timeslice", "objective": o, "gates": ["model"],
                "why": (f"the prediction monitors alert on {prediction_false_alarm_rate:.0%} of "
                        f"healthy days together; {o:g} is the strictest objective whose healthy "
                        f"days page with probability {chance:.1g} a day and spend the 28-day "
                        f"budget {_spent_chance(prediction_false_alarm_rate, o):.1%} of the time")})
    p_drift = 1 - (1 - drift_false_alarm_rate) ** 2
    o, chance = _objective_for(p_drift)
    out.append({"name": "feature-drift", "sli": "feature_drift", "kind": "timeslice",
                "objective": o, "gates": ["model"],
                "why": (f"drift and skew each alert on up to {drift_false_alarm_rate:.0%} of "
                        f"healthy days, so up to {p_drift:.1%} of healthy days are bad; {o:g} is "
                        f"the strictest objective whose healthy days page with probability "
                        f"{chance:.1g} a day and spend the budget {_spent_chance(p_drift, o):.1%} "
                        f"of the time (at 0.9: {_page_chance(p_drift, 0.9):.1%} a day and "
                        f"{_spent_chance(p_drift, 0.9):.0%})")})
    ref = (proposal.reference if proposal else {}) or {}
    if proposal is None or proposal.labels is None:
        return out
    metrics = ref.get("metrics") or {}
    if not metrics:
        proposal.notes.append("no model-quality SLO: the training set has no truth column "
                              f"({proposal.labels['label_column'].value!r}) to measure the "
                              "model's reference quality on; add one by hand")
        return out
    coverage = float(proposal.labels.get("coverage", Choice(0.9, "")).value or 0.9)
    n_lab = max(1.0, rows_per_day * min(coverage, 1.0))
    z = float(norm.isf(QUALITY_BAD_DAY))
    metric = threshold = None
    if task == "binary_classification":
        pos = (ref.get("positive_rate") or 0) * n_lab
        flagged = (ref.get("predicted_positive_rate") or 0) * n_lab
        for name, n_eff, what in (("precision", flagged, "predicted positives"),
                                  ("recall", pos, "positives"),
                                  ("accuracy", n_lab, "labelled rows")):
            if n_eff >= 20 and metrics.get(name) is not None:
                v = float(metrics[name])
                sd = math.sqrt(max(v * (1 - v), 1e-6) / n_eff)
                metric, direction = name, "at_least"
                threshold = max(0.0, v - z * sd)
                spread = (f"{name} {v:.3f} on training; a day has about {n_eff:.0f} {what} "
                          f"({rows_per_day} rows x {coverage:.0%} labelled), binomial sd "
                          f"{sd:.3f}")
                break
    elif task == "regression" and metrics.get("mae") is not None:
        v, sd_e = float(metrics["mae"]), float(ref.get("abs_error_sd") or 0.0)
        sd = sd_e / math.sqrt(n_lab)
        metric, direction, threshold = "mae", "at_most", v + z * sd
        spread = (f"mae {v:.3g} on training; a day's mean of {n_lab:.0f} absolute errors "
                  f"(sd {sd_e:.3g}) has sd {sd:.3g}")
    if metric is None:
        proposal.notes.append(f"no model-quality SLO proposed for {task}: no metric with enough "
                              "labelled rows a day to judge one day; add one by hand")
        return out
    o, chance = _objective_for(QUALITY_BAD_DAY)
    out.append({"name": "model-quality", "sli": metric, "kind": "timeslice", "objective": o,
                "threshold": float(f"{threshold:.4g}"), "direction": direction,
                "quality": True, "gates": ["model"],
                "why": (f"{spread}; the threshold is {z:.2f} sd {'below' if direction == 'at_least' else 'above'} "
                        f"the reference, missed by {QUALITY_BAD_DAY:.0%} of healthy mature days")})
    assert metric in slis.QUALITY_METRICS[task]
    return out


# ----- the suites --------------------------------------------------------------------------------


def _type_list(s: pd.Series) -> tuple[list[str], str]:
    if _is_time(s):
        unit = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
        tz = getattr(s.dt, "tz", None)
        if tz is not None:
            unit = [f"datetime64[{u}, {tz}]" for u in ("ns", "us", "ms", "s")]
        return unit, "timestamps"
    if pd.api.types.is_bool_dtype(s.dtype):
        return ["bool", "boolean", "BooleanDtype"], "booleans"
    if pd.api.types.is_integer_dtype(s.dtype):
        # a day with a missing value turns an integer column into floats
        return ["int64", "int32", "Int64Dtype", "float64"], "integers (float64 too: a missing value makes integers floats)"
    if pd.api.types.is_float_dtype(s.dtype):
        return ["float64", "float32"], "numbers"
    return ["str", "StringDtype"], "text"


def ingestion_suite(p: Proposal, sample: pd.DataFrame, training: pd.DataFrame,
                    false_failure_rate: float = 1e-4, raw: pd.DataFrame | None = None) -> dict:
    """The ingestion suite for days like the sample: schema, types, row count against the
    trailing median, id uniqueness, timestamps inside the day, null rates. Every expectation's
    notes say why, and how often a healthy day of the sample's size would fail it.

    `raw`: the sample as the source hands it over, when text timestamps (CSV, SQLite) were parsed
    for the inference: the source edge parses only `columns.timestamp`, so the other columns'
    types are checked as they arrive."""
    from watchkeeper.quality import _binomial_allowance, _mostly, _upper_rate

    n = p.rows
    exps: list[dict] = []

    def add(etype, eid, note, rate, **kwargs):
        exps.append({"type": etype, "kwargs": kwargs,
                     "meta": {"id": eid, "notes": note,
                              "false_failure_rate": float(f"{rate:.3g}")}})

    cols = p.columns
    add("expect_table_columns_to_match_set", "schema.columns",
        "Every column the model and the monitors read must be there; extra columns are fine. "
        "False-failure rate 0 (a missing column is never healthy).", 0.0,
        column_set=cols, exact_match=False)
    sd = math.sqrt(n)
    add("expect_table_row_count_to_be_between", "volume.min_rows",
        f"At least half the trailing 7-day median row count ($min_rows; 1 with no history). A "
        f"healthy day of about {n} rows (Poisson sd {sd:.0f}) never halves; false-failure "
        "rate below 1e-9.", 0.0, min_value={"$PARAMETER": "min_rows"})
    idc, tsc = p.id.value, p.timestamp.value
    add("expect_column_values_to_not_be_null", f"{idc}.not_null",
        "Ids are never null (the labels join on them). Strict.", 0.0, column=idc)
    add("expect_column_values_to_be_unique", f"{idc}.unique",
        "One row per id: duplicates double-count predictions and break the label join. Strict.",
        0.0, column=idc)
    add("expect_column_values_to_not_be_null", f"{tsc}.not_null",
        "Every prediction has its time. Strict.", 0.0, column=tsc)
    add("expect_column_values_to_be_between", f"{tsc}.in_day",
        f"Every prediction lies inside the logical day [$day_start, $day_end) in "
        f"{p.timezone.value} (Timestamps passed at run time). Strict.", 0.0,
        column=tsc, min_value={"$PARAMETER": "day_start"}, max_value={"$PARAMETER": "day_end"},
        strict_max=True)
    if p.model_version:
        add("expect_column_values_to_not_be_null", f"{p.model_version.value}.not_null",
            "Every prediction says which model version made it. Strict.", 0.0,
            column=p.model_version.value)
    outputs = [c.value for k, c in p.prediction.items() if k != "threshold" and c.value]
    for c in outputs:
        add("expect_column_values_to_not_be_null", f"{c}.not_null",
            "The model scores every row. Strict.", 0.0, column=c)
    score = p.prediction.get("score")
    if p.task.value == "binary_classification" and score:
        add("expect_column_values_to_be_between", f"{score.value}.probability",
            "A binary model's score is a probability in [0, 1] (the estimate before labels "
            "needs it). Strict.", 0.0, column=score.value, min_value=0, max_value=1)
        label = p.prediction.get("label")
        if label:
            add("expect_column_values_to_be_in_set", f"{label.value}.decision",
                "The served decision is 0 or 1. Strict.", 0.0, column=label.value,
                value_set=[0, 1])
    for c in cols:
        if c in sample.columns:
            arrives = sample if raw is None or c == p.timestamp.value else raw
            types, what = _type_list(arrives[c])
            add("expect_column_values_to_be_in_type_list", f"{c}.type",
                f"{c} holds {what}, as in the sample. Strict.", 0.0, column=c, type_list=types)
    for f in p.features:
        col = training[f.name] if f.name in training.columns else sample[f.name]
        nulls = int(col.isna().sum()) + int(sample[f.name].isna().sum())
        share, tail = _binomial_allowance(n, _upper_rate(nulls, len(col) + len(sample)),
                                          false_failure_rate, 0.05)
        add("expect_column_values_to_not_be_null", f"{f.name}.mostly_not_null",
            f"Features are mostly present: at most {1 - _mostly(share):.0%} missing (training "
            f"and sample null rate {nulls / (len(col) + len(sample)):.2%}); the features suite "
            f"holds the tight rate. False-failure rate {tail:.2g} a day at {n} rows (binomial).",
            tail, column=f.name, mostly=_mostly(share))
    total = sum(e["meta"]["false_failure_rate"] for e in exps)
    return {
        "name": f"{p.model}.ingestion",
        "expectations": exps,
        "meta": {
            "generated_by": "watchkeeper init",
            "rows_per_day": n,
            "false_failure_rate_per_day": total,
            "notes": [
                f"Ingestion checks for {p.model}: schema, volume, ids, timestamps, types and null "
                f"rates, from the sample day {p.ds} ({n} rows); review before use.",
                "Run-time parameters: min_rows, day_start, day_end (see "
                "watchkeeper.monitor.stage_parameters).",
            ],
        },
    }


def features_suite(p: Proposal, training: pd.DataFrame) -> dict:
    """The features suite: suggest-suite's, sized to the sample's batch."""
    from watchkeeper import quality

    feats = [quality.FeatureInfo(f.name, f.kind, f.bounds, f.pii) for f in p.features]
    return quality.suggest_features_suite(training, feats, name=f"{p.model}.features",
                                          daily_rows=p.rows)


# ----- the spec, as commented YAML ---------------------------------------------------------------


def _y(value) -> str:
    """A YAML scalar (flow style) for plain values."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000,
                          sort_keys=False).strip().removesuffix("...").strip()


def _comment(text: str, indent: int = 0, width: int = 98) -> list[str]:
    import textwrap

    pad = " " * indent + "# "
    return textwrap.wrap(text, width=width - len(pad), initial_indent=pad, subsequent_indent=pad) or [pad.rstrip()]


def render_spec(p: Proposal, *, source: dict, training_path: str,
                labels_path: str | None, suites: dict[str, str]) -> str:
    """The spec as YAML with a comment on every inferred choice."""
    L: list[str] = []
    add = L.append
    L += _comment(f"Proposed by `watchkeeper init` from the day {p.ds} ({p.rows} rows) and the "
                  "training set. Every choice says why; review it, then run `watchkeeper "
                  "check-config`. Field reference: README 'Spec reference'.")
    add(f"name: {p.model}")
    L += _comment(p.task.reason)
    add(f"task: {p.task.value}")
    L += _comment(p.timezone.reason)
    add(f"timezone: {_y(p.timezone.value)}")
    add("retries: 2")
    add("")
    if source["kind"] == "file":
        L += _comment("Where a day's predictions come from: one file per day, {ds} is the day.")
    else:
        L += _comment("Where a day's predictions come from: the rows of a table whose date "
                      "column is the day (bound, never pasted into SQL).")
    add("source:")
    for k, v in source.items():
        add(f"  {k}: {_y(v)}")
    add("")
    L += _comment(p.landing.reason)
    add(f"landing: {_y(p.landing.value)}")
    add("")
    add("columns:")
    L += _comment(p.id.reason, 2)
    add(f"  id: {_y(p.id.value)}")
    L += _comment(p.timestamp.reason, 2)
    add(f"  timestamp: {_y(p.timestamp.value)}")
    if p.model_version:
        L += _comment(p.model_version.reason, 2)
        add(f"  model_version: {_y(p.model_version.value)}")
    add("")
    add("features:")
    for f in p.features:
        item = {"name": f.name, "kind": f.kind}
        if f.bounds:
            item["bounds"] = list(f.bounds)
        if f.pii:
            item["pii"] = True
        if f.drift_method:
            item["drift_method"] = f.drift_method
        L += _comment(f"{f.name}: {f.reason}", 2)
        add(f"  - {_y(item)}")
    for col, why in p.left_out:
        add(f"  # left out: {col}: {why}")
    add("")
    add("prediction:")
    for key in ("score", "label", "threshold", "query_group", "item"):
        c = p.prediction.get(key)
        if c is None or c.value is None:
            continue
        L += _comment(c.reason, 2)
        add(f"  {key}: {_y(c.value)}")
    add("")
    if p.segments:
        L += _comment("Segments: drift and skew are also measured per value of these columns.")
        for c in p.segments:
            L += _comment(f"{c.value}: {c.reason}")
        add(f"segments: {_y([c.value for c in p.segments])}")
    else:
        add("segments: []")
    for col, why in p.not_segments:
        L += _comment(f"not a segment: {col}: {why}")
    add("drift:")
    L += _comment(p.min_segment_rows.reason, 2)
    add(f"  min_segment_rows: {p.min_segment_rows.value}")
    add("")
    add("reference:")
    L += _comment("The training set: skew and the prediction monitors compare each day with it.", 2)
    add(f"  training: {_y(training_path)}")
    if p.labels is not None and labels_path:
        add("")
        add("labels:")
        add("  source:")
        add("    kind: file")
        add(f"    path: {_y(labels_path)}")
        for key in ("join_key", "label_column", "timestamp_column", "max_delay_days"):
            c = p.labels.get(key)
            if c is not None:
                L += _comment(c.reason, 2)
                add(f"  {key}: {_y(c.value)}")
    add("")
    add("suites:")
    for stage in ("ingestion", "features"):
        add(f"  {stage}: {_y(suites[stage])}")
    add("")
    L += _comment(f"SLOs, proposed for a day of {p.rows} rows (watchkeeper.onboard.propose_slos "
                  "says how).")
    add("slos:")
    for s in p.slos:
        L += _comment(s["why"], 2)
        item = {k: v for k, v in s.items() if k != "why"}
        add(f"  - {_y(item)}")
    for n in p.notes:
        L += _comment(f"note: {n}")
    add("")
    L += _comment("Alerts go to the console and WATCHKEEPER_HOME/alerts/outbox.jsonl until you "
                  "route them, e.g. routes: [{severity: page, channel: '#oncall'}] with "
                  "slack_conn_id.")
    add("alerts: {routes: []}")
    return "\n".join(L) + "\n"
