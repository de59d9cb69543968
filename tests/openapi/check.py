#!/usr/bin/env python3
"""Conformance check of docs/openapi.yaml against the running app.

Sends a scripted set of requests to the app (every documented operation, with
success and error cases), records every exchange and every event published on
the app's Redis channels, then verifies the recording against the spec:

- the spec itself is valid OpenAPI (openapi-spec-validator);
- every response: its path and method are documented, its status is
  documented for that operation, and its body and content type match the
  documented schema (openapi-core);
- every request whose fate the spec can express: a request the server handled
  (2xx, 403, 404, 409, 422, ...) is valid under the spec, and a request the
  server refused as malformed (400, 401) is invalid under the spec, so that the
  documented limits (ranges, lengths, required fields, unknown fields, security)
  are the served ones;
- the reverse: every operation in the spec was exercised, with at least one
  2xx answer; every method the spec does not list on a documented path answers
  405; a few undocumented paths answer 404; both with the shared error body;
- events: every message seen on a channel matches that channel's payload
  schema in `x-events` (no undocumented `data` members), and every documented
  channel was seen.

`--self-test` then mutates the loaded spec in memory in several ways (drops a
response status, changes a field type, loosens a limit, ...) and asserts that
the verification reports each mutation, so the check is shown to be able to fail.

Exit status 0 when everything matches, 1 on any mismatch (each printed with the
operation and what differs), 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import jwt
import copy
import http.client
import multiprocessing
import json
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jsonschema
import referencing
import referencing.jsonschema
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate as validate_spec_document

METHODS = ("get", "post", "put", "delete", "patch")
ADMIN_TOKEN_DEFAULT = "t"


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request sent and the answer it got."""

    name: str
    method: str  # lowercase
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    # What the exchange is for: "op" (a documented operation), "undocumented"
    # (a path the spec must not document; 404 expected), "method" (a method
    # the spec must not list on a documented path; 405 expected) or
    # "spin-host" (answered by real Spin itself, in its own way, not by the
    # app or wharf: only the status is checked; docs/real-spin.md).
    kind: str = "op"
    # Whether the spec must accept ("valid") or refuse ("invalid") the
    # request; None when OpenAPI cannot express the server's rule.
    spec: Optional[str] = None

    def label(self) -> str:
        query = ("?" + urllib.parse.urlencode(self.query)) if self.query else ""
        return f"{self.method.upper()} {self.path}{query} [{self.name}]"

    def json(self) -> Any:
        try:
            return json.loads(self.response_body)
        except ValueError:
            return None


