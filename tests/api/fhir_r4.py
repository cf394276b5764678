"""A small structural validator for the FHIR R4 (4.0.1) resources the API serves: Organization,
Bundle (searchset) and OperationOutcome.

fhir.resources ships R5 and R4B but no R4, so instead of validating against a neighbouring
version this checks what R4 itself requires of these resources: known elements only, types,
cardinalities, required codes from the bound value sets, the JSON rules (no nulls, no empty
strings, arrays or objects) and the DK Core organization profile's SOR identifier rules.
Returns a list of problems; empty means valid.
"""

from __future__ import annotations

import re
from typing import Any

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
URI = re.compile(r"^\S+$")
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
STRING = re.compile(r"^[\s\S]*\S[\s\S]*$")  # R4 string: at least one non-whitespace character

IDENTIFIER_USE = {"usual", "official", "temp", "secondary", "old"}
CONTACT_SYSTEM = {"phone", "fax", "email", "pager", "url", "sms", "other"}
CONTACT_USE = {"home", "work", "temp", "old", "mobile"}
ADDRESS_USE = {"home", "work", "temp", "old", "billing"}
ADDRESS_TYPE = {"postal", "physical", "both"}
BUNDLE_TYPE = {
    "document", "message", "transaction", "transaction-response", "batch", "batch-response",
    "history", "searchset", "collection",
}  # fmt: skip
SEARCH_MODE = {"match", "include", "outcome"}
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
ISSUE_TYPE = {
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
    "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
    "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
    "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
    "exception", "timeout", "incomplete", "throttled", "informational",
}  # fmt: skip

DK_CORE_ORGANIZATION = "http://hl7.dk/fhir/core/StructureDefinition/dk-core-organization"
SOR_SYSTEM = "urn:oid:1.2.208.176.1.1"


