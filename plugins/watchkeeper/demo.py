"""The demo world: six weeks of daily batches for two models, with a story of incidents.

A seeded, deterministic generator: the same `end` date (and the same sizes) gives byte-identical
files. Every random draw comes from `numpy.random.default_rng([story.seed, model, stream])`, one
stream per model and day, so changing one day's story never reshuffles the other days.

Two models:

* ``fraud`` (binary). The deployed model is a fixed logistic scoring function, `fraud_model_score`,
  which is exactly the true fraud probability under the healthy concept, so it is calibrated while
  the world is healthy. Labels are Bernoulli draws of the *true* probability, computed from the
  *true* feature values under the *current* concept; the model scores what it *receives*.
* ``eta`` (regression, the healthy control). `eta_model_predict` is the noise-free part of the true
  delivery time, so it is unbiased on every day; nothing ever happens to it.

The story (drift, concept change, the upstream bug, the late landing, label delays) is the `Story`
dataclass; its defaults are the demo. `generate_demo` writes the layout documented in
`generate_demo`'s docstring under ``<home>/demo``, building it in a temporary folder first and
renaming it into place, so a crash never leaves half a world.

Pure apart from `generate_demo` (which writes files); no Airflow import.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "DEMO_MODELS",
    "DemoError",
    "DemoManifest",
    "Story",
    "StoryError",
    "concept_level",
    "default_end",
    "eta_model_predict",
    "fraud_model_score",
    "generate_demo",
    "load_manifest",
]

DEMO_MODELS = ("fraud", "eta")


class DemoError(Exception):
    """The demo world could not be generated or read; the message says what and where."""


class StoryError(DemoError, ValueError):
    """A `Story` or generator parameter is out of range; the message names the field."""


# --------------------------------------------------------------------------------------------
# The world's fixed constants (not story: the story is what changes over the six weeks)
# --------------------------------------------------------------------------------------------

MERCHANTS = ("grocery", "electronics", "travel", "fashion", "gaming", "restaurants", "fuel",
             "pharmacy")
MERCHANT_SHARES = (0.25, 0.08, 0.05, 0.12, 0.05, 0.22, 0.15, 0.08)
COUNTRIES = ("US", "DE", "FR", "GB", "ES", "IT", "NL")
COUNTRY_SHARES = (0.40, 0.15, 0.12, 0.13, 0.08, 0.07, 0.05)
TIERS = ("bronze", "silver", "gold")
TIER_SHARES = (0.60, 0.30, 0.10)
# Card traffic by hour: quiet at night, peaks at lunch and early evening.
FRAUD_HOUR_WEIGHTS = (2, 1.5, 1, 1, 1, 1.5, 3, 5, 6, 7, 7, 7.5, 8, 7.5, 7, 7, 7.5, 8, 8.5, 8, 7,
                      6, 4.5, 3)
# Row-count factor per weekday (Mon..Sun): card spend peaks Friday/Saturday.
FRAUD_WEEKLY = (0.97, 0.96, 0.98, 1.00, 1.03, 1.04, 1.02)
AMOUNT_MEDIAN = 40.0
AMOUNT_LOG_SD = 1.0
NEW_DEVICE_SHARE = 0.07  # devices first seen in the last 3 days: where card-testing fraud lives

# The deployed fraud model ("fraud-v3"): log-odds contributions. It is the true healthy concept.
FRAUD_INTERCEPT = -4.8
FRAUD_MERCHANT_LOGIT = {"grocery": -0.6, "electronics": 1.0, "travel": 0.5, "fashion": 0.1,
                        "gaming": 1.2, "restaurants": -0.5, "fuel": -0.2, "pharmacy": -0.4}
FRAUD_COUNTRY_LOGIT = {"US": 0.0, "DE": -0.1, "FR": 0.1, "GB": 0.2, "ES": 0.2, "IT": 0.15,
                       "NL": 0.0}
FRAUD_TIER_LOGIT = {"bronze": 0.3, "silver": 0.0, "gold": -0.6}
# Missing device age is imputed with the training median (the model must score every row).
DEVICE_AGE_FILL = 300.0

ETA_WEATHER = ("clear", "rain", "snow", "fog")
ETA_WEATHER_SHARES = (0.65, 0.22, 0.05, 0.08)
ETA_WEATHER_MINUTES = {"clear": 0.0, "rain": 3.5, "snow": 8.0, "fog": 2.5}
# Food delivery: lunch and dinner peaks.
ETA_HOUR_WEIGHTS = (1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2, 2.5, 3.5, 6, 8, 6.5, 4, 3.5, 4, 6,
                    8.5, 9, 7.5, 5, 3, 2)
ETA_WEEKLY = (0.96, 0.95, 0.97, 0.99, 1.03, 1.05, 1.04)
ETA_NOISE_SHAPE = 4.0
ETA_NOISE_SCALE = 1.5  # right-skewed delays, mean removed so the model stays unbiased

# Label delay weights for 2..10 days (most labels come early, chargebacks trickle in).
_DELAY_WEIGHT_PROFILE = (0.20, 0.18, 0.15, 0.12, 0.10, 0.08, 0.07, 0.05, 0.05)

_MODEL_STREAM = {"fraud": 1, "eta": 2}
_TRAINING_STREAM = 10_000
_LANDING_STREAM = 20_000


# --------------------------------------------------------------------------------------------
# Story
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """What happens in the demo world. Day numbers are 1-based: day 1 = end - (n_days - 1)."""

    seed: int = 20_261_019
    n_days: int = 42
    # Slow seasonal data drift (fraud only), from drift_start_day on.
    drift_start_day: int = 15
    amount_drift_per_day: float = 0.02  # the amount median grows 2% per drifted day (compounded)
    merchant_shift_per_day: float = 0.0025  # share gained per drifted day by each drift merchant
    drift_merchants: tuple[str, ...] = ("travel", "electronics")
    # Concept drift (fraud only): ramps in linearly from drift_start_day over concept_ramp_days.
    # Fraud moves from card testing on new devices at night (what the model knows) to account
    # takeover: bursts of gaming/electronics purchases on established accounts (what it does not).
    concept_ramp_days: int = 28
    concept_new_pattern_logit: float = 4.5
    concept_new_pattern_min_txn_count: int = 7
    concept_new_pattern_merchants: tuple[str, ...] = ("gaming", "electronics")
    concept_old_pattern_decay: float = 0.7  # share of new-device + night log-odds gone at full ramp
    # The upstream bug (fraud only, one day): amount in cents for one country, a null spike and a
    # merchant category the model has never seen.
    incident_day: int = 29
    incident_country: str = "DE"
    incident_amount_factor: float = 100.0
    incident_null_column: str = "device_age_days"
    incident_null_fraction: float = 0.30
    incident_new_category: str = "crypto"
    incident_new_category_share: float = 0.03
    incident_new_category_true_logit: float = 1.0  # true extra fraud risk of the new category
    # Batch landing (UTC hours of the next day).
    landing_hour_range: tuple[int, int] = (1, 3)
    late_landing_day: int = 33  # fraud only
    late_landing_hour: int = 14
    # Labels.
    label_delay_days: tuple[int, int] = (2, 10)
    label_never_fraction: float = 0.03
    fraud_model_version: str = "fraud-v3"
    eta_model_version: str = "eta-v7"

    def __post_init__(self) -> None:
        def bad(name: str, reason: str) -> StoryError:
            return StoryError(f"Story.{name} = {getattr(self, name)!r}: {reason}")

        if self.n_days < 2:
            raise bad("n_days", "needs at least 2 days")
        for name in ("drift_start_day", "incident_day", "late_landing_day"):
            if not 1 <= getattr(self, name) <= self.n_days:
                raise bad(name, f"must be a day between 1 and n_days={self.n_days}")
        if self.concept_ramp_days < 1:
            raise bad("concept_ramp_days", "must be at least 1")
        for name in ("incident_null_fraction", "incident_new_category_share",
                     "label_never_fraction", "concept_old_pattern_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a fraction between 0 and 1")
        if self.incident_amount_factor <= 0:
            raise bad("incident_amount_factor", "must be positive")
        if self.merchant_shift_per_day < 0:
            raise bad("merchant_shift_per_day", "must not be negative")
        for name in ("drift_merchants", "concept_new_pattern_merchants"):
            unknown = sorted(set(getattr(self, name)) - set(MERCHANTS))
            if unknown:
                raise bad(name, f"unknown merchant categories {unknown}; known: {list(MERCHANTS)}")
        if self.incident_new_category in MERCHANTS:
            raise bad("incident_new_category", "must be a category the model has never seen")
        if self.incident_country not in COUNTRIES:
            raise bad("incident_country", f"must be one of {list(COUNTRIES)}")
        if self.incident_null_column not in ("amount", "device_age_days"):
            raise bad("incident_null_column", "must be a float feature: amount or device_age_days")
        lo, hi = self.landing_hour_range
        if not 0 <= lo < hi <= 23:
            raise bad("landing_hour_range",
                      "must be (start, end) hours with 0 <= start < end <= 23")
        if not 0 <= self.late_landing_hour <= 23:
            raise bad("late_landing_hour", "must be an hour 0..23")
        dmin, dmax = self.label_delay_days
        if not 1 <= dmin <= dmax:
            raise bad("label_delay_days", "must be (min, max) days with 1 <= min <= max")

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> Story:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StoryError(f"story: unknown fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def incidents(self) -> dict[str, int]:
        """Day numbers of each event in the story."""
        return {"drift_start": self.drift_start_day, "upstream_bug": self.incident_day,
                "late_landing": self.late_landing_day}


def concept_level(story: Story, day: int) -> float:
    """How far the fraud concept has moved on a 1-based day: 0 healthy .. 1 fully changed."""
    steps = day - story.drift_start_day + 1
    return float(np.clip(steps / story.concept_ramp_days, 0.0, 1.0))


def _drift_steps(story: Story, day: int) -> int:
    return max(0, day - story.drift_start_day + 1)


def _label_delay_weights(story: Story) -> tuple[np.ndarray, np.ndarray]:
    dmin, dmax = story.label_delay_days
    delays = np.arange(dmin, dmax + 1)
    # Reuse the decaying profile for any range: stretch it over the configured delays.
    profile = np.interp(np.linspace(0, 1, len(delays)),
                        np.linspace(0, 1, len(_DELAY_WEIGHT_PROFILE)), _DELAY_WEIGHT_PROFILE)
    return delays, profile / profile.sum()


# --------------------------------------------------------------------------------------------
# The two models (pure, exported so tests and the deployment example can score with them)
# --------------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _fraud_terms(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each log-odds term of the healthy concept, from the given (received or true) values."""
    amount = df["amount"].to_numpy(dtype="float64")
    amount = np.where(np.isnan(amount), AMOUNT_MEDIAN, amount)
    log_amount = np.log(np.maximum(amount, 0.01))
    device_age = df["device_age_days"].to_numpy(dtype="float64")
    device_age = np.where(np.isnan(device_age), DEVICE_AGE_FILL, device_age)
    hour = df["hour"].to_numpy(dtype="int64")
    count = df["txn_count_24h"].to_numpy(dtype="int64")

    def lookup(column: str, table: dict[str, float]) -> np.ndarray:
        # Categories the model has never seen (and nulls) score as the baseline (0 log-odds).
        codes, uniques = pd.factorize(df[column])
        values = np.array([table.get(u, 0.0) for u in uniques] + [0.0], dtype="float64")
        return values[codes]  # code -1 (null) picks the trailing 0.0

    return {
        "amount": 0.25 * (log_amount - np.log(AMOUNT_MEDIAN))
        # Very large tickets (> ~$1,500) are almost always fraud in this market.
        + 7.5 * _sigmoid(3.0 * (log_amount - np.log(1500.0))),
        "merchant": lookup("merchant_category", FRAUD_MERCHANT_LOGIT),
        "country": lookup("country", FRAUD_COUNTRY_LOGIT),
        "tier": lookup("customer_tier", FRAUD_TIER_LOGIT),
        "new_device": 4.6 * np.exp(-device_age / 10.0),
        "night": 1.6 * (hour < 6),
        "velocity": 0.15 * (np.minimum(count, 15) - 4),
    }


