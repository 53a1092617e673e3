"""
An aiocoap observer for the CoAP integration tests, run as a child process
(aiocoap is asyncio-based; the tests run on Twisted's reactor).

    python coap_observe.py URI COUNT [linger]

Registers an observation of URI, prints one JSON line for the response and
one per notification, and after COUNT notifications cancels the observation
(aiocoap's ClientObservation.cancel), prints {"cancelled": true}, and stays
LINGER seconds (default 3) so that its socket can still answer the server.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiocoap import GET, Context, Message  # type: ignore[import-untyped]


def line(kind: str, message: Message) -> None:
    print(
        json.dumps(
            {
                "kind": kind,
                "code": str(message.code),
                "observe": message.opt.observe,
                "payload": message.payload.hex(),
                "location": list(message.opt.location_path),
            }
        ),
        flush=True,
    )


async def main(uri: str, count: int, linger: float) -> None:
    context = await Context.create_client_context()
    request = context.request(Message(code=GET, uri=uri, observe=0))
    line("response", await request.response)
    seen = 0
    async for notification in request.observation:
        line("notification", notification)
        seen += 1
        if seen >= count:
            break
    request.observation.cancel()
    print(json.dumps({"cancelled": True}), flush=True)
    await asyncio.sleep(linger)  # real-time: keep the socket open to answer (RST) the next notification
    await context.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 3.0))
