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