def fraud_model_score(df: pd.DataFrame) -> np.ndarray:
    """Score rows as fraud-v3 does: P(fraud) under the healthy concept, from the given values.

    Needs columns amount, merchant_category, country, customer_tier, device_age_days, hour,
    txn_count_24h. Nulls are imputed (amount: the median, device age: DEVICE_AGE_FILL); unknown
    categories add nothing.
    """
    missing = [c for c in ("amount", "merchant_category", "country", "customer_tier",
                           "device_age_days", "hour", "txn_count_24h") if c not in df.columns]
    if missing:
        raise DemoError(f"fraud_model_score: missing columns {missing}")
    z = FRAUD_INTERCEPT + sum(_fraud_terms(df).values())
    return _sigmoid(z)


def _fraud_true_probability(true_df: pd.DataFrame, story: Story, level: float) -> np.ndarray:
    terms = _fraud_terms(true_df)
    z = FRAUD_INTERCEPT + sum(terms.values())
    # Concept drift: the model's strongest signals fade and a pattern it does not score appears.
    z = z - level * story.concept_old_pattern_decay * (terms["new_device"] + terms["night"])
    takeover = (true_df["txn_count_24h"].to_numpy() >= story.concept_new_pattern_min_txn_count) & \
        true_df["merchant_category"].isin(story.concept_new_pattern_merchants).to_numpy()
    z = z + level * story.concept_new_pattern_logit * takeover
    new_category = (true_df["merchant_category"] == story.incident_new_category).to_numpy()
    z = z + story.incident_new_category_true_logit * new_category
    return _sigmoid(z)


