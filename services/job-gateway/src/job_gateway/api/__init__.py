"""job-gateway's HTTP API: one router per resource (`routes/`), joined in `main.py`; typed
dependencies (who may call, the services) in `deps.py`; errors as problem+json in
`problems.py`; the OpenAPI document's finishing touches in `openapi.py`."""
