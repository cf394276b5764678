"""Every string the web UI shows, in Danish (the users' language, the default) and English.

One table, so that a missing translation is a KeyError in the tests rather than a stray
English word on a Danish page. `{name}` placeholders are filled with str.format.
"""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("da", "en")
DEFAULT_LANG = "da"

# key: (Danish, English)
STRINGS: dict[str, tuple[str, str]] = {
    "site": ("sorsync · SOR-opslag", "sorsync · SOR lookup"),
    "skip": ("Gå til indholdet", "Skip to content"),
    "nav": ("Hovedmenu", "Main menu"),
    "nav.search": ("Søg", "Search"),
    "nav.status": ("Replikaens status", "Replica status"),
    "lang.switch": ("English", "Dansk"),
    "lang.switch.label": ("Switch to English", "Skift til dansk"),
    # search
    "search.title": ("Søg i SOR", "Search SOR"),
    "search.title.q": ("Søgning: {q}", "Search: {q}"),
    "search.intro": (
        "Skriv et navn, en SHAK-kode, et SOR-id, et EAN/GLN-nummer, et ydernummer eller et "
        "postnummer. Søgningen finder selv ud af, hvad det er.",
        "Type a name, a SHAK code, a SOR id, an EAN/GLN number, a ydernummer or a postcode. "
        "The search works out which it is.",
    ),
    "search.q": ("Søg efter", "Search for"),
    "search.kind": ("Type", "Kind"),
    "search.kind.any": ("Alle typer", "All kinds"),
    "search.date": ("Pr. dato", "As of date"),
    "search.submit": ("Søg", "Search"),
    "search.read_as": ("Læst som: {kinds}", "Read as: {kinds}"),
    "search.none": ("Ingen enheder fundet pr. {date}.", "No units found on {date}."),
    "search.count": ("{n} fundet", "{n} found"),
    "search.more": ("Næste side", "Next page"),
    "search.first": ("Første side", "First page"),
    "search.paging": ("Sider", "Pages"),
    "search.hint": ("Bemærk: {hint}", "Note: {hint}"),
    "as.sor_id": ("SOR-id", "SOR id"),
    "as.shak": ("SHAK-kode", "SHAK code"),
    "as.gln": ("EAN/GLN-lokationsnummer", "EAN/GLN location number"),
    "as.ydernummer": ("Ydernummer", "Ydernummer"),
    "as.postcode": ("Postnummer", "Postcode"),
    "as.name": ("Navn", "Name"),
    "col.name": ("Navn", "Name"),
    "col.kind": ("Type", "Kind"),
    "col.place": ("Placering", "Place in the tree"),
    "col.validity": ("Gyldighed", "Validity"),
    "col.codes": ("Koder", "Codes"),
    # units
    "unit.title": ("{name} (SOR {sor_id})", "{name} (SOR {sor_id})"),
    "unit.as_of": ("Vis enheden pr. dato", "Show the unit as of date"),
    "unit.show": ("Vis", "Show"),
    "unit.breadcrumb": ("Placering i SOR-træet", "Place in the SOR tree"),
    "unit.facts": ("Oplysninger", "Details"),
    "unit.valid": ("Gyldig", "Valid"),
    "unit.valid_range": ("{start} – {end}", "{start} – {end}"),
    "unit.open": ("(åben)", "(open)"),
    "unit.since_ever": ("altid", "always"),
    "unit.kind": ("Type", "Kind"),
    "unit.sor_type": ("SOR-type", "SOR type"),
    "unit.entity_type": ("Enhedstype", "Unit type"),
    "unit.level": ("Organisatorisk niveau", "Organisational level"),
    "unit.institution": ("Sundhedsinstitution", "Health institution"),
    "unit.owner": ("Institutionsejer", "Institution owner"),
    "unit.owner_type": ("ejertype {type}", "owner type {type}"),
    "unit.cvr": ("CVR {cvr}", "CVR {cvr}"),
    "unit.specialty": ("Hovedspeciale", "Main speciality"),
    "unit.specialities": ("Specialer", "Specialities"),
    "unit.address": ("Adresse", "Address"),
    "unit.address.postal": ("Postadresse", "Postal address"),
    "unit.address.visiting": ("Besøgsadresse", "Visiting address"),
    "unit.address.activity": ("Aktivitetsadresse", "Activity address"),
    "unit.phone": ("Telefon", "Phone"),
    "unit.email": ("E-mail", "E-mail"),
    "unit.www": ("Hjemmeside", "Website"),
    "unit.parent": ("Overordnet enhed", "Parent unit"),
    "field.street": ("Vej", "Street"),
    "field.city": ("By", "City"),
    "field.addresses": ("Adresser", "Addresses"),
    "unit.children": ("Underenheder pr. {date}", "Units below on {date}"),
    "unit.no_children": ("Ingen underenheder pr. {date}.", "No units below on {date}."),
    "unit.versions": ("Versioner", "Versions"),
    "unit.versions.svg": (
        "Tidslinje over enhedens {n} versioner",
        "Timeline of the unit's {n} versions",
    ),
    "unit.version": ("Version {n}", "Version {n}"),
    "unit.version.show": ("Vis enheden pr. {date}", "Show the unit as of {date}"),
    "unit.version.changed": ("Ændret", "Changed"),
    "unit.version.first": ("Første version", "First version"),
    "unit.version.same": ("Ingen synlige ændringer", "No visible changes"),
    "unit.version.shown": ("vist", "shown"),
    "unit.closed": ("Enheden er lukket pr. {date}.", "The unit closed on {date}."),
    "unit.replaced_by": ("Erstattet af", "Replaced by"),
    "unit.not_valid": (
        "Enheden er ikke gyldig pr. {date}. Her vises version {n} ({start} – {end}).",
        "The unit is not valid on {date}. Shown here: version {n} ({start} – {end}).",
    ),
    "unit.answers": ("Samme svar som data", "The same answer as data"),
    "unit.json": ("JSON (/v1/sor)", "JSON (/v1/sor)"),
    "unit.history_json": ("Historik som JSON", "History as JSON"),
    "unit.fhir": ("FHIR Organization", "FHIR Organization"),
    "copy": ("Kopiér", "Copy"),
    "copy.label": ("Kopiér {what} {value}", "Copy {what} {value}"),
    "copied": ("Kopieret", "Copied"),
    # SHAK
    "shak.title": ("SHAK-kode {code}", "SHAK code {code}"),
    "shak.intro": (
        "Hvilke SOR-enheder SHAK-koden {code} har betydet på hver dato.",
        "Which SOR units SHAK code {code} has meant on each date.",
    ),
    "shak.svg": ("Tidslinje for SHAK-kode {code}", "Timeline of SHAK code {code}"),
    "shak.periods": ("Perioder", "Periods"),
    "shak.period": ("Periode", "Period"),
    "shak.units": ("SOR-enheder", "SOR units"),
    "shak.nothing": ("(ingen)", "(none)"),
    "shak.on_date": ("Pr. {date}: {n} enhed(er)", "On {date}: {n} unit(s)"),
    # status
    "status.title": ("Replikaens status", "Replica status"),
    "status.fresh": (
        "Data er friske: senest fuldt opdateret {at} ({age} siden).",
        "Data is fresh: last fully updated {at} ({age} ago).",
    ),
    "status.stale": (
        "Data er forældede: senest fuldt opdateret {at} ({age} siden); grænsen er {limit}.",
        "Data is stale: last fully updated {at} ({age} ago); the limit is {limit}.",
    ),
    "status.never": (
        "Data er forældede: mindst én datatype er aldrig blevet synkroniseret.",
        "Data is stale: at least one datatype has never been synchronised.",
    ),
    "status.datatypes": ("Datatyper", "Datatypes"),
    "status.datatype": ("Datatype", "Datatype"),
    "status.source": ("Kilde", "Source"),
    "status.token": ("Token", "Token"),
    "status.rows": ("Rækker", "Rows"),
    "status.last_success": ("Seneste succes", "Last success"),
    "status.age": ("Alder", "Age"),
    "status.last_error": ("Seneste fejl", "Last error"),
    "status.runs": ("Seneste synkroniseringer", "Recent sync runs"),
    "status.runs_table": ("Kørsler, nyeste først", "Runs, newest first"),
    "status.error": ("Fejl", "Error"),
    "status.chart": (
        "Varighed og antal poster for de seneste {n} synkroniseringer",
        "Duration and records of the last {n} sync runs",
    ),
    "status.duration": ("Varighed (s)", "Duration (s)"),
    "status.records": ("Poster", "Records"),
    "status.kind": ("Slags", "Kind"),
    "status.status": ("Udfald", "Outcome"),
    "status.started": ("Startet", "Started"),
    "status.run": ("Kørsel", "Run"),
    "status.pages": ("Sider", "Pages"),
    "status.no_runs": ("Ingen synkroniseringer endnu.", "No sync runs yet."),
    "status.full": ("fuld", "full"),
    "status.delta": ("delta", "delta"),
    "status.failed": ("fejlet", "failed"),
    "status.ok": ("ok", "ok"),
    "status.running": ("kører", "running"),
    "status.legend": ("Forklaring", "Legend"),
    "status.run_title": (
        "Kørsel {id} ({kind}, {status}): {seconds} s, {records} poster, startet {at}",
        "Run {id} ({kind}, {status}): {seconds} s, {records} records, started {at}",
    ),
    "none": ("–", "–"),
    # errors
    "error.title": ("Fejl {status}", "Error {status}"),
    "error.404": ("Ikke fundet", "Not found"),
    "error.422": ("Ugyldigt input", "Invalid input"),
    "error.back": ("Tilbage til søgningen", "Back to the search"),
    # kinds
    "kind.sygehus": ("Sygehus", "Hospital"),
    "kind.sygehusafdeling": ("Sygehusafdeling", "Hospital department"),
    "kind.praksis": ("Praksis", "Practice"),
    "kind.yder": ("Yder", "Provider (yder)"),
    "kind.apotek": ("Apotek", "Pharmacy"),
    "kind.institutionsejer": ("Institutionsejer", "Institution owner"),
    "kind.sundhedsinstitution": ("Sundhedsinstitution", "Health institution"),
    "kind.organisationsenhed": ("Organisationsenhed", "Organisational unit"),
    # durations
    "age.s": ("{n} s", "{n} s"),
    "age.min": ("{n} min", "{n} min"),
    "age.h": ("{n} t", "{n} h"),
    "age.d": ("{n} døgn", "{n} days"),
}


def translator(lang: str) -> Callable[..., str]:
    """`t(key, **values)` in `lang` (Danish unless it is "en")."""
    index = 1 if lang == "en" else 0

    def t(key: str, **values: object) -> str:
        text = STRINGS[key][index]
        return text.format(**values) if values else text

    return t


def kind_label(t: Callable[..., str], kind: str | None) -> str:
    """A unit kind in words; a kind the table does not know (new SOR2 kinds) as it is."""
    if kind is None:
        return t("none")
    key = f"kind.{kind}"
    return t(key) if key in STRINGS else kind


def age_text(t: Callable[..., str], seconds: float | None) -> str:
    if seconds is None:
        return t("none")
    if seconds < 120:
        return t("age.s", n=round(seconds))
    if seconds < 7200:
        return t("age.min", n=round(seconds / 60))
    if seconds < 2 * 86400:
        return t("age.h", n=round(seconds / 3600))
    return t("age.d", n=round(seconds / 86400))
