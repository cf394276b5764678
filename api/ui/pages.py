"""The web UI's routes: search, unit, SHAK timeline, replica status, and their static files.

Server-rendered (Jinja2) from the same lookups and validators as the JSON API, so a page and
`/v1/...` never disagree. Routes are plain `def`s: FastAPI runs them in its threadpool, and the
lookups are the synchronous ones of sorsync.lookup. Every string comes from api/ui/i18n.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.deps import app_state, parse_date
from api.problems import ProblemError, identifier_problem, require_valid
from api.routes.common import sor_id_int
from api.schemas import addresses_json
from api.ui import queries, svg
from api.ui.i18n import DEFAULT_LANG, LANGS, age_text, kind_label, translator
from sorsync import identifiers, lookup
from sorsync.lookup import Unit, local_date, today

router = APIRouter(include_in_schema=False)

_env = Environment(
    loader=PackageLoader("api.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Nothing from another origin, ever (closed hospital networks); no inline script or style, so
# an injected fragment could not run either. The SVG is inline and styled by ui.css.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self';"
        " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

_MEDIA = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_MEDIA[".svg"] = "image/svg+xml"


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    """name → (bytes, media type, short content hash), read once at import."""
    out = {}
    for entry in resources.files("api.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in _MEDIA:
            body = entry.read_bytes()
            out[entry.name] = (
                body,
                _MEDIA[suffix],
                hashlib.blake2b(body, digest_size=6).hexdigest(),
            )
    return out


STATIC = _load_static()
PAGE_SIZE = 50
RUNS_SHOWN = 30


def static_url(name: str) -> str:
    """A static file's URL with its content hash: cached for a year, never stale."""
    return f"/static/{name}?v={STATIC[name][2]}"


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        return Response(status_code=404)
    body, media, digest = found
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "ETag": f'"{digest}"',
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type=media, headers=headers)


# --- rendering ----------------------------------------------------------------------------------


def _lang(request: Request) -> tuple[str, bool]:
    """The page language and whether it was chosen in this request (then it is remembered in
    a cookie, so that every link after the switch stays in that language)."""
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked, True
    cookie = request.cookies.get("lang")
    return (cookie if cookie in LANGS else DEFAULT_LANG), False


def _switch_url(request: Request, lang: str) -> str:
    other = "en" if lang == "da" else "da"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return request.url.path + "?" + urlencode([*params, ("lang", other)])


def iso(value: dt.datetime | dt.date | None) -> str:
    """A validity bound as the Danish calendar date (ISO), as the API writes it."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        day = local_date(value)
        return "" if day is None else day.isoformat()
    return value.isoformat()


def when(value: dt.datetime | None) -> str:
    """A moment in Danish local time, to the minute."""
    if value is None:
        return ""
    return value.astimezone(lookup.COPENHAGEN).strftime("%Y-%m-%d %H:%M")


def unit_url(sor_id: int | str, day: dt.date | None = None) -> str:
    return f"/enhed/{sor_id}" + ("" if day is None else f"?date={day.isoformat()}")


Title = str | Callable[[Callable[..., str]], str]  # a title, or how to make it in a language


def render(
    request: Request, template: str, title: Title, status: int = 200, **context: Any
) -> HTMLResponse:
    lang, chosen = _lang(request)
    t = translator(lang)
    html = _env.get_template(template).render(
        t=t,
        lang=lang,
        title=title(t) if callable(title) else title,
        switch_url=_switch_url(request, lang),
        static=static_url,
        kind_label=lambda kind: kind_label(t, kind),
        iso=iso,
        when=when,
        unit_url=unit_url,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if chosen:
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def error_page(request: Request, problem: ProblemError) -> HTMLResponse:
    """The API's problem (same status and detail) as a page a person can act on."""
    status = problem.type.status
    return render(
        request,
        "error.html",
        lambda t: t("error.title", status=status) + " · " + _error_heading(t, status),
        status=status,
        status_code=status,
        heading=lambda t: _error_heading(t, status),
        detail=problem.detail,
    )


def _error_heading(t: Callable[..., str], status: int) -> str:
    return t("error.404") if status == 404 else t("error.422")


def _day(value: str | None) -> dt.date:
    return parse_date(value or None)  # an empty date field means today


