from lxml import etree

def encode(
    feed: etree._Element,
    atom_ns: bytes,
    record_ns: bytes,
    record_name: bytes,
    names: tuple[bytes, ...],
    kinds: bytes,
    after: bytes,
    max_records: int,
) -> tuple[bytes, int, str, str] | None: ...
def encode_documents(
    feed: etree._Element, atom_ns: bytes, after: bytes, max_records: int
) -> tuple[bytes, int, str, str, str | None, str, list[tuple[str, int]]] | None: ...
def scan_documents(
    body: bytes,
    envelope: bool,
    atom_ns: bytes,
    soap_ns: bytes,
    krs_ns: bytes,
    after: bytes,
    max_records: int,
    profiled: int,
) -> (
    tuple[bytes, int, str, str, str | None, str, list[tuple[str, int]], list[dict[str, str]]] | None
): ...
