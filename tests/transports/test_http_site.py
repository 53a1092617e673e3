# -*- test-case-name: tests.transports.test_http_site -*-
"""
The HTTP bridge's site: routing and JSON errors, the Server header, the
probes and metrics, the body cap, the connection, header and idle limits.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.error import ConnectionDone
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from mqttx import __version__
from mqttx.config import HTTPConfig, parse_config
from mqttx.transports.http import build_site
from mqttx.transports.http.errors import status_for
from mqttx.transports.http.site import IDLE_TIMEOUT, MAX_HEADERS, MAX_LINE, HTTPContext, mount
from mqttx.transports.limits import ConnectionLimits

from .http_helpers import HTTPTestCase, parse_response

EXAMPLE = FilePath(__file__).parent().parent().parent().descendant(["etc", "mqttx.yaml"])


class _Failing(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        raise RuntimeError("boom")


class RoutingTests(HTTPTestCase):
    """Paths, methods, the Server header and JSON errors."""

    def test_server_header(self) -> None:
        """Every answer names the server and its version, not Twisted."""
        for method, target in [("GET", "/healthz"), ("GET", "/nowhere"), ("DELETE", "/healthz")]:
            response = self.request(method, target)
            self.assertEqual(response.header("server"), f"mqttx/{__version__}")

    def test_unknown_path_is_json_404(self) -> None:
        """A path nothing is mounted at is a 404 with a JSON error body."""
        for target in ["/nowhere", "/api", "/api/v1/nothing", "/api/v1/publish/more/x"]:
            response = self.request("GET", target)
            self.assertEqual(response.status, 404, target)
            self.assertEqual(response.header("content-type"), "application/json")
            self.assertEqual(response.json(), {"error": "not found", "reason_code": 0})

    def test_other_method_is_405_with_allow(self) -> None:
        """A method a resource does not serve: 405 with Allow, JSON body."""
        response = self.request("GET", "/api/v1/publish?topic=a")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header("allow"), "POST")
        self.assertEqual(response.json()["error"], "method GET not allowed")
        response = self.request("PUT", "/api/v1/subscribe?filter=a")
        self.assertEqual((response.status, response.header("allow")), (405, "GET, HEAD"))

    def test_failing_resource_is_json_500(self) -> None:
        """A resource that raises: a JSON 500 and the failure logged, no traceback to the client."""
        mount(self.site.resource, "boom", _Failing())
        with capturedLogs() as events:
            response = self.request("GET", "/boom")
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json(), {"error": "internal error", "reason_code": 0x83})
        self.assertEqual([e["event_id"] for e in events if e.get("event_id") == "http.failed"], ["http.failed"])
        self.flushLoggedErrors(RuntimeError)

    def test_mount_makes_intermediate_nodes(self) -> None:
        """mount() puts a resource under new JSON nodes, and "" at the root URL itself."""
        page = Resource()
        page.isLeaf = True
        page.render_GET = lambda request: b"<html></html>"  # type: ignore[attr-defined]
        mount(self.site.resource, "", page)
        mount(self.site.resource, "api/v2/x", page)
        self.assertEqual(self.request("GET", "/").body, b"<html></html>")
        self.assertEqual(self.request("GET", "/api/v2/x").body, b"<html></html>")
        self.assertEqual(self.request("GET", "/api/v2/y").status, 404)

    def test_requests_logged_at_debug(self) -> None:
        """A finished request is one debug line with method, path and status, no query."""
        with capturedLogs() as events:
            self.request("GET", "/healthz?secret=1")
        (event,) = [e for e in events if e.get("event_id") == "http.request"]
        self.assertEqual(event["log_level"].name, "debug")
        self.assertEqual((event["method"], event["path"], event["code"]), ("GET", "/healthz", 200))

    def test_status_for_reason_codes(self) -> None:
        """MQTT refusals map to HTTP statuses; an anonymous 0x87 asks for credentials."""
        self.assertEqual(status_for(0x86), 401)
        self.assertEqual(status_for(0x87), 403)
        self.assertEqual(status_for(0x87, anonymous=True), 401)
        self.assertEqual(status_for(0x90), 400)
        self.assertEqual(status_for(0x95), 413)
        self.assertEqual(status_for(0x9F), 429)
        self.assertEqual(status_for(0x8B), 503)
        self.assertEqual(status_for(0x80), 500)


class ProbeTests(HTTPTestCase):
    """/healthz, /readyz and /metrics."""

    def test_healthz(self) -> None:
        response = self.request("GET", "/healthz")
        self.assertEqual((response.status, response.json()), (200, {"status": "ok"}))

    def test_readyz_while_running_then_stopping(self) -> None:
        """/readyz is 200 while the broker runs, 503 once it is shutting down."""
        self.assertEqual(self.request("GET", "/readyz").status, 200)
        self.broker.shutdown()
        response = self.request("GET", "/readyz")
        self.assertEqual((response.status, response.json()), (503, {"status": "not ready"}))
        self.assertEqual(self.request("GET", "/healthz").status, 200)

    def test_readyz_follows_the_ready_callable(self) -> None:
        """A context's ready() decides (the broker not yet started, say)."""
        ready = [False]
        context = replace(self.context, ready=lambda: ready[0])
        self.site = build_site(context)
        self.assertEqual(self.request("GET", "/readyz").status, 503)
        ready[0] = True
        self.assertEqual(self.request("GET", "/readyz").status, 200)

    def test_metrics(self) -> None:
        """/metrics serves the broker's collector, the HTTP listener's own counters included."""
        self.request("POST", "/api/v1/publish?topic=a", b"x")
        response = self.request("GET", "/metrics")
        self.assertEqual(response.status, 200)
        self.assertTrue(response.header("content-type").startswith("text/plain"))  # type: ignore[union-attr]
        self.assertIn(b'mqttx_connects_total{listener="http"', response.body)

    def test_no_metrics_unless_configured(self) -> None:
        """Without http.metrics, /metrics is a 404."""
        listener = replace(self.listener, http=HTTPConfig(metrics=False))
        self.site = build_site(replace(self.context, listener=listener))
        self.assertEqual(self.request("GET", "/metrics").status, 404)