# --- search -------------------------------------------------------------------------------------


@dataclass
class Section:
    kind: str  # sor_id, shak, gln, ydernummer, postcode, name
    units: list[Unit]
    next_after: int | None = None


@dataclass
class Query:
    q: str
    kinds: list[str]  # what the text can be, in the order they are looked up
    hints: list[str] = field(default_factory=list)  # why a code-looking text is not that code


def read_query(q: str) -> Query:
    """What a search text is: codes are told apart by their shape and check digits; a text
    that is no code is a name. A 4-digit text is a SHAK code, a ydernummer and a postcode at
    once, so all three are looked up."""
    kinds: list[str] = []
    hints: list[str] = []
    digits = q.isascii() and q.isdigit()
    if digits:
        for kind, check, lengths in (
            ("sor_id", identifiers.sor_id_problem, range(11, 19)),
            ("gln", identifiers.gln_problem, (13,)),
        ):
            problem = check(q)
            if problem is None:
                kinds.append(kind)
            elif len(q) in lengths:
                hints.append(f"{q}: {problem}")
        if identifiers.shak_problem(q) is None:
            kinds.append("shak")
        if identifiers.ydernummer_problem(q) is None:
            kinds.append("ydernummer")
        if len(q) == 4:
            kinds.append("postcode")
        if not kinds:
            kinds.append("name")
    else:
        upper = q.upper()
        shak = upper.isascii() and upper.isalnum() and identifiers.shak_problem(upper) is None
        if shak and any(c.isdigit() for c in upper):
            kinds.append("shak")
        kinds.append("name")
    return Query(q=q, kinds=kinds, hints=hints)


def _search(
    conn: Connection, query: Query, day: dt.date, kind: str | None, after: int | None
) -> list[Section]:
    sections: list[Section] = []

    def of_kind(units: Iterable[Unit]) -> list[Unit]:
        return [u for u in units if kind is None or u.kind == kind]

    q = query.q
    for what in query.kinds:
        if what in ("name", "postcode"):
            page = lookup.run(
                conn,
                lookup.search(
                    day=day,
                    q=q if what == "name" else None,
                    postcode=q if what == "postcode" else None,
                    kind=kind,
                    limit=PAGE_SIZE,
                    after=after,
                ),
            )
            sections.append(Section(what, page.items, page.next_after))
            continue
        if after is not None:
            continue  # exact codes are on the first page only
        if what == "sor_id":
            found = lookup.run(conn, lookup.unit(int(q), day))
            units = [] if found is None else [found]
        elif what == "shak":
            units = lookup.run(conn, lookup.by_shak(q.upper(), day))
        elif what == "gln":
            units = lookup.run(conn, lookup.by_ean(int(q), day))
        else:
            units = lookup.run(conn, lookup.by_ydernummer(q, day))
        sections.append(Section(what, of_kind(units)))
    return sections


def _places(conn: Connection, units: list[Unit], day: dt.date) -> dict[int, list[Unit]]:
    """Each unit's place in the tree: its hospital or practice and its parent (if another)."""
    wanted: dict[int, list[int]] = {}
    for u in units:
        ids = [i for i in (u.hospital_sor_id or u.praksis_sor_id, u.parent_sor_id) if i]
        wanted[u.sor_id] = list(dict.fromkeys(i for i in ids if i != u.sor_id))
    known = queries.units_on(conn, [i for ids in wanted.values() for i in ids], day)
    return {sid: [known[i] for i in ids if i in known] for sid, ids in wanted.items()}


