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

POST /watchkeeper/models/{model}/acceptances {"feature": ..., "reason": ..., "segment": "COL=VALUE",
"since": day, "until": day} accepts a feature's change as the new normal (`watchkeeper accept`):
recorded as made by the authenticated user (no `by` in the body), known on today in the model's
timezone, with the same edit right as the override; 201 with the acceptance (and the incidents
closed, the budgets re-evaluated); 400 when refused (unknown feature, a column that is not a
segment, no reason, until before since, ...); 403 without that right; 404 unknown model.
GET /watchkeeper/models/{model}/acceptances lists them (active and past) for any signed-in user.

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


def _may_edit(model: str, user) -> bool:
    """The right the override and the acceptance need: edit access to `<model>_deploy`."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=f"{model}_deploy"),
                                                user=user)


class OverrideRequest(BaseModel):
    # No `by` field: who made the override is the authenticated user, never a claim of the body.
    model_config = ConfigDict(extra="forbid")

    reason: str
    expires: str
    scope: Literal["model", "features"] = "model"


@app.post("/gates/{model}/override", status_code=201,
          dependencies=[Depends(requires_authenticated())])
def override(model: str, body: OverrideRequest, user: GetUserDep) -> JSONResponse:
    from watchkeeper import gatekeeper
    from watchkeeper.gate import OverrideRefused
    from watchkeeper.spec import UnknownModel, get_spec

    try:
        get_spec(model)
    except UnknownModel as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    name = user.get_name()
    if not _may_edit(model, user):
        raise HTTPException(status_code=403, detail=f"{name!r} may not override the gate of "
                                                    f"{model!r}: it needs edit access to the DAG "
                                                    f"{model}_deploy")
    try:
        o = gatekeeper.override(model, reason=body.reason, expires=body.expires, by=name,
                                scope=body.scope)
    except OverrideRefused as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    return JSONResponse(o.to_dict(), status_code=201)


class AcceptanceRequest(BaseModel):
    # No `by` field: who accepted is the authenticated user, never a claim of the body; no
    # `as_of` either: over HTTP an acceptance becomes known today.
    model_config = ConfigDict(extra="forbid")

    feature: str
    reason: str
    segment: str | None = None
    since: str | None = None
    until: str | None = None


@app.post("/models/{model}/acceptances", status_code=201,
          dependencies=[Depends(requires_authenticated())])
def create_acceptance(model: str, body: AcceptanceRequest, user: GetUserDep) -> JSONResponse:
    from watchkeeper import gatekeeper
    from watchkeeper.acceptance import AcceptanceError
    from watchkeeper.spec import UnknownModel, get_spec

    try:
        get_spec(model)
    except UnknownModel as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    name = user.get_name()
    if not _may_edit(model, user):
        raise HTTPException(status_code=403, detail=f"{name!r} may not accept expected change for "
                                                    f"{model!r}: it needs edit access to the DAG "
                                                    f"{model}_deploy")
    try:
        out = gatekeeper.accept(model, feature=body.feature, reason=body.reason,
                                segment=body.segment, since=body.since, until=body.until, by=name)
    except AcceptanceError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    return JSONResponse(out.to_dict(), status_code=201)


@app.get("/models/{model}/acceptances", dependencies=[Depends(requires_authenticated())])
def list_acceptances(model: str) -> JSONResponse:
    from watchkeeper import gatekeeper
    from watchkeeper.spec import UnknownModel, get_spec
    from watchkeeper.store import open_store

    try:
        spec = get_spec(model)
    except UnknownModel as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    today = gatekeeper.today(spec).isoformat()
    items = gatekeeper.acceptances(open_store(), model)
    return JSONResponse({"model": model, "as_of": today,
                         "acceptances": [a.to_dict() | {"status": a.status(today)} for a in items]})


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
