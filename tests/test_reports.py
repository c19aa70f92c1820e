"""The reviewers' site (watchkeeper.reports) and the triage checklist (watchkeeper.triage).

Pure triage rules on synthetic data with known answers; the demo's acceptance days (29 sudden,
25 gradual) on the small demo world; the site built from real monitor runs (escaping, offline,
incremental, retention, triage on a paging day); the CLI commands; the authenticated static
route. The browser walk of the whole site is tests/test_browser.py.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from watchkeeper import triage as tri

XSS = "<script>alert(1)</script>"


# --------------------------------------------------------------------------------------------
# Pure triage
# --------------------------------------------------------------------------------------------


def _days(n: int, end: str = "2026-03-31") -> list[str]:
    last = date.fromisoformat(end)
    return [(last - timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def test_distance_is_zero_for_the_same_data_and_one_for_a_shift_of_one_sd():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(10, 2, 20000))
    same = tri.distance(tri.profile(x, "numerical"), tri.profile(x, "numerical"))
    shifted = tri.distance(tri.profile(x + 2, "numerical"), tri.profile(x, "numerical"))
    assert same == 0 and shifted == pytest.approx(1.0, abs=0.02)
    a = pd.Series(["a"] * 70 + ["b"] * 30)
    b = pd.Series(["a"] * 50 + ["b"] * 30 + ["new"] * 20)
    assert tri.distance(tri.profile(b, "categorical"), tri.profile(a, "categorical")) == \
        pytest.approx(0.2)
    # 30% nulls move a feature by 0.3 even when the remaining values did not change
    nulls = x.copy()
    nulls[: 6000] = np.nan
    assert tri.distance(tri.profile(nulls, "numerical"), tri.profile(x, "numerical")) == \
        pytest.approx(0.3, abs=0.02)
    # text in a numerical column is not a number: it counts as null, not as a crash
    text = pd.Series(["1.5", "oops", None, "2.5"], dtype=object)
    assert tri.profile(text, "numerical").null_share == pytest.approx(0.5)
    assert tri.distance(tri.profile(pd.Series([], dtype=float), "numerical"),
                        tri.profile(x, "numerical")) is None


def test_onset_rules_sudden_gradual_resolved_quiet_and_unknown():
    days = _days(30)
    rng = np.random.default_rng(1)
    base = {d: 0.02 + 0.005 * rng.standard_normal() for d in days}
    ramp = {d: v + (0.015 * max(0, i - 14)) for i, (d, v) in enumerate(base.items())}
    # a slow drift from day 15, then a jump on the last day: sudden (the jump is today's cause)
    jump = dict(ramp, **{days[-1]: 3.0})
    r = tri.onset_of_series("x", jump, days[-1])
    assert (r.verdict, r.onset_ds) == ("sudden", days[-1])
    # the same drift without the jump: gradual, dated near where it started
    r = tri.onset_of_series("x", ramp, days[-1])
    assert r.verdict == "gradual"
    assert days[15] <= r.onset_ds <= days[20], r
    # a one-day spike that is over is not the onset of today's elevation
    spike = dict(ramp, **{days[-4]: 3.0})
    r = tri.onset_of_series("x", spike, days[-1])
    assert r.verdict == "gradual" and r.onset_ds < days[-4]
    assert tri.onset_of_series("x", base, days[-1]).verdict == "quiet"
    assert tri.onset_of_series("x", {days[0]: 1.0, days[1]: 5.0}, days[1]).verdict == "unknown"
    assert tri.onset_of_series("x", base, "2030-01-01").verdict == "unknown"


def _frame(rng, n: int, *, cents_in: str | None = None, null_share: float = 0.0) -> pd.DataFrame:
    country = rng.choice(["US", "DE", "FR"], size=n, p=[0.5, 0.3, 0.2]).astype(object)
    amount = np.exp(rng.normal(3.5, 0.6, n))
    if cents_in:
        amount = np.where(country == cents_in, amount * 100, amount)
    age = rng.gamma(2.0, 100.0, n)
    age[rng.random(n) < null_share] = np.nan
    score = 1 / (1 + np.exp(-(np.log(amount) - 6)))
    return pd.DataFrame({"amount": amount, "device_age": age, "country": country,
                         "score": score, "model_version": "v1"})


def _inputs(ds: str, current, recent, reference, history, **kw) -> tri.TriageInputs:
    cfg = tri.TriageConfig(model="m", ds=ds, features=(("amount", "numerical"),
                                                       ("device_age", "numerical"),
                                                       ("country", "categorical")),
                           segments=("country",), score_column="score",
                           model_version_column="model_version")
    return tri.TriageInputs(config=cfg, current=current, recent=recent, reference=reference,
                            history=history, **kw)


def test_triage_finds_the_broken_feature_and_the_segment_that_carries_it():
    rng = np.random.default_rng(2)
    days = _days(20)
    ds = days[-1]
    cfg_kinds = {"amount": "numerical", "device_age": "numerical", "country": "categorical"}
    reference = _frame(rng, 5000)
    ref_profiles = {n: c.profile()
                    for n, c in tri.prepare(reference, {**cfg_kinds, "score": "numerical"}).items()}
    frames = {d: _frame(rng, 3000) for d in days[:-1]}
    frames[ds] = _frame(rng, 3000, cents_in="DE", null_share=0.3)
    cfg = tri.TriageConfig(model="m", ds=ds, features=tuple(cfg_kinds.items()), score_column="score",
                           model_version_column="model_version")
    history = [tri.summarize_day(d, f, cfg, ref_profiles) for d, f in frames.items()]
    runs = [{"ds": d, "dag_id": "m_monitor", "task_id": "load", "state": "success",
             "try_number": 1, "duration_seconds": 10.0} for d in days[:-1]]
    runs.append({"ds": ds, "dag_id": "m_monitor", "task_id": "load", "state": "success",
                 "try_number": 2, "duration_seconds": 95.0})
    inputs = _inputs(ds, frames[ds], [frames[d] for d in days[-8:-1]], reference, history,
                     sli={"data_quality": {d: (1.0 if d != ds else 0.8) for d in days}},
                     deployments=[{"ds": days[3], "subject": "v1", "payload": {"version": "v1"}}],
                     runs=runs, partitions=[{"ds": ds, "status": "ok", "rows": 3000}],
                     week_ago=frames[days[-8]], four_weeks_ago=None)
    result = tri.triage(inputs)
    out = result.to_json()
    assert list(out)[:9] == ["model", "ds", "onset", "onset_ds", "nearest_deployment",
                             "predictions", "features", "segments", "infrastructure"]
    assert (out["onset"], out["onset_ds"]) == ("sudden", ds)
    assert [f["feature"] for f in out["features"]][:2] == ["amount", "device_age"]
    assert out["features"][1]["null_share"] == pytest.approx(0.3, abs=0.03)
    assert out["segments"][0]["segment"] == {"country": "DE"}
    assert out["segments"][0]["feature"] == "amount" and out["segments"][0]["impact"] > 10
    # segments that merely share the batch with DE carry no blame
    assert all(s["impact"] < 1 for s in out["segments"][1:])
    # the deployment was 16 days earlier: named, but not the cause
    assert out["nearest_deployment"]["version"] == "v1" and out["after_deployment"] is False
    assert out["predictions"]["one_week_before"]["available"] is True
    assert out["predictions"]["four_weeks_before"]["available"] is False
    assert out["predictions"]["verdict"] == "moved"
    infra = out["infrastructure"]
    assert not infra["healthy"]
    assert any("2 tries" in p for p in infra["problems"]) and any("9.5x" in p for p in infra["problems"])
    json.dumps(out)  # plain JSON all the way down


def test_triage_says_after_a_deployment_and_reads_a_version_change_as_one():
    rng = np.random.default_rng(3)
    days = _days(12)
    frames = {d: _frame(rng, 1000) for d in days}
    frames[days[-1]]["model_version"] = "v2"
    frames[days[-1]]["amount"] *= 5  # the new version came with a broken feature pipeline
    cfg = tri.TriageConfig(model="m", ds=days[-1], features=(("amount", "numerical"),),
                           model_version_column="model_version")
    ref = {"amount": tri.profile(frames[days[0]]["amount"], "numerical")}
    history = [tri.summarize_day(d, f, cfg, ref) for d, f in frames.items()]
    r = tri.triage(tri.TriageInputs(config=cfg, current=frames[days[-1]],
                                    recent=[frames[d] for d in days[-8:-1]], history=history))
    assert r.after_deployment is True
    assert r.nearest_deployment["source"] == "model_version column"
    assert r.nearest_deployment["version"] == "v2" and r.nearest_deployment["days_before_onset"] == 0
    assert r.infrastructure["model_version_changed"] is True
    assert "after deploying v2" in r.onset.text


def test_triage_refuses_bad_inputs_with_the_field_named():
    with pytest.raises(tri.TriageError, match=r"field 'ds'.*2026-13-01"):
        tri.TriageConfig(model="m", ds="2026-13-01")
    with pytest.raises(tri.TriageError, match=r"features\[0\]"):
        tri.TriageConfig(model="m", ds="2026-01-01", features=(("a", "text"),))
    cfg = tri.TriageConfig(model="m", ds="2026-01-01")
    with pytest.raises(tri.TriageError, match="field 'current'"):
        tri.triage(tri.TriageInputs(config=cfg, current=[1, 2, 3]))
    # nothing at all: an answer that says so, not a crash
    r = tri.triage(tri.TriageInputs(config=cfg))
    assert r.onset.kind == "gradual" and r.onset.onset_ds is None and r.features == []
    assert any("No batch" in n for n in r.notes)


# --------------------------------------------------------------------------------------------
# Triage on the demo world: the acceptance days
# --------------------------------------------------------------------------------------------


def test_demo_day_29_is_sudden_in_de_and_day_25_gradual(demo_home, small_demo, capsys):
    from watchkeeper import cli

    day29, day25 = small_demo.ds(29), small_demo.ds(25)
    assert cli.main(["triage", "fraud", "--ds", day29, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["model"], out["ds"], out["onset"], out["onset_ds"]) == ("fraud", day29, "sudden", day29)
    assert out["nearest_deployment"] is None
    assert "amount" in [f["feature"] for f in out["features"][:3]]
    assert out["segments"][0]["segment"] == {"country": "DE"}
    assert [f["score"] for f in out["features"]] == sorted((f["score"] for f in out["features"]),
                                                           reverse=True)
    page = demo_home / "reports" / "fraud" / day29 / "triage.html"
    assert page.exists() and "country=DE" in page.read_text()

    assert cli.main(["triage", "fraud", "--ds", day25, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["onset"] == "gradual"
    assert small_demo.ds(14) <= out["onset_ds"] < day25

    assert cli.main(["triage", "fraud", "--ds", "2026-02-30"]) == 2
    assert "not a day" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The site, from real monitor runs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(small_demo, tmp_path_factory):
    """A WATCHKEEPER_HOME with fraud days 26..30 and eta days 29..30 monitored (built once)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    home = tmp_path_factory.mktemp("monitored")
    (home / "demo").symlink_to(Path(small_demo.home) / "demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATCHKEEPER_HOME", str(home))
        from watchkeeper import monitor
        from watchkeeper.spec import get_spec
        from watchkeeper.store import close_all_stores, open_store

        store = open_store()
        for name, first, last in (("fraud", 26, 30), ("eta", 29, 30)):
            spec = get_spec(name)
            for n in range(first, last + 1):
                ds = small_demo.ds(n)
                loaded = monitor.load(spec, ds, store)
                monitor.check(spec, ds, "ingestion", store, loaded)
                monitor.check(spec, ds, "features", store, loaded)
                monitor.record_slis(spec, ds, store)
        close_all_stores()
    return home


