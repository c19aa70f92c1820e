"""A model's per-day results as plain data: the shape `watchkeeper history --json` prints.

Keys are a contract: later stages add keys to the same day objects, never rename these.
"""

from __future__ import annotations

from collections import defaultdict

STAGES = ("ingestion", "features")


def _day_skeleton(ds: str) -> dict:
    return {"ds": ds, "stages": {}, "slis": {}}


def build_days(model: str, store, days: list[str] | None = None) -> list[dict]:
    wanted = set(days) if days is not None else None
    out: dict[str, dict] = {}

    def day(ds: str) -> dict | None:
        if wanted is not None and ds not in wanted:
            return None
        if ds not in out:
            out[ds] = _day_skeleton(ds)
        return out[ds]

    for p in store.partitions(model):
        d = day(p.ds)
        if d is not None:
            # issue 14: the completeness judgment (null: no rows to judge); see README
            d["partial"] = p.partial
    failed_by = defaultdict(list)
    for e in store.expectation_results(model):
        if not e.success and (wanted is None or e.ds in wanted):
            failed_by[(e.ds, e.stage)].append(
                {"expectation": e.expectation_type, "column": e.column, "observed": e.observed}
            )
    for s in store.stage_results(model):
        d = day(s.ds)
        if d is None:
            continue
        entry = {
            "success": bool(s.success),
            "failed": failed_by.get((s.ds, s.stage), []),
            "evaluated": s.evaluated,
            "passed": s.passed,
        }
        if s.error:
            entry["not_run" if s.error.startswith("not run") else "error"] = s.error
        d["stages"][s.stage] = entry
    for v in store.slis(model):
        d = day(v.ds)
        if d is None:
            continue
        d["slis"][v.sli] = {"value": v.value, "good": v.good}
        if v.provisional:
            d["slis"][v.sli]["provisional"] = True
    _add_drift(model, store, day)
    _add_predictions(model, store, day)
    _add_quality(model, store, day, out)
    return [out[k] for k in sorted(out)]


DATASET = "__dataset__"


def _add_drift(model: str, store, day) -> None:
    for family in ("drift", "skew"):
        by_day: dict[str, dict] = {}
        for m in store.metrics(model, family):
            entry = by_day.setdefault(m.ds, {"share": None, "dataset_drift": False, "features": []})
            p = m.payload
            if m.subject == DATASET:
                entry["share"] = p.get("share")
                entry["dataset_drift"] = bool(p.get("dataset_drift"))
                for k in ("reference_empty", "not_run", "report", "reference_days", "problems",
                          "any_drift"):
                    if p.get(k):
                        entry[k] = p[k]
            else:
                entry["features"].append({
                    "feature": p.get("feature"), "method": p.get("method"), "score": p.get("score"),
                    "threshold": p.get("threshold"), "drifted": bool(p.get("drifted")),
                    "evidently_drifted": bool(p.get("evidently_drifted")),
                    "segment": p.get("segment") or None,
                    "p_value": p.get("p_value"), "calibrated_threshold": p.get("calibrated_threshold"),
                })
        for ds, entry in by_day.items():
            d = day(ds)
            if d is not None:
                d[family] = entry


def _add_predictions(model: str, store, day) -> None:
    preds: dict[str, list] = {}
    for m in store.metrics(model, "prediction"):
        if m.subject != DATASET:
            p = m.payload
            preds.setdefault(m.ds, []).append({
                "monitor": p.get("name", m.subject), "value": p.get("value"),
                "baseline": p.get("baseline"), "lower": p.get("lower"), "upper": p.get("upper"),
                "alert": bool(p.get("alert")), "message": p.get("message")})
    for ds, entries in preds.items():
        d = day(ds)
        if d is not None:
            d["predictions"] = entries
    for m in store.metrics(model, "coverage"):
        d = day(m.ds)
        if d is not None and m.subject == DATASET:
            p = m.payload
            d["coverage"] = {
                "alert": bool(p.get("alert")),
                "unseen_pairs": [u for u in p.get("unseen_pairs", []) if u.get("alert")][:20],
                "multivariate": p.get("multivariate"),
                "problems": p.get("problems", []),
            }


def _add_quality(model: str, store, day, out) -> None:
    quality = {m.ds: m.payload for m in store.metrics(model, "quality")}
    for ds in list(out):
        p = quality.get(ds)
        out[ds]["quality"] = {
            "metrics": (p or {}).get("metrics", {}),
            "provisional": True if p is None else bool(p.get("provisional")),
            "coverage": 0.0 if p is None else p.get("coverage"),
            "lag_days_p50": None if p is None else p.get("lag_days_p50"),
            "estimated": None if p is None else p.get("estimated"),
            "concept_drift": False if p is None else bool(p.get("concept_drift")),
            "segments": {} if p is None else p.get("segments", {}),
            "label_issues": {} if p is None else p.get("label_issues", {}),
        }


def build(spec, store) -> list[dict]:
    return build_days(spec.name, store)


def as_table(spec, days: list[dict]) -> str:
    lines = [f"{spec.name}: {len(days)} day(s)",
             f"{'ds':<10}  {'ingestion':<22} {'features':<22} {'data_quality':>12} {'fresh':>6}"
             f"  {'rows':<16}"]
    for d in days:
        cells = []
        for st in STAGES:
            r = d["stages"].get(st)
            if r is None:
                cells.append("-")
            elif r.get("not_run") or r.get("error"):
                cells.append("not run" if r.get("not_run") else "CONFIG ERROR")
            elif r["success"]:
                cells.append(f"ok {r['passed']}/{r['evaluated']}")
            else:
                cols = sorted({f["column"] or "table" for f in r["failed"]})
                cells.append(f"FAIL {','.join(cols)}"[:22])
        dq = d["slis"].get("data_quality", {}).get("value")
        fr = d["slis"].get("freshness", {}).get("good")
        lines.append(
            f"{d['ds']:<10}  {cells[0]:<22} {cells[1]:<22} "
            f"{'-' if dq is None else f'{dq:.3f}':>12} "
            f"{'-' if fr is None else ('ok' if fr else 'LATE'):>6}  {_rows_cell(d.get('partial'))}"
        )
    partial = [d for d in days if (d.get("partial") or {}).get("partial") is True]
    for d in partial:
        lines.append(f"{d['ds']}: {d['partial']['reason']}")
    return "\n".join(lines)


def _rows_cell(p: dict | None) -> str:
    """Rows against the expected rows and the completeness verdict: '42/165 PARTIAL',
    '2000/1990', '42 not judged'; '-' for a day without rows to judge."""
    if not p:
        return "-"
    if p.get("partial") is None:
        return f"{p['rows']} not judged"
    cell = f"{p['rows']}/{p['expected']:.0f}"
    return cell + " PARTIAL" if p["partial"] else cell
