"""The FastAPI app the plugin mounts at /watchkeeper on the Airflow API server.

GET /watchkeeper/gates/{model}?scope=model|features answers like `watchkeeper gate --json`, with
HTTP 200 open, 409 closed, 503 inconclusive; 404 for an unknown model (listing the known ones).
Every route requires the API server's authenticated user, and the decision is audited with that
user's name.
"""

from __future__ import annotations

from typing import Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse

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
