"""Watchkeeper's DAGs, one set per model spec in include/models/.

A declaration only: no I/O beyond reading the specs, no pandas / GX / Evidently at import.
"""

from watchkeeper.airflow.dags import build_dags

globals().update(build_dags())
