"""Alerts, decided: from the facts read from the database to the conditions that hold,
and from those and what was last said to the messages to send. Pure functions of their
arguments (time included); kwai_bridge.alerting reads, sends and records.

A condition is told once as it starts and once as it clears, and never more than once an
hour per store and kind: a condition that flaps within the hour is told when the hour
is over, as it then stands.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from kwai_bridge.overview import BACKLOG_AFTER, KINDS

#: The kinds of alert: the console's kinds of problem (kwai_bridge.overview).
HELD, DEAD, QUIET, BACKLOG = KINDS
#: A webhook subscription the watch found disabled or deleted and restored: told once, as
#: it happens (kwai_bridge.watch), not as a condition that holds.
SUBSCRIPTION = "subscription"
#: The least time between two messages for the same store and kind.
MIN_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class Facts:
    """What the database says, per store id."""

    held: Mapping[str, tuple[int, datetime]] = field(default_factory=dict)  # events held for 10006, since
    dead: Mapping[str, tuple[int, datetime]] = field(default_factory=dict)  # dead events, since the oldest
    oldest_due: Mapping[str, datetime] = field(default_factory=dict)  # the oldest due event's due time
    last_delivery: Mapping[str, Mapping[str, datetime]] = field(default_factory=dict)  # topic -> last received
    quiet_hours: Mapping[str, int] = field(default_factory=dict)  # each store's setting


@dataclass(frozen=True)
class Condition:
    """A condition that holds for a store, since when, and in a sentence."""

    store: str
    kind: str
    since: datetime
    detail: str


@dataclass(frozen=True)
class Said:
    """What was last said for a store and kind (a row of alert_state)."""

    firing: bool
    since: datetime | None
    last_sent_at: datetime


@dataclass(frozen=True)
class Message:
    """One alert to send: a condition started (`firing`) or cleared."""

    store: str
    kind: str
    firing: bool
    since: datetime
    detail: str

    def payload(self) -> dict:
        """The JSON body: `text` for Slack-like receivers, `alert` for programs."""
        return {"text": _text(self), "alert": {"kind": self.kind, "store": self.store, "since": _iso(self.since),
                                               "detail": self.detail, "state": "firing" if self.firing else "cleared"}}


def conditions(facts: Facts, *, now: datetime) -> dict[tuple[str, str], Condition]:
    """The conditions that hold at `now`, by (store, kind)."""
    found: list[Condition] = []
    for store, (count, since) in facts.held.items():
        found.append(Condition(store, HELD, since, f"{count} event(s) held: Kwai refused the access token (10006); "
                               "fix it, then replay the held events"))
    for store, (count, since) in facts.dead.items():
        found.append(Condition(store, DEAD, since, f"{count} dead event(s), not retried until replayed"))
    for store, due in facts.oldest_due.items():
        if now - due > BACKLOG_AFTER:
            minutes = int((now - due).total_seconds() // 60)
            found.append(Condition(store, BACKLOG, due + BACKLOG_AFTER,
                                   f"the oldest due event has waited {minutes} minutes to be sent"))
    for store, topics in facts.last_delivery.items():
        quiet_for = timedelta(hours=facts.quiet_hours.get(store, 24))
        silent = sorted((topic, at) for topic, at in topics.items() if now - at > quiet_for)
        if silent:
            since = min(at for _, at in silent) + quiet_for
            found.append(Condition(store, QUIET, since, "no webhook for " + ", ".join(
                f"{topic} since {_iso(at)}" for topic, at in silent)))
    return {(c.store, c.kind): c for c in found}


def decide(holding: Mapping[tuple[str, str], Condition], said: Mapping[tuple[str, str], Said], *,
           now: datetime) -> list[Message]:
    """The messages to send at `now`, given the conditions that hold and what was last said."""
    messages = []
    for key in sorted(set(holding) | set(said)):
        condition, last = holding.get(key), said.get(key)
        firing = condition is not None
        if firing == (last is not None and last.firing):
            continue  # nothing changed since the last message (or nothing ever held)
        if last is not None and now - last.last_sent_at < MIN_INTERVAL:
            continue  # told within the hour: told again, as it then stands, once the hour is over
        if condition is not None:
            messages.append(Message(key[0], key[1], True, condition.since, condition.detail))
        else:
            messages.append(Message(key[0], key[1], False, now, f"cleared ({_what(key[1])})"))
    return messages


def _what(kind: str) -> str:
    return {HELD: "no event is held for the access token any more", DEAD: "no dead event is left",
            QUIET: "the store's webhooks arrive again", BACKLOG: "the backlog is sent"}[kind]


def _text(message: Message) -> str:
    title = {HELD: "store held", DEAD: "dead events", QUIET: "webhooks quiet", BACKLOG: "backlog",
             SUBSCRIPTION: "webhook subscription restored"}[message.kind]
    if message.firing:
        return f"kwai-bridge: {title} for store {message.store} since {_iso(message.since)}: {message.detail}"
    return f"kwai-bridge: {title} for store {message.store}: {message.detail}"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
