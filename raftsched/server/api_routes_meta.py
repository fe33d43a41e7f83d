"""GET /metrics (Prometheus text) and GET /v1/openapi.json (generated from the route table).

Both read what build_app put in the application: the metrics collector and the rendered
OpenAPI document (rendered once at start: the route table never changes while serving).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .api_common import json_response
from .metrics_http import CONTENT_TYPE, ApiMetrics

METRICS_KEY = web.AppKey("api_metrics", ApiMetrics)
OPENAPI_KEY = web.AppKey("openapi_document", dict[str, Any])


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])
