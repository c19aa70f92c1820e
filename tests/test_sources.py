"""Reading a day's partition from files and SQL, landing times and freshness."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from watchkeeper import sources
from watchkeeper.spec import parse_spec

DS = "2026-03-02"


def _spec(source: dict, landing: dict | None = None, **extra):
    raw = {
        "name": "m",
        "task": "binary_classification",
        "source": source,
        "columns": {"id": "id", "timestamp": "ts"},
        "features": [{"name": "x", "kind": "numerical"}],
        "prediction": {"score": "score"},
        "reference": {"training": "train.parquet"},
        **({"landing": landing} if landing else {}),
        **extra,
    }
    return parse_spec(raw)


def _frame(n=5):
    return pd.DataFrame({
        "id": [f"i{k}" for k in range(n)],
        "ts": pd.date_range(DS, periods=n, freq="h"),
        "x": range(n),
        "score": [0.1] * n,
    })


def test_parquet_and_csv_patterns(tmp_path):
    _frame().to_parquet(tmp_path / f"p_{DS}.parquet")
    _frame(3).to_csv(tmp_path / f"c_{DS}.csv", index=False)
    p = sources.read_partition(_spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")}), DS)
    assert p.rows == 5 and str(tmp_path) in p.location
    c = sources.read_partition(_spec({"kind": "file", "path": str(tmp_path / "c_{ds}.csv")}), DS)
    assert c.rows == 3


def test_missing_partition_is_typed_with_location(tmp_path):
    spec = _spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")})
    with pytest.raises(sources.PartitionMissing) as exc:
        sources.read_partition(spec, DS)
    assert exc.value.status == "missing"
    assert f"p_{DS}.parquet" in str(exc.value) and "no file for this day" in str(exc.value)


def test_non_utf8_csv_is_unreadable_with_reason(tmp_path):
    (tmp_path / f"c_{DS}.csv").write_bytes("id,ts,x,score\nZürich,2026-03-02,1,0.1\n".encode("latin-1"))
    spec = _spec({"kind": "file", "path": str(tmp_path / "c_{ds}.csv")})
    with pytest.raises(sources.PartitionUnreadable, match=r"not UTF-8 text \(byte \d+"):
        sources.read_partition(spec, DS)


def test_corrupt_parquet_is_unreadable(tmp_path):
    (tmp_path / f"p_{DS}.parquet").write_bytes(b"not parquet at all")
    spec = _spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")})
    with pytest.raises(sources.PartitionUnreadable, match="cannot parse as parquet"):
        sources.read_partition(spec, DS)


def _sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    frame = pd.concat([_frame().assign(ds=DS), _frame(2).assign(ds="2026-03-03")])
    frame["ts"] = frame["ts"].astype(str)
    frame.to_sql("preds", sa.create_engine(url), index=False)
    return url


def test_sql_table_binds_the_day_and_parses_timestamps(tmp_path):
    url = _sqlite(tmp_path)
    spec = _spec({"kind": "sql_table", "url": url, "table": "preds", "date_column": "ds"})
    p = sources.read_partition(spec, DS)
    assert p.rows == 5
    assert pd.api.types.is_datetime64_any_dtype(p.frame["ts"])
    assert sources.read_partition(spec, "2026-03-04").rows == 0


def test_sql_query_binds_ds(tmp_path):
    url = _sqlite(tmp_path)
    spec = _spec({"kind": "sql_query", "url": url, "query": "select * from preds where ds = :ds"})
    assert sources.read_partition(spec, "2026-03-03").rows == 2


def test_sql_errors_are_unreadable_and_mask_passwords():
    spec = _spec({"kind": "sql_table", "url": "postgresql+psycopg://u:s3cret@127.0.0.1:1/x",
                  "table": "t", "date_column": "ds"})
    with pytest.raises(sources.PartitionUnreadable) as exc:
        sources.read_partition(spec, DS)
    assert "s3cret" not in str(exc.value) and "***" in str(exc.value)


def test_conn_id_from_environment(tmp_path, monkeypatch):
    url = _sqlite(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_DEMO_DB", url)
    spec = _spec({"kind": "sql_table", "conn_id": "demo_db", "table": "preds", "date_column": "ds"})
    assert sources.read_partition(spec, DS).rows == 5


def test_malformed_ds_never_reaches_a_path(tmp_path):
    spec = _spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")})
    with pytest.raises(ValueError):
        sources.read_partition(spec, "../../etc/passwd")


def test_manifest_marker_and_freshness(tmp_path):
    (tmp_path / "landing.json").write_text(json.dumps({DS: "2026-03-03T14:00:00+00:00"}))
    spec = _spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")},
                 {"kind": "manifest", "path": str(tmp_path / "landing.json"), "deadline_hours": 6})
    landed = sources.landing_time(spec, DS)
    assert landed == datetime(2026, 3, 3, 14, tzinfo=timezone.utc)
    f = sources.freshness(spec, DS, landed, status="ok")
    assert f.good is False and f.lateness_hours == 8.0 and "after the deadline" in f.message
    assert sources.landing_time(spec, "2026-03-09") is None

    (tmp_path / f"m_{DS}.landed").write_text("2026-03-03T02:30:00Z")
    spec2 = _spec({"kind": "file", "path": str(tmp_path / "p_{ds}.parquet")},
                  {"kind": "marker", "path": str(tmp_path / "m_{ds}.landed")})
    f2 = sources.freshness(spec2, DS, sources.landing_time(spec2, DS), status="ok")
    assert f2.good is True and f2.lateness_hours == -3.5
    assert sources.freshness(spec2, DS, None, status="missing").good is False
