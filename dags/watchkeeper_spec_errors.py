"""Surfaces invalid model specs as a DAG import error in the Airflow UI (file, field, reason).

The valid models keep their DAGs (dags/watchkeeper_dags.py); this file fails to import only while
some spec is invalid, so a typo in one team's spec is visible without silencing everyone else.
"""

from watchkeeper.airflow.dags import raise_spec_errors

raise_spec_errors()
