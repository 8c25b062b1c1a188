/* Kwai Bridge storefront snippet, version 3.
 *
 * Kwai puts `click_id` on the first landing URL only. This keeps it first-party (cookie
 * `_kwai_click_id` and localStorage `kwai_click_id`) and ties it to what the store's
 * webhooks will carry: the cart (Shopify, Shopline: a cart attribute hidden from the
 * shopper, and the cart token) or the checkout e-mail and the order (WooCommerce). A cart
 * is tied once it holds an item (until then Shopify hands out a new token on every read),
 * on each page load and after each change the theme makes through the Ajax cart API.
 * With a click id it also reports the shopper's funnel to `eventsEndpoint`: a product
 * viewed, a search, a cart add, the checkout and its payment step (WooCommerce; Shopify's
 * checkout is the pixel's), and the store's own triggers (a selector clicked or a form
 * submitted, a URL pattern visited), each with an id made here (the same page view in
 * this tab within 30 minutes keeps its id, so a reload is one event).
 * The bridge prepends its settings:
 *   window.KWAI_BRIDGE = {endpoint, platform, clickParams, windowDays, consentMode,
 *                         eventsEndpoint, events, triggers};
 * Without them the snippet does nothing. It never throws into the page and never logs.
 */
try { (function (window, document) {
  "use strict";
  var VERSION = "3";
  var COOKIE = "_kwai_click_id";
  var STORED = "kwai_click_id";
  var SENT = "kwai_click_sent";
  var MAX_SENT = 20;
  var DAY_MS = 86400000;
  var CHECKOUT_FORMS = "form.checkout, form.wc-block-checkout, form.wc-block-checkout__form";
  var PLACE_ORDER = ".wc-block-components-checkout-place-order-button";
  var EMAIL_FIELDS = "#billing_email, #email";
  var PAGE_EVENTS = "kwai_page_events";
  var REUSE_MS = 30 * 60000;
  // WooCommerce's Ajax add to cart (classic archive buttons) and its Store API (blocks).
  var WOO_ADD = /[?&]wc-ajax=add_to_cart(&|$)|\/wc\/store(\/v\d+)?\/(cart\/add-item|batch)([?#]|$)/;
  var WOO_ADD_BUTTONS = "[data-product_id].add_to_cart_button, [data-product_id].ajax_add_to_cart, " +
    "[data-product_id].wc-block-components-product-button__button";

  var config = window.KWAI_BRIDGE;
  if (!config || typeof config !== "object" || !config.endpoint || window.kwaiBridge) return;
  if (typeof window.fetch !== "function" || typeof window.Promise !== "function") return;

  var params = isArray(config.clickParams) && config.clickParams.length ? config.clickParams : ["click_id"];
  var windowMs = (Number(config.windowDays) > 0 ? Number(config.windowDays) : 30) * DAY_MS;
  var root = shopifyRoot();
  // Shopline's Ajax cart API is not Shopify's: GET /api/carts/ajax-cart, POST /cart/update.
  var shopline = config.platform === "shopline";
  var cartPath = config.cartPath || (shopline ? "/api/carts/ajax-cart" : root + "cart.js");
  var cartUpdatePath = config.cartUpdatePath || (shopline ? "/cart/update" : root + "cart/update.js");
  // Shopify keeps a cart attribute whose name starts with "__" private: hidden at checkout
  // and from the Ajax API, yet on the order (`note_attributes`). Shopline documents no
  // private attributes; themes hide names that start with "_".
  var cartAttribute = config.cartAttribute || (shopline ? "_kwai_click_id" : "__kwai_click_id");
  // A theme's own Ajax change to the cart (the first add creates the cart and its token).
  var CART_CHANGE = /\/carts?(\/[^?#]*)?\/(add|change|update|clear)(\.js)?$/;
  var current = null;  // the click id in force, once consent allows keeping it
  var pending = [];    // work started on this page (see kwaiBridge.settled)
  var checkoutBound = false;
  var cartWatched = false;
  var ownCartWrites = 0;  // our own cart updates, which the cart watch must not answer
  var eventsEndpoint = typeof config.eventsEndpoint === "string" ? config.eventsEndpoint : "";
  var reported = isArray(config.events) ? config.events : [];
  var eventsBound = false;
  var paymentSent = false;
  var wooAdd = null;  // the WooCommerce add-to-cart button clicked, until its request is seen

  function noop() {}
  function isArray(value) { return Object.prototype.toString.call(value) === "[object Array]"; }
  function trim(text) { return String(text).replace(/^\s+|\s+$/g, ""); }
  function now() { return new Date().getTime(); }
  function guard(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { return undefined; }
    };
  }
  function track(promise) { pending.push(promise.then(noop, noop)); }
  function shopifyRoot() {
    var routes = window.Shopify && window.Shopify.routes;
    var value = routes && typeof routes.root === "string" ? routes.root : "/";
    return value.charAt(value.length - 1) === "/" ? value : value + "/";
  }

  // -- the click id in a URL: decoded exactly once, a literal "+" stays "+" ----------
  function decodeOnce(raw) {
    try { return decodeURIComponent(raw); } catch (e) { return raw; }
  }
  function lastValue(part, name) {
    var found = null, pairs = part.split("&");
    for (var i = 0; i < pairs.length; i++) {
      var eq = pairs[i].indexOf("=");
      if (eq < 1 || trim(decodeOnce(pairs[i].slice(0, eq))) !== name) continue;
      var value = trim(decodeOnce(pairs[i].slice(eq + 1)));
      if (value) found = value;
    }
    return found;
  }
  function clickIdFromLocation(location) {
    var fragment = String(location.hash || "").replace(/^#/, "");
    if (fragment.indexOf("?") >= 0) fragment = fragment.slice(fragment.indexOf("?") + 1);  // "#/route?click_id=.."
    var places = [String(location.search || "").replace(/^\?/, ""), fragment];
    for (var p = 0; p < places.length; p++) {
      for (var n = 0; n < params.length; n++) {
        var value = lastValue(places[p], params[n]);
        if (value) return value;
      }
    }
    return null;
  }

  // -- first-party storage ------------------------------------------------------------
  function readCookie() {
    var parts = document.cookie ? document.cookie.split(/;\s*/) : [];
    for (var i = 0; i < parts.length; i++) {
      if (parts[i].indexOf(COOKIE + "=") === 0) return decodeOnce(parts[i].slice(COOKIE.length + 1)) || null;
    }
    return null;
  }
  function writeCookie(value, maxAgeSeconds) {
    // Base64 characters are valid cookie octets and are written as they are; anything
    // else (and "%", so that reading decodes exactly what was written) is escaped.
    var encoded = String(value).replace(/[^\x21\x23\x24\x26-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]/g, encodeURIComponent);
    document.cookie = COOKIE + "=" + encoded + "; path=/; max-age=" + maxAgeSeconds + "; SameSite=Lax" +
      (window.location.protocol === "https:" ? "; Secure" : "");
  }
  function readRecord() {
    try {
      var record = JSON.parse(window.localStorage.getItem(STORED));
      if (record && typeof record.id === "string" && record.id && typeof record.ts === "number") return record;
    } catch (e) { /* unreadable or blocked storage: fall back to the cookie */ }
    return null;
  }
  function stored() {
    var record = readRecord();
    if (record) {
      if (now() - record.ts < windowMs) return record;
      forget();  // older than the attribution window
      return null;
    }
    var cookie = readCookie();  // its max-age already bounds its age
    return cookie ? {id: cookie, ts: null} : null;
  }
  function keep(id, ts) {
    try { window.localStorage.setItem(STORED, JSON.stringify({id: id, ts: ts})); } catch (e) { /* cookie only */ }
    writeCookie(id, Math.max(1, Math.ceil((ts + windowMs - now()) / 1000)));
  }
  function forget() {
    try {
      window.localStorage.removeItem(STORED);
      window.localStorage.removeItem(SENT);
    } catch (e) { /* nothing to remove */ }
    if (readCookie() !== null) writeCookie("", 0);
  }
  function capture() {
    var landing = clickIdFromLocation(window.location);
    var known = stored();
    if (landing && (!known || known.id !== landing || known.ts === null)) {
      keep(landing, now());  // a newer click replaces the older one
      return landing;
    }
    if (known && known.ts !== null && readCookie() !== known.id) keep(known.id, known.ts);
    return known ? known.id : null;
  }

  // -- what was already sent, so that a page view does not resend it -------------------
  function sentKeys() {
    try {
      var keys = JSON.parse(window.localStorage.getItem(SENT));
      return isArray(keys) ? keys : [];
    } catch (e) { return []; }
  }
  function wasSent(key) { return sentKeys().indexOf(key) >= 0; }
  function markSent(key) {
    var keys = sentKeys();
    if (keys.indexOf(key) < 0) keys.push(key);
    try { window.localStorage.setItem(SENT, JSON.stringify(keys.slice(-MAX_SENT))); } catch (e) { /* resend later */ }
  }

  // -- HTTP ----------------------------------------------------------------------------
  function ok(response) {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response;
  }
  function send(body) {
    return window.fetch(config.endpoint, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      keepalive: true, mode: "cors", credentials: "omit"
    }).then(ok);
  }
  function sendOnce(key, body) {
    if (wasSent(key)) return Promise.resolve();
    return send(body).then(function () { markSent(key); });
  }
  function cartRequest(path, body) {
    // Shopline asks for the JSON Content-Type on reads too.
    var init = {credentials: "same-origin",
                headers: {"Accept": "application/json", "Content-Type": "application/json"}};
    if (body) {
      init.method = "POST";
      init.body = JSON.stringify(body);
    }
    return window.fetch(path, init).then(ok).then(function (response) { return response.json(); });
  }

  // -- Shopify and Shopline: cart attribute, then (click id, cart token) to the bridge ---
  function cartToken(cart) {
    // Shopify's Ajax API answers `<token>?key=<key>` (since 2024-06); the order webhook's
    // cart_token is the token alone.
    var token = cart && cart.token ? String(cart.token) : "";
    return token.split("?")[0];
  }
  function writeAttribute(id, cart) {
    var key = "attr|" + id + "|" + cartToken(cart);
    var attributes = cart.attributes || {};
    if (attributes[cartAttribute] === id || wasSent(key)) return Promise.resolve(cart);
    var update = {attributes: {}};
    update.attributes[cartAttribute] = id;
    ownCartWrites++;
    // A cart that refuses the attribute still has its token: the click goes out with it.
    return cartRequest(cartUpdatePath, update).then(function (updated) {
      markSent(key);
      return updated || cart;
    }, function () { return cart; });
  }
  function syncCart(id, changed) {
    return cartRequest(cartPath).then(function (cart) {
      if (!cart || cart.item_count === 0) return undefined;  // no cart yet: its token is not kept
      cartAdded(cart, changed);
      return writeAttribute(id, cart).then(function (updated) {
        var token = cartToken(updated) || cartToken(cart);
        if (!token) return undefined;
        return sendOnce("cart|" + id + "|" + token, {click_id: id, cart_token: token});
      });
    });
  }
  function watchCart() {
    // Resource timing sees the theme's Ajax cart calls without wrapping fetch or XHR.
    if (typeof window.PerformanceObserver !== "function") return;
    var timer = null;
    var observer = new window.PerformanceObserver(guard(function (list) {
      var entries = list.getEntries(), changed = false;
      for (var i = 0; i < entries.length; i++) {
        var path = String(entries[i].name).split(/[?#]/)[0].replace(/^[a-z]+:\/\/[^\/]+/i, "");
        if (!CART_CHANGE.test(path)) continue;
        if (path === cartUpdatePath && ownCartWrites > 0) ownCartWrites--;
        else changed = true;
      }
      if (!changed || !current) return;
      window.clearTimeout(timer);
      timer = window.setTimeout(guard(function () { if (current) track(syncCart(current, true)); }), 200);
    }));
    try { observer.observe({type: "resource", buffered: false}); } catch (e) { /* no resource timing */ }
  }

  // -- WooCommerce: checkout e-mail (hashed) and the order-received page ------------------
  function hex(buffer) {
    var bytes = new Uint8Array(buffer), out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }
  function sha256(text) {
    var subtle = window.crypto && window.crypto.subtle;
    if (!subtle) return Promise.reject(new Error("no SubtleCrypto"));
    var utf8 = unescape(encodeURIComponent(text)), bytes = new Uint8Array(utf8.length);
    for (var i = 0; i < utf8.length; i++) bytes[i] = utf8.charCodeAt(i);
    return subtle.digest("SHA-256", bytes).then(hex);
  }
  function matches(element, selector) {
    var fn = element && (element.matches || element.msMatchesSelector || element.webkitMatchesSelector);
    return !!fn && fn.call(element, selector);
  }
  function closest(element, selector) {
    for (var node = element; node && node.nodeType === 1; node = node.parentNode) {
      if (matches(node, selector)) return node;
    }
    return null;
  }
  function bindCheckout() {
    var hashed = {email: null, hash: null};
    var lastSent = null;
    function email() {
      var field = document.querySelector("#billing_email") || document.querySelector("#email");
      var value = field && typeof field.value === "string" ? trim(field.value).toLowerCase() : "";
      return value.indexOf("@") > 0 ? value : "";
    }
    function prepare() {
      // Hash while the shopper types, so that the submit can send at once, before unload.
      var value = email();
      if (!value || value === hashed.email) return;
      hashed = {email: value, hash: null};
      sha256(value).then(function (hash) { if (hashed.email === value) hashed.hash = hash; }, noop);
    }
    function placeOrder() {
      var id = current, value = email();
      if (!id || !value || lastSent === id + "|" + value) return;
      lastSent = id + "|" + value;
      var hash = hashed.email === value && hashed.hash ? Promise.resolve(hashed.hash) : sha256(value);
      track(hash.then(function (digest) { return send({click_id: id, email_sha256: digest}); }));
    }
    var onField = guard(function (event) { if (matches(event.target, EMAIL_FIELDS)) prepare(); });
    document.addEventListener("input", onField, true);
    document.addEventListener("change", onField, true);
    document.addEventListener("submit", guard(function (event) {
      if (!matches(event.target, CHECKOUT_FORMS)) return;
      paymentStep();
      placeOrder();
    }), true);
    document.addEventListener("click", guard(function (event) {
      if (!closest(event.target, PLACE_ORDER)) return;
      paymentStep();
      placeOrder();
    }), true);
    prepare();
  }
  function orderReceived(id) {
    var query = String(window.location.search || "").replace(/^\?/, "");
    var path = /\/order-received\/(\d+)(\/|$)/.exec(window.location.pathname);
    var orderId = path ? path[1] : lastValue(query, "order-received");
    var orderKey = lastValue(query, "key");
    if (!orderId || !orderKey || orderKey.indexOf("wc_order_") !== 0) return;
    track(sendOnce("order|" + orderId, {click_id: id, order_id: orderId, order_key: orderKey}));
  }

  // -- storefront events ----------------------------------------------------------------
  function randomId(prefix) {
    var bytes = new Uint8Array(12);
    if (window.crypto && typeof window.crypto.getRandomValues === "function") window.crypto.getRandomValues(bytes);
    else for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return prefix + "-" + hex(bytes.buffer);
  }
  function pageEventId(key, prefix) {
    // The same key in this tab within REUSE_MS keeps its id: a reload is the same event.
    var kept = {};
    try { kept = JSON.parse(window.sessionStorage.getItem(PAGE_EVENTS)) || {}; } catch (e) { kept = {}; }
    var found = kept[key];
    if (found && typeof found.id === "string" && now() - found.ts < REUSE_MS) return found.id;
    var id = randomId(prefix), names = [];
    kept[key] = {id: id, ts: now()};
    for (var name in kept) if (Object.prototype.hasOwnProperty.call(kept, name)) names.push(name);
    if (names.length > 40) delete kept[names[0]];
    try { window.sessionStorage.setItem(PAGE_EVENTS, JSON.stringify(kept)); } catch (e) { /* a new id next time */ }
    return id;
  }
  function wants(name) { return !!eventsEndpoint && reported.indexOf(name) >= 0; }
  function report(name, fields, id) {
    if (!current || !wants(name)) return;
    var body = {event: name, event_id: id || randomId("ev"), click_id: current};
    for (var key in fields) {
      var value = fields[key];
      if (Object.prototype.hasOwnProperty.call(fields, key) && value !== null && value !== undefined && value !== "") {
        body[key] = typeof value === "number" && key !== "quantity" && key !== "item_count" ? String(value) : value;
      }
    }
    track(window.fetch(eventsEndpoint, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      keepalive: true, mode: "cors", credentials: "omit"
    }).then(ok));
  }
  function idText(value) { return value === null || value === undefined || value === "" ? null : String(value); }
  function short(value) { return value ? String(value).slice(0, 256) : null; }
  function amount(value, inCents) {
    var number = Number(value);
    if (value === null || value === undefined || value === "" || !isFinite(number) || number < 0) return null;
    return inCents ? (number / 100).toFixed(2) : String(value);
  }
  function jsonLdProduct() {
    var scripts = document.querySelectorAll('script[type="application/ld+json"]');
    for (var i = 0; i < scripts.length; i++) {
      var data;
      try { data = JSON.parse(scripts[i].textContent); } catch (e) { continue; }
      var nodes = isArray(data) ? data : (data && isArray(data["@graph"]) ? data["@graph"] : [data]);
      for (var n = 0; n < nodes.length; n++) {
        var type = nodes[n] && nodes[n]["@type"];
        if (type === "Product" || (isArray(type) && type.indexOf("Product") >= 0)) return nodes[n];
      }
    }
    return null;
  }
  function wooProductId() {
    var match = /(^|\s)postid-(\d+)(\s|$)/.exec(document.body ? document.body.className : "");
    var field = document.querySelector("form.cart [name=add-to-cart]");
    return field && field.value ? String(field.value) : (match ? match[2] : null);
  }
  function productOnPage() {
    var meta = window.ShopifyAnalytics && window.ShopifyAnalytics.meta;
    if (meta && meta.product && meta.product.id) {
      var p = meta.product, variants = isArray(p.variants) ? p.variants : [], v = variants[0] || {};
      for (var i = 0; i < variants.length; i++) if (String(variants[i].id) === String(meta.selectedVariantId)) v = variants[i];
      var currency = meta.currency || (window.Shopify && window.Shopify.currency && window.Shopify.currency.active);
      return {product_id: String(p.id), variant_id: idText(v.id), sku: short(v.sku), content_name: short(v.name || p.title),
              content_category: short(p.type), price: amount(v.price, true), currency: currency || null};
    }
    var ld = jsonLdProduct();
    if (!ld) return null;
    var offer = isArray(ld.offers) ? ld.offers[0] : ld.offers;
    offer = offer || {};
    var spec = isArray(offer.priceSpecification) ? offer.priceSpecification[0] : offer.priceSpecification;
    var id = idText(ld.productID) || (config.platform === "woocommerce" ? wooProductId() : null) || idText(ld.sku);
    if (!id) return null;
    return {product_id: id, sku: short(ld.sku), content_name: short(ld.name),
            content_category: short(typeof ld.category === "string" ? ld.category : null),
            price: amount(offer.price !== undefined ? offer.price : spec && spec.price, false),
            currency: offer.priceCurrency || (spec && spec.priceCurrency) || null};
  }
  function searchQuery() {
    var query = String(window.location.search || "").replace(/^\?/, ""), names;
    if (config.platform === "woocommerce") names = ["s"];
    else if (/\/search\/?$/.test(window.location.pathname)) names = ["q", "keyword"];
    else return null;
    for (var i = 0; i < names.length; i++) {
      var raw = lastValue(query.replace(/\+/g, "%20"), names[i]);
      if (raw) return raw.slice(0, 256);
    }
    return null;
  }
  function pageEvents() {
    var product = productOnPage();
    if (product) report("EVENT_CONTENT_VIEW", product, pageEventId("view|" + window.location.pathname + "|" +
                                                                   product.product_id, "pv"));
    var query = searchQuery();
    if (query) report("EVENT_SEARCH", {query: query}, pageEventId("search|" + query, "se"));
    if (config.platform === "woocommerce" && document.querySelector(CHECKOUT_FORMS + ", .wc-block-checkout")) {
      report("EVENT_INITIATED_CHECKOUT", {}, pageEventId("checkout|" + window.location.pathname, "ic"));
    }
    urlTriggers();
  }

  // Shopify and Shopline: the cart's item count, kept per token, tells an add.
  var CART_COUNT = "kwai_cart_count";
  function cartAdded(cart, changed) {
    var token = cartToken(cart), count = Number(cart.item_count) || 0, kept = null;
    try { kept = JSON.parse(window.localStorage.getItem(CART_COUNT)); } catch (e) { kept = null; }
    var before = kept && kept.token === token ? Number(kept.count) || 0 : 0;
    try { window.localStorage.setItem(CART_COUNT, JSON.stringify({token: token, count: count})); } catch (e) { /* */ }
    // Only a change this page saw: a cart that already held items when the page loaded is no add.
    if (!changed || !token || count <= before) return;
    var item = isArray(cart.items) && cart.items.length ? cart.items[0] : {};  // the latest added comes first
    report("EVENT_ADD_TO_CART", {
      cart_token: token, item_count: count, quantity: count - before, product_id: idText(item.product_id),
      variant_id: idText(item.variant_id), sku: short(item.sku), content_name: short(item.product_title || item.title),
      content_category: short(item.product_type), price: amount(item.price, true),
      currency: cart.currency || null
    });
  }

  // WooCommerce: a classic form post, or an Ajax / Store API add once its request is seen.
  function wooAddFields(source) {
    var product = productOnPage() || {};
    var id = source.product_id || product.product_id;
    if (!id) return null;
    var same = String(id) === String(product.product_id);
    return {product_id: String(id), quantity: source.quantity, sku: short(source.sku || (same ? product.sku : null)),
            content_name: same ? product.content_name : null, price: same ? product.price : null,
            currency: same ? product.currency : null};
  }
  function positive(value) {
    var number = parseInt(value, 10);
    return number > 0 ? number : 1;
  }
  function bindWooCart() {
    document.addEventListener("click", guard(function (event) {
      var button = closest(event.target, WOO_ADD_BUTTONS);
      if (button) wooAdd = {product_id: button.getAttribute("data-product_id"),
                            quantity: positive(button.getAttribute("data-quantity")),
                            sku: button.getAttribute("data-product_sku")};
    }), true);
    document.addEventListener("submit", guard(function (event) {
      if (!matches(event.target, "form.cart")) return;
      var field = event.target.querySelector("[name=add-to-cart]"), quantity = event.target.querySelector("[name=quantity]");
      var fields = wooAddFields({product_id: field && field.value, quantity: positive(quantity && quantity.value)});
      if (fields) report("EVENT_ADD_TO_CART", fields);
    }), true);
    if (typeof window.PerformanceObserver !== "function") return;
    var observer = new window.PerformanceObserver(guard(function (list) {
      var entries = list.getEntries();
      for (var i = 0; i < entries.length; i++) {
        if (!wooAdd || !WOO_ADD.test(String(entries[i].name))) continue;
        var fields = wooAddFields(wooAdd);
        wooAdd = null;
        if (fields) report("EVENT_ADD_TO_CART", fields);
      }
    }));
    try { observer.observe({type: "resource", buffered: false}); } catch (e) { /* no resource timing */ }
  }
  function paymentStep() {
    if (paymentSent) return;
    paymentSent = true;
    report("EVENT_ADD_PAYMENT_INFO", {}, pageEventId("payment|" + window.location.pathname, "pi"));
  }

  // The store's triggers: a CSS selector clicked (a form: submitted), a URL pattern visited.
  function triggerList() { return isArray(config.triggers) ? config.triggers : []; }
  function glob(pattern) {
    return new RegExp("^" + String(pattern).replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*") + "$");
  }
  function urlTriggers() {
    var here = window.location.pathname + window.location.search, list = triggerList();
    for (var i = 0; i < list.length; i++) {
      var t = list[i];
      if (t && t.url && glob(t.url).test(here)) report(t.event, {}, pageEventId("url|" + t.event + "|" + here, "tr"));
    }
  }
  function bindTriggers() {
    var list = triggerList();
    function each(fn) {
      for (var i = 0; i < list.length; i++) {
        if (list[i] && list[i].selector) {
          try { fn(list[i]); } catch (e) { /* a selector the browser cannot read */ }
        }
      }
    }
    document.addEventListener("click", guard(function (event) {
      each(function (t) {
        var found = closest(event.target, t.selector);
        if (found && String(found.tagName).toLowerCase() !== "form") report(t.event, {content_name: short(trim(found.textContent || ""))});
      });
    }), true);
    document.addEventListener("submit", guard(function (event) {
      each(function (t) { if (matches(event.target, t.selector)) report(t.event, {}); });
    }), true);
  }
  function bindEvents() {
    bindTriggers();
    if (config.platform === "woocommerce") bindWooCart();
  }

  // -- consent: one gate in front of everything that keeps or sends -------------------------
  function marketingAllowed() {
    var privacy = window.Shopify && window.Shopify.customerPrivacy;
    if (privacy) {
      if (typeof privacy.marketingAllowed === "function" && privacy.marketingAllowed() === true) return true;
      if (typeof privacy.currentVisitorConsent === "function") {
        var consent = privacy.currentVisitorConsent();
        if (consent && consent.marketing === "yes") return true;
      }
    }
    return typeof window.wp_has_consent === "function" && window.wp_has_consent("marketing") === true;
  }
  function consentGate(required, onGranted, onDenied) {
    if (!required) {
      onGranted();
      return;
    }
    var open = false;
    function grant() { if (!open) { open = true; onGranted(); } }
    function deny() { open = false; onDenied(); }
    function check() { if (marketingAllowed()) grant(); }
    document.addEventListener("visitorConsentCollected", guard(function (event) {
      var detail = event && event.detail;
      if (detail && detail.marketingAllowed === false) deny();
      else if (detail && detail.marketingAllowed === true) grant();
      else check();
    }));
    document.addEventListener("wp_listen_for_consent_change", guard(function (event) {
      var detail = (event && event.detail) || {};
      if (detail.marketing === "allow") grant();
      else if (detail.marketing === "deny") deny();
    }));
    var shopify = window.Shopify;
    if (shopify && !shopify.customerPrivacy && typeof shopify.loadFeatures === "function") {
      shopify.loadFeatures([{name: "consent-tracking-api", version: "0.1"}], guard(function (error) {
        if (!error) check();
      }));
    }
    check();
  }

  function start() {
    current = capture();
    if (!current) return;
    if (!eventsBound) {
      eventsBound = true;
      bindEvents();
    }
    // The page's product data and forms come after this script in the document.
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", guard(pageEvents));
    else pageEvents();
    if (config.platform === "shopify" || config.platform === "shopline") {
      if (!cartWatched) {
        cartWatched = true;
        watchCart();
      }
      track(syncCart(current));
    } else if (config.platform === "woocommerce") {
      if (!checkoutBound) {
        checkoutBound = true;
        bindCheckout();
      }
      orderReceived(current);
    }
  }
  function stop() {
    current = null;
    forget();
  }

  var api = {
    version: VERSION,
    clickId: function () { return current; },
    // Resolves once the work started so far on this page has finished (for tests).
    settled: function () {
      var count = pending.length;
      return Promise.all(pending).then(function () { return pending.length > count ? api.settled() : undefined; });
    }
  };
  window.kwaiBridge = api;
  consentGate(config.consentMode === true, guard(start), guard(stop));
})(window, document); } catch (e) { /* never break the storefront */ }