@pytest.fixture
def home(monitored, tmp_path, monkeypatch):
    """A private copy of the monitored home for one test."""
    h = tmp_path / "home"
    shutil.copytree(monitored, h, symlinks=True)
    monkeypatch.setenv("WATCHKEEPER_HOME", str(h))
    return h


def _pages(root: Path) -> list[Path]:
    own = [root / "index.html", *root.glob("*/index.html"), *root.glob("*/*/index.html"),
           *root.glob("*/*/triage.html")]
    return [p for p in own if p.exists()]


def test_site_pages_escape_data_link_what_exists_and_stay_offline(home, small_demo):
    from watchkeeper import reports
    from watchkeeper.spec import load_all
    from watchkeeper.store import MetricRecord, open_store

    store = open_store()
    day29 = small_demo.ds(29)
    store.write_metrics("fraud", day29, "drift", day29, [
        MetricRecord(subject="merchant_category", value=0.5,
                     payload={"threshold": 0.1, "drifted": True, "note": f"new value {XSS}"}),
        MetricRecord(subject=f"merchant_category|merchant_category={XSS}", value=0.8,
                     payload={"threshold": 0.1, "drifted": True})])
    store.record_event("fraud", "deployment", "fraud-v3", small_demo.ds(27),
                       {"version": XSS}, created_by=XSS)
    from watchkeeper import alerts
    from watchkeeper.spec import get_spec

    alerts.raise_alerts(store, get_spec("fraud"), day29, alerts.DayFindings(drift=[
        alerts.DriftFinding(feature=f"merchant_{XSS}", drifted=True, score=0.5, threshold=0.1)]))
    b = reports.build_site(store, load_all()[0])
    root = home / "reports"
    assert not b.problems, b.problems
    assert len(b.day_pages) == 7 and len(b.model_pages) == 2
    pages = _pages(root)
    for page in pages:
        html = page.read_text()
        assert XSS not in html, page  # the raw markup never reaches a page
        # offline: no resource from another host, charts from the one shared helper
        assert not re.search(r'(src|href)="(https?:)?//', html), page
        assert "function drawAll" not in html
    day_html = (root / "fraud" / day29 / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in day_html
    model_html = (root / "fraud" / "index.html").read_text()
    # the incidents table: the drift incident of day 29, its subject escaped
    incidents = model_html.split('id="incidents"', 1)[1].split("<h2", 1)[0]
    assert f"<td>{day29}</td>" in incidents and "<td>drift</td>" in incidents
    assert "merchant_&lt;script&gt;" in incidents and "score 0.5 vs threshold 0.1" in incidents
    # chart data is JSON inside a script element: '<' is escaped there too
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in model_html
    assert '<script defer src="../_static/watchkeeper/charts.js">' in model_html
    assert (root / "_static" / "watchkeeper" / "charts.js").exists()
    # the day page links to the day's validation pages, and only to files that exist
    for href in re.findall(r'href="([^"#:]+)"', day_html):
        assert (root / "fraud" / day29 / href).resolve().exists(), href
    assert 'href="validation-features.html"' in day_html
    index = (root / "index.html").read_text()
    assert 'href="fraud/index.html"' in index and 'href="eta/index.html"' in index
    assert re.search(r'data-gate="(open|closed|inconclusive)"', index)
    assert f'href="fraud/{small_demo.ds(30)}/index.html"' in index  # the latest day
    figures = reports.site_figures(root)
    assert 0 < figures["model_page_mb"] < 1 and figures["reports_mb_demo_site"] > figures["model_page_mb"]


def test_incremental_build_rewrites_index_model_and_one_day(home, small_demo):
    from watchkeeper import reports
    from watchkeeper.spec import get_spec, load_all
    from watchkeeper.store import open_store

    store = open_store()
    reports.build_site(store, load_all()[0])
    root = home / "reports"
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.html")}
    time.sleep(0.02)
    t0 = time.monotonic()
    b = reports.build_site(store, [get_spec("fraud")], days=[small_demo.ds(30)])
    took = time.monotonic() - t0
    changed = {p.relative_to(root).as_posix() for p in root.rglob("*.html")
               if p.stat().st_mtime_ns != before.get(p)}
    assert changed == {"index.html", "fraud/index.html", f"fraud/{small_demo.ds(30)}/index.html"}
    assert b.day_pages == [root / "fraud" / small_demo.ds(30) / "index.html"]
    assert took < 5, took
    # the index still lists the model that was not rebuilt
    assert 'href="eta/index.html"' in (root / "index.html").read_text()


def test_a_paging_day_gets_its_triage_page_and_the_finding_links_to_it(home, small_demo):
    from watchkeeper import reports
    from watchkeeper.spec import get_spec
    from watchkeeper.store import MetricRecord, open_store

    store = open_store()
    day29 = small_demo.ds(29)
    snap = {"slo": "data-quality", "ds": day29, "window_start": small_demo.ds(2), "total": 300.0,
            "bad": 40.0, "allowed_bad": 15.0, "budget_remaining": -1.67, "burn_1d": 5.0,
            "burn_3d": 3.1, "burn_7d": 1.5, "bad_days_3d": 2, "mature_days": 4, "alert": "page",
            "data_as_of": day29}
    store.write_metrics("fraud", day29, "budget", day29,
                        [MetricRecord(subject="data-quality", value=-1.67, payload=snap)])
    b = reports.build_site(store, [get_spec("fraud")], days=[day29])
    page = home / "reports" / "fraud" / day29 / "triage.html"
    assert b.triage_pages == [page] and not b.problems
    html = page.read_text()
    for heading in ("1. Timing", "2. Predictions", "3. Input features", "4. Impact by segment",
                    "5. Infrastructure"):
        assert heading in html
    assert 'href="triage.html"' in (home / "reports" / "fraud" / day29 / "index.html").read_text()
    assert f'href="{day29}/triage.html"' in (home / "reports" / "fraud" / "index.html").read_text()


def test_retention_prunes_old_html_and_the_model_page_says_so(home, small_demo, monkeypatch, tmp_path):
    import yaml

    from watchkeeper import paths, reports
    from watchkeeper.spec import get_spec
    from watchkeeper.store import open_store

    models = tmp_path / "models"
    models.mkdir()
    for name in ("fraud", "eta"):
        raw = yaml.safe_load((paths.project_root() / "include/models" / f"{name}.yaml").read_text())
        if name == "fraud":
            raw["report_retention_days"] = 2
        (models / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("WATCHKEEPER_MODELS_DIR", str(models))
    root = home / "reports"
    old = root / "fraud" / small_demo.ds(26)
    assert (old / "validation-features.html").exists()
    (old / "notes.txt").write_text("not ours")
    b = reports.build_site(open_store(), [get_spec("fraud")])
    assert old / "validation-features.html" in b.pruned
    assert not list(old.glob("*.html")) and (old / "notes.txt").exists()
    assert not (root / "fraud" / small_demo.ds(28)).exists() or \
        not list((root / "fraud" / small_demo.ds(28)).glob("*.html"))
    assert (root / "fraud" / small_demo.ds(30) / "index.html").exists()
    assert (root / "fraud" / small_demo.ds(29) / "index.html").exists()
    assert "pruned" in (root / "fraud" / "index.html").read_text()


def test_report_command_and_an_empty_store(demo_home, capsys):
    from watchkeeper import cli, reports
    from watchkeeper.spec import load_all
    from watchkeeper.store import open_store

    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert "site rebuilt" in out and "index.html" in out
    index = (demo_home / "reports" / "index.html").read_text()
    assert "no data yet" in index and "fraud" in index
    # a reports folder that cannot be written: the error names the path
    blocker = demo_home / "blocked"
    blocker.write_text("a file, not a folder")
    with pytest.raises(reports.ReportError, match="blocked"):
        reports.build_site(open_store(), load_all()[0], root=blocker / "reports")


def test_a_partial_day_shows_on_its_page_in_the_days_table_and_in_history(demo_home):
    """Issue 14: the completeness judgment stored with the partition reaches the day page (its
    own block under the partition, a finding), the model page's days table and the history."""
    from watchkeeper import history, reports
    from watchkeeper.spec import get_spec
    from watchkeeper.store import PartitionRecord, open_store

    store, spec = open_store(), get_spec("fraud")
    reason = ("partial day: 42 rows vs 165 expected (median of the last 7 days; events "
              "00:03-05:58); judged as incomplete data, not as a shift")
    record = {"partial": True, "rows": 42, "expected": 165.0, "basis": "trailing_median",
              "fraction": 0.5, "reason": reason, "known_days": 7, "covered_share": None,
              "first_event": "00:03", "last_event": "05:58"}
    store.write_partition(PartitionRecord(model="fraud", ds="2026-03-02", source="s",
                                          status="ok", rows=42, partial=record))
    store.write_partition(PartitionRecord(model="fraud", ds="2026-03-03", source="s",
                                          status="ok", rows=170, partial={
                                              **record, "partial": False, "rows": 170,
                                              "reason": "complete: 170 rows vs 165 expected"}))
    reports.build_site(store, [spec], days=["2026-03-02", "2026-03-03"])
    root = demo_home / "reports" / "fraud"
    page = (root / "2026-03-02" / "index.html").read_text()
    assert 'id="completeness"' in page and reason in page
    assert "partial day" in page and "00:03 – 05:58" in page
    assert page.count(reason) == 2  # the block and the day's finding
    complete = (root / "2026-03-03" / "index.html").read_text()
    assert "complete: 170 rows vs 165 expected" in complete and reason not in complete
    model_page = (root / "index.html").read_text()
    assert "ok · partial" in model_page and model_page.count("ok · partial") == 1
    days = history.build(spec, store)
    assert [d["partial"]["partial"] for d in days] == [True, False]
    table = history.as_table(spec, days)
    assert "42/165 PARTIAL" in table and "170/165" in table and f"2026-03-02: {reason}" in table


# --------------------------------------------------------------------------------------------
# The authenticated route on the Airflow API server
# --------------------------------------------------------------------------------------------


def test_reports_route_needs_a_user_and_refuses_paths_outside_the_folder(demo_home):
    from fastapi.testclient import TestClient

    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from watchkeeper.airflow.http import app

    root = demo_home / "reports"
    (root / "fraud").mkdir(parents=True)
    (root / "index.html").write_text("<h1>site</h1>")
    (root / "fraud" / "index.html").write_text("<h1>fraud</h1>")
    (demo_home / "secret.txt").write_text("not for the web")
    client = TestClient(app)
    assert client.get("/reports/index.html").status_code == 401
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="ann", role="viewer")
    try:
        r = client.get("/reports/index.html")
        assert r.status_code == 200 and r.text == "<h1>site</h1>"
        assert r.headers["content-type"].startswith("text/html")
        assert client.get("/reports/fraud/").text == "<h1>fraud</h1>"
        assert client.get("/reports/").text == "<h1>site</h1>"
        for bad in ("/reports/..%2Fsecret.txt", "/reports/fraud/..%2F..%2Fsecret.txt",
                    "/reports/%2Fetc%2Fpasswd"):
            r = client.get(bad)
            assert r.status_code == 403 and "outside the reports folder" in r.text, bad
        assert client.get("/reports/nope.html").status_code == 404
    finally:
        app.dependency_overrides.clear()
