# -*- test-case-name: tests.broker.test_broker -*-
"""
The acknowledgement queue: a PUBACK or PUBREC goes out once the store
writes its message caused are done, in the order the messages arrived.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from mqttx.mqtt.packets import PubAck, PubRec
from mqttx.mqtt.reason_codes import ReasonCode

from .session import PendingAck, Session, SessionLink


class Acknowledgements:
    """
    Sends each session's acknowledgements of inbound PUBLISH packets.

    @param writes: the store writes caused by the PUBLISH being handled,
        shared with the broker and its sessions; L{acknowledge} takes them.
    """

    log = Logger()

    def __init__(self, writes: list[Deferred[None]]) -> None:
        self._writes = writes

    def acknowledge(self, session: Session, link: SessionLink, ack: PubAck | PubRec) -> None:
        """
        Send C{ack} once the store writes the message caused are done, and
        after the session's earlier acknowledgements ([MQTT-4.6.0-2],
        [MQTT-4.6.0-3]: in the order the messages arrived).
        """
        writes = self._writes
        queue = session.acks
        waits: list[Deferred[None]] = []
        if writes:
            last = None
            for d in writes:
                # Writes already done (the memory store's, batch durability's)
                # need no waiting; failed ones do, to fail the acknowledgement.
                if d is not last and (not d.called or isinstance(d.result, Failure)):
                    waits.append(d)
                last = d
            writes.clear()
        if not waits and not queue:
            link.send(ack)
            return
        entry = PendingAck(ack, link, len(waits))
        queue.append(entry)
        for d in waits:
            d.addCallbacks(
                self._write_done, self._write_failed, callbackArgs=(session, entry), errbackArgs=(session, entry)
            )
        if not waits:
            self._send_acks(session)

    def _write_done(self, result: object, session: Session, entry: PendingAck) -> None:
        entry.waiting -= 1
        if not entry.waiting:
            self._send_acks(session)

    def _write_failed(self, failure: Failure, session: Session, entry: PendingAck) -> None:
        # Unacknowledged, the message will be sent again by the client: on
        # another connection, so this one's pending acknowledgements go too.
        link = entry.link
        if session.link is link and not entry.failed:
            self.log.failure(
                "store write failed for a message from {client_id!r}",
                failure,
                client_id=session.client_id,
                event_id="store.write_failed",
            )
            session.acks = deque(e for e in session.acks if e.link is not link)
            link.close(ReasonCode.UNSPECIFIED_ERROR)
        entry.failed = True

    def _send_acks(self, session: Session) -> None:
        """Send the acknowledgements at the head of the queue whose writes are done."""
        queue = session.acks
        while queue and not queue[0].waiting:
            entry = queue.popleft()
            if session.link is entry.link and not entry.failed:
                entry.link.send(entry.ack)
