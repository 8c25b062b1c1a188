"""Body size limits over real HTTP against `kwai-bridge serve`, whatever the transfer
encoding: a chunked body states no length, so the server can only count what it reads."""
from __future__ import annotations

import json
import socket
import threading
import zlib

import pytest
from sqlalchemy import func, select

from kwai_bridge.clicks import CLICK_BODY_LIMIT
from kwai_bridge.db import make_engine, schema
from kwai_bridge.settings import settings_from_env
from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS, Served, bridge_env, store_entry, write_stores
from tests.signing import headers_for

pytestmark = pytest.mark.slow

WEBHOOK_LIMIT = settings_from_env({}).max_body_bytes  # the default: 1 MiB
CLICK = json.dumps({"click_id": "C1", "cart_token": "c1"}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("body-limits")
    stores = write_stores(work / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=f"sqlite:///{work / 'kwai-bridge.db'}", stores=stores)
    with Served(env, workers=2) as served:
        yield served


def rows(served: Served, table) -> int:
    engine = make_engine(served.env["KWAI_BRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()
    finally:
        engine.dispose()


def send(served: Served, path: str, headers: dict[str, str], body: bytes, *, chunked: bool = True) -> tuple[int, bytes]:
    """POST `body` to `path` over a raw socket, in chunks of 64 KiB (or with a
    Content-Length), reading the answer while still sending; (status, answer body)."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = f"POST {path} HTTP/1.1\r\nHost: bridge\r\n{framing}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"

    def write() -> None:
        try:
            sock.sendall(head.encode())
            if not chunked:
                sock.sendall(body)
                return
            for start in range(0, len(body), 65536):
                piece = body[start:start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed before taking it all

    writer = threading.Thread(target=write)
    writer.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        writer.join(30)
        sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def signed_webhook(size: int, *, delivery_id: str) -> tuple[dict[str, str], bytes]:
    """A signed order padded with spaces (still JSON) to exactly `size` bytes."""
    order = json.dumps({**json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"])),
                        "id": zlib.crc32(delivery_id.encode())}).encode()
    body = order + b" " * (size - len(order))
    return headers_for("shopify", "orders/create", shop=SHOPS["shopify"], secret=SECRETS["shopify"],
                       body=body, delivery_id=delivery_id), body


def test_a_chunked_webhook_over_the_limit_is_413_even_when_signed_over_what_fits(served):
    headers, signed = signed_webhook(WEBHOOK_LIMIT, delivery_id="chunked-over")
    before = rows(served, schema.deliveries)
    status, body = send(served, "/webhooks/shopify/acme", headers, signed + b" " * (WEBHOOK_LIMIT // 2))
    assert (status, json.loads(body)) == (413, {"status": "body larger than the limit"})
    assert rows(served, schema.deliveries) == before


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_webhook_of_exactly_the_limit_is_accepted(served, chunked):
    headers, body = signed_webhook(WEBHOOK_LIMIT, delivery_id=f"exact-{chunked}")
    assert send(served, "/webhooks/shopify/acme", headers, body, chunked=chunked)[0] == 200


def test_a_webhook_over_the_limit_with_its_length_stated_is_413(served):
    headers, body = signed_webhook(WEBHOOK_LIMIT + 1, delivery_id="stated-over")
    assert send(served, "/webhooks/shopify/acme", headers, body, chunked=False)[0] == 413


#: A click as the snippet posts it: from a browser on the store's own origin.
CLICK_HEADERS = {"Content-Type": "application/json", "Origin": "https://" + SHOPS["shopify"]}


def test_a_chunked_click_over_the_limit_is_413(served):
    before = rows(served, schema.clicks)
    status, body = send(served, "/clicks/acme", CLICK_HEADERS, CLICK + b" " * CLICK_BODY_LIMIT)
    assert (status, json.loads(body)) == (413, {"status": "body larger than the limit"})
    assert rows(served, schema.clicks) == before
    assert send(served, "/clicks/acme", CLICK_HEADERS, CLICK)[0] == 202


@pytest.mark.parametrize("path", ["/webhooks/shopify/acme", "/clicks/acme"])
@pytest.mark.parametrize("chunks", [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"],
                         ids=["bad size", "bad terminator"])
def test_a_malformed_chunked_body_is_400(served, path, chunks):
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
    with sock:
        origin = f"Origin: {CLICK_HEADERS['Origin']}\r\n" if path.startswith("/clicks/") else ""
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: bridge\r\n{origin}Transfer-Encoding: chunked\r\n\r\n".encode()
                     + chunks)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400"
    assert json.loads(body) == {"status": "malformed request body"}