def eta_model_predict(df: pd.DataFrame) -> np.ndarray:
    """Predict delivery minutes as eta-v7 does: the noise-free part of the true delivery time."""
    missing = [c for c in ("distance_km", "items", "hour", "weather", "courier_tenure")
               if c not in df.columns]
    if missing:
        raise DemoError(f"eta_model_predict: missing columns {missing}")
    hour = df["hour"].to_numpy(dtype="int64")
    rush = ((hour >= 11) & (hour <= 13)) | ((hour >= 18) & (hour <= 20))
    return (6.0
            + 3.0 * df["distance_km"].to_numpy(dtype="float64")
            + 1.2 * df["items"].to_numpy(dtype="float64")
            + df["weather"].map(ETA_WEATHER_MINUTES).fillna(0.0).to_numpy(dtype="float64")
            + 4.0 * rush
            + 7.0 * np.exp(-df["courier_tenure"].to_numpy(dtype="float64") / 45.0))


# --------------------------------------------------------------------------------------------
# Sampling (pure: rng and parameters in, DataFrames out)
# --------------------------------------------------------------------------------------------


def _rng(story: Story, model: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([story.seed, _MODEL_STREAM[model], stream])


def _day_rows(rng: np.random.Generator, base: int, weekly: tuple[float, ...], day: date) -> int:
    factor = weekly[day.weekday()] * (1.0 + rng.normal(0.0, 0.01))
    return int(round(base * float(np.clip(factor, 0.95, 1.05))))


def _event_times(rng: np.random.Generator, n: int, hour_weights: tuple[float, ...],
                 days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (naive UTC, ns) on the given days (datetime64[D] per row) and their hours."""
    weights = np.asarray(hour_weights, dtype="float64")
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    seconds = hour * 3600 + rng.integers(0, 3600, size=n)
    ts = days.astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    return ts.astype("datetime64[ns]"), hour.astype("int64")


def _merchant_shares(story: Story, day: int) -> np.ndarray:
    shares = np.asarray(MERCHANT_SHARES, dtype="float64")
    gain = story.merchant_shift_per_day * _drift_steps(story, day)
    if gain == 0:
        return shares
    grow = np.isin(MERCHANTS, story.drift_merchants)
    # The drift merchants gain; the others give up share in proportion to their size.
    new = shares.copy()
    new[grow] += gain
    taken = gain * grow.sum()
    rest = shares[~grow].sum()
    if taken >= rest:
        raise StoryError(f"Story.merchant_shift_per_day = {story.merchant_shift_per_day!r}: on "
                         f"day {day} the drift merchants would take more than all other shares")
    new[~grow] = shares[~grow] * (1 - taken / rest)
    return new / new.sum()


def _fraud_true_features(rng: np.random.Generator, n: int, story: Story, day: int,
                         days: np.ndarray) -> pd.DataFrame:
    """True feature values for n transactions on `day` (0 = the training period: healthy)."""
    event_ts, hour = _event_times(rng, n, FRAUD_HOUR_WEIGHTS, days)
    mu = np.log(AMOUNT_MEDIAN) + np.log1p(story.amount_drift_per_day) * _drift_steps(story, day)
    amount = np.round(np.exp(rng.normal(mu, AMOUNT_LOG_SD, size=n)), 2)
    amount = np.maximum(amount, 0.5)
    merchant = np.asarray(MERCHANTS)[rng.choice(len(MERCHANTS), size=n,
                                                p=_merchant_shares(story, day))].astype(object)
    if day == story.incident_day:
        # A merchant category launched upstream the same day; it is real, the model never saw it.
        merchant[rng.random(n) < story.incident_new_category_share] = story.incident_new_category
    country = np.asarray(COUNTRIES)[rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARES)]
    new_device = rng.random(n) < NEW_DEVICE_SHARE
    device_age = np.where(new_device, rng.uniform(0.0, 3.0, size=n),
                          np.minimum(rng.gamma(1.5, 250.0, size=n), 2000.0))
    tier = np.asarray(TIERS)[rng.choice(len(TIERS), size=n, p=TIER_SHARES)]
    count = 1 + rng.negative_binomial(2, 0.4, size=n)
    return pd.DataFrame({
        "event_ts": event_ts,
        "amount": amount,
        "merchant_category": merchant,
        "country": country.astype(object),
        "device_age_days": np.round(device_age, 2),
        "hour": hour,
        "customer_tier": tier.astype(object),
        "txn_count_24h": count.astype("int64"),
    })


def _fraud_received(true_df: pd.DataFrame, rng: np.random.Generator, story: Story,
                    day: int) -> pd.DataFrame:
    """What the model receives: the true values, except on the day of the upstream bug."""
    received = true_df.copy()
    if day == story.incident_day:
        in_segment = (received["country"] == story.incident_country).to_numpy()
        received.loc[in_segment, "amount"] = np.round(
            received.loc[in_segment, "amount"].to_numpy() * story.incident_amount_factor, 2)
        nulls = rng.random(len(received)) < story.incident_null_fraction
        received.loc[nulls, story.incident_null_column] = np.nan
    return received


FRAUD_BATCH_SCHEMA = pa.schema([
    ("txn_id", pa.string()), ("event_ts", pa.timestamp("ns")), ("model_version", pa.string()),
    ("amount", pa.float64()), ("merchant_category", pa.string()), ("country", pa.string()),
    ("device_age_days", pa.float64()), ("hour", pa.int64()), ("customer_tier", pa.string()),
    ("txn_count_24h", pa.int64()), ("score", pa.float64()), ("predicted_label", pa.int64()),
])
FRAUD_TRAINING_SCHEMA = FRAUD_BATCH_SCHEMA.append(pa.field("is_fraud", pa.int64()))
FRAUD_LABEL_SCHEMA = pa.schema([("txn_id", pa.string()), ("is_fraud", pa.int64()),
                                ("label_ts", pa.timestamp("ns"))])
ETA_BATCH_SCHEMA = pa.schema([
    ("order_id", pa.string()), ("event_ts", pa.timestamp("ns")), ("model_version", pa.string()),
    ("distance_km", pa.float64()), ("items", pa.int64()), ("hour", pa.int64()),
    ("weather", pa.string()), ("courier_tenure", pa.float64()), ("predicted_minutes", pa.float64()),
])
ETA_TRAINING_SCHEMA = ETA_BATCH_SCHEMA.append(pa.field("actual_minutes", pa.float64()))
ETA_LABEL_SCHEMA = pa.schema([("order_id", pa.string()), ("actual_minutes", pa.float64()),
                              ("label_ts", pa.timestamp("ns"))])


_SUFFIXES = np.array([f"-{i:06d}" for i in range(0, 100_001)], dtype=object)


def _ids(prefix: str, tag: str, n: int) -> np.ndarray:
    if n >= len(_SUFFIXES):
        raise DemoError(f"{n} rows in one batch: ids are numbered up to {len(_SUFFIXES) - 1}")
    return f"{prefix}-{tag}" + _SUFFIXES[1:n + 1]


def _fraud_frame(true_df: pd.DataFrame, received: pd.DataFrame, story: Story, prefix_tag: str
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sort by time, assign ids, score; returns (batch in schema order, true frame aligned)."""
    order = np.argsort(true_df["event_ts"].to_numpy(), kind="stable")
    true_df = true_df.iloc[order].reset_index(drop=True)
    received = received.iloc[order].reset_index(drop=True)
    score = fraud_model_score(received)
    received.insert(0, "txn_id", _ids("f", prefix_tag, len(received)))
    received.insert(2, "model_version", story.fraud_model_version)
    received["score"] = score
    received["predicted_label"] = (score >= 0.5).astype("int64")
    return received[FRAUD_BATCH_SCHEMA.names], true_df


def _eta_features(rng: np.random.Generator, n: int, days: np.ndarray) -> pd.DataFrame:
    event_ts, hour = _event_times(rng, n, ETA_HOUR_WEIGHTS, days)
    distance = np.clip(np.exp(rng.normal(np.log(3.5), 0.55, size=n)), 0.3, 25.0)
    items = 1 + rng.poisson(1.4, size=n)
    weather = np.asarray(ETA_WEATHER)[rng.choice(len(ETA_WEATHER), size=n, p=ETA_WEATHER_SHARES)]
    tenure = np.minimum(rng.gamma(1.3, 220.0, size=n), 2500.0)
    df = pd.DataFrame({
        "event_ts": event_ts,
        "distance_km": np.round(distance, 3),
        "items": items.astype("int64"),
        "hour": hour,
        "weather": weather.astype(object),
        "courier_tenure": np.round(tenure, 2),
    })
    return df.sort_values("event_ts", kind="stable").reset_index(drop=True)


def _eta_frame(features: pd.DataFrame, rng: np.random.Generator, story: Story, tag: str
               ) -> tuple[pd.DataFrame, np.ndarray]:
    predicted = eta_model_predict(features)
    noise = rng.gamma(ETA_NOISE_SHAPE, ETA_NOISE_SCALE, size=len(features)) \
        - ETA_NOISE_SHAPE * ETA_NOISE_SCALE
    df = features.copy()
    df.insert(0, "order_id", _ids("e", tag, len(df)))
    df.insert(2, "model_version", story.eta_model_version)
    df["predicted_minutes"] = predicted
    return df[ETA_BATCH_SCHEMA.names], predicted + noise


def _label_arrivals(rng: np.random.Generator, story: Story, day: date, n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per row: arrival timestamp (naive UTC ns) and whether the label ever arrives."""
    delays, weights = _label_delay_weights(story)
    delay = rng.choice(delays, size=n, p=weights)
    arrives = rng.random(n) >= story.label_never_fraction
    seconds = rng.integers(0, 86_400, size=n)
    base = np.datetime64(day, "D") + delay.astype("timedelta64[D]")
    ts = base.astype("datetime64[s]") + seconds.astype("timedelta64[s]")
    return ts.astype("datetime64[ns]"), arrives


def _landing_times(story: Story, model: str, dates: list[date]) -> dict[str, str]:
    rng = _rng(story, model, _LANDING_STREAM)
    lo, hi = story.landing_hour_range
    offsets = rng.integers(lo * 3600, hi * 3600, size=len(dates))
    late_offset = story.late_landing_hour * 3600 + rng.integers(0, 600)
    landed = {}
    for i, day in enumerate(dates, start=1):
        late = model == "fraud" and i == story.late_landing_day
        seconds = late_offset if late else offsets[i - 1]
        at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) \
            + timedelta(seconds=int(seconds))
        landed[day.isoformat()] = at.isoformat()
    return landed


# --------------------------------------------------------------------------------------------
# Writing (the imperative shell)
# --------------------------------------------------------------------------------------------


def _write_parquet(df: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    pq.write_table(table, path)


def _sqlite_rows(batch: pd.DataFrame, ds: str) -> list[tuple]:
    columns = []
    for name in FRAUD_BATCH_SCHEMA.names:
        col = batch[name]
        if name == "event_ts":
            # ISO 8601 text, second resolution (event times are whole seconds).
            values = np.datetime_as_string(col.to_numpy().astype("datetime64[s]")).tolist()
        elif col.dtype.kind == "f":
            values = [None if v != v else v for v in col.tolist()]  # NaN -> SQL NULL
        else:
            values = col.tolist()
        columns.append(values)
    columns.append([ds] * len(batch))
    return list(zip(*columns))


_SQLITE_TYPES = {"string": "TEXT", "timestamp[ns]": "TEXT", "double": "REAL", "int64": "INTEGER"}


def _create_fraud_db(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    # The file is built inside the temporary world folder and renamed into place whole, so
    # crash safety comes from the rename, not from SQLite's journal.
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    cols = ", ".join(f"{f.name} {_SQLITE_TYPES[str(f.type)]}" for f in FRAUD_BATCH_SCHEMA)
    con.execute(f"CREATE TABLE predictions ({cols}, ds TEXT NOT NULL)")
    return con


@dataclass(frozen=True)
class DemoManifest:
    """Where the generated demo world is, and what is in it."""

    home: Path
    root: Path  # <home>/demo
    end: date
    dates: tuple[date, ...]
    story: Story
    rows_per_day: int
    training_rows: int
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> ds -> batch rows

    @property
    def ds_list(self) -> list[str]:
        return [d.isoformat() for d in self.dates]

    def ds(self, day: int) -> str:
        """The 'YYYY-MM-DD' of a 1-based story day."""
        if not 1 <= day <= len(self.dates):
            raise DemoError(f"day {day} is outside the demo's days 1..{len(self.dates)}")
        return self.dates[day - 1].isoformat()

    @property
    def story_path(self) -> Path:
        return self.root / "story.json"

    def model_dir(self, model: str) -> Path:
        if model not in DEMO_MODELS:
            raise DemoError(f"unknown demo model {model!r}; the demo has {list(DEMO_MODELS)}")
        return self.root / model

    def training_path(self, model: str) -> Path:
        return self.model_dir(model) / "training.parquet"

    def predictions_path(self, model: str, ds: str) -> Path:
        return self.model_dir(model) / "predictions" / f"ds={ds}.parquet"

    def labels_path(self, model: str, arrived: str) -> Path:
        return self.model_dir(model) / "labels" / f"arrived={arrived}.parquet"

    def landed_marker_path(self, ds: str) -> Path:
        """eta only: the marker whose content is the batch's ISO UTC landing time."""
        return self.model_dir("eta") / "predictions" / f"ds={ds}.landed"

    @property
    def fraud_db(self) -> Path:
        return self.root / "fraud" / "fraud.db"

    @property
    def fraud_landing(self) -> Path:
        return self.root / "fraud" / "landing.json"


def default_end(today: date | None = None) -> date:
    """Yesterday in UTC: the demo's days end yesterday so its results are current."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise StoryError(f"generate_demo: {name} = {value!r}: must be an integer >= {minimum}")
    return int(value)


def generate_demo(home: Path, end: date | None = None, *, rows_per_day: int = 20_000,
                  training_rows: int = 50_000, story: Story | None = None) -> DemoManifest:
    """Generate the demo world under ``<home>/demo``, replacing any previous one atomically.

    Layout (ds = YYYY-MM-DD; day 1 = end - (n_days - 1), day n_days = end, default yesterday UTC):
      demo/story.json                               story parameters, days, incidents, row counts
      demo/fraud/training.parquet                   healthy sample + score + is_fraud
      demo/fraud/predictions/ds=<ds>.parquet        one batch per day
      demo/fraud/fraud.db                           SQLite `predictions` = all batches + ds column
      demo/fraud/landing.json                       {ds: ISO UTC landed_at}
      demo/fraud/labels/arrived=<ds>.parquet        txn_id, is_fraud, label_ts (every day)
      demo/eta/training.parquet                     healthy sample + predicted + actual_minutes
      demo/eta/predictions/ds=<ds>.parquet, .landed batch and its landing-time marker
      demo/eta/labels/arrived=<ds>.parquet          order_id, actual_minutes, label_ts
    Labels that would arrive after `end` have not arrived yet and are not written.
    """
    story = story or Story()
    if not isinstance(story, Story):
        raise StoryError(f"generate_demo: story must be a Story, got {type(story).__name__}")
    if end is None:
        end = default_end()
    if isinstance(end, datetime) or not isinstance(end, date):
        raise StoryError(f"generate_demo: end = {end!r}: must be a datetime.date (not a datetime)")
    rows_per_day = _check_int("rows_per_day", rows_per_day, 100)
    training_rows = _check_int("training_rows", training_rows, 100)
    home = Path(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"generate_demo: cannot create home folder {home}: {exc}") from exc

    dates = tuple(end - timedelta(days=story.n_days - 1 - i) for i in range(story.n_days))
    final = home / "demo"
    tmp = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=home))
    try:
        rows = {"fraud": _write_fraud(tmp / "fraud", story, dates, rows_per_day, training_rows),
                "eta": _write_eta(tmp / "eta", story, dates, rows_per_day, training_rows)}
        _write_story(tmp / "story.json", story, dates, rows_per_day, training_rows, rows)
        tmp.chmod(0o755)  # mkdtemp makes it private; the world is meant to be read by others
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DemoManifest(home=home, root=final, end=end, dates=dates, story=story,
                        rows_per_day=rows_per_day, training_rows=training_rows, rows=rows)


def _swap_into_place(tmp: Path, final: Path) -> None:
    # Two renames on one filesystem: readers see either the old world or the new one; the old
    # one is only deleted once the new one is in place.
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=final.parent))
        old.rmdir()
        final.rename(old)
    try:
        tmp.rename(final)
    except OSError as exc:
        if old is not None:
            old.rename(final)
        raise DemoError(
            f"generate_demo: cannot move the new world {tmp} to {final}: {exc}") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_labels(label_dir: Path, schema: pa.Schema, dates: tuple[date, ...],
                  parts: list[pd.DataFrame]) -> None:
    label_dir.mkdir(parents=True)
    labels = pd.concat(parts, ignore_index=True)
    # Group by arrival day as an integer day number (days since 1970-01-01).
    arrived_on = labels["label_ts"].to_numpy().astype("datetime64[D]").astype("int64")
    groups = {int(d): g.sort_values("label_ts", kind="stable")
              for d, g in labels.groupby(arrived_on, sort=True)}
    for day in dates:
        ds = day.isoformat()
        part = groups.get(int(np.datetime64(day, "D").astype("int64")), labels.iloc[:0])
        _write_parquet(part[schema.names], schema, label_dir / f"arrived={ds}.parquet")


def _write_fraud(root: Path, story: Story, dates: tuple[date, ...], rows_per_day: int,
                 training_rows: int) -> dict[str, int]:
    (root / "predictions").mkdir(parents=True)
    end = dates[-1]

    # Training: the healthy world in the eight weeks ending two weeks before day 1.
    rng = _rng(story, "fraud", _TRAINING_STREAM)
    first = np.datetime64(dates[0] - timedelta(days=70), "D")
    days = first + rng.integers(0, 56, size=training_rows).astype("timedelta64[D]")
    true_df = _fraud_true_features(rng, training_rows, story, 0, days)
    batch, true_df = _fraud_frame(true_df, true_df.copy(), story, "train")
    p = _fraud_true_probability(true_df, story, 0.0)
    batch["is_fraud"] = (rng.random(training_rows) < p).astype("int64")
    _write_parquet(batch, FRAUD_TRAINING_SCHEMA, root / "training.parquet")

    con = _create_fraud_db(root / "fraud.db")
    placeholders = ", ".join("?" * (len(FRAUD_BATCH_SCHEMA) + 1))
    rows: dict[str, int] = {}
    label_parts = []
    try:
        for i, day in enumerate(dates, start=1):
            rng = _rng(story, "fraud", i)
            ds = day.isoformat()
            n = _day_rows(rng, rows_per_day, FRAUD_WEEKLY, day)
            true_df = _fraud_true_features(rng, n, story, i, np.full(n, np.datetime64(day, "D")))
            received = _fraud_received(true_df, rng, story, i)
            batch, true_df = _fraud_frame(true_df, received, story, day.strftime("%Y%m%d"))
            is_fraud = (rng.random(n) < _fraud_true_probability(true_df, story,
                                                                  concept_level(story, i)))
            label_ts, arrives = _label_arrivals(rng, story, day, n)
            keep = arrives & (label_ts < np.datetime64(end + timedelta(days=1), "D"))
            label_parts.append(pd.DataFrame({"txn_id": batch["txn_id"].to_numpy()[keep],
                                             "is_fraud": is_fraud[keep].astype("int64"),
                                             "label_ts": label_ts[keep]}))
            _write_parquet(batch, FRAUD_BATCH_SCHEMA, root / "predictions" / f"ds={ds}.parquet")
            con.executemany(f"INSERT INTO predictions VALUES ({placeholders})",
                            _sqlite_rows(batch, ds))
            rows[ds] = n
        # The index after the bulk load: much faster than maintaining it row by row.
        con.execute("CREATE INDEX ix_predictions_ds ON predictions (ds)")
        con.commit()
    finally:
        con.close()

    _write_labels(root / "labels", FRAUD_LABEL_SCHEMA, dates, label_parts)
    landing = _landing_times(story, "fraud", list(dates))
    (root / "landing.json").write_text(json.dumps(landing, indent=2, sort_keys=True) + "\n")
    return rows


def _write_eta(root: Path, story: Story, dates: tuple[date, ...], rows_per_day: int,
               training_rows: int) -> dict[str, int]:
    (root / "predictions").mkdir(parents=True)
    end = dates[-1]

    rng = _rng(story, "eta", _TRAINING_STREAM)
    first = np.datetime64(dates[0] - timedelta(days=70), "D")
    days = first + rng.integers(0, 56, size=training_rows).astype("timedelta64[D]")
    batch, actual = _eta_frame(_eta_features(rng, training_rows, days), rng, story, "train")
    batch["actual_minutes"] = actual
    _write_parquet(batch, ETA_TRAINING_SCHEMA, root / "training.parquet")

    landing = _landing_times(story, "eta", list(dates))
    rows: dict[str, int] = {}
    label_parts = []
    for i, day in enumerate(dates, start=1):
        rng = _rng(story, "eta", i)
        ds = day.isoformat()
        n = _day_rows(rng, rows_per_day, ETA_WEEKLY, day)
        features = _eta_features(rng, n, np.full(n, np.datetime64(day, "D")))
        batch, actual = _eta_frame(features, rng, story, day.strftime("%Y%m%d"))
        label_ts, arrives = _label_arrivals(rng, story, day, n)
        keep = arrives & (label_ts < np.datetime64(end + timedelta(days=1), "D"))
        label_parts.append(pd.DataFrame({"order_id": batch["order_id"].to_numpy()[keep],
                                         "actual_minutes": actual[keep],
                                         "label_ts": label_ts[keep]}))
        _write_parquet(batch, ETA_BATCH_SCHEMA, root / "predictions" / f"ds={ds}.parquet")
        (root / "predictions" / f"ds={ds}.landed").write_text(landing[ds])
        rows[ds] = n

    _write_labels(root / "labels", ETA_LABEL_SCHEMA, dates, label_parts)
    return rows


def _write_story(path: Path, story: Story, dates: tuple[date, ...], rows_per_day: int,
                 training_rows: int, rows: dict[str, dict[str, int]]) -> None:
    doc = {
        "end": dates[-1].isoformat(),
        "rows_per_day": rows_per_day,
        "training_rows": training_rows,
        "story": story.to_json(),
        "days": {str(i): d.isoformat() for i, d in enumerate(dates, start=1)},
        "incidents": {name: {"day": day, "ds": dates[day - 1].isoformat()}
                      for name, day in story.incidents().items()},
        "models": {
            "fraud": {"kind": "binary_classification", "model_version": story.fraud_model_version,
                      "id_column": "txn_id", "label_column": "is_fraud",
                      "prediction_column": "predicted_label", "score_column": "score",
                      "rows": rows["fraud"]},
            "eta": {"kind": "regression", "model_version": story.eta_model_version,
                    "id_column": "order_id", "label_column": "actual_minutes",
                    "prediction_column": "predicted_minutes", "rows": rows["eta"]},
        },
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def load_manifest(home: Path) -> DemoManifest:
    """Read back the manifest of a world generated earlier under ``<home>/demo``."""
    path = Path(home) / "demo" / "story.json"
    try:
        doc = json.loads(path.read_text())
        story = Story.from_json(doc["story"])
        dates = tuple(date.fromisoformat(doc["days"][str(i)]) for i in range(1, story.n_days + 1))
        return DemoManifest(home=Path(home), root=path.parent, end=date.fromisoformat(doc["end"]),
                            dates=dates, story=story, rows_per_day=int(doc["rows_per_day"]),
                            training_rows=int(doc["training_rows"]),
                            rows={m: dict(doc["models"][m]["rows"]) for m in DEMO_MODELS})
    except FileNotFoundError as exc:
        raise DemoError(f"{path}: no demo world here; run include/demo/generate.py") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise DemoError(f"{path}: not a valid demo story file: {exc!r}") from exc
