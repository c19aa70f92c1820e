"""check-config (issue 15): what can be validated without running a day, each problem naming the
file and the field. Real files throughout: the small demo world's data and specs copied into a
folder the test controls, then broken one way at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from watchkeeper import config_check, paths, slis
from watchkeeper.spec import load_spec

PROJECT = paths.project_root()
EXE = Path(sys.executable).with_name("watchkeeper")


def _spec(tmp_path: Path, model: str, mutate=None) -> Path:
    data = yaml.safe_load((PROJECT / "include/models" / f"{model}.yaml").read_text())
    for stage in ("ingestion", "features"):  # absolute, so the spec can live in tmp_path
        data["suites"][stage] = str(PROJECT / data["suites"][stage])
    if mutate:
        mutate(data)
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    p = models / f"{model}.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _problems(path: Path, **kw) -> dict[str, str]:
    """field -> its error messages, joined."""
    out: dict[str, str] = {}
    for p in config_check.check_spec(load_spec(path), **kw):
        if p.level == "error":
            out[p.field] = (out[p.field] + " || " if p.field in out else "") + p.message
    return out


def test_the_demo_specs_pass_with_their_data(demo_home, tmp_path):
    for model in ("fraud", "eta"):
        assert _problems(_spec(tmp_path, model)) == {}


def test_a_misspelled_sli_gets_a_did_you_mean(demo_home, tmp_path):
    def typo(d):
        d["slos"][2]["sli"] = "precison"
        d["slos"].append({"name": "acc", "sli": "acuracy", "kind": "timeslice", "objective": 0.9,
                          "threshold": 0.9, "quality": True})
    got = _problems(_spec(tmp_path, "fraud", typo), data=False)
    assert "did you mean 'precision'?" in got["slos[2].sli"]
    assert "unknown SLI 'acuracy'; did you mean 'accuracy'?" in got["slos[5].sli"]


def test_a_metric_of_another_task_and_a_quality_slo_without_quality(demo_home, tmp_path):
    def wrong(d):
        d["slos"][2]["sli"] = "mae"          # fraud is binary
        d["slos"][4]["quality"] = True       # feature_drift is a monitor SLI
    got = _problems(_spec(tmp_path, "fraud", wrong), data=False)
    assert "'mae' is a regression metric" in got["slos[2].sli"] and "precision" in got["slos[2].sli"]
    assert "remove `quality: true`" in got["slos[4].quality"]

    def unmarked(d):
        d["slos"][2].pop("quality")
    got = _problems(_spec(tmp_path, "eta", unmarked), data=False)
    assert "set `quality: true`" in got["slos[2].quality"]


def test_missing_files_name_the_field(demo_home, tmp_path):
    def missing(d):
        d["reference"]["training"] = "{home}/demo/fraud/trainin.parquet"
        d["suites"]["features"] = str(tmp_path / "nowhere" / "features.json")
    got = _problems(_spec(tmp_path, "fraud", missing))
    assert "trainin.parquet does not exist" in got["reference.training"]
    assert "nowhere/features.json does not exist" in got["suites.features"]
    assert "suggest-suite" in got["suites.features"]


def test_columns_are_checked_against_the_training_set_a_day_and_a_label_file(demo_home, tmp_path):
    def wrong_columns(d):
        d["labels"]["label_column"] = "is_fraude"
        d["columns"]["id"] = "transaction_id"
        d["features"][0]["name"] = "amount_usd"
    got = _problems(_spec(tmp_path, "fraud", wrong_columns))
    assert "'is_fraude' is not in the label file" in got["labels.label_column"]
    assert "did you mean 'is_fraud'?" in got["labels.label_column"]
    assert "'transaction_id' is not in the day" in got["columns.id"]
    assert "'amount_usd' is not in the training set" in got["features[0].name"]


def test_a_suite_naming_an_undeclared_column(demo_home, tmp_path):
    suite = json.loads((PROJECT / "expectations/eta/features.json").read_text())
    suite["expectations"].append({"type": "expect_column_values_to_not_be_null",
                                  "kwargs": {"column": "tip_amount"}})
    bad = tmp_path / "features.json"
    bad.write_text(json.dumps(suite))
    got = _problems(_spec(tmp_path, "eta", lambda d: d["suites"].update(features=str(bad))))
    assert str(bad) in got["suites.features"] and "tip_amount" in got["suites.features"]


def test_the_cli_fails_with_the_file_and_every_field(demo_home, tmp_path):
    def broken(d):
        d["slos"][2]["sli"] = "precison"
        d["labels"]["label_column"] = "fraud"
    p = _spec(tmp_path, "fraud", broken)
    r = subprocess.run([str(EXE), "check-config", str(p)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    assert f"FAIL {p}: 2 problem(s)" in r.stdout
    assert "slos[2].sli" in r.stdout and "labels.label_column" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_the_sli_registry_holds_exactly_what_the_labels_dag_computes():
    """slis.QUALITY_METRICS is the list check-config accepts: it must equal the metric keys
    watchkeeper.performance stores per prediction-day, task by task."""
    import numpy as np
    import pandas as pd

    from watchkeeper import performance as perf

    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.random(200)
    rows = pd.DataFrame({"label": y, "score": s, "pred": s * 10, "q": np.repeat(np.arange(20), 10)})
    got = {
        "binary_classification": perf.evaluate(rows, task="binary_classification", score_col="score"),
        "regression": perf.evaluate(rows.assign(label=rows.pred + rng.normal(size=200)),
                                    task="regression", prediction_col="pred"),
        "ranking": perf.evaluate(rows, task="ranking", score_col="score", query_col="q"),
    }
    for task, rep in got.items():
        assert set(rep.overall.values) == set(slis.QUALITY_METRICS[task]), task
    assert set(slis.MONITOR_SLIS) >= {"data_quality", "freshness", "prediction_stability",
                                      "feature_drift"}
