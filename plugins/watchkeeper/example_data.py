"""A model of your own, generated: the dataset README's "Monitor your own model" walks through.

`churn` scores a subscription service's customers for churn (binary classification) and runs in
America/New_York. What the generator writes under OUT (seeded, so the same every time):

- ``predictions/ds=YYYY-MM-DD.parquet``: one file per day (``--rows-per-day`` rows, Poisson
  around it): ``request_id``, ``scored_at`` (inside the New York day, stored as naive UTC),
  ``loaded_at`` (when the file landed: about two hours after the day ended), ``model_version``,
  seven features (``email`` among them, unique per row), ``churn_score`` and ``flagged`` (the
  served decision: ``churn_score >= 0.35``; the serving system's threshold, not 0.5);
- ``training.parquet``: 6,000 rows of the same features with the model's ``churn_score`` and
  ``flagged`` on them and the truth ``churned``, scored over 60 days before the first day;
- ``labels/arrived=YYYY-MM-DD.parquet``: whether each customer churned (``churned``, 0/1) with
  ``label_ts``, arriving 1-5 days after the prediction; about 3% never arrive.

Healthy throughout: the days are drawn like the training set and the labels follow the scores
(the model is calibrated), so a correctly sized monitor stays quiet. `python -m
watchkeeper.example_data OUT [--first DAY] [--days N] [--rows-per-day N]`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

TZ = "America/New_York"
THRESHOLD = 0.35
PLANS = ["basic", "standard", "premium"]
REGIONS = ["northeast", "south", "midwest", "west"]
DEVICES = ["ios", "android", "web"]


def _customers(rng: np.random.Generator, n: int, start_id: int) -> pd.DataFrame:
    plan = rng.choice(PLANS, n, p=[0.5, 0.35, 0.15])
    tenure = np.minimum(rng.gamma(1.6, 14.0, n).round(), 120).astype("int64")
    spend = np.round(rng.lognormal(np.log(35), 0.45, n) * np.where(plan == "premium", 1.8, 1.0), 2)
    tickets = rng.poisson(0.8, n).astype("int64")
    last_login = np.round(rng.exponential(6.0, n), 1)
    last_login[rng.random(n) < 0.02] = np.nan  # 2% missing (never logged in on this device)
    frame = pd.DataFrame({
        "tenure_months": tenure,
        "monthly_spend": spend,
        "support_tickets_30d": tickets,
        "last_login_days": last_login,
        "plan": plan.astype(object),
        "region": rng.choice(REGIONS, n, p=[0.3, 0.3, 0.2, 0.2]).astype(object),
        "device": rng.choice(DEVICES, n, p=[0.45, 0.4, 0.15]).astype(object),
        "email": [f"customer{start_id + i}@example.com" for i in range(n)],
    })
    logit = (-1.6 - 0.03 * tenure + 0.45 * tickets + 0.08 * np.nan_to_num(last_login, nan=10.0)
             - 0.4 * (plan == "premium") + 0.25 * (frame["device"] == "web"))
    frame["churn_score"] = np.round(1.0 / (1.0 + np.exp(-logit)), 6)
    frame["flagged"] = (frame["churn_score"] >= THRESHOLD).astype("int64")
    return frame


def _utc_naive(local: datetime) -> datetime:
    return local.astimezone(timezone.utc).replace(tzinfo=None)


def generate(out: Path, *, first: date = date(2013, 3, 1), days: int = 30,
             rows_per_day: int = 300, seed: int = 15) -> dict:
    """Write the dataset under `out`; returns {"first", "last", "days", "files"}."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    tz = ZoneInfo(TZ)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)

    # the training set: 6,000 customers scored over the 60 days before the first day
    train = _customers(rng, 6000, 10_000_000)
    start = datetime(first.year, first.month, first.day, tzinfo=tz) - timedelta(days=60)
    seconds = rng.uniform(0, 60 * 86400, len(train))
    train.insert(0, "scored_at", [_utc_naive(start + timedelta(seconds=float(s))) for s in seconds])
    train["churned"] = (rng.random(len(train)) < train["churn_score"]).astype("int64")
    train.to_parquet(out / "training.parquet", index=False)

    labels: dict[date, list[pd.DataFrame]] = {}
    next_id = 0
    day_list = [first + timedelta(days=i) for i in range(days)]
    for d in day_list:
        n = int(rng.poisson(rows_per_day))
        frame = _customers(rng, n, next_id)
        day_start = datetime(d.year, d.month, d.day, tzinfo=tz)
        day_end = datetime.combine(d + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        span = (day_end - day_start).total_seconds()  # 23 or 25 hours on DST days
        offsets = np.sort(rng.uniform(0, span, n))
        frame.insert(0, "request_id", [f"r{next_id + i:08d}" for i in range(n)])
        frame.insert(1, "scored_at", [_utc_naive(day_start + timedelta(seconds=float(s)))
                                      for s in offsets])
        landed = _utc_naive(day_end + timedelta(hours=2, minutes=int(rng.integers(0, 30))))
        frame.insert(2, "loaded_at", pd.Timestamp(landed))
        frame.insert(3, "model_version", "churn-v2")
        next_id += n
        frame.to_parquet(out / "predictions" / f"ds={d.isoformat()}.parquet", index=False)
        # labels: did the customer churn (drawn from the calibrated score), known 1-5 days later
        truth = (rng.random(n) < frame["churn_score"].to_numpy()).astype("int64")
        delay = rng.integers(1, 6, n)
        arrives = rng.random(n) >= 0.03
        for k in range(1, 6):
            m = arrives & (delay == k)
            if not m.any():
                continue
            arrival = d + timedelta(days=k)
            lab = pd.DataFrame({
                "request_id": frame["request_id"].to_numpy()[m],
                "churned": truth[m],
                "label_ts": pd.Timestamp(_utc_naive(datetime(arrival.year, arrival.month,
                                                             arrival.day, 9, tzinfo=tz))),
            })
            labels.setdefault(arrival, []).append(lab)
    for arrival in [first + timedelta(days=i) for i in range(days + 5)]:
        parts = labels.get(arrival, [])
        lab = (pd.concat(parts, ignore_index=True) if parts else
               pd.DataFrame({"request_id": pd.Series(dtype=object),
                             "churned": pd.Series(dtype="int64"),
                             "label_ts": pd.Series(dtype="datetime64[ns]")}))
        lab.to_parquet(out / "labels" / f"arrived={arrival.isoformat()}.parquet", index=False)
    return {"first": day_list[0].isoformat(), "last": day_list[-1].isoformat(), "days": days,
            "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m watchkeeper.example_data",
                                description="Generate the `churn` example model's data.")
    p.add_argument("out", help="folder to write into")
    p.add_argument("--first", default="2013-03-01", help="first prediction day (default 2013-03-01)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--rows-per-day", dest="rows_per_day", type=int, default=300)
    a = p.parse_args(argv)
    info = generate(Path(a.out), first=date.fromisoformat(a.first), days=a.days,
                    rows_per_day=a.rows_per_day)
    print(f"wrote {a.days} days of churn predictions ({info['first']} .. {info['last']}), the "
          f"training set and the labels under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
