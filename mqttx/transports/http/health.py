# -*- test-case-name: tests.transports.test_http_site -*-
"""
Probes and metrics of an HTTP listener: C{GET /healthz} (200 while the
process serves), C{GET /readyz} (200 once the broker has started and while
it is not stopping, else 503) and C{GET /metrics} (Prometheus, when the
listener's C{http.metrics} is on). None asks for credentials, like the
C{metrics} listener.
"""

from __future__ import annotations

from twisted.web.server import NOT_DONE_YET, Request

from mqttx.metrics import MetricsResource, make_registry

from .errors import send_json
from .site import HTTPContext, JSONResource

__all__ = ["HealthResource", "metrics_resource", "ReadyResource"]


class HealthResource(JSONResource):
    """C{GET /healthz}: the process serves."""

    isLeaf = True

    def render_GET(self, request: Request) -> int:
        send_json(request, 200, {"status": "ok"})
        return NOT_DONE_YET


class ReadyResource(JSONResource):
    """C{GET /readyz}: the broker takes clients."""

    isLeaf = True

    def __init__(self, context: HTTPContext) -> None:
        super().__init__()
        self._context = context

    def render_GET(self, request: Request) -> int:
        if self._context.is_ready():
            send_json(request, 200, {"status": "ready"})
        else:
            send_json(request, 503, {"status": "not ready"})
        return NOT_DONE_YET


def metrics_resource(context: HTTPContext) -> MetricsResource:
    """C{GET /metrics}: the broker's metrics, as the C{metrics} listener serves them."""
    return MetricsResource(make_registry(context.broker, context.store))
