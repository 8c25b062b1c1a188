"""The console's store pages: the overview (problems first), a store's page (set-up
steps, test event, charts, topics, held and dead events, replays), adding and editing."""
from __future__ import annotations

from flask import redirect, request, url_for

from kwai_bridge import overview as glance
from kwai_bridge.admin import Conflict, Invalid
from kwai_bridge.catalog import CatalogError
from kwai_bridge.config import PLATFORMS
from kwai_bridge.db import EventStatus, reading
from kwai_bridge.kwai.events import EVENT_NAMES
from kwai_bridge.links import Links
from kwai_bridge.records import Records
from kwai_bridge.web.api.stores import public_base
from kwai_bridge.web.console import charts, setup
from kwai_bridge.web.console.auth import admin, blueprint, now, page, runtime, session
from kwai_bridge.web.console.forms import entry_from_form, form_fields

#: Stores per overview page: their purchase figures read rows, the states only index entries.
PER_PAGE = 25


@blueprint.get("/")
def overview():
    principal = session().principal
    name = request.args.get("q", "").strip().lower()
    platform = request.args.get("platform", "")
    pick = [s for s in runtime().registry.stores if principal.can_see(s.id)
            and (not name or name in s.id.lower() or name in s.shop.lower())
            and (not platform or s.platform == platform)]
    number = max(int(request.args.get("page", "1")) if request.args.get("page", "1").isdigit() else 1, 1)
    with reading(runtime().engine) as conn:
        rows = glance.states(conn, pick, now=now())
        shown = rows[(number - 1) * PER_PAGE:number * PER_PAGE]
        figures = glance.purchase_figures(conn, [r.store.id for r in shown], now=now())
    return page("overview.html", title="Stores", rows=shown, figures=figures, q=name, platform=platform,
                platforms=PLATFORMS, page_number=number, pages=max(1, -(-len(rows) // PER_PAGE)),
                total=len(rows), problems=sum(1 for r in rows if r.problems))


def _store_page(store_id: str, *, status: int = 200, test=None, test_form=None, connected=None):
    record = admin().store(store_id)
    store = record.config
    health = admin().health(store_id)
    records = Records(runtime().engine)
    waiting = {s: records.events(stores=[store_id], status=s, limit=10) for s in (EventStatus.HELD, EventStatus.DEAD)}
    with reading(runtime().engine) as conn:
        series = glance.daily(conn, store_id, now=now())
    links = Links(runtime().engine)
    return page("store.html", status, link=links.status_of(store, links.get(store_id)), connected=connected, title=store.id, record=record, store=store,
                steps=setup.steps(store, base=public_base()), created=request.args.get("created"),
                topics=setup.topic_rows(store, health["last_delivery"], now=now()), health=health,
                waiting=waiting, replayed=request.args.get("replayed"),
                events_chart=charts.events_by_status(series), share_chart=charts.attribution_share(series),
                legend=charts.legend(), test=test, test_form=test_form or {"clickid": "", "event_name": "EVENT_PURCHASE"},
                event_names=sorted(EVENT_NAMES))


@blueprint.get("/stores/<store_id>")
def store_page(store_id: str):
    return _store_page(store_id)


@blueprint.post("/stores/<store_id>/test-event")
def test_event(store_id: str):
    form = {"clickid": request.form.get("clickid", "").strip(), "event_name": request.form.get("event_name", "")}
    if not form["clickid"] or form["event_name"] not in EVENT_NAMES:
        error = "Paste the test click id from Kwai's Test Events tab, and pick one of Kwai's event names."
        return _store_page(store_id, status=400, test={"error": error}, test_form=form)
    result = admin().test_event(store_id, clickid=form["clickid"], event_name=form["event_name"])
    return _store_page(store_id, test=result.as_json(), test_form=form)


@blueprint.post("/stores/<store_id>/connect")
def connect_store(store_id: str):
    """Create or repair the store's webhook subscriptions; the report shows on its page."""
    try:
        report = admin().connect(store_id)
    except Conflict as exc:
        return _store_page(store_id, status=409, connected={"refused": exc.message})
    return _store_page(store_id, connected=report)


@blueprint.post("/stores/<store_id>/replay")
def replay_store(store_id: str):
    status = request.form.get("status") or None
    moved = admin().replay(store_id=store_id, status=status if status in ("dead", "held") else None)
    return redirect(url_for("console.store_page", store_id=store_id, replayed=moved) + "#waiting")


@blueprint.route("/stores/new", methods=["GET", "POST"])
def new_store():
    admin().require_admin()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            record = admin().create(entry_from_form(request.form, editing=False))
        except Invalid as exc:
            errors = exc.errors
        except CatalogError as exc:  # the id or the shop is taken
            errors = {"id": [str(exc)]}
        else:
            return redirect(url_for("console.store_page", store_id=record.config.id, created=1))
    submitted = request.form if request.method == "POST" else None
    return page("store_form.html", 400 if errors else 200, title="Add a store", editing=False, errors=errors,
                fields=form_fields(None, submitted=submitted), action=url_for("console.new_store"))


@blueprint.route("/stores/<store_id>/edit", methods=["GET", "POST"])
def edit_store(store_id: str):
    admin().require_admin()
    record = admin().store(store_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            admin().change(store_id, entry_from_form(request.form, editing=True))
        except Invalid as exc:
            errors = exc.errors
        except CatalogError as exc:
            errors = {"shop": [str(exc)]}
        else:
            return redirect(url_for("console.store_page", store_id=store_id, saved=1))
    submitted = request.form if request.method == "POST" else None
    return page("store_form.html", 400 if errors else 200, title=f"Edit {store_id}", editing=True, errors=errors,
                record=record, fields=form_fields(record.config, submitted=submitted),
                action=url_for("console.edit_store", store_id=store_id))
