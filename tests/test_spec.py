"""Model spec validation: good specs load, bad ones name the file, the field and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from watchkeeper import paths
from watchkeeper.spec import SpecError, UnknownModel, get_spec, load_all, load_spec

MODELS = paths.project_root() / "include" / "models"


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def _fraud() -> dict:
    return yaml.safe_load((MODELS / "fraud.yaml").read_text())


def test_demo_specs_load():
    specs, errors = load_all(MODELS)
    assert errors == []
    by = {s.name: s for s in specs}
    assert set(by) == {"fraud", "eta"}
    fraud = by["fraud"]
    assert fraud.task == "binary_classification"
    assert fraud.source.kind == "sql_table" and fraud.source.date_column == "ds"
    assert fraud.segments == ["country", "customer_tier"]
    assert fraud.labels.max_delay_days == 14
    assert fraud.suite_path("ingestion").name == "ingestion.json"
    assert by["eta"].source.kind == "file"
    assert "{ds}" in by["eta"].source.path


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda d: d.pop("task"), "task", "required field is missing"),
        (lambda d: d.update(task="clustering"), "task", "binary_classification"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown timezone"),
        (lambda d: d["features"][0].update(kind="text"), "features[0].kind", "numerical"),
        (lambda d: d["features"][0].update(bounds=[10, 1]), "features[0]", "lower bound is above"),
        (lambda d: d.update(segments=["nope"]), "", "segment column 'nope'"),
        (lambda d: d["source"].update(table="x; drop table y"), "source.table", "plain SQL identifier"),
        (lambda d: d["source"].update(kind="ftp"), "source", "kind"),
        (lambda d: d.update(colour="blue"), "colour", "unknown field"),
        (lambda d: d["slos"][0].update(objective=1.5), "slos[0].objective", "less than 1"),
        (lambda d: d["labels"].update(max_delay_days=0), "labels.max_delay_days", "greater than"),
        (lambda d: d.update(name="fraud-2"), "name", "lower-case"),
    ],
)
def test_bad_spec_names_file_field_and_reason(tmp_path, mutate, field, reason):
    data = _fraud()
    mutate(data)
    p = _write(tmp_path, data.get("name", "fraud") if data.get("name") == "fraud" else "fraud", data)
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert any(f == field or (field and f.startswith(field)) for f, _ in exc.value.problems) or (
        field == "" and any(f == "" for f, _ in exc.value.problems)
    ), exc.value.problems
    assert reason in msg, msg


def test_completeness_block_defaults_and_bounds(tmp_path):
    # partial days (issue 14): half the expected rows, unless the spec says otherwise
    assert load_spec(MODELS / "fraud.yaml").completeness.partial_fraction == 0.5
    data = _fraud()
    data["completeness"] = {"partial_fraction": 0.3}
    assert load_spec(_write(tmp_path, "fraud", data)).completeness.partial_fraction == 0.3
    for bad, reason in ((0, "greater than 0"), (1, "less than 1"), ("half", "valid number")):
        data["completeness"] = {"partial_fraction": bad}
        with pytest.raises(SpecError) as exc:
            load_spec(_write(tmp_path, "fraud", data))
        assert [f for f, _ in exc.value.problems] == ["completeness.partial_fraction"]
        assert reason in str(exc.value), str(exc.value)
    data["completeness"] = {"partial_share": 0.5}
    with pytest.raises(SpecError, match="unknown field"):
        load_spec(_write(tmp_path, "fraud", data))


def test_file_pattern_needs_ds(tmp_path):
    data = yaml.safe_load((MODELS / "eta.yaml").read_text())
    data["source"]["path"] = "{home}/eta.parquet"
    with pytest.raises(SpecError, match=r"source.path: a file pattern must contain \{ds\}"):
        load_spec(_write(tmp_path, "eta", data))


def test_not_yaml_and_not_mapping(tmp_path):
    with pytest.raises(SpecError, match=r"line \d+, column \d+: not valid YAML"):
        load_spec(_write(tmp_path, "fraud", "name: [unclosed\n"))
    with pytest.raises(SpecError, match="must hold a YAML mapping"):
        load_spec(_write(tmp_path, "fraud", "- a\n- b\n"))


def test_name_must_match_file(tmp_path):
    with pytest.raises(SpecError, match="must match the file name 'other'"):
        load_spec(_write(tmp_path, "other", _fraud()))


def test_load_all_reports_every_bad_file_and_keeps_good_ones(tmp_path):
    _write(tmp_path, "fraud", _fraud())
    bad = _fraud()
    bad["name"] = "broken"
    bad.pop("columns")
    _write(tmp_path, "broken", bad)
    specs, errors = load_all(tmp_path)
    assert [s.name for s in specs] == ["fraud"]
    assert len(errors) == 1 and "broken.yaml" in str(errors[0]) and "columns" in str(errors[0])


def test_unknown_model_lists_known():
    with pytest.raises(UnknownModel, match="models that exist: eta, fraud"):
        get_spec("nope", MODELS)


def test_paths_resolve_home_and_project(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHKEEPER_HOME", str(tmp_path))
    s = get_spec("eta", MODELS)
    assert s.resolve_path(s.source.path, "2026-01-02") == tmp_path / "demo/eta/predictions/ds=2026-01-02.parquet"
    assert s.suite_path("features") == paths.project_root() / "expectations/eta/features.json"


def test_check_config_cli_reports_bad_spec_without_traceback(tmp_path):
    data = _fraud()
    data["features"][1]["kind"] = "text"
    p = _write(tmp_path, "fraud", data)
    exe = Path(sys.executable).with_name("watchkeeper")
    r = subprocess.run([str(exe), "check-config", str(p)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert str(p) in r.stdout and "features[1].kind" in r.stdout


def test_check_config_cli_passes_on_the_project(demo_home):
    """With the demo's data in place (the specs point at it), every spec and its data pass."""
    exe = Path(sys.executable).with_name("watchkeeper")
    r = subprocess.run([str(exe), "check-config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 of 2 specs valid" in r.stdout


# --- quality SLOs (issue 14: ratio quality SLIs, confident timeslices) ----------------------------


def _with_slo(base: dict, **slo) -> dict:
    data = dict(base)
    data["slos"] = [*base["slos"], {"name": "quality-ratio", "quality": True, "objective": 0.9,
                                   "kind": "ratio", **slo}]
    return data


def _eta() -> dict:
    return yaml.safe_load((MODELS / "eta.yaml").read_text())


@pytest.mark.parametrize("sli", ["accuracy", "precision", "recall"])
def test_ratio_quality_slos_on_decomposable_binary_metrics_load(tmp_path, sli):
    s = load_spec(_write(tmp_path, "fraud", _with_slo(_fraud(), sli=sli))).slo("quality-ratio")
    assert (s.kind, s.sli, s.quality, s.confidence, s.min_bad_days_ticket) == ("ratio", sli, True, 0.95, 2)


def test_within_tolerance_ratio_slo_loads_for_regression(tmp_path):
    s = load_spec(_write(tmp_path, "eta", _with_slo(_eta(), sli="within_tolerance", threshold=5.0)))
    assert s.slo("quality-ratio").threshold == 5.0


@pytest.mark.parametrize(
    "model, slo, reason",
    [
        ("fraud", {"sli": "f1"}, "SLO 'quality-ratio', field 'sli': 'f1' has no good/total event "
                                 "decomposition, so it cannot be a ratio quality SLI for "
                                 "binary_classification; use kind: timeslice with a threshold (a "
                                 "daily f1 verdict), or a ratio SLO on accuracy, precision, recall"),
        ("fraud", {"sli": "roc_auc"}, "field 'sli': 'roc_auc' has no good/total event decomposition"),
        ("eta", {"sli": "mae"}, "or a ratio SLO on within_tolerance"),
        ("eta", {"sli": "accuracy"}, "'accuracy' has no good/total event decomposition, so it cannot "
                                     "be a ratio quality SLI for regression"),
        ("eta", {"sli": "within_tolerance"}, "field 'threshold': within_tolerance needs the tolerance"),
        ("eta", {"sli": "within_tolerance", "kind": "timeslice", "threshold": 0.9},
         "field 'kind': within_tolerance is a ratio SLI"),
        ("fraud", {"sli": "accuracy", "threshold": 0.93}, "field 'threshold': a ratio SLO's target is "
                                                          "its objective"),
        ("fraud", {"sli": "precision", "kind": "timeslice", "threshold": 0.6},
         "SLOs 'model-quality', 'quality-ratio' judge the SLI 'precision' differently"),
        ("fraud", {"sli": "precision", "kind": "timeslice", "threshold": 0.5, "confidence": 0.4},
         "greater than 0.5"),
    ],
)
def test_quality_slos_that_cannot_be_computed_fail_at_load(tmp_path, model, slo, reason):
    base = _fraud() if model == "fraud" else _eta()
    with pytest.raises(SpecError) as exc:
        load_spec(_write(tmp_path, model, _with_slo(base, **slo)))
    assert reason in str(exc.value), str(exc.value)


def test_a_ratio_and_a_timeslice_slo_may_share_a_quality_sli(tmp_path):
    # the SLI row carries both the day's events (ratio) and its verdict (timeslice)
    spec = load_spec(_write(tmp_path, "fraud", _with_slo(_fraud(), sli="precision")))
    assert {s.kind for s in spec.slos if s.sli == "precision"} == {"ratio", "timeslice"}

def test_check_config_without_data_checks_specs_suites_and_slos_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHKEEPER_HOME", str(tmp_path))  # no demo data here
    exe = Path(sys.executable).with_name("watchkeeper")
    r = subprocess.run([str(exe), "check-config"], capture_output=True, text=True)
    assert r.returncode == 1 and "reference.training" in r.stdout and "does not exist" in r.stdout
    r = subprocess.run([str(exe), "check-config", "--no-data"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 of 2 specs valid" in r.stdout and "data not checked" in r.stdout
