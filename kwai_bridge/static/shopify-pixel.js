/* Kwai Bridge custom pixel for Shopify Customer Events, version 2.
 *
 * Theme scripts do not run on Shopify's checkout, so this pixel (pasted under Settings >
 * Customer events) reads the click id the storefront snippet kept (localStorage
 * `kwai_click_id` {id, ts}, else cookie `_kwai_click_id`) through the sandbox's `browser`
 * API and, on `checkout_completed`, posts {click_id, checkout_token} to the
 * bridge; on `checkout_started` and `payment_info_submitted` it reports
 * EVENT_INITIATED_CHECKOUT and EVENT_ADD_PAYMENT_INFO to `eventsEndpoint` with the checkout
 * token (the bridge keys both by it, as `checkouts/create` is keyed: one event each).
 * Shopify runs custom pixels in an iframe sandboxed without `allow-same-origin`,
 * so the request goes out with `Origin: null`, which the bridge accepts for Shopify
 * stores. The bridge prepends the same settings line as for the snippet:
 *   window.KWAI_BRIDGE = {endpoint, platform, clickParams, windowDays, consentMode,
 *                         eventsEndpoint, events, triggers};
 * `analytics`, `browser`, `init` and `customerPrivacy` are the sandbox's own names; a
 * test page may define them as globals instead.
 */
(function () {
  "use strict";
  var STORED = "kwai_click_id";
  var COOKIE = "_kwai_click_id";
  var DAY_MS = 86400000;

  function noop() {}
  function present(value) { return value !== null && value !== undefined && value !== ""; }
  function decodeOnce(raw) {
    try { return decodeURIComponent(raw); } catch (e) { return raw; }
  }

  try {
    var config = typeof KWAI_BRIDGE !== "undefined" ? KWAI_BRIDGE : null;
    var events = typeof analytics !== "undefined" ? analytics : null;
    var storage = typeof browser !== "undefined" ? browser : null;
    var initial = typeof init !== "undefined" ? init : null;
    var privacy = typeof customerPrivacy !== "undefined" ? customerPrivacy : null;
    if (!config || !config.endpoint || !events || typeof events.subscribe !== "function" || !storage) return;
    var windowMs = (Number(config.windowDays) > 0 ? Number(config.windowDays) : 30) * DAY_MS;

    // Shopify runs a custom pixel only with the permissions the merchant chose; in
    // consent mode this also follows the visitor's marketing choice as it changes.
    // In consent mode an unknown choice counts as no.
    var marketing = config.consentMode !== true || Boolean(initial && initial.customerPrivacy &&
      initial.customerPrivacy.marketingAllowed === true);
    if (privacy && typeof privacy.subscribe === "function") {
      privacy.subscribe("visitorConsentCollected", function (event) {
        var state = event && event.customerPrivacy;
        if (state && typeof state.marketingAllowed === "boolean") marketing = state.marketingAllowed;
      });
    }

    var clickId = function () {
      return Promise.resolve(storage.localStorage.getItem(STORED)).then(function (raw) {
        var record = null;
        try { record = JSON.parse(raw); } catch (e) { record = null; }
        if (record && typeof record.id === "string" && record.id && typeof record.ts === "number") {
          return new Date().getTime() - record.ts < windowMs ? record.id : null;
        }
        return Promise.resolve(storage.cookie.get(COOKIE)).then(function (value) {
          return present(value) ? decodeOnce(String(value)) : null;
        });
      });
    };

    // The sandbox's origin is opaque (`Origin: null`): a simple request (text/plain,
    // no-cors) needs no preflight, which keepalive requests cannot make; the bridge
    // reads the JSON whatever the type, and the answer is not needed.
    var post = function (url, body) {
      return fetch(url, {
        method: "POST", headers: {"Content-Type": "text/plain"}, body: JSON.stringify(body),
        keepalive: true, mode: "no-cors", credentials: "omit"
      });
    };
    var reported = Object.prototype.toString.call(config.events) === "[object Array]" ? config.events : [];
    var eventId = function (prefix) {
      var bytes = new Uint8Array(12), out = "";
      if (typeof crypto !== "undefined" && crypto.getRandomValues) crypto.getRandomValues(bytes);
      else for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
      for (var j = 0; j < bytes.length; j++) out += (bytes[j] < 16 ? "0" : "") + bytes[j].toString(16);
      return prefix + "-" + out;
    };
    var checkoutStep = function (name, prefix) {
      return function (event) {
        var checkout = event && event.data && event.data.checkout;
        if (!marketing || !checkout || !config.eventsEndpoint || reported.indexOf(name) < 0) return Promise.resolve();
        var token = checkout.token, total = checkout.totalPrice || {};
        return clickId().then(function (id) {
          if (!id || !present(token)) return undefined;
          var body = {event: name, event_id: eventId(prefix), click_id: id, checkout_token: String(token)};
          if (present(total.amount) && present(total.currencyCode || checkout.currencyCode)) {
            body.value = String(total.amount);
            body.currency = String(total.currencyCode || checkout.currencyCode);
          }
          return post(config.eventsEndpoint, body);
        }).then(noop, noop);
      };
    };

    var checkoutCompleted = function (event) {
      var checkout = event && event.data && event.data.checkout;
      if (!marketing || !checkout) return Promise.resolve();
      var token = checkout.token;
      return clickId().then(function (id) {
        // Only the checkout token: the bridge takes nothing else from a sandboxed frame.
        if (!id || !present(token)) return undefined;
        return post(config.endpoint, {click_id: id, checkout_token: String(token)});
      }).then(noop, noop);
    };

    var handlers = {
      checkout_completed: checkoutCompleted,
      checkout_started: checkoutStep("EVENT_INITIATED_CHECKOUT", "ic"),
      payment_info_submitted: checkoutStep("EVENT_ADD_PAYMENT_INFO", "pi")
    };
    Object.keys(handlers).forEach(function (name) {
      events.subscribe(name, function (event) {
        try { return handlers[name](event); } catch (e) { return Promise.resolve(); }
      });
    });
  } catch (e) { /* never break the checkout */ }
})();
