"""The acceptance test of onboarding (issue 15), run from README's "Monitor your own model".

The commands are read from the section's first bash block and run exactly as written, one after
the other, in a fresh folder laid out like a checkout (its `.venv`, `dags` and `plugins` are this
checkout's; WATCHKEEPER_PROJECT points there and WATCHKEEPER_HOME is left to its default,
`./var`, as for a user). They generate the `churn` model's data (about 300 rows a day), create the
model with `watchkeeper init`, check it, and run 30 days through its real monitor and labels DAGs
in the embedded Airflow (`dag.test()`). Then: every expectation passed on every day, no
page-severity alert is in the outbox, one console line per day, no library warning on the
console.

Only two settings differ from a user's defaults, for time on a shared 2-core machine, and neither
changes what is checked: Evidently pages are rendered only for days with a finding
(WATCHKEEPER_EVIDENTLY_PAGES=on_finding) and the reviewers' site is not rebuilt after every run
(WATCHKEEPER_SITE_REBUILD=end). It takes about five minutes on an idle machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import subprocess_env
from watchkeeper import paths

pytestmark = pytest.mark.slow

PROJECT = paths.project_root()


def readme_commands() -> list[str]:
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Monitor your own model\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if current.strip():
                commands.append(" ".join(current.split()))
            current = ""
    return commands


def test_the_readme_names_the_commands_it_promises():
    cmds = readme_commands()
    assert cmds[0].startswith(".venv/bin/python -m watchkeeper.example_data ")
    assert any(c.startswith(".venv/bin/watchkeeper init churn ") for c in cmds)
    assert any(c.startswith(".venv/bin/watchkeeper check-config") for c in cmds)
    assert any(" --to 2013-03-30" in c for c in cmds)
    assert cmds[-1] == ".venv/bin/watchkeeper gate churn --as-of 2013-03-30"  # exit 0: open


def test_readme_walkthrough_creates_a_model_and_runs_30_quiet_healthy_days(tmp_path):
    proj = tmp_path / "checkout"
    proj.mkdir()
    for name in (".venv", "dags", "plugins"):
        (proj / name).symlink_to(PROJECT / name)
    env = subprocess_env(WATCHKEEPER_PROJECT=str(proj), WATCHKEEPER_EVIDENTLY_PAGES="on_finding",
                         WATCHKEEPER_SITE_REBUILD="end")
    for var in ("WATCHKEEPER_HOME", "WATCHKEEPER_MODELS_DIR", "WATCHKEEPER_DB_URL"):
        env.pop(var, None)
    outputs = []
    for cmd in readme_commands():
        t0 = time.monotonic()
        r = subprocess.run(["bash", "-c", cmd], cwd=proj, env=env, capture_output=True,
                           text=True, timeout=3600)
        outputs.append((cmd, r))
        print(f"$ {cmd}  ({time.monotonic() - t0:.0f} s, exit {r.returncode})\n{r.stdout}{r.stderr}")
        assert r.returncode == 0, f"{cmd}\n{r.stdout}\n{r.stderr}"

    spec_file = proj / "include" / "models" / "churn.yaml"
    assert spec_file.exists() and (proj / "expectations" / "churn" / "features.json").exists()
    init_out = next(r.stdout for c, r in outputs if " init " in c)
    assert "binary_classification" in init_out and "wrote" in init_out
    check_out = next(r.stdout for c, r in outputs if "check-config" in c)
    assert "1 of 1 specs valid" in check_out

    # the console: one line per model and day, the range's progress, no library warning
    runs = [r for c, r in outputs if " run churn " in c]
    day_lines = [line for r in runs for line in r.stdout.splitlines()
                 if line.startswith("churn  2013-03-")]
    days = [line.split()[1] for line in day_lines]
    assert days == [f"2013-03-{d:02d}" for d in range(1, 31)], days
    assert "[day 29 of 29, " in day_lines[-1] and "done in" in day_lines[-1]
    assert "[day 1 of 29, " in day_lines[1] and "left]" in day_lines[1]
    for r in runs:
        noise = [line for line in (r.stdout + r.stderr).splitlines()
                 if re.search(r"Warning|warnings\.warn|Traceback|\[warning", line)
                 and "kept off the console" not in line]
        assert noise == [], noise
        assert all(line.startswith("churn  2013-03-") or "kept off the console" in line
                   for line in r.stdout.splitlines() if line.strip()), r.stdout

    # the store: 30 days, every expectation passed, every run succeeded
    env_home = proj / "var"
    code = (
        "import json\n"
        "from watchkeeper.store import open_store\n"
        "s = open_store()\n"
        "stages = [dict(ds=x.ds, stage=x.stage, evaluated=x.evaluated, passed=x.passed,"
        " error=x.error) for x in s.stage_results('churn')]\n"
        "runs = [dict(ds=r['ds'], dag=r['dag_id'], task=r['task_id'], state=r['state'])"
        " for r in s.dump('churn')['wk_run']]\n"
        "print(json.dumps({'stages': stages, 'runs': runs}))\n")
    r = subprocess.run([str(proj / ".venv/bin/python"), "-c", code], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    stages = got["stages"]
    assert {s["ds"] for s in stages} == set(days) and len(stages) == 60
    assert all(s["error"] is None and s["evaluated"] > 20 for s in stages), stages
    failed = [s for s in stages if s["passed"] != s["evaluated"]]
    assert failed == [], failed  # zero failed expectations in 30 healthy days
    assert {r["state"] for r in got["runs"]} == {"success"}
    assert {r["dag"] for r in got["runs"]} == {"churn_monitor", "churn_labels"}

    gate = outputs[-1][1].stdout
    assert gate.startswith("OPEN: churn may ship"), gate

    # the outbox: no page-severity alert
    box = env_home / "alerts" / "outbox.jsonl"
    outbox = [json.loads(line) for line in
              (box.read_text().splitlines() if box.exists() else []) if line.strip()]
    pages = [m for m in outbox if m.get("severity") == "page"]
    assert pages == [], pages
    print("outbox:", [(m.get("severity"), m.get("kind"), m.get("ds")) for m in outbox])
