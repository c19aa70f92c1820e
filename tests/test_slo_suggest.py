"""watchkeeper.slo_suggest and `watchkeeper suggest-slo`: the thresholds and objectives the data
supports at 165 and 20,000 labelled rows a day, and the false-alarm rates they claim, checked by
simulating healthy days through the real verdict code (watchkeeper.quality_sli)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from scipy.stats import binom

from watchkeeper import quality_sli as qs
from watchkeeper import slo_suggest as ss
from watchkeeper.performance import classification_metrics, regression_metrics

BIN, REG = "binary_classification", "regression"


def _binary_reference(n=20_000, seed=1):
    """A calibrated model at accuracy ~0.95 (most transactions clearly legitimate)."""
    rng = np.random.default_rng(seed)
    s = rng.beta(0.25, 3.0, n)
    return (rng.random(n) < s).astype(float), s


def _regression_reference(n=20_000, seed=2):
    rng = np.random.default_rng(seed)
    y = rng.gamma(8.0, 4.0, n)
    return y, y + rng.normal(0.0, 3.0, n)


def _slo(**kw):
    base = dict(name="model-quality", sli="accuracy", kind="timeslice", quality=True,
                threshold=0.93, direction="at_least", objective=0.9, window_days=28,
                confidence=0.95)
    return SimpleNamespace(**(base | kw))


def _metric(sug, name):
    (m,) = [m for m in sug.metrics if m.metric == name]
    return m


def _simulated_days(y, other, rows, slo, days, seed, task=BIN):
    """Healthy days of `rows` rows drawn from the reference, judged by quality_sli.day_slis."""
    rng = np.random.default_rng(seed)
    verdicts = []
    for _ in range(days):
        idx = rng.integers(0, len(y), rows)
        yy, oo = y[idx], other[idx]
        rep = classification_metrics(yy, oo) if task == BIN else regression_metrics(yy, oo)
        (row,) = qs.day_slis([slo], task=task, y=yy, other=oo,
                             metrics={k: v for k, v in rep.overall.values.items() if v is not None})
        verdicts.append(row.details["verdict"])
    return np.array(verdicts)


def _window_exhaustion(verdicts, objective, window=28, windows=4000, seed=0):
    """Windows of independent days resampled from simulated day verdicts: budget spent?"""
    rng = np.random.default_rng(seed)
    picks = verdicts[rng.integers(0, len(verdicts), (windows, window))]
    bad = (picks == "bad").sum(1)
    judged = window - (picks == "inconclusive").sum(1)
    return float(np.mean((bad >= 1) & (bad >= np.round((1 - objective) * judged, 10))))


# --- 165 rows a day ------------------------------------------------------------------------------


def test_at_165_rows_the_suggested_accuracy_timeslice_holds_its_claims():
    y, s = _binary_reference()
    level = classification_metrics(y, s).overall.values["accuracy"]
    sug = ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165, rows_source="test",
                     slos=[_slo(threshold=round(level - 0.02, 3))])
    acc = _metric(sug, "accuracy")
    t = acc.timeslice
    assert acc.level == pytest.approx(level, abs=1e-6) and acc.level_source == "reference"
    assert t.window_exhaustion <= ss.WINDOW_TARGET and t.objective == 0.9
    # below the level, but not far: the confident rule, not the threshold, absorbs the noise of
    # 165 rows (the plain rule would call a quarter of the healthy days at it bad)
    assert level - 2 * acc.sampling_sd < t.threshold < level
    assert t.bad_day < 0.01 < 0.2 < t.bad_day_plain_rule
    # the claims, checked on healthy days drawn from the reference and judged by the real code
    verdicts = _simulated_days(y, s, 165, _slo(threshold=t.threshold), 3000, seed=5)
    assert np.mean(verdicts == "bad") == pytest.approx(t.bad_day, abs=0.006)
    assert _window_exhaustion(verdicts, 0.9) <= 0.02
    # the spec's own SLO, 2 points under the level: the plain rule calls many healthy days bad
    (cur,) = sug.current
    f = cur.figures
    assert f.bad_day_plain_rule > 0.05 and f.bad_day < f.bad_day_plain_rule / 2
    sim = _simulated_days(y, s, 165, _slo(threshold=f.threshold), 3000, seed=6)
    assert np.mean(sim == "bad") == pytest.approx(f.bad_day, abs=0.012)
    assert np.mean(sim != "good") == pytest.approx(f.bad_day_plain_rule, abs=0.02)
    assert f.window_exhaustion == pytest.approx(_window_exhaustion(sim, 0.9), abs=0.03)


def test_at_165_rows_the_ratio_objective_is_the_highest_within_the_target():
    y, s = _binary_reference()
    sug = ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165, rows_source="test")
    r = _metric(sug, "accuracy").ratio
    level = _metric(sug, "accuracy").level
    assert r.events_per_day == 165 and r.window_exhaustion <= ss.WINDOW_TARGET
    # one step higher would break the target
    step = 10 ** -len(repr(r.objective).split(".")[1])
    assert ss._ratio(level, 0.0, 165, r.objective + step, 28).window_exhaustion > ss.WINDOW_TARGET
    # pooled windows of 28 x 165 reference rows: exhausted (accuracy <= objective) rarely
    rng = np.random.default_rng(7)
    correct = ((s >= 0.5) == (y == 1)).astype(float)
    pooled = np.array([correct[rng.integers(0, len(y), 28 * 165)].mean() for _ in range(2000)])
    assert np.mean(pooled <= r.objective) <= 0.02
    # precision pools the day's flagged rows only
    p = _metric(sug, "precision").ratio
    tp, flagged = qs.ratio_events("precision", BIN, y, s)
    assert p.events_per_day == pytest.approx(165 * flagged / len(y), abs=0.01)


def test_at_165_rows_a_metric_with_few_events_gets_no_daily_timeslice():
    y, s = _binary_reference()
    sug = ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165, rows_source="test")
    rec = _metric(sug, "recall")
    assert rec.timeslice.detects is None  # a handful of positives a day: never surely bad
    assert any("recall" in n and "use the ratio SLO" in n for n in rec.notes)
    assert "recall-daily" not in sug.yaml_snippet() and "recall-pooled" in sug.yaml_snippet()


def test_at_165_rows_regression_mae_and_within_tolerance():
    y, p = _regression_reference()
    sug = ss.suggest(model="m", task=REG, y=y, other=p, rows_per_day=165, rows_source="test")
    mae = _metric(sug, "mae")
    level = regression_metrics(y, p).overall.values["mae"]
    assert mae.direction == "at_most" and mae.timeslice.threshold > level
    assert mae.timeslice.window_exhaustion <= ss.WINDOW_TARGET
    verdicts = _simulated_days(y, p, 165, _slo(sli="mae", threshold=mae.timeslice.threshold,
                                               direction="at_most"), 600, seed=8, task=REG)
    assert np.mean(verdicts == "bad") <= mae.timeslice.bad_day + 0.015
    tol = _metric(sug, "within_tolerance")
    p90 = np.quantile(np.abs(p - y), 0.9)
    assert p90 <= tol.ratio.tolerance < p90 * 1.1  # the p90 error rounded up (2 digits)
    assert tol.timeslice is None and tol.ratio.window_exhaustion <= ss.WINDOW_TARGET


# --- 20,000 rows a day ---------------------------------------------------------------------------


def test_at_20000_rows_thresholds_sit_close_to_the_level():
    y, s = _binary_reference()
    sug = ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=20_000, rows_source="test",
                     slos=[_slo(threshold=0.93)])
    for name in ("accuracy", "precision", "roc_auc"):
        m = _metric(sug, name)
        assert m.timeslice.window_exhaustion <= ss.WINDOW_TARGET
        assert 0 < m.level - m.timeslice.threshold < 4 * m.sampling_sd + 1e-3, name
        assert 0 < m.level - m.timeslice.detects < 6 * m.sampling_sd + 1e-3, name
    acc = _metric(sug, "accuracy")
    assert acc.level - acc.ratio.objective < 0.003
    # the claimed bad-day rate, checked on simulated 20,000-row days (Wilson: cheap)
    verdicts = _simulated_days(y, s, 20_000, _slo(threshold=acc.timeslice.threshold), 400, seed=9)
    assert np.mean(verdicts == "bad") <= acc.timeslice.bad_day + 0.015
    y_r, p_r = _regression_reference()
    mae = _metric(ss.suggest(model="m", task=REG, y=y_r, other=p_r, rows_per_day=20_000,
                             rows_source="test"), "mae")
    assert 0 < mae.timeslice.threshold - mae.level < 4 * mae.sampling_sd + 1e-3


# --- stored days: level and day-to-day spread ----------------------------------------------------


def _stored(levels, rows, seed=3):
    rng = np.random.default_rng(seed)
    days = []
    for i, lv in enumerate(levels):
        acc = rng.binomial(rows, lv) / rows
        days.append(ss.StoredDay(ds=f"2025-01-{i + 1:02d}", n_labelled=rows,
                                 metrics={"accuracy": acc, "predicted_positive_rate": 0.05,
                                          "positive_rate": 0.05}))
    return days


def test_stored_days_give_the_level_and_an_overdispersed_window():
    y, s = _binary_reference()
    rng = np.random.default_rng(4)
    calm = _stored(np.full(28, 0.94), 165)
    restless = _stored(np.clip(0.94 + rng.normal(0, 0.02, 28), 0, 1), 165)
    a = _metric(ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165,
                           rows_source="test", stored_days=calm), "accuracy")
    b = _metric(ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165,
                           rows_source="test", stored_days=restless), "accuracy")
    assert a.level_source == b.level_source == "stored mature days" and a.stored_days == 28
    assert a.level == pytest.approx(0.94, abs=0.01)
    assert a.spread_sd < 0.01 and 0.01 < b.spread_sd < 0.035
    # a spread days share within a window: a lower threshold, and the shared-level figure is the
    # larger one (the beta-binomial overdispersion)
    assert b.timeslice.threshold < a.timeslice.threshold
    assert b.ratio.objective < a.ratio.objective
    bt = ss._DayModel("accuracy", "at_least", b.level, b.spread_sd, 165, b.sampling_sd, 0.95) \
        .timeslice(a.timeslice.threshold, 0.9, 28)
    assert bt.window_exhaustion > bt.window_exhaustion_independent_days


def test_boolean_timeslice_risk_is_binomial_over_the_window():
    r = ss.boolean_risk("feature-drift", "feature_drift", 1 - 0.95 ** 2, "test", 0.9, 28)
    assert r.window_exhaustion == pytest.approx(binom.sf(2, 28, 1 - 0.95 ** 2), abs=1e-6)
    assert r.window_exhaustion > 0.5  # the default drift rate spends a 0.9 budget half the time
    o = r.objective_for_target
    assert binom.sf(np.ceil(round((1 - o) * 28, 10)) - 1, 28, r.daily_false_alarm_rate) <= 0.01
    assert binom.sf(np.ceil(round((1 - o - 0.01) * 28, 10)) - 1, 28, r.daily_false_alarm_rate) > 0.01 \
        or o == 0.99
    quiet = ss.boolean_risk("prediction-stability", "prediction_stability", 0.01, "test", 0.9, 28)
    assert quiet.window_exhaustion == pytest.approx(binom.sf(2, 28, 0.01), abs=1e-6)
    assert quiet.page_chance_per_day == pytest.approx(0.01 * (1 - 0.99 ** 2))


def test_suggest_refuses_what_it_cannot_answer():
    y, s = _binary_reference(n=10)
    with pytest.raises(ss.SuggestError, match="10 labelled rows"):
        ss.suggest(model="m", task=BIN, y=y, other=s, rows_per_day=165, rows_source="test")
    with pytest.raises(ss.SuggestError, match="not ranking"):
        ss.suggest(model="m", task="ranking", y=y, other=s, rows_per_day=165, rows_source="test")


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def small_world(tmp_path, monkeypatch):
    from watchkeeper import paths
    from watchkeeper.demo import generate_demo

    generate_demo(paths.home(), rows_per_day=165, training_rows=5000)
    return paths.home()


def test_cli_suggest_slo_prints_a_table_and_yaml_that_loads(small_world, capsys, tmp_path):
    from watchkeeper import cli, paths
    from watchkeeper.spec import load_spec

    assert cli.main(["suggest-slo", "fraud"]) == 2  # no stored days, no --rows-per-day
    assert "pass --rows-per-day" in capsys.readouterr().err
    assert cli.main(["suggest-slo", "fraud", "--rows-per-day", "165"]) == 0
    out = capsys.readouterr().out
    assert "165 labelled rows a day (--rows-per-day)" in out
    assert "model-quality (precision >= 0.5, objective 0.9)" in out
    assert "feature-drift (feature_drift): false alarms at most 1.99% a day" in out  # 1 - 0.99²
    assert cli.main(["suggest-slo", "fraud", "--rows-per-day", "165", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {m["metric"] for m in data["metrics"]} == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    # the YAML pastes into the spec (replacing its own quality SLO) and the spec loads
    spec = yaml.safe_load((paths.project_root() / "include/models/fraud.yaml").read_text())
    spec["slos"] = [s for s in spec["slos"] if not s.get("quality")] + yaml.safe_load(data["yaml"])
    (tmp_path / "fraud.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_spec(tmp_path / "fraud.yaml")
    assert {s.name for s in loaded.slos if s.quality} >= {"accuracy-pooled", "accuracy-daily"}


def test_cli_suggest_slo_reads_the_batch_size_from_stored_mature_days(small_world, capsys):
    from watchkeeper import cli
    from watchkeeper.store import MetricRecord, open_store

    store = open_store()
    for i, n in enumerate((150, 160, 170, 180, 190, 200, 210, 220)):
        ds = f"2025-01-{i + 1:02d}"
        store.write_metrics("eta", ds, "quality", ds, [MetricRecord(
            subject="overall", value=1.0, payload={"provisional": False, "n_labelled": n,
                                                   "metrics": {"mae": 2.3 + 0.01 * i, "rmse": 2.9}})])
    store.write_metrics("eta", "2025-01-09", "quality", "2025-01-09", [MetricRecord(
        subject="overall", value=0.1, payload={"provisional": True, "n_labelled": 9,
                                               "metrics": {"mae": 9.0}})])
    assert cli.main(["suggest-slo", "eta", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rows_per_day"] == 185 and data["rows_source"] == "median of 8 mature days"
    mae = [m for m in data["metrics"] if m["metric"] == "mae"][0]
    assert mae["level_source"] == "stored mature days" and mae["stored_days"] == 8
    assert mae["level_stored"] == pytest.approx(2.335)
