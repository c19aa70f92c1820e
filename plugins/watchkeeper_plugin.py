"""Watchkeeper's Airflow plugin: the gate over HTTP, served by the Airflow API server.

Kept small on purpose: Airflow imports every .py under plugins/ as a top-level module, so the
library itself is listed in plugins/.airflowignore and imported here as the package it is.

Apps a plugin mounts get no authentication by themselves: every route here depends on the API
server's authenticated user (a JWT in `Authorization: Bearer`, or the UI's `_token` cookie).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from watchkeeper.airflow.http import app

STATUS_BY_DECISION = {"open": 200, "closed": 409, "inconclusive": 503}


class WatchkeeperPlugin(AirflowPlugin):
    name = "watchkeeper"
    fastapi_apps = [{"app": app, "url_prefix": "/watchkeeper", "name": "Watchkeeper"}]
    external_views = [
        {
            "name": "Watchkeeper reports",
            "href": "/watchkeeper/reports/index.html",
            "destination": "nav",
            "category": "browse",
            "url_route": "watchkeeper",
        }
    ]
