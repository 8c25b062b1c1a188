"""What a merchant does on their platform to connect a store: where to click, the exact
webhook URL, the topics to subscribe, the snippet tags; and which topics a store expects.
The words follow the README's "Set-up for merchants"."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import adapters
from kwai_bridge.config import StoreConfig, expected_topics
from kwai_bridge.runtime import webhook_url

WHERE = {
    "shopify": "Shopify admin: Settings → Notifications → Webhooks → Create webhook (format JSON, the latest "
               "API version), once per topic.",
    "shopline": "SHOPLINE Developer Center → your app → Webhooks, once per topic.",
    "woocommerce": "WooCommerce → Settings → Advanced → Webhooks → Add webhook (status Active, API version "
                   "WP REST API v3), once per topic, with the same secret as the store's webhook_secrets.",
}
SNIPPET_WHERE = {
    "shopify": "Online Store → Themes → Edit code → theme.liquid, before </head>; and the checkout pixel under "
               "Settings → Customer events → Add custom pixel (paste the content of the pixel address).",
    "shopline": "The theme's custom code, in the page header.",
    "woocommerce": "The site's header (a “header and footer scripts” plugin or the theme's header).",
}


@dataclass(frozen=True)
class Step:
    """One thing to copy, with what it is for."""

    key: str
    label: str
    value: str
    note: str = ""


def steps(store: StoreConfig, *, base: str) -> list[Step]:
    topics = list(adapters.REGISTRY[store.platform].TOPICS)
    found = [
        Step("webhook-url", "Webhook URL", webhook_url(base, store), WHERE[store.platform]),
        Step("topics", "Topics to subscribe", "\n".join(topics), "one webhook per topic, all to the URL above"),
        Step("snippet", "Storefront snippet", f'<script src="{base}/snippet/{store.id}.js" async></script>',
             SNIPPET_WHERE[store.platform]),
    ]
    if store.platform == "shopify":
        found.append(Step("pixel", "Checkout pixel address", f"{base}/snippet/{store.id}/pixel.js",
                          "open it and paste its content as a custom pixel"))
    return found


def topic_rows(store: StoreConfig, last: dict[str, str], *, now: datetime) -> list[dict]:
    """Each topic the store expects or received: when it last arrived, and a warning when
    an expected one has been silent longer than the store's quiet_hours."""
    quiet = timedelta(hours=store.quiet_hours)
    expected = expected_topics(store)
    rows = []
    for topic in dict.fromkeys([*expected, *sorted(last)]):
        at = datetime.fromisoformat(last[topic]) if topic in last else None
        silent = topic in expected and (at is None or now - at > quiet)
        rows.append({"topic": topic, "last": at, "expected": topic in expected,
                     "warning": (f"silent for more than {store.quiet_hours} h" if at else "never received")
                     if silent else None})
    return rows


__all__ = ["Step", "expected_topics", "steps", "topic_rows"]
