"""Loopback stand-ins for the storefront snippet tests.

- `Storefront`: one origin playing a Shopify-like shop (`/`, `/products/x` with an Ajax
  "Add to cart", `/cart.js`, `/cart/update.js`, `/cart/add.js`; tokens with Shopify's
  `?key=` and private `__` attributes hidden from reads) and a WooCommerce-like one (`/checkout/`, `/checkout-block/`,
  `/checkout/order-received/<id>/`), every page loading `/kwai.js` (the settings line plus
  `kwai_bridge/static/snippet.js`); `/pixel-test` runs `shopify-pixel.js` in a sandboxed
  iframe, as Shopify runs a custom pixel.
- `ClicksRecorder`: stands in for the bridge's `POST /clicks/<store_id>` on another port,
  so the snippet's requests are cross-origin as in production (CORS and preflight).

Each runs a threaded `http.server` on 127.0.0.1, port 0. The storefront's `endpoint` is a
parameter, so the real bridge's URL can replace the recorder's.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

STATIC = Path(__file__).resolve().parent.parent / "kwai_bridge" / "static"
CLICK_FIELDS = ("click_id", "cart_token", "checkout_token", "order_id", "order_key",
                "customer_id", "email_sha256", "phone_sha256")


@dataclass(frozen=True)
class Request:
    """One HTTP request as the stand-ins see it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    """What a stand-in answers."""

    status: int = 200
    body: str = ""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(value: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps(value), "application/json", headers)


def config_line(settings: Mapping[str, Any]) -> str:
    """The line the bridge puts before the snippet: `window.KWAI_BRIDGE = {...};`."""
    return "window.KWAI_BRIDGE = " + json.dumps(dict(settings)).replace("</", "<\\/") + ";\n"


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 that hands each request to `handle`."""

    def __init__(self, handle: Callable[[Request], Response]):
        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, split.path, split.query,
                                  {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                response = handle(request)
                body = response.body.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in response.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ClicksRecorder:
    """Records `POST /clicks/<store_id>` JSON bodies and answers 202, like the bridge will."""

    def __init__(self, *, allowed_origins: tuple[str, ...] = ()):
        self.allowed_origins = set(allowed_origins)
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[tuple[str, bytes]] = []
        self.origins: list[str] = []  # the Origin header of each accepted body
        self._changed = threading.Condition()
        self._server = LoopbackServer(self.handle)

    def endpoint(self, store_id: str = "acme") -> str:
        return f"{self._server.url}/clicks/{store_id}"

    def bodies(self) -> list[dict[str, Any]]:
        with self._changed:
            return [body for _, body in self.accepted]

    def wait_for(self, count: int, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Return the bodies once at least `count` arrived, or what came by `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.accepted) >= count, timeout=timeout)
            return [body for _, body in self.accepted]

    def handle(self, request: Request) -> Response:
        match = re.fullmatch(r"/clicks/([\w.-]+)", request.path)
        if not match:
            return Response(404, "not found", "text/plain")
        cors = self._cors(request.headers.get("origin", ""))
        if request.method == "OPTIONS":
            return Response(204, "", "text/plain", cors)
        if request.method != "POST":
            return Response(405, "method not allowed", "text/plain", cors)
        body = _click_body(request.body)
        with self._changed:
            if body is None:
                self.rejected.append((match.group(1), request.body))
            else:
                self.accepted.append((match.group(1), body))
                self.origins.append(request.headers.get("origin", ""))
            self._changed.notify_all()
        if body is None:
            return json_response({"error": "click_id and one identifier are required"}, 400, cors)
        return json_response({"accepted": True}, 202, cors)

    def _cors(self, origin: str) -> tuple[tuple[str, str], ...]:
        if origin not in self.allowed_origins:
            return ()
        return (("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                ("Access-Control-Allow-Methods", "POST, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type"), ("Access-Control-Max-Age", "600"))

    def close(self) -> None:
        self._server.close()


def _click_body(raw: bytes) -> dict[str, Any] | None:
    """The body when it is what the bridge accepts (click id plus an identifier), else None."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or set(body) - set(CLICK_FIELDS):
        return None
    if not all(isinstance(value, str) and value for value in body.values()):
        return None
    return body if "click_id" in body and len(body) > 1 else None


