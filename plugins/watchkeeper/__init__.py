"""Watchkeeper: SRE practice for ML models on Airflow.

The package is a functional core (spec, quality, drift, predictions, labels, performance, slo,
gate, triage) with thin edges (sources, store, alerts, reports, cli, airflow). Only
`watchkeeper.airflow` and the files under dags/ import Airflow.
"""

__version__ = "0.1.0"