class BodyLimitTests(HTTPTestCase):
    """[DESIGN: limits before memory] A body over mqtt.max_packet_size is refused before it is read."""

    def default_config(self):  # type: ignore[no-untyped-def]
        return replace(super().default_config(), max_packet_size=1000)

    def test_content_length_over_the_limit(self) -> None:
        """A Content-Length over the limit: 413 from the headers alone, connection closed."""
        channel, transport = self.open_http()
        head = self.request_bytes("POST", "/api/v1/publish?topic=a", b"")
        head = head.replace(b"Content-Length: 0", b"Content-Length: 1001")
        channel.dataReceived(head)
        response = parse_response(transport.value())
        self.assertEqual(response.status, 413)
        self.assertEqual(response.json(), {"error": "body larger than 1000 bytes", "reason_code": 0x95})
        self.assertEqual(response.header("server"), f"mqttx/{__version__}")
        self.assertTrue(transport.disconnecting)
        # The rest of the body is not read into the request.
        channel.dataReceived(b"x" * 1001)
        self.assertEqual(self.broker.received_qos, [0, 0, 0])

    def test_no_continue_after_refusal(self) -> None:
        """Expect: 100-continue over the limit: the 413 alone, no 100 Continue."""
        channel, transport = self.open_http()
        head = self.request_bytes("POST", "/api/v1/publish?topic=a", b"", {"Expect": "100-continue"})
        channel.dataReceived(head.replace(b"Content-Length: 0", b"Content-Length: 5000"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertNotIn(b"100 Continue", transport.value())

    def test_chunked_body_over_the_limit(self) -> None:
        """A chunked body is refused as soon as it goes over the limit."""
        channel, transport = self.open_http()
        channel.dataReceived(
            b"POST /api/v1/publish?topic=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        channel.dataReceived(b"258\r\n" + b"x" * 600 + b"\r\n")
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"258\r\n" + b"x" * 600 + b"\r\n")
        self.assertEqual(parse_response(transport.value()).status, 413)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"0\r\n\r\n")
        self.assertEqual(self.broker.received_qos, [0, 0, 0])

    def test_chunked_body_within_the_limit(self) -> None:
        """A chunked body under the limit is published."""
        channel, transport = self.open_http()
        channel.dataReceived(
            b"POST /api/v1/publish?topic=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        self.assertEqual(parse_response(transport.value()).status, 200)
        self.assertEqual(self.broker.received_qos, [1, 0, 0])

    def test_body_at_the_limit(self) -> None:
        """A body of exactly the limit is read (the broker then judges the packet)."""
        response = self.request("POST", "/api/v1/publish?topic=a", b"x" * 1000)
        # The PUBLISH packet (header, topic) is larger than its payload: 0x95.
        self.assertEqual(response.status, 413)
        self.assertEqual(response.json()["reason_code"], 0x95)
        response = self.request("POST", "/api/v1/publish?topic=a", b"x" * 900)
        self.assertEqual(response.status, 200)


class ConnectionLimitTests(HTTPTestCase):
    """Connection, header and idle limits."""

    def test_listener_max_connections(self) -> None:
        """The listener's max_connections refuses more, and a closed one frees its place."""
        listener = replace(self.listener, max_connections=2)
        self.site = build_site(replace(self.context, listener=listener))
        first, _ = self.open_http()
        self.open_http()
        self.assertRaises(AssertionError, self.open_http)
        first.connectionLost(Failure(ConnectionDone()))
        self.open_http()

    def test_shared_limits_count_http_connections(self) -> None:
        """With the limits every listener shares, HTTP connections count in mqtt.max_connections."""
        limits = ConnectionLimits(replace(self.config, max_connections=1), self.clock)
        self.site = build_site(self.context, limits=limits)
        self.open_http()
        self.assertEqual(limits.open, 1)
        self.assertFalse(limits.admit("mqtt", 0, "127.0.0.1"))

    def test_request_line_too_long(self) -> None:
        """A request line over MAX_LINE: 400 and the connection closes."""
        channel, transport = self.open_http()
        channel.dataReceived(b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)

    def test_too_many_headers(self) -> None:
        """More than MAX_HEADERS header lines: 400 and the connection closes."""
        channel, transport = self.open_http()
        headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS + 1)]
        channel.dataReceived(self.request_bytes("GET", "/healthz", headers=headers))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)

    def test_idle_connection_times_out(self) -> None:
        """A connection idle for IDLE_TIMEOUT seconds (between requests, or mid-request) is closed."""
        channel, transport = self.open_http()
        channel.dataReceived(self.request_bytes("GET", "/healthz"))
        self.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        channel, transport = self.open_http()
        channel.dataReceived(b"GET /healthz HTTP/1.1\r\n")
        self.clock.advance(IDLE_TIMEOUT)
        self.assertTrue(transport.disconnecting)

    def test_site_context(self) -> None:
        """The site keeps its context and the body limit from mqtt.max_packet_size."""
        self.assertIsInstance(self.site.context, HTTPContext)
        self.assertEqual(self.site.max_body, self.config.max_packet_size)
        self.assertEqual(self.site.acceptableProtocols(), [b"http/1.1"])




class ExampleConfigTests(SynchronousTestCase):
    """The commented-out http listener of etc/mqttx.yaml."""

    def test_example_http_listener(self) -> None:
        """It spells out every key of an http: block, with the defaults, and is valid."""
        lines = EXAMPLE.getContent().decode("utf-8").splitlines()
        start = lines.index("  # - name: http")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #  "))
        block = "\n".join(line.replace("  # ", "  ", 1) for line in lines[start:end])
        [listener] = parse_config("listeners:\n" + block, "example").listeners
        self.assertEqual((listener.name, listener.protocol, listener.http), ("http", "http", HTTPConfig()))
        for name in HTTPConfig.__dataclass_fields__:
            self.assertIn(f"#     {name}:", "\n".join(lines[start:end]))