class _Check:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def obj(
        self,
        value: Any,
        path: str,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> bool:
        if not isinstance(value, dict) or not value:
            self.fail(path, "must be a non-empty object")
            return False
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}", "is not an element of this type in R4")
            if value[key] is None:
                self.fail(f"{path}.{key}", "null is not allowed in FHIR JSON")
        for key in required - value.keys():
            self.fail(f"{path}.{key}", "is required (min 1)")
        return True

    def array(self, value: Any, path: str, min_items: int = 1) -> list[Any]:
        if not isinstance(value, list) or len(value) < min_items or not value:
            self.fail(path, f"must be an array with at least {max(min_items, 1)} item(s)")
            return []
        return value

    def string(self, value: Any, path: str, pattern: re.Pattern[str] = STRING) -> None:
        if not isinstance(value, str) or not pattern.match(value):
            self.fail(path, f"must be a string matching {pattern.pattern}")

    def code(self, value: Any, path: str, codes: set[str]) -> None:
        if value not in codes:
            self.fail(path, f"{value!r} is not one of the required codes")

    def boolean(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            self.fail(path, "must be a boolean")

    # datatypes

    def coding(self, value: Any, path: str) -> None:
        if self.obj(value, path, {"system", "version", "code", "display", "userSelected"}):
            for key in ("system",):
                if key in value:
                    self.string(value[key], f"{path}.{key}", URI)
            for key in ("code", "display"):
                if key in value:
                    self.string(value[key], f"{path}.{key}")

    def codeable_concept(self, value: Any, path: str) -> None:
        if self.obj(value, path, {"coding", "text"}):
            for i, c in enumerate(self.array(value.get("coding", [None]), f"{path}.coding")):
                self.coding(c, f"{path}.coding[{i}]")

    def identifier(self, value: Any, path: str) -> None:
        if self.obj(value, path, {"use", "type", "system", "value", "period", "assigner"}):
            if "use" in value:
                self.code(value["use"], f"{path}.use", IDENTIFIER_USE)
            if "system" in value:
                self.string(value["system"], f"{path}.system", URI)
            if "value" in value:
                self.string(value["value"], f"{path}.value")

    def reference(self, value: Any, path: str) -> None:
        if self.obj(value, path, {"reference", "type", "identifier", "display"}) and (
            "reference" in value
        ):
            self.string(value["reference"], f"{path}.reference")

    def contact_point(self, value: Any, path: str) -> None:
        if self.obj(value, path, {"system", "value", "use", "rank", "period"}):
            if "system" in value:
                self.code(value["system"], f"{path}.system", CONTACT_SYSTEM)
            elif "value" in value:
                self.fail(path, "cpt-2: a value needs a system")
            if "value" in value:
                self.string(value["value"], f"{path}.value")
            if "use" in value:
                self.code(value["use"], f"{path}.use", CONTACT_USE)

    def address(self, value: Any, path: str) -> None:
        allowed = {"use", "type", "text", "line", "city", "district", "state", "postalCode"}
        if self.obj(value, path, allowed | {"country", "period"}):
            if "use" in value:
                self.code(value["use"], f"{path}.use", ADDRESS_USE)
            if "type" in value:
                self.code(value["type"], f"{path}.type", ADDRESS_TYPE)
            for i, line in enumerate(
                self.array(value["line"], f"{path}.line") if "line" in value else []
            ):
                self.string(line, f"{path}.line[{i}]")
            for key in ("text", "city", "district", "state", "postalCode", "country"):
                if key in value:
                    self.string(value[key], f"{path}.{key}")


def organization_problems(resource: Any, path: str = "Organization") -> list[str]:
    c = _Check()
    allowed = {
        "resourceType", "id", "meta", "implicitRules", "language", "text", "contained",
        "extension", "modifierExtension", "identifier", "active", "type", "name", "alias",
        "telecom", "address", "partOf", "contact", "endpoint",
    }  # fmt: skip
    if not c.obj(resource, path, allowed, {"resourceType"}):
        return c.problems
    if resource.get("resourceType") != "Organization":
        c.fail(f"{path}.resourceType", "must be Organization")
    if "id" in resource:
        c.string(resource["id"], f"{path}.id", ID)
    meta = resource.get("meta")
    if meta is not None and c.obj(
        meta, f"{path}.meta", {"versionId", "lastUpdated", "source", "profile", "security", "tag"}
    ):
        for i, p in enumerate(c.array(meta.get("profile", [None]), f"{path}.meta.profile")):
            c.string(p, f"{path}.meta.profile[{i}]", URI)
        if "lastUpdated" in meta:
            c.string(meta["lastUpdated"], f"{path}.meta.lastUpdated", INSTANT)
    identifiers = resource.get("identifier", [])
    for i, ident in enumerate(c.array(identifiers, f"{path}.identifier") if identifiers else []):
        c.identifier(ident, f"{path}.identifier[{i}]")
    if "active" in resource:
        c.boolean(resource["active"], f"{path}.active")
    for i, t in enumerate(c.array(resource["type"], f"{path}.type") if "type" in resource else []):
        c.codeable_concept(t, f"{path}.type[{i}]")
    if "name" in resource:
        c.string(resource["name"], f"{path}.name")
    telecom = c.array(resource["telecom"], f"{path}.telecom") if "telecom" in resource else []
    for i, t in enumerate(telecom):
        c.contact_point(t, f"{path}.telecom[{i}]")
    address = c.array(resource["address"], f"{path}.address") if "address" in resource else []
    for i, a in enumerate(address):
        c.address(a, f"{path}.address[{i}]")
        if isinstance(a, dict) and a.get("use") == "home":
            c.fail(f"{path}.address[{i}].use", "org-2: an organization address cannot be home")
    if "partOf" in resource:
        c.reference(resource["partOf"], f"{path}.partOf")
    # org-1: at least one of identifier or name
    if not identifiers and "name" not in resource:
        c.fail(path, "org-1: needs an identifier or a name")
    # DK Core organization: the profile is claimed, and there is an official SOR identifier of
    # at least 11 digits (dk-core-sor-identifier)
    if DK_CORE_ORGANIZATION not in (meta or {}).get("profile", []):
        c.fail(f"{path}.meta.profile", "does not claim dk-core-organization")
    sor = [i for i in identifiers if isinstance(i, dict) and i.get("system") == SOR_SYSTEM]
    if len(sor) != 1:
        c.fail(f"{path}.identifier", "needs exactly one SOR identifier")
    elif sor[0].get("use") != "official" or not re.match(r"^[0-9]{11,}$", str(sor[0].get("value"))):
        c.fail(f"{path}.identifier", "SOR identifier must be use=official, 11+ digits")
    return c.problems


def bundle_problems(resource: Any) -> list[str]:
    c = _Check()
    allowed = {
        "resourceType", "id", "meta", "implicitRules", "language", "identifier", "type",
        "timestamp", "total", "link", "entry", "signature",
    }  # fmt: skip
    if not c.obj(resource, "Bundle", allowed, {"resourceType", "type"}):
        return c.problems
    if resource["resourceType"] != "Bundle":
        c.fail("Bundle.resourceType", "must be Bundle")
    c.code(resource.get("type"), "Bundle.type", BUNDLE_TYPE)
    if "total" in resource:
        if not isinstance(resource["total"], int) or resource["total"] < 0:
            c.fail("Bundle.total", "must be an unsignedInt")
        if resource.get("type") not in ("searchset", "history"):
            c.fail("Bundle.total", "bdl-1: total only when a search or history")
    links = c.array(resource["link"], "Bundle.link") if "link" in resource else []
    for i, link in enumerate(links):
        if c.obj(link, f"Bundle.link[{i}]", {"relation", "url"}, {"relation", "url"}):
            c.string(link["relation"], f"Bundle.link[{i}].relation")
            c.string(link["url"], f"Bundle.link[{i}].url", URI)
    entries = c.array(resource["entry"], "Bundle.entry") if "entry" in resource else []
    full_urls = []
    for i, entry in enumerate(entries):
        path = f"Bundle.entry[{i}]"
        if not c.obj(entry, path, {"link", "fullUrl", "resource", "search", "request", "response"}):
            continue
        if "fullUrl" in entry:
            c.string(entry["fullUrl"], f"{path}.fullUrl", URI)
            full_urls.append(entry["fullUrl"])
        if "search" in entry:
            if resource.get("type") != "searchset":
                c.fail(f"{path}.search", "bdl-2: search only in a searchset")
            if (
                c.obj(entry["search"], f"{path}.search", {"mode", "score"})
                and "mode" in entry["search"]
            ):
                c.code(entry["search"]["mode"], f"{path}.search.mode", SEARCH_MODE)
        if "resource" in entry:
            c.problems += organization_problems(entry["resource"], f"{path}.resource")
    if len(full_urls) != len(set(full_urls)):
        c.fail("Bundle.entry", "bdl-7: fullUrl must be unique")
    return c.problems


def operation_outcome_problems(resource: Any) -> list[str]:
    c = _Check()
    allowed = {"resourceType", "id", "meta", "implicitRules", "language", "text", "issue"}
    if not c.obj(resource, "OperationOutcome", allowed, {"resourceType", "issue"}):
        return c.problems
    if resource["resourceType"] != "OperationOutcome":
        c.fail("OperationOutcome.resourceType", "must be OperationOutcome")
    for i, issue in enumerate(c.array(resource.get("issue"), "OperationOutcome.issue")):
        path = f"OperationOutcome.issue[{i}]"
        allowed_issue = {"severity", "code", "details", "diagnostics", "location", "expression"}
        if c.obj(issue, path, allowed_issue, {"severity", "code"}):
            c.code(issue["severity"], f"{path}.severity", ISSUE_SEVERITY)
            c.code(issue["code"], f"{path}.code", ISSUE_TYPE)
            if "diagnostics" in issue:
                c.string(issue["diagnostics"], f"{path}.diagnostics")
    return c.problems
