"""The Airflow edge: DAG factory, task runtime, operators, sensor, callbacks, plugin app.

Together with dags/, the only code that imports Airflow.
"""
