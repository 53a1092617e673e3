# -*- test-case-name: tests.test_config -*-
"""
What a configuration I{is}: the frozen, typed values L{mqttx.config.parser}
builds from the YAML document, their defaults and limits, and L{ConfigError}.

Nothing here reads YAML or checks a value: code that only uses a
configuration, and tests that build one, need no more than this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The largest packet MQTT can frame: a 4-byte Remaining Length of
#: 268,435,455 plus the 5-byte fixed header.
MAX_PACKET_SIZE_LIMIT = 268_435_460

#: Below this no CONNECT with a client identifier, will or properties fits;
#: a smaller limit only produces a broker nobody can use.
MIN_PACKET_SIZE = 64


class ConfigError(Exception):
    """
    The configuration cannot be used.

    C{str(error)} is one line: C{"<source>: <key path>: <problem>"}, or
    C{"<source>: <problem>"} when the problem is not about one key.

    @ivar source: the file (or other source) the configuration came from.
    @ivar key: the dotted key path, such as C{"listeners[0].endpoint"}, or
        C{""} when the whole document is at fault.
    @ivar problem: what is wrong, without the source and key.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = " ".join(problem.split())
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {self.problem}")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """
    This broker's identity.

    @ivar name: identifies the broker in logs, C{$SYS} topics and, later, the
        cluster.
    """

    name: str = "mqttx-1"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """
    A listener's C{tls:} block: TLS on its stream endpoint.

    @ivar cert: the PEM file with the server certificate, followed by any
        intermediate certificates.
    @ivar key: the PEM file with the certificate's private key.
    @ivar ca: the PEM bundle of the authorities whose client certificates
        are accepted; required for C{require_client_cert}.
    @ivar require_client_cert: mutual TLS: refuse clients without a
        certificate signed by C{ca}.
    @ivar use_identity_as_username: take the user name from the client
        certificate's subject common name instead of CONNECT, and trust the
        certificate in place of a password (needs C{require_client_cert}).
    @ivar min_version: the oldest TLS version accepted, C{"1.2"} or C{"1.3"}.
    @ivar ciphers: an OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites
        are OpenSSL's); L{None} keeps Twisted's secure default.
    """

    cert: str
    key: str
    ca: str | None = None
    require_client_cert: bool = False
    use_identity_as_username: bool = False
    min_version: str = "1.2"
    ciphers: str | None = None


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """
    The WebSocket settings of an C{mqtt-ws} listener.

    @ivar path: the request path clients connect to; others get 404.
    @ivar permessage_deflate: offer permessage-deflate compression to
        clients that ask for it.
    @ivar ping_interval: seconds between WebSocket pings from the broker
        (a peer that does not answer in as long is dropped); 0: none, the
        MQTT keep-alive alone watches the connection.
    @ivar trust_x_forwarded_for: take the client address from the last
        entry of C{X-Forwarded-For}, for listeners behind a reverse proxy
        that sets it (never on a listener clients reach directly).
    """

    path: str = "/mqtt"
    permessage_deflate: bool = False
    ping_interval: float = 0.0
    trust_x_forwarded_for: bool = False


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """
    The settings of an C{http} listener (the HTTP bridge), its C{http:} block.

    @ivar heartbeat_interval: seconds between the comment lines that keep an
        idle server-sent-events stream (and the proxies on its way) open.
    @ivar metrics: also serve the Prometheus metrics at C{/metrics}.
    @ivar status_page: serve the built-in status page at C{/}.
    @ivar session_expiry: the longest session expiry, in seconds, a
        subscriber that names its C{client_id} may ask for (the broker's
        C{mqtt.max_session_expiry} caps it too).
    """

    heartbeat_interval: float = 15.0
    metrics: bool = False
    status_page: bool = True
    session_expiry: int = 3600


@dataclass(frozen=True, slots=True)
class CoAPRule:
    """
    Who a CoAP request is, by its source address (CoAP has no credentials
    without DTLS or OSCORE). The first rule whose C{source} network holds
    the address applies; a request no rule matches is refused (4.03).

    @ivar source: a network in CIDR form, such as C{"10.0.0.0/8"}; a bare
        address means just that address.
    @ivar username: the user the requests act as, for ACLs; L{None} for an
        anonymous client (which the listener must allow).
    @ivar publish: whether POST, PUT and DELETE are allowed.
    @ivar subscribe: whether GET and Observe are allowed.
    """

    source: str
    username: str | None = None
    publish: bool = True
    subscribe: bool = True


#: CoAP's default rules: requests from this host only, as anonymous clients.
DEFAULT_COAP_RULES: tuple[CoAPRule, ...] = (CoAPRule("127.0.0.0/8"), CoAPRule("::1/128"))


@dataclass(frozen=True, slots=True)
class CoAPConfig:
    """
    The settings of a C{coap} listener (the CoAP bridge), its C{coap:} block.

    @ivar rules: who may do what, by source address (L{CoAPRule}).
    @ivar max_observers_per_source: the most observations one source
        address may hold at once; more get 5.03.
    @ivar max_payload: the largest payload taken or sent, in bytes, also
        when assembled from blocks (4.13 above it).
    @ivar max_request_rate: requests per second one source address may
        make (a burst of one second's worth passes); more get 4.29 Too
        Many Requests with Max-Age (RFC 8516). 0: no limit.
    @ivar block_size: the block size of Block2 responses and the size
        asked for in Block1 transfers: 16, 32, ... or 1024 bytes.
    @ivar confirmable_every: a notification is sent confirmable at least
        every this many notifications (RFC 7641 section 4.5), so a gone
        observer is found out.
    """

    rules: tuple[CoAPRule, ...] = DEFAULT_COAP_RULES
    max_observers_per_source: int = 32
    max_payload: int = 65536
    max_request_rate: float = 100.0
    block_size: int = 1024
    confirmable_every: int = 10


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """
    One place where clients connect.

    @ivar name: unique among the listeners; names the listener's service,
        its log lines and metrics.
    @ivar protocol: what is spoken on it: C{"mqtt"}, C{"mqtt-ws"} (MQTT
        over WebSocket), C{"http"} (the HTTP bridge), C{"coap"} (the CoAP
        bridge) or C{"metrics"} (Prometheus metrics over HTTP at
        C{/metrics}).
    @ivar endpoint: a Twisted stream server endpoint string, such as
        C{"tcp:1883:interface=127.0.0.1"}; for C{coap}, C{"udp:PORT"} with
        an optional C{":interface=IP"}.
    @ivar max_connections: the most connections open on this listener at
        once; 0 leaves only the global C{mqtt.max_connections}.
    @ivar allow_anonymous: whether clients without a user name may connect
        on this listener; L{None} follows C{auth.allow_anonymous}.
    @ivar tls: TLS on the endpoint, or L{None} for plain text.
    @ivar websocket: the WebSocket settings of an C{mqtt-ws} listener;
        L{None} for the other protocols.
    @ivar http: the settings of an C{http} listener; L{None} for the others.
    @ivar coap: the settings of a C{coap} listener; L{None} for the others.
    """

    name: str
    protocol: str
    endpoint: str
    max_connections: int = 0
    allow_anonymous: bool | None = None
    tls: TLSConfig | None = None
    websocket: WebSocketConfig | None = None
    http: HTTPConfig | None = None
    coap: CoAPConfig | None = None


#: The listeners used when the configuration has no C{listeners} key.
DEFAULT_LISTENERS: tuple[ListenerConfig, ...] = (
    ListenerConfig(name="mqtt", protocol="mqtt", endpoint="tcp:1883:interface=127.0.0.1"),
)


#: The ways a shared subscription group can pick a member.
SHARED_STRATEGIES = ("round_robin", "random", "sticky")


@dataclass(frozen=True, slots=True)
class MQTTConfig:
    """
    Protocol limits and defaults.

    @ivar max_packet_size: the largest packet accepted, in bytes.
    @ivar receive_maximum: the inbound QoS 1/2 window advertised to MQTT 5
        clients.
    @ivar max_inflight: the outbound QoS 1/2 window per session for clients
        that do not announce a Receive Maximum (3.1 and 3.1.1).
    @ivar max_queued_messages: the most messages kept for one offline or slow
        session; beyond it messages are dropped and counted.
    @ivar max_session_expiry: the cap, in seconds, on the session expiry a
        client may ask for.
    @ivar retain_available: whether retained messages are supported.
    @ivar shared_subscriptions: whether C{$share/...} filters are supported.
    @ivar topic_alias_maximum: the inbound topic aliases an MQTT 5 client may
        use, and the most the broker uses on the PUBLISH it sends a client
        (never more than the client's own Topic Alias Maximum); 0 disables
        them both ways.
    @ivar keepalive_max: the cap, in seconds, on a client's keep alive; 0
        accepts what the client asks for.
    @ivar sys_interval: seconds between publications of the C{$SYS} topics
        (retained); 0 turns them off.
    @ivar maximum_qos: the highest QoS clients may publish and subscribe
        with (MQTT 5 Maximum QoS); 3.1.1 subscriptions are granted at most it.
    @ivar wildcard_subscriptions: whether C{+} and C{#} filters are allowed.
    @ivar subscription_identifiers: whether MQTT 5 subscription identifiers
        are supported.
    @ivar shared_subscription_strategy: how a shared subscription's group
        picks the member for each message: C{round_robin}, C{random}, or
        C{sticky} (by publisher).
    @ivar response_information: when set, MQTT 5 clients that ask for
        Response Information get this prefix followed by their client
        identifier, as the root of their response topics.
    @ivar server_reference: when set, MQTT 5 clients are sent elsewhere:
        CONNACK 0x9C (use another server), or 0x9D (server moved) with
        C{server_moved}, carrying this Server Reference.
    @ivar server_moved: whether the redirection is permanent.
    @ivar validate_payload_format: whether a payload declared UTF-8 (Payload
        Format Indicator 1) must be valid UTF-8 (else 0x99).
    @ivar flow_control_timeout: seconds a subscriber whose transport is full
        may keep the publishers that feed it from being read; after that it
        is a slow consumer (see L{mqttx.broker.flow}). 0 turns it off.
    @ivar connect_timeout: seconds a new connection has to send CONNECT and
        be admitted.
    @ivar max_connections: the most client connections open at once, over
        every listener; 0: no limit. Connections beyond it (or beyond their
        listener's C{max_connections}) are closed as they are accepted.
    @ivar max_connection_rate: new connections per second allowed from one
        source address (a token bucket of C{connection_burst}); beyond it
        they are closed as they are accepted. 0 turns it off.
    @ivar connection_burst: the connections one source address may open at
        once before C{max_connection_rate} applies.
    @ivar max_client_id_length: the longest client identifier accepted, in
        characters; longer ones are refused with CONNACK 0x85 / 0x02.
    @ivar max_topic_length: the longest topic name or filter accepted, in
        characters.
    @ivar max_topic_levels: the most levels (C{/}-separated parts) of a
        topic name or filter; 0: no limit.
    @ivar max_subscriptions: the most subscriptions one session may hold;
        0: no limit.
    @ivar max_publish_rate: PUBLISH packets per second read from one
        client; a faster client is not read until it is back within it.
        0 turns it off.
    @ivar max_publish_bytes_rate: the same for the bytes of its PUBLISH
        packets' topics and payloads, per second; 0 turns it off.
    """

    max_packet_size: int = 1_048_576
    receive_maximum: int = 65_535
    max_inflight: int = 32
    max_queued_messages: int = 1000
    max_session_expiry: int = 86_400
    retain_available: bool = True
    shared_subscriptions: bool = True
    topic_alias_maximum: int = 64
    keepalive_max: int = 0
    sys_interval: int = 10
    maximum_qos: int = 2
    wildcard_subscriptions: bool = True
    subscription_identifiers: bool = True
    shared_subscription_strategy: str = "round_robin"
    response_information: str | None = None
    server_reference: str | None = None
    server_moved: bool = False
    validate_payload_format: bool = True
    flow_control_timeout: float = 1.0
    connect_timeout: float = 10.0
    max_connections: int = 50_000
    max_connection_rate: float = 0.0
    connection_burst: int = 20
    max_client_id_length: int = 65_535
    max_topic_length: int = 65_535
    max_topic_levels: int = 128
    max_subscriptions: int = 10_000
    max_publish_rate: float = 0.0
    max_publish_bytes_rate: int = 0


@dataclass(frozen=True, slots=True)
class PersistenceConfig:
    """
    Where sessions and retained messages are kept.

    @ivar backend: C{"sqlite"} (durable, in the file at C{path}) or
        C{"memory"} (as long as the process lives).
    @ivar path: the database file of durable backends; its folder is
        created on demand.
    @ivar durability: C{"sync"} (QoS 1/2 acknowledged only once written to
        disk) or C{"batch"} (acknowledged at once, committed at least every
        C{commit_interval} seconds: a crash may lose that much).
    @ivar commit_interval: seconds between commits with C{batch}.
    """

    backend: str = "sqlite"
    path: str = "var/mqttx.db"
    durability: str = "sync"
    commit_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class HTTPAuthConfig:
    """
    The HTTP authentication hook (see L{mqttx.auth.http}).

    @ivar url: the endpoint asked about each client with a user name,
        C{http://} or C{https://}.
    @ivar timeout: seconds an answer may take; later, the client is
        refused with server unavailable.
    @ivar cache_seconds: how long an allow or deny answer is reused; 0: not.
    @ivar cache_size: the most answers cached; 0: none.
    """

    url: str
    timeout: float = 5.0
    cache_seconds: float = 60.0
    cache_size: int = 10_000


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """
    Who may connect.

    @ivar allow_anonymous: whether clients without a user name may connect
        (a listener's own C{allow_anonymous} overrides it). Without a
        password file, C{True} lets every client in, C{False} nobody.
    @ivar password_file: the user database written by C{mqttx passwd}
        (see L{mqttx.auth.passwords}); clients that send a user name must
        match an entry.
    @ivar max_failures_per_minute: failed authentications allowed per source
        address in a minute; further CONNECTs from it are refused (CONNACK
        0x9F / 0x03) until the minute is over. 0 turns the limit off.
    @ivar acl_file: topic access rules in Mosquitto's form (see
        L{mqttx.auth.acl}); once set, whatever it does not grant is denied.
        C{None}: every client may use every topic.
    @ivar admins: the usernames that may read C{$SYS} topics; nobody else
        may, whether or not an ACL file is set.
    @ivar scram: whether MQTT 5 clients may authenticate with SCRAM-SHA-256
        (see L{mqttx.auth.scram}) against the password file; offered only
        when C{password_file} is set.
    @ivar http: the HTTP authentication hook, instead of a password file;
        C{None}: none.
    """

    allow_anonymous: bool = True
    password_file: str | None = None
    http: HTTPAuthConfig | None = None
    acl_file: str | None = None
    max_failures_per_minute: int = 10
    admins: tuple[str, ...] = ()
    scram: bool = True


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """
    What is logged and how.

    @ivar level: the least severe level written: C{debug}, C{info}, C{warn},
        C{error} or C{critical}.
    @ivar format: C{text} (one human-readable line per event) or C{json}
        (one JSON object per line).
    """

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Config:
    """
    The whole configuration of one broker process.
    """

    node: NodeConfig = field(default_factory=NodeConfig)
    listeners: tuple[ListenerConfig, ...] = DEFAULT_LISTENERS
    mqtt: MQTTConfig = field(default_factory=MQTTConfig)
    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