@router.get("/", response_class=HTMLResponse)
@router.get("/sog", response_class=HTMLResponse)
def search_page(
    request: Request,
    q: str | None = None,
    kind: str | None = None,
    date: str | None = None,
    after: str | None = None,
) -> Response:
    q = (q or "").strip() or None
    kind = kind or None
    try:
        day = _day(date)
        if kind is not None and kind not in lookup.KINDS:
            raise ProblemError(
                "invalid-parameter", f"kind must be one of {', '.join(lookup.KINDS)}."
            )
        if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
            raise ProblemError(
                "invalid-parameter", f"after {after!r} must be a `next` value (digits)."
            )
        if q is not None and (len(q) > 100 or not q.isprintable()):
            raise ProblemError(
                "invalid-parameter", "q must be 1-100 characters without control characters."
            )
    except ProblemError as problem:
        return error_page(request, problem)
    db, _ = app_state(request)
    query = read_query(q) if q else None
    after_id = None if after is None else int(after)

    def work(conn: Connection) -> tuple[list[Section], dict[int, list[Unit]]]:
        if query is None:
            return [], {}
        sections = _search(conn, query, day, kind, after_id)
        places = _places(conn, [u for s in sections for u in s.units], day)
        return sections, places

    sections, places = db.run(work)
    base = {"q": q or "", "kind": kind or "", "date": date or ""}
    next_urls = {
        s.kind: "/sog?" + urlencode({**base, "after": str(s.next_after)})
        for s in sections
        if s.next_after is not None
    }

    def title(t: Callable[..., str]) -> str:
        return (
            t("search.title.q", q=q) + " · " + t("site")
            if q
            else t("search.title") + " · " + t("site")
        )

    return render(
        request,
        "search.html",
        title,
        query=query,
        q=q or "",
        kind=kind or "",
        kinds=lookup.KINDS,
        date_value=day.isoformat(),
        day=day,
        sections=sections,
        found=sum(len(s.units) for s in sections),
        places=places,
        next_urls=next_urls,
        first_url="/sog?" + urlencode(base) if after is not None else None,
    )


# --- unit ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str
    copy: bool = False  # a code: gets a copy button
    href: str | None = None
    lines: tuple[str, ...] = ()  # more lines under the value (addresses)


# The fields a person would notice changing between versions, with their label's key.
_DIFFED = {
    "name": "col.name",
    "shak": "as.shak",
    "ean": "as.gln",
    "ydernummer": "as.ydernummer",
    "parent_sor_id": "unit.parent",
    "street": "field.street",
    "postcode": "as.postcode",
    "city": "field.city",
    "phone": "unit.phone",
    "email": "unit.email",
    "www": "unit.www",
    "specialty_text": "unit.specialty",
    "entity_type": "unit.entity_type",
    "organisational_level_name": "unit.level",
    "specialities": "unit.specialities",
    "addresses": "field.addresses",
    "replaced_by": "unit.replaced_by",
}


def _changes(t: Callable[..., str], before: Unit | None, after: Unit) -> list[tuple[str, str, str]]:
    """(label, old, new) of each field in _DIFFED that differs from the version before."""
    if before is None:
        return []
    out = []
    for name, key in _DIFFED.items():
        old, new = getattr(before, name, None), getattr(after, name, None)
        if old != new:
            out.append((t(key), _plain(old), _plain(new)))
    return out