class Runner:
    """Sends requests, records exchanges, and notes script-level surprises."""

    def __init__(self, base_url: str, admin_token: str, jwt_key: str, host: str = "wharf"):
        self.base_url = base_url.rstrip("/")
        # "wharf", or "spin" (real Spin): what the host itself answers differs.
        self.host = host
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.jwt_key = jwt_key
        self.exchanges: list[Exchange] = []
        self.surprises: list[str] = []
        self.lock = threading.Lock()
        self.local = threading.local()

    def customer(self, user_id: int, **claims: Any) -> dict[str, str]:
        """The Authorization header of a customer token (HS256, audience `shop`)."""
        payload = {"sub": str(user_id), "exp": int(time.time()) + 3600, "aud": "shop", **claims}
        return {"Authorization": "Bearer " + jwt.encode(payload, self.jwt_key, algorithm="HS256")}

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(
        self,
        name: str,
        method: str,
        path: str,
        *,
        query: Optional[list[tuple[str, str]]] = None,
        headers: Optional[dict[str, str]] = None,
        body: Any = None,
        raw: Optional[bytes] = None,
        expect: Optional[int],
        spec: Any = "auto",
        kind: str = "op",
        timeout: float = 40.0,
    ) -> Exchange:
        headers = dict(headers or {})
        data = b""
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data:
            headers.setdefault("Content-Type", "application/json")
        query = list(query or [])
        url = self.base_url + urllib.parse.quote(path, safe="/-_.~") + (
            "?" + urllib.parse.urlencode(query) if query else ""
        )
        try:
            response = self.session().request(method.upper(), url, headers=headers, data=data or None, timeout=timeout)
            status, response_headers, response_body = (
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                response.content,
            )
        except requests.RequestException as error:
            status, response_headers, response_body = 0, {}, str(error).encode()
        if spec == "auto":
            # The spec must refuse what the server refuses as malformed (400)
            # or unauthenticated (401), and accept everything else it handles.
            # A body over the size limit is beyond what a schema says.
            spec = "invalid" if status in (400, 401) else None if status == 413 else "valid"
        exchange = Exchange(name, method.lower(), path, query, headers, data, status, response_headers,
                            response_body, kind, spec)
        with self.lock:
            self.exchanges.append(exchange)
            if expect is not None and status != expect:
                self.surprises.append(
                    f"{exchange.label()}: the script expected {expect}, the server answered {status}: "
                    f"{response_body[:300].decode(errors='replace')}"
                )
        return exchange

    def call_declared_length(self, name: str, method: str, path: str, length: int, headers: dict[str, str],
                             expect: int) -> Exchange:
        """Sends only the headers of a request declaring a `length`-byte body (for the host's size limit)."""
        parsed = urllib.parse.urlparse(self.base_url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=20)
        try:
            connection.putrequest(method.upper(), path)
            for header, value in {**headers, "Content-Length": str(length)}.items():
                connection.putheader(header, value)
            connection.endheaders()
            response = connection.getresponse()
            status, response_headers, response_body = (
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except OSError as error:
            status, response_headers, response_body = 0, {}, str(error).encode()
        finally:
            connection.close()
        exchange = Exchange(name, method.lower(), path, [], headers, b"", status, response_headers, response_body,
                            "op", None)
        with self.lock:
            self.exchanges.append(exchange)
            if status != expect:
                self.surprises.append(f"{exchange.label()}: the script expected {expect}, the server answered "
                                      f"{status}: {response_body[:300].decode(errors='replace')}")
        return exchange

    def eventually(self, what: str, attempt: Callable[[], Optional[Any]], timeout: float = 15.0) -> Optional[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = attempt()
            if value is not None:
                return value
            time.sleep(0.1)
        with self.lock:
            self.surprises.append(f"timed out after {timeout:.0f} s waiting for {what}")
        return None


# --------------------------------------------------------------------------
# Events: a minimal Redis pub/sub subscriber (RESP2 over a socket)
# --------------------------------------------------------------------------


class EventTap(threading.Thread):
    def __init__(self, redis_url: str, channels: list[str]):
        super().__init__(daemon=True)
        parsed = urllib.parse.urlparse(redis_url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=10)
        self.reader = self.sock.makefile("rb")
        self.events: list[tuple[str, bytes]] = []
        self.error: Optional[str] = None
        command = [b"SUBSCRIBE"] + [channel.encode() for channel in channels]
        payload = b"*%d\r\n" % len(command) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in command)
        self.sock.sendall(payload)
        for _ in channels:
            reply = self._read()
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise RuntimeError(f"unexpected SUBSCRIBE reply from Redis: {reply!r}")
        self.sock.settimeout(None)

    def _read(self) -> Any:
        line = self.reader.readline()
        if not line:
            raise EOFError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            return [self._read() for _ in range(int(rest))]
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        raise RuntimeError(f"unexpected RESP line {line!r}")

    def run(self) -> None:
        try:
            while True:
                reply = self._read()
                if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                    self.events.append((reply[1].decode(), reply[2]))
        except (OSError, EOFError, ValueError):
            pass
        except RuntimeError as error:
            self.error = str(error)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------
# The scripted requests
# --------------------------------------------------------------------------


def host_kind(r: Runner, kind: str) -> str:
    """The kind of an exchange the host answers itself: as given on wharf,
    whose answers the spec documents; on real Spin only its status counts."""
    return kind if r.host == "wharf" else "spin-host"


def not_visible_ascii_keys(r: Runner) -> list[tuple[str, str]]:
    """Idempotency-Key values outside visible ASCII, as (label, value); the
    value goes out Latin-1 encoded. UTF-8 "café" reaches the app on both
    hosts; the lone byte 0xE9 (not UTF-8) only on wharf: real Spin answers
    such a header value with its own 500 before any component runs
    (docs/real-spin.md)."""
    keys = [("UTF-8", "caf\u00c3\u00a9")]
    if r.host == "wharf":
        keys.append(("not UTF-8", "caf\u00e9"))
    return keys


def run_script(r: Runner, spec: dict, redis_url: Optional[str]) -> None:
    sfx = secrets.token_hex(4)
    admin = r.admin
    wrong = {"Authorization": "Bearer not-the-token"}
    widget, euro, limited, huge = f"widget-{sfx}", f"euro-{sfx}", f"limited-{sfx}", f"huge-{sfx}"
    user = 1_000_000 + secrets.randbelow(1_000_000)
    me, other = r.customer(user), r.customer(user + 1)

    # ---- host and ops ----
    r.call("host health", "get", "/.well-known/spin/health", expect=200, kind=host_kind(r, "op"))
    r.call("health", "get", "/health", expect=200)
    r.call("info", "get", "/info", expect=200)

    # ---- inventory: catalog ----
    product = {"name": "Widget", "sku": "W-1", "price": 1999, "currency": "USD", "stock": 100}
    r.call("put product without token", "put", f"/inventory/products/{widget}", body=product, expect=401)
    r.call("put product with a wrong token", "put", f"/inventory/products/{widget}", headers=wrong, body=product,
           expect=403)
    r.call("create product", "put", f"/inventory/products/{widget}", headers=admin, body=product, expect=201)
    r.call("replace product", "put", f"/inventory/products/{widget}", headers=admin, body=product, expect=200)
    r.call("create EUR product, null sku", "put", f"/inventory/products/{euro}", headers=admin,
           body={"name": "Euro thing", "sku": None, "price": 500, "currency": "EUR", "stock": 10}, expect=201)
    r.call("create product without sku", "put", f"/inventory/products/{limited}", headers=admin,
           body={"name": "Limited", "price": 100, "currency": "USD", "stock": 1}, expect=201)
    r.call("create product at the largest price", "put", f"/inventory/products/{huge}", headers=admin,
           body={"name": "Huge", "price": 9223372036854775807, "currency": "USD", "stock": 10}, expect=201)
    r.call("put product with a bad id", "put", "/inventory/products/bad.id", headers=admin, body=product,
           expect=400)
    for label, change in [
        ("lowercase currency", {"currency": "usd"}),
        ("negative price", {"price": -1}),
        ("fractional price", {"price": 19.99}),
        ("price as a string", {"price": "1999"}),
        ("empty name", {"name": ""}),
        ("name over 200 characters", {"name": "n" * 201}),
        ("empty sku", {"sku": ""}),
        ("stock over 10^9", {"stock": 1_000_000_001}),
        ("unknown field", {"colour": "red"}),
    ]:
        r.call(f"put product: {label}", "put", f"/inventory/products/{widget}", headers=admin,
               body={**product, **change}, expect=400)
    r.call("put product: missing stock", "put", f"/inventory/products/{widget}", headers=admin,
           body={k: v for k, v in product.items() if k != "stock"}, expect=400)
    r.call("put product: not JSON", "put", f"/inventory/products/{widget}", headers=admin, raw=b"{nope",
           expect=400)
    r.call("get product", "get", f"/inventory/products/{widget}", expect=200)
    r.call("get unknown product", "get", f"/inventory/products/nope-{sfx}", expect=404)
    r.call("get product with a bad id", "get", "/inventory/products/bad.id", expect=404, spec="invalid")
    r.call("list products", "get", "/inventory/products", expect=200)
    r.call("list products, page 2 of 1", "get", "/inventory/products", query=[("page", "2"), ("page_size", "1")],
           expect=200)
    for label, query in [
        ("page 0", [("page", "0")]),
        ("page_size 0", [("page_size", "0")]),
        ("page_size 101", [("page_size", "101")]),
        ("page_size not a number", [("page_size", "ten")]),
        ("page over 10^9", [("page", "1000000001")]),
    ]:
        r.call(f"list products: {label}", "get", "/inventory/products", query=query, expect=400)
    r.call("list products: unknown parameter", "get", "/inventory/products", query=[("pgae", "1")], expect=400,
           spec=None)
    r.call("list products: repeated parameter", "get", "/inventory/products", query=[("page", "1"), ("page", "2")],
           expect=400, spec=None)

    # Payments need an order awaiting exactly their amount: one 1999 USD
    # widget each, placed without a payment token.
    def unpaid_order(label: str) -> str:
        placed = r.call(f"place order to pay: {label}", "post", "/orders", headers=me,
                        body={"user_id": user, "product_id": widget, "quantity": 1}, expect=201).json() or {}
        return placed.get("id", "ord_missing")

    def charge_of(order_id: str, token: str) -> dict:
        return {"order_id": order_id, "amount": 1999, "currency": "USD", "payment_token": token}

    # The slow provider takes 3 attempts of 5 s: run it beside everything else.
    slow_body = charge_of(unpaid_order("slow"), "tok_slow")
    slow = threading.Thread(
        target=lambda: r.call(
            "payment whose provider never answers in time", "post", "/payments",
            headers={**me, "Idempotency-Key": f"slow-{sfx}"}, body=slow_body, expect=504,
        ),
        daemon=True,
    )
    slow.start()
    # Two requests with one Idempotency-Key at once: tok_transient keeps the
    # first busy for about 600 ms (two failed attempts and their backoff), so
    # one of them gets 201 and the other 409 payment_in_progress.
    busy_key = {"Idempotency-Key": f"busy-{sfx}"}
    busy_body = charge_of(unpaid_order("busy"), "tok_transient")
    busy: list[Exchange] = []
    first = threading.Thread(target=lambda: busy.append(r.call("payment, one of two at once", "post", "/payments",
                                                                headers={**me, **busy_key}, body=busy_body, expect=None)),
                             daemon=True)
    first.start()
    time.sleep(0.2)
    busy.append(r.call("payment, one of two at once", "post", "/payments", headers={**me, **busy_key}, body=busy_body,
                       expect=None))

    # ---- inventory: reservations (admin) ----
    one = {"order_id": f"o-auth-{sfx}", "items": [{"product_id": widget, "quantity": 1}]}
    r.call("reservation without token", "post", "/inventory/reservations", body=one, expect=401)
    r.call("reservation with a wrong token", "post", "/inventory/reservations", headers=wrong, body=one, expect=403)
    expiring = r.call("reservation for one second", "post", "/inventory/reservations", headers=admin,
                      body={"order_id": f"o-exp-{sfx}", "items": [{"product_id": widget, "quantity": 1}],
                            "ttl_seconds": 1}, expect=201).json() or {}
    expiring_made = time.monotonic()
    held = r.call("reservation", "post", "/inventory/reservations", headers=admin,
                  body={"order_id": f"o-res-{sfx}", "items": [{"product_id": widget, "quantity": 2},
                                                               {"product_id": euro, "quantity": 1}]},
                  expect=201).json() or {}
    rid = held.get("reservation_id", "res_missing")
    for method, path in [("get", f"/inventory/reservations/{rid}"), ("delete", f"/inventory/reservations/{rid}"),
                         ("post", f"/inventory/reservations/{rid}/commit")]:
        r.call("reservation route without token", method, path, expect=401)
        r.call("reservation route with a wrong token", method, path, headers=wrong, expect=403)
    r.call("get reservation", "get", f"/inventory/reservations/{rid}", headers=admin, expect=200)
    r.call("commit reservation", "post", f"/inventory/reservations/{rid}/commit", headers=admin, expect=200)
    r.call("commit reservation again", "post", f"/inventory/reservations/{rid}/commit", headers=admin, expect=200)
    r.call("release committed reservation", "delete", f"/inventory/reservations/{rid}", headers=admin, expect=409)
    released = r.call("reservation to release", "post", "/inventory/reservations", headers=admin,
                      body={"order_id": f"o-rel-{sfx}", "items": [{"product_id": widget, "quantity": 1}]},
                      expect=201).json() or {}
    released_id = released.get("reservation_id", "res_missing")
    r.call("release reservation", "delete", f"/inventory/reservations/{released_id}", headers=admin, expect=200)
    r.call("release it again", "delete", f"/inventory/reservations/{released_id}", headers=admin, expect=200)
    r.call("commit released reservation", "post", f"/inventory/reservations/{released_id}/commit", headers=admin,
           expect=409)
    r.call("reservation with null ttl", "post", "/inventory/reservations", headers=admin,
           body={"order_id": f"o-null-{sfx}", "items": [{"product_id": widget, "quantity": 1}], "ttl_seconds": None},
           expect=201)
    r.call("reservation short of stock", "post", "/inventory/reservations", headers=admin,
           body={"order_id": f"o-short-{sfx}", "items": [{"product_id": limited, "quantity": 2}]}, expect=409)
    r.call("reservation of an unknown product", "post", "/inventory/reservations", headers=admin,
           body={"order_id": f"o-unk-{sfx}", "items": [{"product_id": f"nope-{sfx}", "quantity": 1}]}, expect=422)
    line = {"product_id": widget, "quantity": 1}
    for label, body in [
        ("quantity 0", {"order_id": "o", "items": [{**line, "quantity": 0}]}),
        ("quantity 1001", {"order_id": "o", "items": [{**line, "quantity": 1001}]}),
        ("no items", {"order_id": "o", "items": []}),
        ("51 items", {"order_id": "o", "items": [line] * 51}),
        ("ttl 0", {"order_id": "o", "items": [line], "ttl_seconds": 0}),
        ("ttl over half an hour", {"order_id": "o", "items": [line], "ttl_seconds": 1801}),
        ("ttl of a day", {"order_id": "o", "items": [line], "ttl_seconds": 86400}),
        ("missing order_id", {"items": [line]}),
        ("order_id with a space", {"order_id": "o 1", "items": [line]}),
        ("order_id of 65 characters", {"order_id": "o" * 65, "items": [line]}),
        ("unknown item member", {"order_id": "o", "items": [{**line, "price": 1}]}),
        ("product_id with a slash", {"order_id": "o", "items": [{"product_id": "a/b", "quantity": 1}]}),
    ]:
        r.call(f"reservation: {label}", "post", "/inventory/reservations", headers=admin, body=body, expect=400)
    r.call("reservation: body is an array", "post", "/inventory/reservations", headers=admin, body=[line],
           expect=400)
    r.call("get unknown reservation", "get", "/inventory/reservations/res_0000000000000000", headers=admin,
           expect=404)
    r.call("release unknown reservation", "delete", "/inventory/reservations/res_0000000000000000", headers=admin,
           expect=404)
    r.call("commit unknown reservation", "post", "/inventory/reservations/res_0000000000000000/commit",
           headers=admin, expect=404)
    r.call("sweep without token", "post", "/inventory/sweep", expect=401)
    r.call("sweep with a wrong token", "post", "/inventory/sweep", headers=wrong, expect=403)

    # ---- orders: placing ----
    new_order = {"user_id": user, "items": [{"product_id": widget, "quantity": 2}],
                 "shipping_address": "1 Main St", "billing_address": "2 Side St", "notes": "leave at the door"}
    r.call("place order without token", "post", "/orders", body=new_order, expect=401)
    r.call("place order with an invalid token", "post", "/orders", headers={"Authorization": "Bearer x.y.z"},
           body=new_order, expect=401, spec=None)
    r.call("place order with an expired token", "post", "/orders", headers=r.customer(user, exp=int(time.time()) - 3600),
           body=new_order, expect=401, spec=None)
    r.call("place order in another user's name", "post", "/orders", headers=other, body=new_order, expect=403)
    order_a = r.call("place order", "post", "/orders", headers=me, body=new_order, expect=201).json() or {}
    r.call("place order as admin for a user", "post", "/orders", headers=admin, body=new_order, expect=201)
    key = f"order-key-{sfx}"
    paid_body = {"user_id": user, "product_id": widget, "quantity": 1, "payment_token": "tok_approve"}
    order_b = r.call("place one-item order with a token", "post", "/orders", headers={**me, "Idempotency-Key": key},
                     body=paid_body, expect=201).json() or {}
    replay = r.call("replay it by Idempotency-Key", "post", "/orders", headers={**me, "Idempotency-Key": key},
                    body=paid_body, expect=201).json() or {}
    if replay.get("id") != order_b.get("id"):
        r.surprises.append(f"POST /orders replay gave order {replay.get('id')}, the first answer {order_b.get('id')}")
    r.call("reuse the Idempotency-Key for another order", "post", "/orders", headers={**me, "Idempotency-Key": key},
           body={**paid_body, "quantity": 2}, expect=422)
    order_c = r.call("place order with a declined token", "post", "/orders", headers=me,
                     body={"user_id": user, "items": [{"product_id": widget, "quantity": 1}],
                           "payment_token": "tok_decline", "notes": None}, expect=201).json() or {}
    order_d = r.call("place order to cancel", "post", "/orders", headers=other,
                     body={"user_id": user + 1, "items": [{"product_id": euro, "quantity": 1}]},
                     expect=201).json() or {}
    r.call("order of an unknown product", "post", "/orders", headers=me,
           body={"user_id": user, "items": [{"product_id": f"nope-{sfx}", "quantity": 1}]}, expect=422)
    r.call("order in two currencies", "post", "/orders", headers=me,
           body={"user_id": user, "items": [{"product_id": widget, "quantity": 1},
                                            {"product_id": euro, "quantity": 1}]}, expect=422)
    r.call("order whose total overflows", "post", "/orders", headers=me,
           body={"user_id": user, "items": [{"product_id": huge, "quantity": 2}]}, expect=422)
    r.call("order short of stock", "post", "/orders", headers=me,
           body={"user_id": user, "items": [{"product_id": limited, "quantity": 2}]}, expect=409)
    item = {"product_id": widget, "quantity": 1}
    for label, body in [
        ("user_id 0", {"user_id": 0, "items": [item]}),
        ("user_id as a string", {"user_id": str(user), "items": [item]}),
        ("user_id with a fraction", {"user_id": user + 0.5, "items": [item]}),
        ("missing user_id", {"items": [item]}),
        ("no items", {"user_id": user, "items": []}),
        ("51 items", {"user_id": user, "items": [item] * 51}),
        ("quantity 0", {"user_id": user, "items": [{**item, "quantity": 0}]}),
        ("quantity 1001", {"user_id": user, "items": [{**item, "quantity": 1001}]}),
        ("fractional quantity", {"user_id": user, "items": [{**item, "quantity": 1.5}]}),
        ("single-item quantity 1001", {"user_id": user, "product_id": widget, "quantity": 1001}),
        ("shipping_address over 500", {"user_id": user, "items": [item], "shipping_address": "s" * 501}),
        ("billing_address over 500", {"user_id": user, "items": [item], "billing_address": "b" * 501}),
        ("notes over 1000", {"user_id": user, "items": [item], "notes": "n" * 1001}),
        ("empty payment_token", {"user_id": user, "items": [item], "payment_token": ""}),
        ("payment_token over 256", {"user_id": user, "items": [item], "payment_token": "t" * 257}),
        ("unknown field", {"user_id": user, "items": [item], "coupon": "FREE"}),
        ("items and product_id", {"user_id": user, "items": [item], "product_id": widget}),
        ("neither items nor product_id", {"user_id": user}),
        ("product_id without quantity", {"user_id": user, "product_id": widget}),
        ("unknown item member", {"user_id": user, "items": [{**item, "price": 1}]}),
    ]:
        # The admin must name the user (a customer's comes from its token): a
        # condition on the caller that the schema cannot state.
        r.call(f"order: {label}", "post", "/orders", headers=admin, body=body, expect=400,
               spec=None if label == "missing user_id" else "auto")
    r.call("order: not JSON", "post", "/orders", headers=me, raw=b"user_id=7", expect=400)
    r.call("order: integer written as 7.0", "post", "/orders", headers=admin,
           raw=b'{"user_id": 7.0, "items": [{"product_id": "%s", "quantity": 1}]}' % widget.encode(),
           expect=400, spec=None)
    r.call("order: Idempotency-Key over 255", "post", "/orders", headers={**me, "Idempotency-Key": "k" * 256},
           body=new_order, expect=400)
    for label, key in not_visible_ascii_keys(r):
        r.call(f"order: Idempotency-Key not visible ASCII ({label})", "post", "/orders", headers={**me, "Idempotency-Key": key},
               body=new_order, expect=400)
    r.call("order: body over 64 KiB", "post", "/orders", headers=me,
           body={"user_id": user, "items": [item], "notes": "x" * 70_000}, expect=413, spec=None)
    big = b"{" + b" " * 70_000 + b"}"
    for method, path in [("put", f"/inventory/products/{widget}"), ("post", "/inventory/reservations"),
                         ("get", "/orders"), ("get", "/sandbox/stats"), ("post", "/sandbox/refunds")]:
        r.call("body over 64 KiB", method, path, headers=admin, raw=big, expect=413, spec=None)
    if r.host == "wharf":  # Spin has no limit of its own on request bodies
        r.call_declared_length("body over the host's limit", "post", "/payments", 20 * 1024 * 1024,
                               {"Idempotency-Key": f"big-{sfx}", "Content-Type": "application/json"}, expect=413)
    retry_key = {**me, "Idempotency-Key": f"retry-{sfx}"}
    r.call("order refused with a key", "post", "/orders", headers=retry_key, body={"user_id": 0, "items": [item]},
           expect=400)
    r.call("same key, corrected order (400s are not remembered)", "post", "/orders", headers=retry_key,
           body={"user_id": user, "items": [item]}, expect=201)

    # ---- orders: reading ----
    oid = order_a.get("id", "ord_missing")
    r.call("get order without token", "get", f"/orders/{oid}", expect=401)
    r.call("get another user's order", "get", f"/orders/{oid}", headers=other, expect=404)
    r.call("get order", "get", f"/orders/{oid}", headers=me, expect=200)
    r.call("get order as admin", "get", f"/orders/{oid}", headers=admin, expect=200)
    r.call("get unknown order", "get", "/orders/ord_0000000000000000", headers=me, expect=404)
    r.call("get order with a bad id", "get", "/orders/bad.id", headers=me, expect=404, spec="invalid")
    r.call("list orders without token", "get", "/orders", expect=401)
    r.call("list my orders", "get", "/orders", headers=me, expect=200)
    r.call("list another user's orders", "get", "/orders", headers=me, query=[("user_id", str(user + 1))], expect=403)
    r.call("list orders as admin", "get", "/orders", headers=admin, expect=200)
    r.call("list a user's orders", "get", "/orders", headers=me, query=[("user_id", str(user))], expect=200)
    r.call("list by status", "get", "/orders", headers=admin, query=[("status", "confirmed")], expect=200)
    r.call("list a user's orders by status, paged", "get", "/orders", headers=me,
           query=[("user_id", str(user)), ("status", "confirmed"), ("page", "1"), ("page_size", "2")], expect=200)
    r.call("list orders, page 2", "get", "/orders", headers=admin, query=[("page", "2"), ("page_size", "1")],
           expect=200)
    for label, query in [
        ("unknown status", [("status", "lost")]),
        ("user_id 0", [("user_id", "0")]),
        ("user_id not a number", [("user_id", "me")]),
        ("page 0", [("page", "0")]),
        ("page_size 101", [("page_size", "101")]),
    ]:
        r.call(f"list orders: {label}", "get", "/orders", headers=admin, query=query, expect=400)
    r.call("list orders: unknown parameter", "get", "/orders", headers=admin, query=[("sort", "new")], expect=400,
           spec=None)
    r.call("summary without token", "get", "/orders/summary", expect=401)
    r.call("summary as a customer", "get", "/orders/summary", headers=me, expect=403)
    r.call("summary", "get", "/orders/summary", headers=admin, expect=200)
    r.call("summary ignores a query string", "get", "/orders/summary", headers=admin, query=[("anything", "1")],
           expect=200)

    # ---- orders: status changes (admin) ----
    status_path = f"/orders/{oid}/status"
    r.call("status without token", "put", status_path, body={"status": "paid"}, expect=401)
    r.call("status with a wrong token", "put", status_path, headers=wrong, body={"status": "paid"}, expect=403)
    r.call("status: unknown status", "put", status_path, headers=admin, body={"status": "lost"}, expect=400)
    r.call("status: missing status", "put", status_path, headers=admin, body={"notes": "x"}, expect=400)
    r.call("status: unknown field", "put", status_path, headers=admin, body={"status": "paid", "by": "me"},
           expect=400)
    r.call("status: notes over 1000", "put", status_path, headers=admin, body={"status": "paid", "notes": "n" * 1001},
           expect=400)
    r.call("status: not JSON", "put", status_path, headers=admin, raw=b"paid", expect=400)
    r.call("status of unknown order", "put", "/orders/ord_0000000000000000/status", headers=admin,
           body={"status": "paid"}, expect=404)
    r.call("status: confirmed to shipped", "put", status_path, headers=admin, body={"status": "shipped"}, expect=409)
    for status in ["paid", "processing", "shipped", "delivered"]:
        r.call(f"status: to {status}", "put", status_path, headers=admin,
               body={"status": status, "notes": f"now {status}"}, expect=200)
    r.call("status: to refunded, null notes", "put", status_path, headers=admin,
           body={"status": "refunded", "notes": None}, expect=200)
    r.call("cancel refunded order", "delete", f"/orders/{oid}", headers=me, expect=409)

    # ---- orders: cancelling ----
    did = order_d.get("id", "ord_missing")
    r.call("cancel without token", "delete", f"/orders/{did}", expect=401)
    r.call("cancel another user's order", "delete", f"/orders/{did}", headers=me, expect=404)
    r.call("cancel: reason over 1000", "delete", f"/orders/{did}", headers=other, query=[("reason", "r" * 1001)],
           expect=400)
    r.call("cancel: unknown parameter", "delete", f"/orders/{did}", headers=other, query=[("why", "x")], expect=400,
           spec=None)
    r.call("cancel order", "delete", f"/orders/{did}", headers=other, query=[("reason", "changed my mind")],
           expect=200)
    r.call("cancel it again", "delete", f"/orders/{did}", headers=other, expect=409)
    r.call("cancel unknown order", "delete", "/orders/ord_0000000000000000", headers=other, expect=404)

    # ---- orders and payments: asynchronous flow ----
    bid, cid = order_b.get("id", "ord_missing"), order_c.get("id", "ord_missing")

    def order_when(order_id: str, test: Callable[[dict], bool]) -> Callable[[], Optional[dict]]:
        def attempt() -> Optional[dict]:
            body = r.call("poll order", "get", f"/orders/{order_id}", headers=me, expect=200).json() or {}
            return body if test(body) else None
        return attempt

    paid = r.eventually("the approved order to be paid by the payment worker",
                        order_when(bid, lambda o: o.get("payment_status") == "completed")) or {}
    r.eventually("the declined order to be cancelled",
                 order_when(cid, lambda o: o.get("status") == "cancelled" and o.get("payment_status") == "failed"))
    worker_payment = paid.get("payment_id") or "pay_missing"
    r.call("get the worker's payment", "get", f"/payments/{worker_payment}", headers=me, expect=200)
    r.call("cancel paid order", "delete", f"/orders/{bid}", headers=me, query=[("reason", "too late")], expect=200)
    r.eventually(
        "the payment worker to refund the cancelled order's payment",
        lambda: (r.call("poll payment", "get", f"/payments/{worker_payment}", headers=me, expect=200).json() or {}).get("status")
        == "refunded" or None,
    )

    # ---- orders: maintenance (admin) ----
    r.call("reconcile without token", "post", "/orders/reconcile", expect=401)
    r.call("reconcile with a wrong token", "post", "/orders/reconcile", headers=wrong, expect=403)
    r.call("reconcile: limit 0", "post", "/orders/reconcile", headers=admin, query=[("limit", "0")], expect=400)
    r.call("reconcile: limit 1001", "post", "/orders/reconcile", headers=admin, query=[("limit", "1001")],
           expect=400)
    r.call("reconcile: unknown parameter", "post", "/orders/reconcile", headers=admin, query=[("all", "1")],
           expect=400, spec=None)
    r.call("reconcile", "post", "/orders/reconcile", headers=admin, expect=200)
    r.call("reconcile 5", "post", "/orders/reconcile", headers=admin, query=[("limit", "5")], expect=200)
    r.call("reindex without token", "post", "/orders/reindex", expect=401)
    r.call("reindex with a wrong token", "post", "/orders/reindex", headers=wrong, expect=403)
    r.call("reindex one order", "post", "/orders/reindex", headers=admin, query=[("limit", "1")], expect=200)
    r.call("reindex: limit 0", "post", "/orders/reindex", headers=admin, query=[("limit", "0")], expect=400)
    r.call("reindex", "post", "/orders/reindex", headers=admin, expect=200)
    r.call("reindex, scheme in lowercase", "post", "/orders/reindex",
           headers={"Authorization": admin["Authorization"].replace("Bearer", "bearer")}, expect=200)
    r.call("reindex with Basic credentials", "post", "/orders/reindex", headers={"Authorization": "Basic dTpw"},
           expect=403, spec=None)
    r.call("summary after the flow", "get", "/orders/summary", headers=admin, expect=200)

    # ---- payments ----
    charge = charge_of(unpaid_order("payment"), "tok_approve")
    pkey = {"Idempotency-Key": f"pay-{sfx}"}
    r.call("payment without a customer token", "post", "/payments", headers=pkey, body=charge, expect=401)
    r.call("payment of another customer's order", "post", "/payments", headers={**other, "Idempotency-Key": f"pay-other-{sfx}"},
           body=charge, expect=422)
    r.call("payment without Idempotency-Key", "post", "/payments", headers=me, body=charge, expect=400)
    r.call("payment with an Idempotency-Key over 255", "post", "/payments", headers={**me, "Idempotency-Key": "k" * 256},
           body=charge, expect=400)
    for label, key in not_visible_ascii_keys(r):
        r.call(f"payment with an Idempotency-Key not visible ASCII ({label})", "post", "/payments",
               headers={**me, "Idempotency-Key": key}, body=charge, expect=400)
    r.call("payment of an unknown order", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-unknown-{sfx}"},
           body={**charge, "order_id": "ord_0000000000000000"}, expect=422)
    r.call("payment of another amount than the order's", "post", "/payments",
           headers={**me, "Idempotency-Key": f"pay-amount-{sfx}"}, body={**charge, "amount": 1}, expect=422)
    r.call("payment of a cancelled order", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-cancelled-{sfx}"},
           body={**charge, "order_id": bid, "amount": paid.get("total_amount", 1999)}, expect=409)
    payment = r.call("payment", "post", "/payments", headers={**me, **pkey}, body=charge, expect=201).json() or {}
    again = r.call("payment replayed", "post", "/payments", headers={**me, **pkey}, body=charge, expect=201).json() or {}
    if again.get("payment_id") != payment.get("payment_id"):
        r.surprises.append("POST /payments replay answered another payment than the first request")
    r.call("payment: key reused for another amount", "post", "/payments", headers={**me, **pkey},
           body={**charge, "amount": 1501}, expect=422)
    # A declined payment leaves the order waiting: the same order is tried again.
    declined_charge = charge_of(unpaid_order("declined payment"), "tok_decline")
    declined = r.call("payment declined", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-dec-{sfx}"},
                      body=declined_charge, expect=402).json() or {}
    r.call("payment declined, replayed", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-dec-{sfx}"},
           body=declined_charge, expect=402)
    r.call("payment with a token the provider does not know", "post", "/payments",
           headers={**me, "Idempotency-Key": f"pay-unk-{sfx}"}, body={**declined_charge, "payment_token": "tok_other"},
           expect=402)
    r.call("payment after two transient failures", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-tr-{sfx}"},
           body=charge_of(unpaid_order("transient payment"), "tok_transient"), expect=201)
    for label, body in [
        ("amount 0", {**charge, "amount": 0}),
        ("fractional amount", {**charge, "amount": 15.5}),
        ("two-letter currency", {**charge, "currency": "US"}),
        ("missing payment_token", {k: v for k, v in charge.items() if k != "payment_token"}),
        ("payment_token over 256", {**charge, "payment_token": "t" * 257}),
        ("order_id with a dot", {**charge, "order_id": "o.1"}),
        ("unknown field", {**charge, "tip": 1}),
    ]:
        r.call(f"payment: {label}", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-bad-{sfx}"}, body=body,
               expect=400)
    r.call("payment: not JSON", "post", "/payments", headers={**me, "Idempotency-Key": f"pay-bad-{sfx}"}, raw=b"[",
           expect=400)
    pid = payment.get("payment_id", "pay_missing")
    r.call("get payment without a customer token", "get", f"/payments/{pid}", expect=401)
    r.call("get another customer's payment", "get", f"/payments/{pid}", headers=other, expect=404)
    r.call("get payment", "get", f"/payments/{pid}", headers=me, expect=200)
    r.call("get unknown payment", "get", "/payments/pay_0000000000000000", headers=me, expect=404)
    r.call("refund without token", "post", f"/payments/{pid}/refund", expect=401)
    r.call("refund with a wrong token", "post", f"/payments/{pid}/refund", headers=wrong, expect=403)
    r.call("refund", "post", f"/payments/{pid}/refund", headers=admin, expect=200)
    r.call("refund again", "post", f"/payments/{pid}/refund", headers=admin, expect=200)
    declined_id = (declined.get("payment") or {}).get("payment_id", "pay_missing")
    r.call("refund a declined payment", "post", f"/payments/{declined_id}/refund", headers=admin, expect=409)
    r.call("refund unknown payment", "post", "/payments/pay_0000000000000000/refund", headers=admin, expect=404)

    # ---- sandbox ----
    sbody = {"amount": 700, "currency": "USD", "token": "tok_approve"}
    skey = f"sb-{sfx}"
    r.call("sandbox charge without Idempotency-Key", "post", "/sandbox/charges", body=sbody, expect=400)
    sc = r.call("sandbox charge", "post", "/sandbox/charges", headers={"Idempotency-Key": skey}, body=sbody,
                expect=201).json() or {}
    r.call("sandbox charge replayed", "post", "/sandbox/charges", headers={"Idempotency-Key": skey}, body=sbody,
           expect=201)
    r.call("sandbox charge: key reused", "post", "/sandbox/charges", headers={"Idempotency-Key": skey},
           body={**sbody, "amount": 701}, expect=422)
    sd = r.call("sandbox charge declined", "post", "/sandbox/charges", headers={"Idempotency-Key": f"sb-dec-{sfx}"},
                body={**sbody, "token": "tok_decline"}, expect=402).json() or {}
    for attempt, status in [(1, 503), (2, 503), (3, 201)]:
        r.call(f"sandbox transient charge, attempt {attempt}", "post", "/sandbox/charges",
               headers={"Idempotency-Key": f"sb-tr-{sfx}"}, body={**sbody, "token": "tok_transient"}, expect=status)
    for label, body in [
        ("unknown token", {**sbody, "token": "tok_other"}),
        ("amount 0", {**sbody, "amount": 0}),
        ("lowercase currency", {**sbody, "currency": "usd"}),
        ("unknown field", {**sbody, "cvc": "123"}),
        ("missing token", {"amount": 1, "currency": "USD"}),
    ]:
        r.call(f"sandbox charge: {label}", "post", "/sandbox/charges", headers={"Idempotency-Key": f"sb-bad-{sfx}"},
               body=body, expect=400)
    r.call("sandbox: find charge", "get", "/sandbox/charges", query=[("idempotency_key", skey)], expect=200)
    r.call("sandbox: find declined charge", "get", "/sandbox/charges", query=[("idempotency_key", f"sb-dec-{sfx}")],
           expect=200)
    r.call("sandbox: find without key", "get", "/sandbox/charges", expect=400)
    r.call("sandbox: find unknown key", "get", "/sandbox/charges", query=[("idempotency_key", f"none-{sfx}")],
           expect=404)
    r.call("sandbox: find with unknown parameter", "get", "/sandbox/charges",
           query=[("idempotency_key", skey), ("x", "1")], expect=400, spec=None)
    charge_id = sc.get("charge_id", "ch_missing")
    r.call("sandbox refund", "post", "/sandbox/refunds", body={"charge_id": charge_id}, expect=201)
    r.call("sandbox refund again", "post", "/sandbox/refunds", body={"charge_id": charge_id}, expect=200)
    r.call("sandbox refund of a declined charge", "post", "/sandbox/refunds",
           body={"charge_id": (sd.get("charge") or {}).get("charge_id", "ch_missing")}, expect=409)
    r.call("sandbox refund of an unknown charge", "post", "/sandbox/refunds",
           body={"charge_id": "ch_0000000000000000"}, expect=404)
    r.call("sandbox refund: empty charge_id", "post", "/sandbox/refunds", body={"charge_id": ""}, expect=400)
    r.call("sandbox refund: unknown field", "post", "/sandbox/refunds", body={"charge_id": charge_id, "amount": 1},
           expect=400)
    r.call("sandbox stats", "get", "/sandbox/stats", expect=200)
    r.call("sandbox stats of a key", "get", "/sandbox/stats", query=[("idempotency_key", skey)], expect=200)
    r.call("sandbox stats of an unused key", "get", "/sandbox/stats", query=[("idempotency_key", f"none-{sfx}")],
           expect=200)
    r.call("sandbox stats: unknown parameter", "get", "/sandbox/stats", query=[("key", skey)], expect=400, spec=None)

    # ---- the reservation made for one second has expired by now ----
    time.sleep(max(0.0, 1.2 - (time.monotonic() - expiring_made)))
    r.call("commit expired reservation", "post",
           f"/inventory/reservations/{expiring.get('reservation_id', 'res_missing')}/commit", headers=admin,
           expect=409)
    r.call("sweep", "post", "/inventory/sweep", headers=admin, expect=200)

    # ---- ops, after activity ----
    r.call("metrics", "get", "/metrics", expect=200)

    # ---- the reverse: undocumented paths and methods ----
    # No route of the app matches these, so the host answers them itself.
    for path in ["/", "/nope", "/health/x", "/info/x", "/metrics/x", "/.well-known/spin/other"]:
        r.call("undocumented path", "get", path, expect=404, kind=host_kind(r, "undocumented"), spec=None)
    # These are in a component's wildcard route: the app answers.
    for path in ["/orders/a/b/c", "/orders/x/status/y", "/inventory", "/inventory/x", "/inventory/products/a/b",
                 "/inventory/reservations/a/b/c", "/payments/x/y", "/payments/a/b/c", "/sandbox", "/sandbox/x"]:
        r.call("undocumented path", "get", path, expect=404, kind="undocumented", spec=None)
    for template, item in spec.get("paths", {}).items():
        if template == "/.well-known/spin/health":
            continue  # the host answers any method there (documented)
        concrete = re.sub(r"\{[^}]+\}", "x1", template)
        for method in METHODS:
            if method not in item:
                r.call("method not served", method, concrete, expect=405, kind="method", spec=None)

    slow.join(timeout=60)
    first.join(timeout=30)
    if sorted(ex.status for ex in busy) != [201, 409]:
        r.surprises.append(f"two POST /payments at once with one Idempotency-Key answered "
                           f"{sorted(ex.status for ex in busy)}, the script expected 201 and 409")

    # Last, with Redis gone (when given its URL to stop): health degrades.
    if redis_url:
        parsed = urllib.parse.urlparse(redis_url)
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
                sock.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
                sock.recv(100)
        except OSError:
            pass
        r.eventually("Redis to stop", lambda: None if _port_open(parsed.hostname, parsed.port) else True, 5)
        r.call("health with Redis down", "get", "/health", expect=503)


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Verification of a recording against a spec
# --------------------------------------------------------------------------


@dataclass
class Operation:
    path: str
    method: str
    operation_id: str
    regex: re.Pattern


def operations_of(spec: dict) -> list[Operation]:
    ops = []
    for template, item in (spec.get("paths") or {}).items():
        regex = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
        for method in METHODS:
            if method in item:
                ops.append(Operation(template, method, item[method].get("operationId", f"{method} {template}"), regex))
    # Concrete paths win over templated ones, as in OpenAPI path matching.
    ops.sort(key=lambda op: op.path.count("{"))
    return ops


def path_templates_matching(ops: list[Operation], path: str) -> list[str]:
    """The path template a request path falls under (the most concrete one), as a list of 0 or 1."""
    templates = sorted({op.path for op in ops if op.regex.match(path)}, key=lambda t: t.count("{"))
    return templates[:1]


def match(ops: list[Operation], method: str, path: str) -> Optional[Operation]:
    """The operation serving `method` on `path`: the path decides the template first, then the method."""
    templates = path_templates_matching(ops, path)
    return next((op for op in ops if templates and op.path == templates[0] and op.method == method), None)


def describe_error(error: BaseException) -> str:
    """An openapi-core failure in a line: the schema errors when there are any, else the exception chain."""
    schema_errors, chain, seen = [], [], set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        schema_errors += getattr(cause, "schema_errors", None) or []
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    if schema_errors:
        return f"{type(error).__name__}: " + "; ".join(
            f"at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}" for e in schema_errors)
    return " <- ".join(chain)[:600]


class SchemaChecker:
    """Validates instances against schemas of one spec document, by JSON pointer (`#/components/...`)."""

    def __init__(self, spec: dict):
        self.uri = "urn:shop:openapi"
        resource = referencing.Resource(contents=spec, specification=referencing.jsonschema.DRAFT202012)
        self.registry = referencing.Registry().with_resource(self.uri, resource)
        self.validators: dict[str, jsonschema.protocols.Validator] = {}

    def errors(self, ref: str, instance: Any) -> list[str]:
        if ref not in self.validators:
            self.validators[ref] = jsonschema.Draft202012Validator(
                {"$ref": f"{self.uri}{ref}"}, registry=self.registry,
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        return [f"at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}"
                for e in self.validators[ref].iter_errors(instance)]


def verify(spec: dict, exchanges: list[Exchange], events: list[tuple[str, bytes]]) -> tuple[list[str], list[str]]:
    """Problems (mismatches) and notes (informational) of a recording under `spec`."""
    problems: list[str] = []
    notes: list[str] = []
    try:
        validate_spec_document(spec)
    except Exception as error:  # noqa: BLE001 - any validator complaint is a problem
        problems.append(f"spec: not valid OpenAPI: {str(error).splitlines()[0][:300]}")
        return problems, notes
    try:
        # Validated just above; openapi-core would validate it a second time.
        openapi = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
    except Exception as error:  # noqa: BLE001
        problems.append(f"spec: openapi-core cannot load it: {error}")
        return problems, notes
    host_url = (spec.get("servers") or [{"url": "http://127.0.0.1:3000"}])[0]["url"].rstrip("/")
    ops = operations_of(spec)
    schemas = SchemaChecker(spec)
    exercised: dict[str, list[int]] = {op.operation_id: [] for op in ops}

    for ex in exchanges:
        if ex.status == 0:
            problems.append(f"{ex.label()}: no answer: {ex.response_body.decode(errors='replace')}")
            continue
        if ex.kind == "spin-host":
            op = match(ops, ex.method, ex.path)
            if op:
                exercised[op.operation_id].append(ex.status)
            continue
        if ex.kind in ("undocumented", "method"):
            documented = match(ops, ex.method, ex.path)
            if documented:
                problems.append(
                    f"{documented.operation_id} ({ex.method.upper()} {documented.path}): documented, but the server "
                    f"answers {ex.label()} with {ex.status}"
                )
                continue
            want_code = "not_found" if ex.kind == "undocumented" else "method_not_allowed"
            body = ex.json()
            errors = schemas.errors("#/components/schemas/Error", body)
            if errors or (body or {}).get("error", {}).get("code") != want_code:
                problems.append(f"{ex.label()}: {ex.status} body is not the shared Error with code {want_code}: "
                                f"{errors or body}")
            continue

        op = match(ops, ex.method, ex.path)
        if op is None:
            problems.append(f"{ex.label()}: not in the spec (no such path and method), but the server answers "
                            f"{ex.status}")
            continue
        exercised[op.operation_id].append(ex.status)
        request = MockRequest(host_url, ex.method, ex.path, args=ex.query, headers=ex.headers, data=ex.body or None,
                              content_type=ex.headers.get("Content-Type", "application/json"))
        response = MockResponse(ex.response_body, status_code=ex.status,
                                content_type=ex.response_headers.get("content-type", ""),
                                headers=ex.response_headers)
        try:
            openapi.validate_response(request, response)
        except Exception as error:  # noqa: BLE001 - every validation failure is reported
            problems.append(f"{op.operation_id} {ex.label()}: response {ex.status} does not match the spec: "
                            f"{describe_error(error)} (body: {ex.response_body[:160].decode(errors='replace')})")
        if ex.spec is None:
            continue
        try:
            openapi.validate_request(request)
            accepted, why = True, ""
        except Exception as error:  # noqa: BLE001
            accepted, why = False, describe_error(error)
        if ex.spec == "valid" and not accepted:
            problems.append(f"{op.operation_id} {ex.label()}: the server handled it ({ex.status}) but the spec "
                            f"refuses the request: {why}")
        elif ex.spec == "invalid" and accepted:
            problems.append(f"{op.operation_id} {ex.label()}: the server refused it ({ex.status}: "
                            f"{ex.response_body[:160].decode(errors='replace')}) but the spec accepts the request")

    for op in ops:
        statuses = exercised[op.operation_id]
        if not statuses:
            problems.append(f"{op.operation_id} ({op.method.upper()} {op.path}): in the spec but never exercised")
        elif not any(200 <= s < 300 for s in statuses):
            problems.append(f"{op.operation_id} ({op.method.upper()} {op.path}): never answered 2xx")
        documented = set((spec["paths"][op.path][op.method].get("responses") or {}).keys())
        unseen = sorted(documented - {str(s) for s in statuses})
        if unseen:
            notes.append(f"{op.operation_id}: documented, not observed: {', '.join(unseen)}")

    # Events against x-events.
    channels = ((spec.get("x-events") or {}).get("channels")) or {}
    seen_channels = set()
    for channel, payload in events:
        seen_channels.add(channel)
        if channel not in channels:
            problems.append(f"event on channel {channel}: the channel is not in x-events")
            continue
        ref = ((channels[channel] or {}).get("payload") or {}).get("$ref")
        try:
            event = json.loads(payload)
        except ValueError:
            problems.append(f"event on {channel}: not JSON: {payload[:200]!r}")
            continue
        if not ref:
            problems.append(f"x-events channel {channel}: no payload $ref")
            continue
        for error in schemas.errors(ref, event):
            problems.append(f"event on {channel} ({event.get('event_id')}): {error}")
        data_ref = _data_ref(spec, ref)
        if data_ref and isinstance(event.get("data"), dict):
            documented = set((_resolve(spec, data_ref).get("properties") or {}).keys())
            extra = sorted(set(event["data"]) - documented)
            if extra:
                problems.append(f"event on {channel}: data members not documented in {data_ref}: {extra}")
    for channel in channels:
        if channel not in seen_channels:
            problems.append(f"x-events channel {channel}: no event seen on it during the run")
    return problems, notes


def _resolve(spec: dict, ref: str) -> dict:
    node: Any = spec
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _data_ref(spec: dict, event_ref: str) -> Optional[str]:
    for part in _resolve(spec, event_ref).get("allOf") or []:
        data = ((part or {}).get("properties") or {}).get("data") or {}
        if "$ref" in data:
            return data["$ref"]
    return None


# --------------------------------------------------------------------------
# Self-test: mutations the verification must catch
# --------------------------------------------------------------------------


def _op(spec: dict, path: str, method: str) -> dict:
    return spec["paths"][path][method]


def _schema(spec: dict, name: str) -> dict:
    return spec["components"]["schemas"][name]


def _code_enum(response: dict) -> list:
    return response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]["properties"][
        "code"]["enum"]


MUTATIONS: list[tuple[str, str, Callable[[dict], None]]] = [
    ("drop the 201 response of POST /orders", "createOrder",
     lambda s: _op(s, "/orders", "post")["responses"].pop("201")),
    ("drop the 409 response of DELETE /orders/{order_id}", "cancelOrder",
     lambda s: _op(s, "/orders/{order_id}", "delete")["responses"].pop("409")),
    ("Order.total_amount becomes a string", "total_amount",
     lambda s: _schema(s, "Order")["properties"].__setitem__("total_amount", {"type": "string"})),
    ("Order requires an undocumented member", "discount",
     lambda s: _schema(s, "Order")["required"].append("discount")),
    ("Payment.provider_ref is no longer nullable", "provider_ref",
     lambda s: _schema(s, "Payment")["properties"]["provider_ref"].__setitem__("type", "string")),
    ("OrderStatus loses `paid`", "paid",
     lambda s: _schema(s, "OrderStatus")["enum"].remove("paid")),
    ("Product loses `reserved` (undocumented member served)", "reserved",
     lambda s: (_schema(s, "Product")["properties"].pop("reserved"), _schema(s, "Product")["required"].remove(
         "reserved"))),
    ("createOrder's 409 loses the code insufficient_stock", "insufficient_stock",
     lambda s: _code_enum(_op(s, "/orders", "post")["responses"]["409"]).remove("insufficient_stock")),
    ("items may have 51 elements", "spec accepts",
     lambda s: _schema(s, "CreateOrderRequest")["properties"]["items"].pop("maxItems")),
    ("quantity may be 1001", "spec accepts",
     lambda s: _schema(s, "OrderLine")["properties"]["quantity"].__setitem__("maximum", 1001)),
    ("CreateOrderRequest allows unknown members", "spec accepts",
     lambda s: _schema(s, "CreateOrderRequest").pop("additionalProperties")),
    ("page may be 0", "spec accepts",
     lambda s: s["components"]["parameters"]["Page"]["schema"].__setitem__("minimum", 0)),
    ("PUT /inventory/products/{product_id} needs no token", "spec accepts",
     lambda s: _op(s, "/inventory/products/{product_id}", "put").pop("security")),
    ("notes limited to 10 characters", "spec refuses",
     lambda s: _schema(s, "CreateOrderRequest")["properties"]["notes"].__setitem__("maxLength", 10)),
    ("POST /payments loses its Idempotency-Key header", "spec accepts",
     lambda s: _op(s, "/payments", "post").pop("parameters")),
    ("/orders/summary is missing", "/orders/summary",
     lambda s: s["paths"].pop("/orders/summary")),
    ("a PATCH /orders the server does not serve", "never exercised",
     lambda s: s["paths"]["/orders"].__setitem__("patch", {**copy.deepcopy(s["paths"]["/orders"]["get"]),
                                                          "operationId": "patchOrders"})),
    ("GET /metrics documented as JSON", "getMetrics",
     lambda s: _op(s, "/metrics", "get")["responses"]["200"].__setitem__(
         "content", {"application/json": {"schema": {"type": "object"}}})),
    ("the error body's `field` is undocumented", "field",
     lambda s: _schema(s, "ErrorDetail")["properties"].pop("field")),
    ("x-events lacks payments.failed", "payments.failed",
     lambda s: s["x-events"]["channels"].pop("payments.failed")),
    ("orders.cancelled data loses refund_required", "refund_required",
     lambda s: (_schema(s, "OrderCancelledData")["properties"].pop("refund_required"),
                _schema(s, "OrderCancelledData")["required"].remove("refund_required"))),
]


_SELF_TEST: dict[str, Any] = {}


def _mutated_problems(index: int) -> tuple[int, list[str], float]:
    started = time.monotonic()
    mutated = copy.deepcopy(_SELF_TEST["spec"])
    MUTATIONS[index][2](mutated)
    problems, _ = verify(mutated, _SELF_TEST["exchanges"], _SELF_TEST["events"])
    return index, problems, time.monotonic() - started


def self_test(spec: dict, exchanges: list[Exchange], events: list[tuple[str, bytes]]) -> list[str]:
    """Verifies the recording under each mutation of the spec (in 2 processes)."""
    _SELF_TEST.update(spec=spec, exchanges=exchanges, events=events)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = sorted(pool.map(_mutated_problems, range(len(MUTATIONS))))
    failures = []
    for index, problems, took in results:
        title, must_mention, _ = MUTATIONS[index]
        hit = [p for p in problems if must_mention in p]
        if hit:
            print(f"  self-test ok: {title}: reported ({len(problems)} problems, {took:.1f} s), e.g. {hit[0][:160]}")
        else:
            failures.append(f"self-test: the mutation '{title}' was not reported (problems: {problems[:3] or 'none'})")
            print(f"  self-test FAILED: {title}")
    return failures


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--redis-url", required=True, help="the app's Redis, to watch its events")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--admin-token", default=ADMIN_TOKEN_DEFAULT)
    parser.add_argument("--jwt-key", required=True, help="the app's jwt_verification_key (an HS256 secret)")
    parser.add_argument("--self-test", action="store_true", help="also prove that spec mutations are reported")
    parser.add_argument("--verbose", action="store_true", help="print every exchange and the unobserved statuses")
    parser.add_argument("--host", choices=["wharf", "spin"], default="wharf",
                        help="what serves the app: wharf, or real Spin (whose own answers differ: docs/real-spin.md)")
    parser.add_argument("--own-redis", action="store_true",
                        help="the Redis is this check's own: on wharf, shut it down at the end to see /health degrade")
    args = parser.parse_args()

    started = time.monotonic()
    with open(args.spec) as handle:
        spec = yaml.safe_load(handle)
    channels = sorted(((spec.get("x-events") or {}).get("channels") or {}).keys()) or ["orders.created"]
    tap = EventTap(args.redis_url, channels)
    tap.start()
    runner = Runner(args.base_url, args.admin_token, args.jwt_key, args.host)
    # Stopping Redis to see /health degrade is for wharf only: on real Spin
    # the Redis trigger exits when Redis goes away and Spin stops the whole
    # app ("A trigger exited unexpectedly. Terminating."), so whether /health
    # still answers is a race against Spin's exit, lost in 2 runs of 5 on a
    # busy machine (docs/real-spin.md).
    redis_to_stop = args.redis_url if args.own_redis and args.host == "wharf" else None
    run_script(runner, spec, redis_to_stop)
    if not redis_to_stop:
        time.sleep(0.3)  # the last events in flight (an own Redis is already shut down)
    tap.close()
    tap.join(timeout=2)
    sent = time.monotonic() - started
    if tap.error:
        runner.surprises.append(f"event subscriber: {tap.error}")

    problems, notes = verify(spec, runner.exchanges, tap.events)
    if args.verbose:
        for ex in runner.exchanges:
            print(f"  {ex.status} {ex.label()}")
        for note in notes:
            print(f"  note: {note}")
    ops = operations_of(spec)
    print(f"openapi check: {len(runner.exchanges)} requests over {len(ops)} operations, {len(tap.events)} events, "
          f"sent in {sent:.1f} s, verified in {time.monotonic() - started - sent:.1f} s")
    print(f"  {sum(1 for n in notes)} operations have documented statuses not observed here (--verbose lists them)")

    failures = [f"script: {s}" for s in runner.surprises] + problems
    if args.self_test and not problems:
        self_test_started = time.monotonic()
        failures += self_test(spec, runner.exchanges, tap.events)
        print(f"  self-test of {len(MUTATIONS)} mutations took {time.monotonic() - self_test_started:.1f} s")
    for failure in failures:
        print(f"MISMATCH {failure}")
    checks = 1 + (len(MUTATIONS) if args.self_test else 0)
    failed = 1 if (runner.surprises or problems) else 0
    if args.self_test:
        failed += sum(1 for f in failures if f.startswith("self-test:"))
    print(f"openapi: {checks - failed} passed, {failed} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
