"""`watchkeeper backtest`: the incident library replayed through the current monitors.

The CLI runs as a subprocess, as CI runs it. The whole library is replayed once per module (the
expensive part, two incidents at a time); the other tests replay a copy of one small incident,
edited so that its expectations cannot be met, or break its incident.yaml.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "include" / "incidents"


def backtest(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchkeeper.cli", "backtest", *args],
                          capture_output=True, text=True, env=subprocess_env(), timeout=timeout)


# A year and five months of days: replayed by tests/test_backtest_long.py, on the other worker.
LONG = ("small_batch_shift", "seasonal_yearly_cycle")


def short_incidents() -> list[str]:
    return sorted(p.name for p in LIBRARY.iterdir()
                  if (p / "incident.yaml").exists() and p.name not in LONG)


@pytest.fixture(scope="module")
def library_run():
    args = [a for name in short_incidents() for a in ("--incident", name)]
    out = backtest("--json", "--jobs", "2", *args)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    return out, json.loads(out.stdout)


def test_library_holds_the_demo_incidents_and_four_new_shapes():
    assert {"small_batch_shift", "seasonal_yearly_cycle"} <= {
        p.name for p in LIBRARY.iterdir() if (p / "incident.yaml").exists()}
    names = sorted(p.name for p in LIBRARY.iterdir() if (p / "incident.yaml").exists())
    assert {"demo_upstream_bug", "demo_seasonal_drift", "demo_late_partition",
            "demo_concept_drift"} <= set(names)
    assert {"slow_label_pipeline", "feedback_loop", "silently_frozen_feature",
            "one_segment_outage"} <= set(names)
    size = sum(f.stat().st_size for f in LIBRARY.rglob("*") if f.is_file())
    # A year of days (seasonal_yearly_cycle) is most of it: hundreds of small compact files.
    assert size < 10 * 1024 * 1024, f"the library is {size / 1e6:.1f} MB"


def test_every_incident_is_replayed_and_caught_in_time(library_run):
    out, doc = library_run
    names = [r["name"] for r in doc["incidents"]]
    assert names == short_incidents() and len(names) >= 8
    verdicts = {(r["name"], o["stage"], o["subject"]): o
                for r in doc["incidents"] for o in r["outcomes"]}
    for r in doc["incidents"]:
        assert r["error"] is None, (r["name"], r["error"])
    for key, o in verdicts.items():
        assert o["verdict"] == "caught", (key, o)
        assert 1 <= o["detected_day"] <= o["by_day"], (key, o)
        assert o["alert"], key  # somebody was told
    # The exit code and the summary say the same as the rows.
    all_caught = all(o["verdict"] == "caught" for o in verdicts.values())
    assert doc["passed"] is all_caught
    assert out.returncode == (0 if all_caught else 1)
    assert doc["caught"] + doc["late"] + doc["missed"] + doc["error"] == len(verdicts)


def test_library_exits_0_with_every_incident_caught(library_run):
    out, doc = library_run
    missed = [(r["name"], o["subject"]) for r in doc["incidents"] for o in r["outcomes"]
              if o["verdict"] != "caught"]
    assert out.returncode == 0 and not missed, missed
    assert doc["passed"] is True
    # The slow label pipeline is told by its own alert, and its healthy lead-in stays quiet.
    lag = next(o for r in doc["incidents"] if r["name"] == "slow_label_pipeline"
               for o in r["outcomes"] if o["subject"] == "label_lag")
    assert lag["alert"] == "ticket label_lag" and lag["noise_before_onset"] == []


def _copy(tmp_path: Path, name: str) -> Path:
    lib = tmp_path / "library"
    shutil.copytree(LIBRARY / name, lib / name)
    return lib


def _edit(folder: Path, change) -> None:
    path = folder / "incident.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_expectations_the_monitors_cannot_meet_are_missed_or_late_and_exit_1(tmp_path):
    lib = _copy(tmp_path, "demo_late_partition")

    def change(doc):
        first = doc["replay"]["first"]
        doc["onset"] = "2025-06-29"  # a day early: the late landing is now the incident's day 2
        doc["expect"] = [
            {"stage": "ingestion", "subject": "freshness", "severity": "ticket", "by_day": 1},
            # nothing happens to hour: no monitor may flag it
            {"stage": "drift", "subject": "hour", "severity": "ticket", "by_day": 1},
            # the late day burns the freshness budget at ticket level, never a page
            {"stage": "slo", "subject": "freshness", "severity": "page", "by_day": 2},
        ]
        assert first == "2025-06-28"

    _edit(lib / "demo_late_partition", change)
    out = backtest("--library", str(lib))
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    row = next(line for line in lines if "ingestion freshness" in line)
    assert "day 2 (2025-06-30)" in row and "LATE" in row
    row = next(line for line in lines if "drift hour" in line)
    assert "MISSED" in row
    row = next(line for line in lines if "slo freshness" in line)
    assert "MISSED" in row
    assert "0 caught, 1 late, 2 missed" in out.stdout


@pytest.mark.parametrize("change, field, why", [
    (lambda d: d["expect"][0].update(by_day=0), "expect[0].by_day",
     "greater than or equal to 1"),
    (lambda d: d["expect"][0].update(stage="vibes"), "expect[0].stage", "'ingestion'"),
    (lambda d: d.pop("onset"), "onset", "required field is missing"),
    (lambda d: d["expect"][0].update(subject="no_such_column"), "expect[0].subject",
     "not a column of the spec"),
    (lambda d: d["expect"][0].update(by_day=9), "expect[0].by_day", "after the replay's last day"),
    (lambda d: d.update(severity="page"), "severity", "unknown field"),
])
def test_a_malformed_incident_is_a_clear_error_before_any_replay(tmp_path, change, field, why):
    lib = _copy(tmp_path, "demo_late_partition")
    shutil.copytree(LIBRARY / "feedback_loop", lib / "feedback_loop")
    _edit(lib / "demo_late_partition", change)
    out = backtest("--library", str(lib))
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr
    assert str(lib / "demo_late_partition" / "incident.yaml") in err
    assert field in err and why in err, err
    assert "Traceback" not in err
    assert "replayed" not in err  # checked before anything runs, the good incident included
    assert out.stdout == ""


def test_unknown_incident_and_unparseable_yaml_are_errors(tmp_path):
    out = backtest("--incident", "no_such_incident")
    assert out.returncode == 2
    assert "unknown incident no_such_incident" in out.stderr and "demo_upstream_bug" in out.stderr

    lib = _copy(tmp_path, "feedback_loop")
    (lib / "feedback_loop" / "incident.yaml").write_text("title: [unclosed\n")
    out = backtest("--library", str(lib))
    assert out.returncode == 2
    assert "incident.yaml: line" in out.stderr and "not valid YAML" in out.stderr


def test_limits_on_healthy_days_are_checked_and_an_exceeded_one_fails_the_run(tmp_path):
    """The late-partition replay: two healthy lead-in days, then the late day. Its own messages
    and gate are measured; a limit it cannot meet fails the run with the figure, one it meets
    passes."""
    lib = _copy(tmp_path, "demo_late_partition")

    def impossible(doc):
        # every replayed day counted as healthy: the late day's messages are then over a limit
        # of none
        doc["limits"] = {"healthy": [{"first": "2025-06-28", "last": "2025-06-30"}],
                         "messages_per_30_healthy_days": 0, "max_pages": 0}

    _edit(lib / "demo_late_partition", impossible)
    out = backtest("--library", str(lib), "--json")
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    doc = json.loads(out.stdout)
    r = doc["incidents"][0]
    m = r["measures"]
    assert m["healthy_days"] == 3 and m["days"] == 3
    assert set(m["gate_by_day"]) == {"2025-06-28", "2025-06-29", "2025-06-30"}
    assert m["gate_open_share"] == round(m["gate_open_healthy_days"] / 3, 3)
    assert m["messages_on_healthy_days"] == m["messages"] >= 1  # the late day was told
    limits = {x["name"]: x for x in r["limits"]}
    assert limits["messages_per_30_healthy_days"]["ok"] is False
    assert limits["messages_per_30_healthy_days"]["value"] == round(30 * m["messages"] / 3, 2)
    # the late day tickets, it never pages
    assert limits["pages"] == {"name": "pages", "limit": "<= 0", "value": 0, "ok": True}
    assert doc["passed"] is False and doc["limits_exceeded"] == 1
    text = backtest("--library", str(lib)).stdout
    assert "OVER LIMIT" in text and "limit(s) exceeded" in text

    def reachable(doc):
        doc["limits"] = {"pages_on_healthy_days": 0, "max_pages": 0}

    _edit(lib / "demo_late_partition", reachable)
    out = backtest("--library", str(lib), "--json")
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert all(x["ok"] for x in json.loads(out.stdout)["incidents"][0]["limits"])


def test_a_healthy_range_outside_the_replay_is_a_clear_error(tmp_path):
    lib = _copy(tmp_path, "demo_late_partition")
    _edit(lib / "demo_late_partition",
          lambda d: d.update(limits={"healthy": [{"first": "2025-01-01", "last": "2025-06-29"}]}))
    out = backtest("--library", str(lib))
    assert out.returncode == 2
    assert "limits.healthy[0]" in out.stderr and "not inside the replay" in out.stderr
