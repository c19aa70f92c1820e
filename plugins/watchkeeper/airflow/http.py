"""The FastAPI app the plugin mounts at /watchkeeper on the Airflow API server.

GET /watchkeeper/gates/{model}?scope=model|features answers like `watchkeeper gate --json`, with
HTTP 200 open, 409 closed, 503 inconclusive; 404 for an unknown model (listing the known ones).
Every route requires the API server's authenticated user, and the decision is audited with that
user's name.

POST /watchkeeper/gates/{model}/override {"reason": ..., "expires": "4h", "scope": "model"} is
the break-glass override over HTTP: it is recorded as made by the authenticated user (the body
cannot name anyone else), and needs the right to edit the model's deploy DAG (`<model>_deploy`)
in Airflow's auth manager: a viewer may ask the gate, not open it. 201 with the override; 400 when
refused (no reason, an expiry not in the future); 403 without that right; 404 unknown model.

GET /watchkeeper/reports/{path} serves the reports site (WATCHKEEPER_HOME/reports) to signed-in
users; a path that resolves outside that folder is refused (403).
"""

from __future__ import annotations

from typing import Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from airflow.api_fastapi.core_api.security import GetUserDep, requires_authenticated

app = FastAPI(title="Watchkeeper", description="Error-budget gates and reports for ML models")

STATUS = {"open": 200, "closed": 409, "inconclusive": 503}


@app.get("/gates/{model}", dependencies=[Depends(requires_authenticated())])
def gate(model: str, user: GetUserDep, scope: Literal["model", "features"] = "model",
         as_of: str | None = None) -> JSONResponse:
    from watchkeeper import gatekeeper
    from watchkeeper.spec import UnknownModel

    try:
        d = gatekeeper.ask(model, scope, as_of=as_of, asked_by=user.get_name(), via="http")
    except UnknownModel as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    except ValueError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    body = d.to_json_dict()
    # The status code carries the raw decision; `effective` says what the policy/override makes of it.
    code = 200 if d.effective == "open" else STATUS[d.decision]
    return JSONResponse(body, status_code=code)


class OverrideRequest(BaseModel):
    # No `by` field: who made the override is the authenticated user, never a claim of the body.
    model_config = ConfigDict(extra="forbid")

    reason: str
    expires: str
    scope: Literal["model", "features"] = "model"


@app.post("/gates/{model}/override", status_code=201,
          dependencies=[Depends(requires_authenticated())])
def override(model: str, body: OverrideRequest, user: GetUserDep) -> JSONResponse:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    from watchkeeper import gatekeeper
    from watchkeeper.gate import OverrideRefused
    from watchkeeper.spec import UnknownModel, get_spec

    try:
        get_spec(model)
    except UnknownModel as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    name = user.get_name()
    if not get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=f"{model}_deploy"),
                                                user=user):
        raise HTTPException(status_code=403, detail=f"{name!r} may not override the gate of "
                                                    f"{model!r}: it needs edit access to the DAG "
                                                    f"{model}_deploy")
    try:
        o = gatekeeper.override(model, reason=body.reason, expires=body.expires, by=name,
                                scope=body.scope)
    except OverrideRefused as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    return JSONResponse(o.to_dict(), status_code=201)


@app.get("/reports/{path:path}", dependencies=[Depends(requires_authenticated())])
def reports(path: str) -> FileResponse:
    """A file of the reports site; a folder answers with its index.html."""
    from watchkeeper import paths

    root = paths.reports_dir().resolve()
    try:
        target = (root / path).resolve()
    except (OSError, ValueError):  # a NUL byte, a name too long: not a report either way
        raise HTTPException(status_code=400, detail=f"not a report path: {path!r}") from None
    # resolve() folds '..' and follows symlinks, so anything that ends up outside the folder
    # (../../etc/passwd, an absolute path, a link out) is refused before any file is read.
    if target != root and root not in target.parents:
        raise HTTPException(status_code=403, detail=f"refused: {path!r} is outside the reports folder")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        raise HTTPException(status_code=404, detail=f"no report at {path!r} (rebuild with "
                                                    "`watchkeeper report`)")
    return FileResponse(target)