def _plain(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(str(v) for v in value.values() if v is not None)
    return str(value)


def _address_lines(parts: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    street = " ".join(str(parts[k]) for k in ("street_name", "street_building_id") if parts.get(k))
    floor = " ".join(str(parts[k]) for k in ("floor_id", "suite_id") if parts.get(k))
    if floor:
        street = f"{street}, {floor}"
    place = " ".join(str(parts[k]) for k in ("postcode", "district_name") if parts.get(k))
    extra = [str(parts["additional_info"])] if parts.get("additional_info") else []
    coords = parts.get("coordinates")
    if isinstance(coords, dict):
        extra.append(
            f"{coords['lat']:.5f}, {coords['lon']:.5f}"
            f" (ETRS89 E {coords['etrs89_e']:.0f} N {coords['etrs89_n']:.0f})"
        )
    first = street or place
    rest = ([place] if street and place else []) + extra
    return first, tuple(rest)


def facts(t: Callable[..., str], u: Unit, names: dict[int, str]) -> list[Fact]:
    """What the unit page lists about a version, v1 and SOR2 fields alike. SOR2 fields are
    read with getattr: a field the Unit does not (yet) have is simply not shown."""
    out: list[Fact] = [
        Fact(t("as.sor_id"), str(u.sor_id), copy=True),
        Fact(t("unit.kind"), kind_label(t, u.kind)),
    ]

    def get(name: str) -> Any:
        return getattr(u, name, None)

    if u.shak:
        out.append(Fact(t("as.shak"), u.shak, copy=True, href=f"/shak/{u.shak}"))
    if u.ean is not None:
        out.append(Fact(t("as.gln"), str(u.ean), copy=True))
    if u.ydernummer:
        out.append(Fact(t("as.ydernummer"), u.ydernummer, copy=True))
    if get("sor_type"):
        out.append(Fact(t("unit.sor_type"), str(get("sor_type"))))
    if get("entity_type"):
        out.append(Fact(t("unit.entity_type"), str(get("entity_type"))))
    level_name, level_code = get("organisational_level_name"), get("organisational_level_code")
    level = " ".join(
        x for x in (level_name and str(level_name), level_code and f"({level_code})") if x
    )
    if level:
        out.append(Fact(t("unit.level"), level))
    if get("health_institution_name"):
        hospital = u.hospital_sor_id
        out.append(
            Fact(
                t("unit.institution"),
                str(get("health_institution_name")),
                href=None if hospital is None else unit_url(hospital),
            )
        )
    owner_id, owner_name = get("institution_owner_sor_id"), get("institution_owner_name")
    if owner_id or owner_name:
        more = [
            t("unit.owner_type", type=get("institution_owner_type"))
            if get("institution_owner_type")
            else "",
            t("unit.cvr", cvr=get("institution_owner_cvr")) if get("institution_owner_cvr") else "",
        ]
        out.append(
            Fact(
                t("unit.owner"),
                str(owner_name or names.get(owner_id or 0) or owner_id),
                href=None if owner_id is None else unit_url(owner_id),
                lines=tuple(m for m in more if m),
            )
        )
    if u.specialty_text or u.specialty_code:
        text = u.specialty_text or ""
        out.append(
            Fact(t("unit.specialty"), f"{text} ({u.specialty_code})" if u.specialty_code else text)
        )
    specialities = get("specialities")
    if specialities:
        lines = tuple(
            " ".join(x for x in (s.get("name"), f"({s['code']})" if s.get("code") else None) if x)
            for s in specialities
            if isinstance(s, dict)
        )
        if lines:
            out.append(Fact(t("unit.specialities"), lines[0], lines=lines[1:]))
    addresses = get("addresses")
    if isinstance(addresses, dict) and addresses:
        # SOR2 often repeats one address as postal, visiting and activity: list it once.
        grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        order = ["postal", "visiting", "activity"]
        named = addresses_json(addresses)
        for name in sorted(named, key=lambda n: order.index(n) if n in order else len(order)):
            parts = named[name]
            key = f"unit.address.{name}"
            label = t(key) if key in _ADDRESS_KEYS else name
            grouped.setdefault(_address_lines(parts), []).append(label)
        for (first, rest), labels in grouped.items():
            if len(labels) == 1:
                out.append(Fact(labels[0], first, lines=rest))
            else:
                roles = "(" + ", ".join(x.lower() for x in labels) + ")"
                out.append(Fact(t("unit.address"), first, lines=(*rest, roles)))
    elif u.street or u.postcode or u.city:
        place = " ".join(x for x in (u.postcode, u.city) if x)
        first = u.street or place
        out.append(Fact(t("unit.address"), first, lines=(place,) if u.street and place else ()))
    if u.phone:
        out.append(Fact(t("unit.phone"), u.phone, copy=True, href=f"tel:{u.phone}"))
    if u.email:
        out.append(Fact(t("unit.email"), u.email, copy=True, href=f"mailto:{u.email}"))
    if u.www:
        href = u.www if u.www.startswith(("http://", "https://")) else None
        out.append(Fact(t("unit.www"), u.www, href=href))
    return out


_ADDRESS_KEYS = {"unit.address.postal", "unit.address.visiting", "unit.address.activity"}


def _nearest(versions: list[Unit], day: dt.date) -> Unit:
    """The version to show when none is valid on `day`: the last one that began before it,
    else the first one."""
    at = lookup.day_start(day)
    before = [v for v in versions if v.valid_from is None or v.valid_from <= at]
    return before[-1] if before else versions[0]


def _replaced_by(unit: Unit, versions: list[Unit]) -> list[int]:
    for v in [unit, *reversed(versions)]:
        value = getattr(v, "replaced_by", None)
        if value:
            items = value if isinstance(value, list | tuple) else [value]
            return [int(i) for i in items]
    return []


@router.get("/enhed/{sor_id}", response_class=HTMLResponse)
def unit_page(request: Request, sor_id: str, date: str | None = None) -> Response:
    try:
        key = sor_id_int(sor_id)
        day = _day(date)
    except ProblemError as problem:
        return error_page(request, problem)
    db, _ = app_state(request)

    def work(conn: Connection) -> dict[str, Any] | None:
        versions = lookup.run(conn, lookup.history(key))
        if not versions:
            return None
        shown_day = day
        tree = lookup.run(conn, lookup.unit_tree(key, day))
        shown: Unit
        if tree is None:
            shown = _nearest(versions, day)
            end = local_date(shown.valid_to)
            start = local_date(shown.valid_from)
            if end is not None and end <= day:
                shown_day = end - dt.timedelta(days=1)
            elif start is not None:
                shown_day = start
            tree = lookup.run(conn, lookup.unit_tree(key, shown_day))
        if tree is not None:
            shown = tree.unit
        children = queries.units_on(conn, tree.children, shown_day) if tree else {}
        replaced = _replaced_by(shown, versions)
        owner = getattr(shown, "institution_owner_sor_id", None)
        latest: dict[int, Unit] = {}
        for v in queries.versions(conn, [*replaced, *([owner] if owner else [])]):
            latest[v.sor_id] = v  # oldest first: the last one wins
        return {
            "versions": versions,
            "unit": shown,
            "ancestors": list(reversed(tree.ancestors)) if tree else [],
            "children": [children[c] for c in tree.children if c in children] if tree else [],
            "shown_day": shown_day,
            "valid": shown_day == day,
            "replaced": [(i, latest.get(i)) for i in replaced],
            "names": {i: v.name or str(i) for i, v in latest.items()},
        }

    found = db.run(work)
    if found is None:
        return error_page(request, ProblemError("not-found", f"No SOR unit has id {sor_id}."))
    u: Unit = found["unit"]
    versions: list[Unit] = found["versions"]
    lang, _ = _lang(request)
    t = translator(lang)
    current_n = next(
        (n for n, v in enumerate(versions, 1) if v.pid == u.pid and v.valid_from == u.valid_from),
        1,
    )
    lane = svg.Lane(
        label="",
        href=None,
        spans=[
            svg.Span(
                start=local_date(v.valid_from),
                end=local_date(v.valid_to),
                href=_version_href(key, v, day),
                label=f"{t('unit.version', n=n)}: {_range(t, v.valid_from, v.valid_to)}"
                + (f", {v.name}" if v.name else ""),
                text=str(n),  # part of the accessible name "Version n: …" (axe)
                current=n == current_n,
            )
            for n, v in enumerate(versions, 1)
        ],
    )
    chart = svg.timeline([lane], day)
    last = versions[-1]
    closed_on = local_date(last.valid_to)
    closed = closed_on is not None and closed_on <= today()
    status = 200
    notice = None
    if not found["valid"]:
        status = 404
        notice = t(
            "unit.not_valid",
            date=day.isoformat(),
            n=current_n,
            start=iso(u.valid_from) or t("unit.since_ever"),
            end=iso(u.valid_to) or t("unit.open"),
        )
    version_rows = [
        {
            "n": n,
            "unit": v,
            "changes": _changes(t, versions[n - 2] if n > 1 else None, v),
            "href": _version_href(key, v, day),
            "target": _version_day(v, day),
            "facts": facts(t, v, found["names"]),
        }
        for n, v in enumerate(versions, 1)
    ]
    return render(
        request,
        "unit.html",
        lambda t: t("unit.title", name=u.name or sor_id, sor_id=sor_id) + " · " + t("site"),
        status=status,
        unit=u,
        sor_id=sor_id,
        day=day,
        shown_day=found["shown_day"],
        notice=notice,
        facts=facts(t, u, found["names"]),
        ancestors=found["ancestors"],
        children=found["children"],
        timeline=chart,
        versions=version_rows,
        current_n=current_n,
        closed_on=closed_on if closed else None,
        replaced=found["replaced"],
        json_url=f"/v1/sor/{sor_id}?date={day.isoformat()}",
        history_url=f"/v1/sor/{sor_id}/history",
        fhir_url=f"/fhir/Organization/{sor_id}",
    )


def _range(t: Callable[..., str], start: dt.datetime | None, end: dt.datetime | None) -> str:
    return t(
        "unit.valid_range", start=iso(start) or t("unit.since_ever"), end=iso(end) or t("unit.open")
    )


def _version_day(v: Unit, day: dt.date) -> dt.date:
    """The day a version's links show: `day` if the version holds then, else its first day
    (or its last one, if it began before records)."""
    if v.valid_at(lookup.day_start(day)):
        return day
    start, end = local_date(v.valid_from), local_date(v.valid_to)
    return start or (end - dt.timedelta(days=1) if end else day)


def _version_href(sor_id: int, v: Unit, day: dt.date) -> str:
    return unit_url(sor_id, _version_day(v, day)) + "#versions"


# --- SHAK ---------------------------------------------------------------------------------------


@router.get("/shak/{code}", response_class=HTMLResponse)
def shak_page(request: Request, code: str, date: str | None = None) -> Response:
    upper = code.upper()
    if upper != code and identifier_problem(upper, identifiers.shak_problem) is None:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/shak/{upper}{query}", status_code=308)
    try:
        require_valid(code, identifiers.shak_problem, "invalid-shak", "a SHAK code")
        day = _day(date)
    except ProblemError as problem:
        return error_page(request, problem)
    db, _ = app_state(request)

    def work(conn: Connection) -> tuple[list[queries.ShakSpan], list[Unit]]:
        spans = queries.shak_history(conn, code)
        return spans, queries.versions(conn, [s.sor_id for s in spans])

    spans, versions = db.run(work)
    if not spans:
        missing = ProblemError("not-found", f"No unit has ever carried SHAK code {code}.")
        return error_page(request, missing)
    lang, _ = _lang(request)
    t = translator(lang)
    by_id: dict[int, list[Unit]] = {}
    for v in versions:
        by_id.setdefault(v.sor_id, []).append(v)
    at = lookup.day_start(day)

    def name_of(sor_id: int, when: dt.datetime | None = None) -> str:
        vs = by_id.get(sor_id, [])
        if when is not None:
            for v in vs:
                if v.valid_at(when):
                    return v.name or str(sor_id)
        return (vs[-1].name if vs else None) or str(sor_id)

    ids = list(dict.fromkeys(s.sor_id for s in spans))
    lanes = []
    for sor_id in ids:
        mine = [s for s in spans if s.sor_id == sor_id]
        lanes.append(
            svg.Lane(
                label=_short(name_of(sor_id)),
                href=unit_url(sor_id, day),
                spans=[
                    svg.Span(
                        start=local_date(s.valid_from),
                        end=local_date(s.valid_to),
                        href=unit_url(sor_id, _inside(s, day)),
                        label=f"{name_of(sor_id, s.valid_from)} (SOR {sor_id}):"
                        f" {iso(s.valid_from) or t('unit.since_ever')} –"
                        f" {iso(s.valid_to) or t('unit.open')}",
                        text="",
                        current=_covers(s, at),
                    )
                    for s in mine
                ],
            )
        )
    chart = svg.timeline(lanes, day, label_width=230.0)
    periods = _periods(spans)
    rows = [
        {
            "start": start,
            "end": end,
            "units": [(i, name_of(i, lookup.day_start(start) if start else None)) for i in units],
            "current": (start is None or start <= day) and (end is None or day < end),
        }
        for start, end, units in periods
    ]
    on_day = [(s.sor_id, name_of(s.sor_id, at)) for s in spans if _covers(s, at)]
    return render(
        request,
        "shak.html",
        lambda t: t("shak.title", code=code) + " · " + t("site"),
        code=code,
        day=day,
        timeline=chart,
        periods=rows,
        on_day=list(dict.fromkeys(on_day)),
        json_url=f"/v1/shak/{code}?date={day.isoformat()}",
    )


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _covers(s: queries.ShakSpan, at: dt.datetime) -> bool:
    return (s.valid_from is None or s.valid_from <= at) and (s.valid_to is None or at < s.valid_to)


def _inside(s: queries.ShakSpan, day: dt.date) -> dt.date:
    """A day within the span: `day` if it is, else the span's first (or last) day."""
    if _covers(s, lookup.day_start(day)):
        return day
    start, end = local_date(s.valid_from), local_date(s.valid_to)
    return start or (end - dt.timedelta(days=1) if end else day)


def _periods(
    spans: list[queries.ShakSpan],
) -> list[tuple[dt.date | None, dt.date | None, list[int]]]:
    """The code's history as consecutive periods, each with the SOR ids it meant then
    (adjacent periods meaning the same units are merged; gaps appear with no units)."""
    cuts = sorted(
        {d for s in spans for d in (local_date(s.valid_from), local_date(s.valid_to)) if d}
    )
    edges: list[dt.date | None] = [None, *cuts, None]
    out: list[tuple[dt.date | None, dt.date | None, list[int]]] = []
    for start, end in itertools.pairwise(edges):
        probe = start or (end - dt.timedelta(days=1) if end else None)
        if probe is None:
            continue
        at = lookup.day_start(probe)
        units = sorted({s.sor_id for s in spans if _covers(s, at)})
        if out and out[-1][2] == units:
            out[-1] = (out[-1][0], end, units)
        else:
            out.append((start, end, units))
    # Before the first start nothing was meant: drop that leading empty period.
    while out and not out[0][2]:
        out.pop(0)
    while out and not out[-1][2] and out[-1][1] is None:
        out.pop()
    return out


# --- status -------------------------------------------------------------------------------------


@router.get("/status", response_class=HTMLResponse)
def status_page(request: Request) -> Response:
    # Imported on first use, as api/routes/status.py does: the sync package pulls in the SOAP
    # client, which lookups never need.
    from sorsync.config import Settings, get_settings
    from sorsync.sync.status import status_on

    db, _ = app_state(request)
    settings: Settings = request.app.state.settings or get_settings()
    report, runs, sources = db.run(
        lambda conn: (
            status_on(conn, settings),
            queries.recent_runs(conn, RUNS_SHOWN),
            queries.sources(conn),
        )
    )
    lang, _ = _lang(request)
    t = translator(lang)
    now = report.as_of
    by_key = {d.key: d for d in settings.datatypes}
    rows = []
    for d in report.datatypes:
        spec = by_key.get(d.key)
        source = getattr(d, "source", None)
        if source is None and spec is not None:
            source = sources.get(
                (spec.register, getattr(spec, "register_version", 1), spec.datatype, spec.version)
            )
        age = None if d.last_success_at is None else (now - d.last_success_at).total_seconds()
        rows.append(
            {
                "d": d,
                "source": source,
                "age": age_text(t, age),
                "stale": age is None or age > report.stale_after_seconds,
            }
        )
    chart = svg.run_chart(
        [
            (
                r.seconds,
                r.records,
                f"run-{r.kind if r.kind in ('full', 'delta') else 'delta'}"
                + (" run-failed" if r.status == "failed" else ""),
                t(
                    "status.run_title",
                    id=r.id,
                    kind=_run_word(t, r.kind),
                    status=_run_word(t, r.status),
                    seconds="–" if r.seconds is None else f"{r.seconds:.2f}",
                    records=f"{r.records:,}".replace(",", " "),
                    at=when(r.started_at),
                ),
                str(r.id),
            )
            for r in runs
        ]
    )
    if report.last_success_at is None:
        headline = t("status.never")
    else:
        values = {
            "at": when(report.last_success_at),
            "age": age_text(t, report.data_age_seconds),
            "limit": age_text(t, report.stale_after_seconds),
        }
        headline = t("status.stale" if report.stale else "status.fresh", **values)
    return render(
        request,
        "status.html",
        lambda t: t("status.title") + (" ⚠" if report.stale else "") + " · " + t("site"),
        report=report,
        headline=headline,
        rows=rows,
        runs=list(reversed(runs)),
        chart=chart,
        run_word=lambda w: _run_word(t, w),
        age_text=lambda s: age_text(t, s),
    )


def _run_word(t: Callable[..., str], word: str) -> str:
    key = f"status.{word}"
    return (
        t(key)
        if key in ("status.full", "status.delta", "status.failed", "status.ok", "status.running")
        else word
    )
