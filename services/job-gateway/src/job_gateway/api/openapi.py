"""The OpenAPI document, made to tell the truth.

FastAPI writes most of it; four things are finished here: the job form (read by the route
itself, after authentication, so FastAPI never sees it) is described by `JobForm`, its own request-validation
errors (422) are documented as the problem+json they are answered with (not its
`HTTPValidationError`), the models referenced only from hand-written parts (`Problem`, a
multipart part's JSON model such as `JobSubmission`) are put into the components, and a
multipart part that carries JSON is described by its model and its content type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from ..schemas import JobSubmission, Problem
from .problems import validation_failed

REF = "#/components/schemas/"


def json_part(model: type[BaseModel]) -> Callable[[dict[str, Any]], None]:
    """`Form(json_schema_extra=json_part(Model))`: the part is described by the model (a form
    field is read as a string, and parsed by the route)."""

    def describe(schema: dict[str, Any]) -> None:
        description = schema.get("description")
        schema.clear()
        # Wrapped in allOf: pydantic resolves a bare $ref next to a description itself, and
        # the model is not one of its definitions (it joins the components in `document`).
        schema["allOf"] = [{"$ref": REF + model.__name__}]
        if description:
            schema["description"] = description

    return describe


class JobForm(BaseModel):
    """A job submission: multipart/form-data (a job without files may also be a URL-encoded form)."""

    job: str = Field(description="The job (JSON)", json_schema_extra=json_part(JobSubmission))
    files: list[bytes] = Field(default_factory=list, description="Attachments")


COMPONENT_MODELS: tuple[type[BaseModel], ...] = (Problem, JobSubmission, JobForm)
"""Models the document refers to without FastAPI having seen them as a body or a response."""


def job_form_body() -> dict[str, Any]:
    """`openapi_extra` of the job submission: its body is a `JobForm`, the job part JSON."""
    multipart = {
        "schema": {"$ref": REF + JobForm.__name__},
        "encoding": {"job": {"contentType": "application/json"}},
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": multipart}}}


def document(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    _, definitions = models_json_schema(
        [(model, "validation") for model in COMPONENT_MODELS], ref_template=REF + "{model}"
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                responses["422"] = validation_failed()
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return spec


def install(app: FastAPI) -> None:
    """Serve the finished document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
