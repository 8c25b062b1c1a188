/* Kwai Bridge storefront snippet, version 2.
 *
 * Kwai puts `click_id` on the first landing URL only. This keeps it first-party (cookie
 * `_kwai_click_id` and localStorage `kwai_click_id`) and ties it to what the store's
 * webhooks will carry: the cart (Shopify, Shopline: a cart attribute hidden from the
 * shopper, and the cart token) or the checkout e-mail and the order (WooCommerce). A cart
 * is tied once it holds an item (until then Shopify hands out a new token on every read),
 * on each page load and after each change the theme makes through the Ajax cart API.
 * The bridge prepends its settings:
 *   window.KWAI_BRIDGE = {endpoint, platform, clickParams, windowDays, consentMode};
 * Without them the snippet does nothing. It never throws into the page and never logs.
 */
try { (function (window, document) {
  "use strict";
  var VERSION = "2";
  var COOKIE = "_kwai_click_id";
  var STORED = "kwai_click_id";
  var SENT = "kwai_click_sent";
  var MAX_SENT = 20;
  var DAY_MS = 86400000;
  var CHECKOUT_FORMS = "form.checkout, form.wc-block-checkout, form.wc-block-checkout__form";
  var PLACE_ORDER = ".wc-block-components-checkout-place-order-button";
  var EMAIL_FIELDS = "#billing_email, #email";

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
  function syncCart(id) {
    return cartRequest(cartPath).then(function (cart) {
      if (!cart || cart.item_count === 0) return undefined;  // no cart yet: its token is not kept
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
      timer = window.setTimeout(guard(function () { if (current) track(syncCart(current)); }), 200);
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
      if (matches(event.target, CHECKOUT_FORMS)) placeOrder();
    }), true);
    document.addEventListener("click", guard(function (event) {
      if (closest(event.target, PLACE_ORDER)) placeOrder();
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