#: Each platform's storefront Ajax cart API: (read the cart, update its attributes, add an item).
CART_PATHS = {
    "shopify": ("/cart.js", "/cart/update.js", "/cart/add.js"),
    "shopline": ("/api/carts/ajax-cart", "/cart/update", "/api/carts/ajax-cart/add"),
    "woocommerce": ("", "", ""),
}
#: Shopify's Ajax API answers the cart token with a key parameter (since 2024-06-21); the
#: order webhook's `cart_token` is the part before `?key=`. Shopline's has no key.
SHOPIFY_KEY = "?key=824bdj25mhg1242bdb385"


class Storefront:
    """A shop origin serving the snippet with `settings` (mutable between page loads)."""

    def __init__(self, *, endpoint: str, platform: str = "shopify", **settings: Any):
        self.settings: dict[str, Any] = {"endpoint": endpoint, "platform": platform,
                                         "clickParams": ["click_id"], "windowDays": 30,
                                         "consentMode": False, **settings}
        key = SHOPIFY_KEY if platform == "shopify" else ""
        self.cart: dict[str, Any] = {"token": "c1-7f3a9e" + key, "attributes": {}, "item_count": 1}
        self.cart_updates: list[dict[str, Any]] = []
        self.cart_reads = 0
        self.woo_adds = 0
        self.refuse_cart_updates = False  # answer the cart update with a 500
        self._created_token = "Z2NwLXVzLWVhc3QxOjAxSks5MkVKMFBDWUZaWkZYNzFDVFZESkJB" + key
        self._lock = threading.Lock()
        self._server = LoopbackServer(self.handle)

    @property
    def url(self) -> str:
        return self._server.url

    def handle(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method == "GET" and path == "/kwai.js":
            return self._script("snippet.js")
        if method == "GET" and path == "/pixel.js":
            return self._script("shopify-pixel.js")
        get_cart, update_cart, add_to_cart = CART_PATHS[self.settings["platform"]]
        if method == "GET" and path == get_cart:
            shopline_read = self.settings["platform"] == "shopline"
            if shopline_read and request.headers.get("content-type") != "application/json":
                return json_response({"message": "Content-Type must be application/json"}, 400)
            with self._lock:
                self.cart_reads += 1
                return json_response(self._visible_cart())
        if method == "POST" and path == update_cart:
            if self.refuse_cart_updates:
                return json_response({"message": "cart update refused"}, 500)
            return self._update_cart(request.body)
        if method == "POST" and path == add_to_cart:
            with self._lock:
                if self.cart["item_count"] == 0:  # the first item creates the cart and its token
                    self.cart["token"] = self._created_token
                self.cart["item_count"] += 1
                # like the Ajax API's cart: the latest added line first, prices in cents
                self.cart.setdefault("items", []).insert(0, dict(CART_ITEM))
                self.cart["currency"] = "USD"
                return json_response({"quantity": 1})
        if method == "POST" and (request.query == "wc-ajax=add_to_cart" or path == "/wp-json/wc/store/v1/cart/add-item"):
            with self._lock:
                self.woo_adds += 1
                return json_response({"items_count": self.woo_adds})
        if method == "POST" and path == "/cart-added/":  # a classic product form posts and reloads
            with self._lock:
                self.woo_adds += 1
            return Response(200, _page("Cart", "<p>Added.</p>"))
        if method == "POST" and path == "/checkout/done":
            return Response(200, _page("Order placed", "<p>Thank you.</p>", snippet=False))
        if method == "GET":
            if re.fullmatch(r"/checkout/order-received/\d+/", path):
                return Response(200, _ORDER_RECEIVED)
            if path in _PAGES:
                return Response(200, _PAGES[path])
        return Response(404, "not found", "text/plain")

    def _script(self, name: str) -> Response:
        source = (STATIC / name).read_text()
        return Response(200, config_line(self.settings) + source, "application/javascript")

    def empty_cart(self) -> None:
        """No cart yet: like Shopify, every read answers a new token until the first item."""
        with self._lock:
            self.cart.update(token=None, item_count=0)

    def _visible_cart(self) -> dict[str, Any]:
        cart = dict(self.cart)
        if cart["token"] is None:
            cart["token"] = uuid.uuid4().hex
        if self.settings["platform"] == "shopify":
            # Private attributes ("__name") cannot be read through Shopify's Ajax API.
            cart["attributes"] = {k: v for k, v in cart["attributes"].items() if not k.startswith("__")}
        return cart

    def _update_cart(self, raw: bytes) -> Response:
        update = json.loads(raw)
        with self._lock:
            self.cart_updates.append(update)
            self.cart["attributes"].update(update.get("attributes") or {})
            return json_response(self._visible_cart())

    def close(self) -> None:
        self._server.close()


def _page(title: str, body: str, *, snippet: bool = True, head: str = "", body_class: str = "") -> str:
    script = '<script src="/kwai.js"></script>' if snippet else ""
    return (f'<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<title>{title}</title>{head}{script}</head><body class="{body_class}">{body}</body></html>')


#: The line a Shopify cart read answers for the product below (prices in cents).
CART_ITEM = {"product_id": 632910392, "variant_id": 808950810, "sku": "IPOD2008PINK", "quantity": 1,
             "product_title": "IPod Nano - 8GB", "product_type": "Cult Products", "price": 19900}
# What a Shopify theme puts on a product page (`ShopifyAnalytics.meta`), before the snippet.
_SHOPIFY_PRODUCT_META = """<script>window.ShopifyAnalytics = {meta: {currency: "USD", selectedVariantId: "808950810",
  page: {pageType: "product"}, product: {id: 632910392, type: "Cult Products", title: "IPod Nano - 8GB",
  variants: [{id: 49148385, price: 19900, name: "IPod Nano - 8GB - Red", sku: "IPOD2008RED"},
             {id: 808950810, price: 19900, name: "IPod Nano - 8GB - Pink", sku: "IPOD2008PINK"}]}}};</script>"""
# WooCommerce's structured data on a product page (no product id in it: the body class has it).
_WOO_PRODUCT_LD = """<script type="application/ld+json">{"@context": "https://schema.org/", "@graph": [
  {"@type": "BreadcrumbList", "itemListElement": []},
  {"@type": "Product", "@id": "https://woo.example/product/hoodie/#product", "name": "Hoodie with Logo",
   "sku": "woo-hoodie-logo", "category": "Clothing",
   "offers": [{"@type": "Offer", "price": "45.00", "priceCurrency": "BRL"}]}]}</script>"""
_WOO_PRODUCT_FORM = """<h1>Hoodie with Logo</h1><form class="cart" method="post" action="/cart-added/">
<input type="number" name="quantity" value="2"><button type="submit" name="add-to-cart" value="42">Add to cart</button>
</form>"""
# A classic archive's Ajax button and a block theme's product button: each posts itself.
_WOO_SHOP = """<a href="#" id="ajax-add" data-quantity="1" class="button add_to_cart_button ajax_add_to_cart"
  data-product_id="43" data-product_sku="woo-beanie">Add to cart</a>
<button id="block-add" class="wp-block-button__link add_to_cart_button wc-block-components-product-button__button"
  data-product_id="44">Add to cart</button>
<script>
document.getElementById("ajax-add").addEventListener("click", function (event) {
  event.preventDefault();
  window.added = fetch("/?wc-ajax=add_to_cart", {method: "POST", body: "product_id=43&quantity=1"})
    .then(function (response) { return response.json(); });
});
document.getElementById("block-add").addEventListener("click", function () {
  window.added = fetch("/wp-json/wc/store/v1/cart/add-item", {method: "POST", headers: {"Content-Type": "application/json"},
                                                         body: JSON.stringify({id: 44, quantity: 1})})
    .then(function (response) { return response.json(); });
});
</script>"""
_OPT_IN = """<h1>Contact</h1><a href="#" id="whatsapp" class="wa" data-href="https://wa.me/5511999999999">WhatsApp us</a>
<form class="newsletter" id="newsletter" action="#" onsubmit="return false"><input name="n"><button>Subscribe</button></form>"""


# The classic field is type="text" so that the snippet's own trimming is what is tested
# (an <input type="email"> already strips the value).
_CLASSIC_CHECKOUT = """<form class="checkout woocommerce-checkout" method="post" action="/checkout/done">
<input type="text" id="billing_email" name="billing_email">
<button type="submit" id="place_order">Place order</button></form>"""
_BLOCK_CHECKOUT = """<div class="wc-block-checkout"><input type="email" id="email">
<button type="button" class="wc-block-components-checkout-place-order-button"><span>Place Order</span></button></div>"""
# Shopify runs a custom pixel in an iframe sandboxed with `allow-scripts` only: an opaque
# origin (its requests say `Origin: null`) whose `browser` API reaches the top page's
# cookies and localStorage by messages. `/pixel-test` is that top page, `/pixel-frame`
# the sandbox; `firePixelEvent(name, event)` resolves once the pixel's handlers have.
_PIXEL_TOP = """<iframe id="sandbox" sandbox="allow-scripts" src="/pixel-frame"></iframe>
<script>
(function () {
  var frame = document.getElementById("sandbox"), pending = {}, seq = 0;
  function readCookie(name) {
    var found = document.cookie.split(/;\\s*/).filter(function (c) { return c.indexOf(name + "=") === 0; })[0];
    return found ? found.slice(name.length + 1) : "";
  }
  window.addEventListener("message", function (m) {
    var d = m.data || {};
    if (m.source !== frame.contentWindow) return;
    if (d.kind === "storage") {
      var value = d.area === "cookie" ? readCookie(d.name) : window.localStorage.getItem(d.name);
      frame.contentWindow.postMessage({kind: "storage-answer", id: d.id, value: value}, "*");
    } else if (d.kind === "done" && pending[d.id]) {
      pending[d.id](); delete pending[d.id];
    }
  });
  window.firePixelEvent = function (name, event) {
    return new Promise(function (resolve) {
      var id = ++seq; pending[id] = resolve;
      frame.contentWindow.postMessage({kind: "event", id: id, name: name, event: event}, "*");
    });
  };
})();
</script>"""
_PIXEL_FRAME = """<script>
(function () {
  var handlers = {}, asks = {}, seq = 0;
  function ask(area, name) {
    return new Promise(function (resolve) {
      var id = ++seq; asks[id] = resolve;
      parent.postMessage({kind: "storage", id: id, area: area, name: name}, "*");
    });
  }
  self.analytics = {subscribe: function (name, handler) { (handlers[name] = handlers[name] || []).push(handler); }};
  self.browser = {cookie: {get: function (name) { return ask("cookie", name); }},
                  localStorage: {getItem: function (key) { return ask("localStorage", key); }}};
  addEventListener("message", function (m) {
    var d = m.data || {};
    if (d.kind === "storage-answer" && asks[d.id]) { asks[d.id](d.value); delete asks[d.id]; }
    if (d.kind === "event") {
      Promise.all((handlers[d.name] || []).map(function (h) { return h(d.event); })).then(function () {
        parent.postMessage({kind: "done", id: d.id}, "*");
      });
    }
  });
})();
</script><script src="/pixel.js"></script>"""

# A theme's Ajax "Add to cart": the platform's add path, read from the snippet's settings.
_ADD_TO_CART = """<button type="button" id="add-to-cart">Add to cart</button>
<script>
document.getElementById("add-to-cart").addEventListener("click", function () {
  var path = window.KWAI_BRIDGE.platform === "shopline" ? "/api/carts/ajax-cart/add" : "/cart/add.js";
  window.addedToCart = fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify({id: 1, quantity: 1})})
    .then(function (response) { return response.json(); });
});
</script>"""

_PAGES = {
    "/": _page("Home", "<h1>Shop</h1>"),
    "/products/x": _page("Product X", "<h1>Product X</h1>" + _ADD_TO_CART),
    "/products/ipod-nano": _page("IPod Nano", "<h1>IPod Nano</h1>" + _ADD_TO_CART, head=_SHOPIFY_PRODUCT_META),
    "/search": _page("Search", "<h1>Results</h1>"),
    "/product/hoodie/": _page("Hoodie", _WOO_PRODUCT_FORM, head=_WOO_PRODUCT_LD,
                              body_class="product-template-default single single-product postid-42"),
    "/shop/": _page("Shop", _WOO_SHOP),
    "/pages/contact": _page("Contact", _OPT_IN),
    "/blank": _page("Blank", "<p>no snippet</p>", snippet=False),
    "/checkout/": _page("Checkout", _CLASSIC_CHECKOUT),
    "/checkout-block/": _page("Checkout", _BLOCK_CHECKOUT),
    "/pixel-test": _page("Checkout", _PIXEL_TOP, snippet=False),
    "/pixel-frame": _page("Custom pixel sandbox", _PIXEL_FRAME, snippet=False),
}
_ORDER_RECEIVED = _page("Order received", "<h1>Order received</h1>")
