# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast path of the feed walk: an atom:feed already parsed by lxml, read in C.

The pure-Python walk in `feed.py` makes a Python object per element and per value and then
hands every value to psycopg, which costs more CPU than parsing the XML did. This walks
libxml2's nodes directly (lxml's public C API) and writes each record straight into
PostgreSQL's COPY BINARY format, so a page costs no Python object per value.

It handles only what a well-behaved KRS sends. At anything else — a missing or odd token,
a value it does not read in exactly the way `feed.py` would, an element the registry does
not know, a duplicate — it gives up and returns None, and `feed.py` walks the same tree the
slow way, which accepts it or says precisely what is wrong. So there is one definition of what
a valid page is (the Python walk) and this is only a faster route to the same rows; the
tests compare the two.

Whole-record pages (SOR2) have a faster route still, before any tree is built: `scan_documents`
at the end of this file reads the answer's bytes directly, on the same terms (it gives up, and
lxml's parse and the walks here take over, at anything it does not read exactly as they would).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, strcmp, strlen

from lxml.includes cimport tree
from lxml.includes.etreepublic cimport _Element, import_lxml__etree

import_lxml__etree()

cdef enum:
    # Field kinds, as feed.py numbers them.
    K_TEXT = 0
    K_INT = 1
    K_TIME = 2
    K_VALID_TO = 3
    OPEN_ENDED_YEAR = 2999  # NSP writes 2999-12-31 for "no end"
    MAX_FIELDS = 64
    TOKEN_DIGITS = 20
    EPOCH_2000_DAYS = 10957  # 2000-01-01 in days since 1970-01-01
    # Years 1 and 10000 start, in days since 2000-01-01: a UTC instant outside them is refused
    # by feed.py (records.py's limits), so the walk gives up on it.
    FIRST_DAY = -730119
    END_DAY = 2921940
    MAX_TEXT_BYTES = 1024 * 1024  # records.MAX_TEXT_CHARS; longer UTF-8 may still pass there


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int reserve(Buffer* buf, Py_ssize_t extra) except -1 nogil:
    cdef Py_ssize_t wanted = buf.size + extra
    cdef Py_ssize_t capacity = buf.capacity
    cdef char* grown
    if wanted <= capacity:
        return 0
    while capacity < wanted:
        capacity = capacity * 2 if capacity else 1 << 16
    grown = <char*>realloc(buf.data, capacity)
    if grown is NULL:
        with gil:
            raise MemoryError()
    buf.data = grown
    buf.capacity = capacity
    return 0


cdef inline void put_be(Buffer* buf, uint64_t value, int width) noexcept nogil:
    """Append the low `width` bytes of value, big-endian (room must be reserved)."""
    cdef int i
    for i in range(width):
        buf.data[buf.size + i] = <char>((value >> (8 * (width - 1 - i))) & 0xFF)
    buf.size += width


cdef int put_int8(Buffer* buf, int64_t value) except -1 nogil:
    reserve(buf, 12)
    put_be(buf, 8, 4)
    put_be(buf, <uint64_t>value, 8)
    return 0


cdef int put_null(Buffer* buf) except -1 nogil:
    reserve(buf, 4)
    put_be(buf, 0xFFFFFFFF, 4)  # -1: NULL
    return 0


cdef int put_text(Buffer* buf, const char* text, Py_ssize_t length) except -1 nogil:
    reserve(buf, 4 + length)
    put_be(buf, <uint64_t>length, 4)
    if length:
        memcpy(buf.data + buf.size, text, length)
        buf.size += length
    return 0


cdef inline bint is_element(tree.xmlNode* node, const char* href, const char* name) noexcept:
    return (
        node.type == tree.XML_ELEMENT_NODE
        and node.ns is not NULL
        and strcmp(<const char*>node.ns.href, href) == 0
        and strcmp(<const char*>node.name, name) == 0
    )


cdef int text_of(tree.xmlNode* node, const char** text) noexcept:
    """The element's text as lxml's `.text` gives it: 1 and NULL for none, 1 and the text for
    one text node, 0 (give up) for anything more involved (CDATA, children, several nodes)."""
    cdef tree.xmlNode* child = node.children
    text[0] = NULL
    if child is NULL:
        return 1
    if child.type != tree.XML_TEXT_NODE or child.next is not NULL or child.content is NULL:
        return 0
    text[0] = <const char*>child.content
    return 1


cdef inline int digits(const char* s, int count) noexcept nogil:
    """The value of `count` ASCII digits at s, or -1."""
    cdef int value = 0
    cdef int i
    for i in range(count):
        if s[i] < 48 or s[i] > 57:
            return -1
        value = value * 10 + (s[i] - 48)
    return value


cdef inline int64_t pid(const char* token) noexcept nogil:
    cdef int64_t value = 0
    cdef int i
    for i in range(10, TOKEN_DIGITS):
        value = value * 10 + (token[i] - 48)
    return value


cdef int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int days_in_month(int y, int m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef int parse_stamp(const char* s, int64_t* micros, int* year) noexcept nogil:
    """`YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)` as microseconds since 2000-01-01 UTC.

    1 on success; 0 for any other spelling (datetime.fromisoformat, on the slow path, decides).
    """
    cdef Py_ssize_t n = strlen(s)
    cdef int y, mo, d, h, mi, sec, frac = 0, scale, off_h, off_m, offset = 0
    cdef Py_ssize_t at = 19
    if n < 20 or s[4] != 45 or s[7] != 45 or s[10] != 84 or s[13] != 58 or s[16] != 58:
        return 0  # 45 '-', 84 'T', 58 ':'
    y = digits(s, 4)
    mo = digits(s + 5, 2)
    d = digits(s + 8, 2)
    h = digits(s + 11, 2)
    mi = digits(s + 14, 2)
    sec = digits(s + 17, 2)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo):
        return 0
    if h < 0 or h > 23 or mi < 0 or mi > 59 or sec < 0 or sec > 59:
        return 0
    if s[at] == 46:  # '.'
        at += 1
        scale = 100000
        while 48 <= s[at] <= 57:
            if scale == 0:
                return 0  # more than six digits: Python truncates; leave it to Python
            frac += (s[at] - 48) * scale
            scale //= 10
            at += 1
        if at == 20:
            return 0  # a dot without digits
    if s[at] == 90 and at + 1 == n:  # 'Z'
        offset = 0
    elif (s[at] == 43 or s[at] == 45) and at + 6 == n and s[at + 3] == 58:  # '+' '-' ':'
        off_h = digits(s + at + 1, 2)
        off_m = digits(s + at + 4, 2)
        if off_h < 0 or off_h > 23 or off_m < 0 or off_m > 59:
            return 0
        offset = (off_h * 60 + off_m) * 60
        if s[at] == 45:
            offset = -offset
    else:
        return 0
    year[0] = y
    micros[0] = (
        ((days_from_civil(y, mo, d) - EPOCH_2000_DAYS) * 86400 + h * 3600 + mi * 60 + sec - offset)
        * 1000000
        + frac
    )
    if micros[0] < <int64_t>FIRST_DAY * 86400 * 1000000 or micros[0] >= <int64_t>END_DAY * 86400 * 1000000:
        return 0  # outside years 1..9999 in UTC: feed.py refuses it
    return 1


cdef bint plain_text(const char* text, Py_ssize_t length) noexcept:
    """No control character records.bad_text refuses (C0 but tab/LF/CR, DEL, C1 as UTF-8
    C2 80..C2 9F) and not longer than MAX_TEXT_BYTES: else feed.py judges the value."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if length > MAX_TEXT_BYTES:
        return 0
    for i in range(length):
        c = <unsigned char>text[i]
        if c < 32:
            if c != 9 and c != 10 and c != 13:
                return 0
        elif c == 127:
            return 0
        elif c == 0xC2 and i + 1 < length and 0x80 <= <unsigned char>text[i + 1] <= 0x9F:
            return 0
    return 1


cdef int parse_int8(const char* s, int64_t* value) noexcept:
    """An optional '-' and 1 to 18 ASCII digits; 0 for anything else (Python decides)."""
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t n
    cdef int64_t result = 0
    cdef bint negative = s[0] == 45
    if negative:
        i = 1
    n = strlen(s) - i
    if n < 1 or n > 18:
        return 0
    while s[i]:
        if s[i] < 48 or s[i] > 57:
            return 0
        result = result * 10 + (s[i] - 48)
        i += 1
    value[0] = -result if negative else result
    return 1


cdef int put_field(Buffer* buf, tree.xmlNode* node, int kind) except -2:
    """Append one field; 0 to give up on the page."""
    cdef const char* text
    cdef int64_t value
    cdef int year
    cdef Py_ssize_t length
    if node is NULL:  # the element was left out
        put_null(buf)
        return 1
    if not text_of(node, &text):
        return 0
    if kind == K_TEXT:
        if text is NULL:
            put_text(buf, "", 0)
        else:
            length = strlen(text)
            if not plain_text(text, length):
                return 0
            put_text(buf, text, length)
        return 1
    if text is NULL or text[0] == 0:
        put_null(buf)  # an empty number or date is the pre-2013 rendering of NULL
        return 1
    if kind == K_INT:
        if not parse_int8(text, &value):
            return 0
        put_int8(buf, value)
        return 1
    if not parse_stamp(text, &value, &year):
        return 0
    if kind == K_VALID_TO and year >= OPEN_ENDED_YEAR:
        put_null(buf)
    else:
        put_int8(buf, value)
    return 1


cdef bint entry_parts(
    tree.xmlNode* entry, const char* atom, tree.xmlNode** parts
) noexcept:
    """atom:id, atom:updated and atom:content of an entry into parts[0..2]; 0 when one is
    missing or repeated."""
    cdef tree.xmlNode* child = entry.children
    cdef int which
    parts[0] = parts[1] = parts[2] = NULL
    while child is not NULL:
        if (
            child.type == tree.XML_ELEMENT_NODE
            and child.ns is not NULL
            and strcmp(<const char*>child.ns.href, atom) == 0
        ):
            which = -1
            if strcmp(<const char*>child.name, b"id") == 0:
                which = 0
            elif strcmp(<const char*>child.name, b"updated") == 0:
                which = 1
            elif strcmp(<const char*>child.name, b"content") == 0:
                which = 2
            if which >= 0:
                if parts[which] is not NULL:
                    return 0
                parts[which] = child
        child = child.next
    return parts[0] is not NULL and parts[1] is not NULL and parts[2] is not NULL


cdef const char* entry_token(tree.xmlNode* id_node) noexcept:
    """The 20 digits after the last '/' of atom:id, or NULL."""
    cdef const char* text
    cdef const char* token
    cdef Py_ssize_t length
    cdef int i
    if not text_of(id_node, &text) or text is NULL:
        return NULL
    length = strlen(text)
    if length < TOKEN_DIGITS + 1 or text[length - TOKEN_DIGITS - 1] != 47:  # '/'
        return NULL
    token = text + length - TOKEN_DIGITS
    for i in range(TOKEN_DIGITS):
        if token[i] < 48 or token[i] > 57:
            return NULL
    return token


cdef bint record_fields(
    tree.xmlNode* content,
    const char* record_ns,
    const char* record_name,
    const char** names,
    int width,
    tree.xmlNode** slots,
) noexcept:
    """Each field element of the record in atom:content into slots (NULL where left out); 0
    for another record, an element the registry does not know (kept in extra by the slow
    path), a repeated one, or a node of another kind."""
    cdef tree.xmlNode* record = content.children
    cdef tree.xmlNode* child
    cdef int i, found, expected = 0
    while record is not NULL and record.type != tree.XML_ELEMENT_NODE:
        record = record.next
    if record is NULL or not is_element(record, record_ns, record_name):
        return 0
    for i in range(width):
        slots[i] = NULL
    child = record.children
    while child is not NULL:
        if child.type != tree.XML_ELEMENT_NODE:
            if (
                child.type != tree.XML_TEXT_NODE
                and child.type != tree.XML_COMMENT_NODE
                and child.type != tree.XML_PI_NODE
            ):
                return 0
            child = child.next
            continue
        if child.ns is NULL or strcmp(<const char*>child.ns.href, record_ns) != 0:
            return 0
        found = -1
        # NSP writes the fields in registry order, so the next one is usually the expected one.
        if expected < width and strcmp(<const char*>child.name, names[expected]) == 0:
            found = expected
        else:
            for i in range(width):
                if strcmp(<const char*>child.name, names[i]) == 0:
                    found = i
                    break
        if found < 0 or slots[found] is not NULL:
            return 0
        slots[found] = child
        expected = found + 1
        child = child.next
    return 1


cdef const char* entry_head(
    tree.xmlNode* entry,
    const char* atom,
    tree.xmlNode** parts,
    char* previous,
    bint* have_previous,
    int64_t* modified,
) noexcept:
    """An entry's parts, and its token if it follows `previous` (which it then becomes) and its
    atom:updated reads; NULL to give up on the page."""
    cdef const char* token
    cdef const char* updated_text = NULL
    cdef int year
    if not entry_parts(entry, atom, parts):
        return NULL
    token = entry_token(parts[0])
    # Equal-length digit strings order like the numbers they spell.
    if token is NULL or (have_previous[0] and memcmp(token, previous, TOKEN_DIGITS) <= 0):
        return NULL
    memcpy(previous, token, TOKEN_DIGITS)
    have_previous[0] = True
    if not text_of(parts[1], &updated_text) or updated_text is NULL:
        return NULL
    if not parse_stamp(updated_text, modified, &year):
        return NULL
    return token


def encode(
    _Element feed not None,
    bytes atom_ns not None,
    bytes record_ns not None,
    bytes record_name not None,
    tuple names not None,
    bytes kinds not None,
    bytes after not None,
    int max_records,
):
    """The feed's entries as a whole COPY BINARY stream, or None to take the slow path.

    Columns: pid, modified_at, token, one per field (`names`, `kinds`), extra (always NULL
    here). `after` is the 20-digit token every entry must follow, or b"" for none. Returns
    (data, count, first_token, last_token).
    """
    cdef int width = len(names)
    cdef const char* c_names[MAX_FIELDS]
    cdef tree.xmlNode* slots[MAX_FIELDS]
    cdef tree.xmlNode* parts[3]  # atom:id, atom:updated, atom:content
    cdef tree.xmlNode* entry
    cdef const char* token
    cdef char previous[TOKEN_DIGITS]
    cdef char first[TOKEN_DIGITS]
    cdef bint have_previous = len(after) == TOKEN_DIGITS
    cdef Py_ssize_t count = 0
    cdef int i
    cdef int64_t modified = 0
    cdef Buffer buf
    if width > MAX_FIELDS or len(kinds) != width or (after and not have_previous):
        return None
    for i in range(width):
        c_names[i] = <const char*>(<bytes?>names[i])
    if have_previous:
        memcpy(previous, <const char*>after, TOKEN_DIGITS)
    buf.data = NULL
    buf.size = 0
    buf.capacity = 0
    try:
        reserve(&buf, 19)
        memcpy(buf.data, b"PGCOPY\n\xff\r\n\x00", 11)  # signature, then flags and extension
        buf.size = 11
        put_be(&buf, 0, 4)
        put_be(&buf, 0, 4)
        entry = feed._c_node.children
        while entry is not NULL:
            if not is_element(entry, atom_ns, b"entry"):
                entry = entry.next
                continue
            token = entry_head(entry, atom_ns, parts, previous, &have_previous, &modified)
            if token is NULL:
                return None
            if count == 0:
                memcpy(first, token, TOKEN_DIGITS)
            if not record_fields(parts[2], record_ns, record_name, c_names, width, slots):
                return None

            reserve(&buf, 2)
            put_be(&buf, <uint64_t>(width + 4), 2)
            put_int8(&buf, pid(token))
            put_int8(&buf, modified)
            put_text(&buf, token, TOKEN_DIGITS)
            for i in range(width):
                if not put_field(&buf, slots[i], kinds[i]):
                    return None
            put_null(&buf)  # extra
            count += 1
            if count > max_records:
                return None
            entry = entry.next
        if count == 0:
            return None  # an empty page: nothing to gain
        reserve(&buf, 2)
        put_be(&buf, 0xFFFF, 2)  # trailer
        return (
            PyBytes_FromStringAndSize(buf.data, buf.size),
            count,
            PyBytes_FromStringAndSize(first, TOKEN_DIGITS).decode("ascii"),
            PyBytes_FromStringAndSize(previous, TOKEN_DIGITS).decode("ascii"),
        )
    finally:
        free(buf.data)


# --- whole records (document datatypes: SOR2) --------------------------------------------------

cdef enum:
    MAX_NAMES = 256  # distinct field names in one page; SOR2's sorentity has about 80


cdef int put_json_string(Buffer* buf, const char* text, Py_ssize_t length) except -1 nogil:
    """`text` as a JSON string. plain_text() has let through no control character but tab,
    newline and carriage return, so every escape is two bytes."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef char* out
    reserve(buf, 2 + 2 * length)
    out = buf.data + buf.size
    out[0] = 34  # '"'
    out += 1
    for i in range(length):
        c = <unsigned char>text[i]
        if c == 34 or c == 92:  # '"' '\'
            out[0] = 92
            out[1] = <char>c
            out += 2
        elif c < 32:
            out[0] = 92
            out[1] = <char>(116 if c == 9 else (110 if c == 10 else 114))  # t n r
            out += 2
        else:
            out[0] = <char>c
            out += 1
    out[0] = 34
    out += 1
    buf.size = out - buf.data
    return 0


cdef inline bint same_ns(tree.xmlNs* a, const char* href) noexcept:
    if a is NULL:
        return href is NULL
    return href is not NULL and strcmp(<const char*>a.href, href) == 0


cdef bint blank(const char* text) noexcept:
    cdef Py_ssize_t i = 0
    while text[i]:
        if text[i] != 32 and text[i] != 9 and text[i] != 10 and text[i] != 13:
            return 0
        i += 1
    return 1


cdef struct Fields:
    # One record's fields, each written as `"name":value` into a buffer of its own, and the
    # order jsonb stores object keys in. PostgreSQL sorts every object's keys on input; keys
    # that arrive in its order pass its sort's check for sorted input at once, which took
    # about a tenth of the server's CPU off a first full of SOR2 (docs/performance.md).
    int count
    int slot[MAX_NAMES]  # the page's name index of the record's i-th field
    Py_ssize_t start[MAX_NAMES]  # where that field's `"name":value` starts in the buffer
    Py_ssize_t length[MAX_NAMES]
    int order[MAX_NAMES]  # field numbers in jsonb's key order
    int last_count  # the fields of the record `order` was worked out for
    int last_slot[MAX_NAMES]


cdef inline bint key_before(
    const unsigned char* a, Py_ssize_t a_len, const unsigned char* b, Py_ssize_t b_len
) noexcept nogil:
    """jsonb's order of object keys: the shorter first, equal lengths byte by byte."""
    if a_len != b_len:
        return a_len < b_len
    return memcmp(a, b, a_len) < 0


cdef Py_ssize_t put_object(
    Buffer* out, const char* fields_text, Fields* f, const unsigned char** names,
    const Py_ssize_t* name_lens
) except -1 nogil:
    """The record's fields as one JSON object in jsonb's key order; returns its length. Records
    repeat their fields' order, so the last record's order is reused when the fields match."""
    cdef int i, k, x
    cdef Py_ssize_t total = 2 + (f.count - 1 if f.count else 0)
    cdef char* o
    if f.count != f.last_count or memcmp(f.slot, f.last_slot, f.count * sizeof(int)) != 0:
        for i in range(f.count):  # insertion sort: ~80 keys, and only when the order changes
            x = f.slot[i]
            k = i
            while k > 0 and key_before(
                names[x], name_lens[x], names[f.slot[f.order[k - 1]]], name_lens[f.slot[f.order[k - 1]]]
            ):
                f.order[k] = f.order[k - 1]
                k -= 1
            f.order[k] = i
        memcpy(f.last_slot, f.slot, f.count * sizeof(int))
        f.last_count = f.count
    for i in range(f.count):
        total += f.length[i]
    reserve(out, total)
    o = out.data + out.size
    o[0] = 123  # '{'
    o += 1
    for i in range(f.count):
        if i:
            o[0] = 44  # ','
            o += 1
        k = f.order[i]
        memcpy(o, fields_text + f.start[k], f.length[k])
        o += f.length[k]
    o[0] = 125  # '}'
    out.size += total
    return total


cdef int put_field_text(
    Buffer* buf, Fields* f, int j, const unsigned char* name, Py_ssize_t name_len,
    const char* text, Py_ssize_t length
) except -1 nogil:
    """`"name":"text"` at the end of buf, as field j of the record."""
    f.slot[f.count] = j
    f.start[f.count] = buf.size
    reserve(buf, name_len + 3)
    buf.data[buf.size] = 34  # '"'
    memcpy(buf.data + buf.size + 1, name, name_len)
    buf.data[buf.size + 1 + name_len] = 34
    buf.data[buf.size + 2 + name_len] = 58  # ':'
    buf.size += name_len + 3
    put_json_string(buf, text, length)  # length 0 reads nothing of a NULL text
    f.length[f.count] = buf.size - f.start[f.count]
    f.count += 1
    return 0


def encode_documents(
    _Element feed not None,
    bytes atom_ns not None,
    bytes after not None,
    int max_records,
):
    """The feed's entries as a COPY BINARY stream of whole records, or None to take the slow
    path (records.py, which is the definition).

    Columns: pid, modified_at, token, record_namespace, record (jsonb). Only the common record
    is read here: no attribute, every child a leaf element with plain text in the record's
    namespace, no name twice, one record element and namespace for the whole page. Returns
    (data, count, first_token, last_token, namespace or None, record name, [(field, count)]).
    """
    cdef tree.xmlNode* parts[3]
    cdef tree.xmlNode* entry
    cdef tree.xmlNode* record
    cdef tree.xmlNode* child
    cdef const char* token
    cdef const char* text
    cdef const char* page_ns = NULL
    cdef const char* page_name = NULL
    cdef const char* record_ns
    cdef const unsigned char* names[MAX_NAMES]
    cdef Py_ssize_t name_lens[MAX_NAMES]
    cdef Py_ssize_t counts[MAX_NAMES]
    cdef Py_ssize_t seen_in[MAX_NAMES]
    cdef int name_count = 0
    cdef int j, k, expected
    cdef Fields fields
    cdef char previous[TOKEN_DIGITS]
    cdef char first[TOKEN_DIGITS]
    cdef bint have_previous = len(after) == TOKEN_DIGITS
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t length, field_start
    cdef int64_t modified = 0
    cdef Buffer buf
    cdef Buffer fields_text  # the record's fields, each `"name":value`, in document order
    if after and not have_previous:
        return None
    if have_previous:
        memcpy(previous, <const char*>after, TOKEN_DIGITS)
    buf.data = fields_text.data = NULL
    buf.size = fields_text.size = 0
    buf.capacity = fields_text.capacity = 0
    fields.count = 0
    fields.last_count = -1
    try:
        reserve(&buf, 19)
        memcpy(buf.data, b"PGCOPY\n\xff\r\n\x00", 11)
        buf.size = 11
        put_be(&buf, 0, 4)
        put_be(&buf, 0, 4)
        entry = feed._c_node.children
        while entry is not NULL:
            if not is_element(entry, atom_ns, b"entry"):
                entry = entry.next
                continue
            token = entry_head(entry, atom_ns, parts, previous, &have_previous, &modified)
            if token is NULL:
                return None
            if count == 0:
                memcpy(first, token, TOKEN_DIGITS)
            record = parts[2].children
            while record is not NULL and record.type != tree.XML_ELEMENT_NODE:
                record = record.next
            if record is NULL or record.properties is not NULL:
                return None
            record_ns = NULL if record.ns is NULL else <const char*>record.ns.href
            if count == 0:
                page_ns = record_ns
                page_name = <const char*>record.name
            elif not same_ns(record.ns, page_ns) or strcmp(<const char*>record.name, page_name):
                return None

            reserve(&buf, 2)
            put_be(&buf, 5, 2)
            put_int8(&buf, pid(token))
            put_int8(&buf, modified)
            put_text(&buf, token, TOKEN_DIGITS)
            if record_ns is NULL or record_ns[0] == 0:
                put_null(&buf)
            else:
                put_text(&buf, record_ns, strlen(record_ns))
            fields_text.size = 0
            fields.count = 0
            expected = 0
            child = record.children
            while child is not NULL:
                if child.type != tree.XML_ELEMENT_NODE:
                    if child.type == tree.XML_TEXT_NODE:
                        if child.content is not NULL and not blank(<const char*>child.content):
                            return None  # text beside the fields: the slow path keeps it
                    elif child.type != tree.XML_COMMENT_NODE and child.type != tree.XML_PI_NODE:
                        return None
                    child = child.next
                    continue
                if child.properties is not NULL or not same_ns(child.ns, record_ns):
                    return None
                if not text_of(child, &text):
                    return None
                # The field's slot: usually the one after the last (records repeat their order).
                j = -1
                if expected < name_count and names[expected] == child.name:
                    j = expected
                else:
                    for k in range(name_count):
                        if names[k] == child.name or strcmp(
                            <const char*>names[k], <const char*>child.name
                        ) == 0:
                            j = k
                            break
                if j < 0:
                    if name_count == MAX_NAMES:
                        return None
                    j = name_count
                    names[j] = child.name
                    name_lens[j] = strlen(<const char*>child.name)
                    counts[j] = 0
                    seen_in[j] = -1
                    name_count += 1
                if seen_in[j] == count:
                    return None  # a name twice in one record: the slow path makes a list
                seen_in[j] = count
                counts[j] += 1
                expected = j + 1
                length = 0 if text is NULL else strlen(text)
                if length and not plain_text(text, length):
                    return None
                put_field_text(&fields_text, &fields, j, names[j], name_lens[j], text, length)
                child = child.next
            reserve(&buf, 5)
            field_start = buf.size
            buf.data[buf.size + 4] = 1  # jsonb's binary format version
            buf.size += 5
            length = put_object(&buf, fields_text.data, &fields, names, name_lens) + 1
            for k in range(4):  # the jsonb field's length
                buf.data[field_start + k] = <char>((length >> (8 * (3 - k))) & 0xFF)
            count += 1
            if count > max_records:
                return None
            entry = entry.next
        if count == 0:
            return None
        reserve(&buf, 2)
        put_be(&buf, 0xFFFF, 2)
        return (
            PyBytes_FromStringAndSize(buf.data, buf.size),
            count,
            PyBytes_FromStringAndSize(first, TOKEN_DIGITS).decode("ascii"),
            PyBytes_FromStringAndSize(previous, TOKEN_DIGITS).decode("ascii"),
            None if page_ns is NULL or page_ns[0] == 0 else page_ns.decode("utf-8"),
            page_name.decode("utf-8"),
            [((<const char*>names[k]).decode("utf-8"), counts[k]) for k in range(name_count)],
        )
    finally:
        free(buf.data)
        free(fields_text.data)


# --- whole records read from the answer's bytes, with no tree ---------------------------------
#
# lxml's tree build and free were most of the client's CPU on SOR2 pages (docs/performance.md).
# `scan_documents` reads a page of the commonest shape straight from the bytes into the same COPY
# stream as `encode_documents`: it checks everything it reads against XML 1.0 and Namespaces in
# XML (well-formed UTF-8 and characters, names, attributes, references, comments, CDATA, end
# tags, declared prefixes), and it gives up (None) at anything it does not take: a DOCTYPE or any
# other `<!` declaration, a processing instruction, an entity reference but the five predefined,
# a byte-order mark or another encoding, an odd namespace URI, non-ASCII names, a fault, nesting
# past SCAN_DEPTH. The caller then parses the answer with lxml as before, which accepts it or
# refuses it with today's message; so nothing is ever expanded here, and nothing this accepts is
# refused there. What it takes it reads exactly as lxml and the walks above do (the tests compare
# them on random pages).

cdef enum:
    R_SKIP = 0  # an element whose content is checked and then ignored
    R_ENVELOPE = 1
    R_BODY = 2
    R_RESPONSE = 3
    R_FEED = 4
    R_ENTRY = 5
    R_ID = 6
    R_UPDATED = 7
    R_CONTENT = 8
    R_RECORD = 9
    R_FIELD = 10
    SCAN_DEPTH = 64  # a KRS answer is about ten levels deep; libxml2 allows far more
    SCAN_NS = 256  # namespace declarations in scope at once
    SCAN_ATTRS = 32  # attributes of one element
    SCAN_NAME = 1000  # bytes of one name
    SMALL_TEXT = 4096  # bytes of atom:id or atom:updated

cdef const char* XML_NS = b"http://www.w3.org/XML/1998/namespace"
cdef const char* XMLNS_NS = b"http://www.w3.org/2000/xmlns/"
cdef Py_ssize_t XML_NS_LEN = 36
cdef Py_ssize_t XMLNS_NS_LEN = 29

cdef unsigned char PLAIN[256]  # 1: a byte of character data that needs no attention
cdef unsigned char NAME_START[256]  # 1: may start an (ASCII) NCName
cdef unsigned char NAME_CHAR[256]  # 1: may continue one
cdef unsigned char URI_CHAR[256]  # 1: may stand in a namespace URI this scan takes


cdef void _init_tables() noexcept:
    cdef int i
    for i in range(256):
        PLAIN[i] = 32 <= i < 127 or i == 9 or i == 10
        NAME_START[i] = (65 <= i <= 90) or (97 <= i <= 122) or i == 95  # A-Z a-z _
        NAME_CHAR[i] = NAME_START[i] or (48 <= i <= 57) or i == 45 or i == 46  # 0-9 - .
        URI_CHAR[i] = NAME_CHAR[i] or i == 126 or i == 44 or i == 59 or i == 61 or i == 43
    PLAIN[60] = PLAIN[38] = PLAIN[93] = 0  # '<' '&' ']'


_init_tables()


cdef int append(Buffer* buf, const unsigned char* data, Py_ssize_t length) except -1 nogil:
    if length:
        reserve(buf, length)
        memcpy(buf.data + buf.size, data, length)
        buf.size += length
    return 0


cdef inline bint space(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline const unsigned char* value_quote(
    const unsigned char* p, const unsigned char* end
) noexcept nogil:
    """From past an attribute's name over `S? = S?` to the quote that opens its value; NULL
    when the bytes are not that."""
    while p < end and space(p[0]):
        p += 1
    if p >= end or p[0] != 61:  # '='
        return NULL
    p += 1
    while p < end and space(p[0]):
        p += 1
    if p >= end or (p[0] != 34 and p[0] != 39):
        return NULL
    return p


cdef Py_ssize_t utf8_char(const unsigned char* p, const unsigned char* end) noexcept nogil:
    """The length of the well-formed UTF-8 sequence of an XML Char at p (p[0] >= 0x80), or 0:
    no overlong form, no surrogate, nothing past U+10FFFF, not U+FFFE or U+FFFF."""
    cdef unsigned char c = p[0]
    cdef unsigned char lo = 0x80, hi = 0xBF
    if c < 0xC2 or c > 0xF4:
        return 0
    if c < 0xE0:
        if end - p < 2 or not (0x80 <= p[1] <= 0xBF):
            return 0
        return 2
    if c < 0xF0:
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
        if end - p < 3 or not (lo <= p[1] <= hi) or not (0x80 <= p[2] <= 0xBF):
            return 0
        if c == 0xEF and p[1] == 0xBF and p[2] >= 0xBE:
            return 0
        return 3
    if c == 0xF0:
        lo = 0x90
    elif c == 0xF4:
        hi = 0x8F
    if end - p < 4 or not (lo <= p[1] <= hi) or not (0x80 <= p[2] <= 0xBF) or not (0x80 <= p[3] <= 0xBF):
        return 0
    return 4


cdef Py_ssize_t reference(
    const unsigned char* p, const unsigned char* end, Buffer* out, bint field
) except -1 nogil:
    """The bytes of the reference at p ('&') — one of the five predefined entities or a
    character reference to an XML Char — with its character appended to out (when not NULL);
    0 for anything else. In a field, DEL and C1 controls give up too (plain_text's rule)."""
    cdef Py_ssize_t n = end - p
    cdef Py_ssize_t i
    cdef unsigned int value = 0
    cdef unsigned char c
    cdef unsigned char utf8[4]
    cdef int width
    cdef bint hex_digits
    if n >= 4 and p[1] == 108 and p[2] == 116 and p[3] == 59:  # lt;
        c = 60
    elif n >= 4 and p[1] == 103 and p[2] == 116 and p[3] == 59:  # gt;
        c = 62
    elif n >= 5 and memcmp(p + 1, b"amp;", 4) == 0:
        c = 38
    elif n >= 6 and memcmp(p + 1, b"apos;", 5) == 0:
        c = 39
    elif n >= 6 and memcmp(p + 1, b"quot;", 5) == 0:
        c = 34
    elif n >= 4 and p[1] == 35:  # '#'
        hex_digits = p[2] == 120  # 'x'
        i = 3 if hex_digits else 2
        while i < n and i < 12 and p[i] != 59:
            c = p[i]
            if 48 <= c <= 57:
                value = value * (16 if hex_digits else 10) + (c - 48)
            elif hex_digits and 97 <= c <= 102:
                value = value * 16 + (c - 87)
            elif hex_digits and 65 <= c <= 70:
                value = value * 16 + (c - 55)
            else:
                return 0
            i += 1
        if i >= n or p[i] != 59 or i == (3 if hex_digits else 2) or i > (10 if hex_digits else 10):
            return 0
        if not (
            value == 9 or value == 10 or value == 13
            or (0x20 <= value <= 0xD7FF) or (0xE000 <= value <= 0xFFFD)
            or (0x10000 <= value <= 0x10FFFF)
        ):
            return 0
        if field and 0x7F <= value <= 0x9F:
            return 0
        if out is not NULL:
            if value < 0x80:
                utf8[0] = <unsigned char>value
                width = 1
            elif value < 0x800:
                utf8[0] = <unsigned char>(0xC0 | (value >> 6))
                utf8[1] = <unsigned char>(0x80 | (value & 0x3F))
                width = 2
            elif value < 0x10000:
                utf8[0] = <unsigned char>(0xE0 | (value >> 12))
                utf8[1] = <unsigned char>(0x80 | ((value >> 6) & 0x3F))
                utf8[2] = <unsigned char>(0x80 | (value & 0x3F))
                width = 3
            else:
                utf8[0] = <unsigned char>(0xF0 | (value >> 18))
                utf8[1] = <unsigned char>(0x80 | ((value >> 12) & 0x3F))
                utf8[2] = <unsigned char>(0x80 | ((value >> 6) & 0x3F))
                utf8[3] = <unsigned char>(0x80 | (value & 0x3F))
                width = 4
            append(out, utf8, width)
        return i + 1
    else:
        return 0
    if out is not NULL:
        append(out, &c, 1)
    return 4 if c == 60 or c == 62 else (5 if c == 38 else 6)  # "&lt;" "&amp;" "&quot;"


cdef Py_ssize_t qname(
    const unsigned char* p, const unsigned char* end, Py_ssize_t* colon
) noexcept nogil:
    """The length of the ASCII QName at p (colon: where its prefix ends, or -1), or 0."""
    cdef Py_ssize_t i = 0
    colon[0] = -1
    if p >= end or not NAME_START[p[0]]:
        return 0
    i = 1
    while p + i < end:
        if NAME_CHAR[p[i]]:
            i += 1
        elif p[i] == 58:  # ':'
            if colon[0] >= 0 or p + i + 1 >= end or not NAME_START[p[i + 1]]:
                return 0
            colon[0] = i
            i += 1
        elif p[i] >= 0x80:
            return 0  # a non-ASCII name: lxml judges it
        else:
            break
        if i > SCAN_NAME:
            return 0
    return i


cdef bint uri_taken(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """A namespace URI of a form libxml2 surely accepts (it refuses some as "not a valid URI"):
    `http(s)://host[/path]` or `urn:a[:b…]`, from a small set of characters; else 0."""
    cdef Py_ssize_t i, start
    cdef Py_ssize_t fragment = n
    for i in range(n):
        if p[i] == 35 and fragment == n:  # one '#', then a plain name: "…/xmldsig#"
            fragment = i
        elif not (URI_CHAR[p[i]] or (i < fragment and (p[i] == 47 or p[i] == 58))):  # '/' ':'
            return 0
    if n > 7 and memcmp(p, b"http://", 7) == 0:
        start = 7
    elif n > 8 and memcmp(p, b"https://", 8) == 0:
        start = 8
    elif n > 4 and memcmp(p, b"urn:", 4) == 0 and fragment == n:
        for i in range(4, n):
            if p[i] == 47 or (p[i] == 58 and (i + 1 == n or p[i + 1] == 58)):
                return 0
        return NAME_CHAR[p[4]]
    else:
        return 0
    i = start
    while i < fragment and p[i] != 47:
        if not NAME_CHAR[p[i]]:
            return 0  # a port, user or other punctuation in the authority
        i += 1
    if i == start:
        return 0
    while i < fragment:
        if p[i] == 58:
            return 0
        i += 1
    return 1


cdef class _Scan:
    """The state of one `scan_documents`: the open elements, the namespaces in scope, the
    entry being read and the rows written so far."""

    cdef const unsigned char* p
    cdef const unsigned char* end
    cdef const unsigned char* atom
    cdef const unsigned char* soap
    cdef const unsigned char* krs
    cdef Py_ssize_t atom_len, soap_len, krs_len
    # namespace declarations in scope, innermost last; uri NULL: no namespace
    cdef const unsigned char* ns_prefix[SCAN_NS]
    cdef Py_ssize_t ns_prefix_len[SCAN_NS]
    cdef const unsigned char* ns_uri[SCAN_NS]
    cdef Py_ssize_t ns_uri_len[SCAN_NS]
    cdef int ns_count
    # the open elements
    cdef const unsigned char* open_name[SCAN_DEPTH]
    cdef Py_ssize_t open_len[SCAN_DEPTH]
    cdef int open_ns[SCAN_DEPTH]
    cdef int open_role[SCAN_DEPTH]
    cdef bint open_child[SCAN_DEPTH]
    cdef int depth
    cdef bint envelope, body_seen, feed_seen
    # the entry being read
    cdef bint have_id, have_updated, have_content, have_record
    cdef const unsigned char* field_name
    cdef Py_ssize_t field_len
    cdef Buffer out, record, text, id_text, updated_text  # record: the fields' `"name":value`
    cdef Fields fields
    # the page
    cdef const unsigned char* page_ns
    cdef Py_ssize_t page_ns_len
    cdef const unsigned char* page_name
    cdef Py_ssize_t page_name_len
    cdef const unsigned char* names[MAX_NAMES]
    cdef Py_ssize_t name_lens[MAX_NAMES]
    cdef Py_ssize_t counts[MAX_NAMES]
    cdef Py_ssize_t seen_in[MAX_NAMES]
    cdef int name_count, expected
    cdef char previous[TOKEN_DIGITS]
    cdef char first[TOKEN_DIGITS]
    cdef bint have_previous
    cdef Py_ssize_t count, max_records, profiled
    cdef list profiles
    cdef dict current

    def __dealloc__(self):
        free(self.out.data)
        free(self.record.data)
        free(self.text.data)
        free(self.id_text.data)
        free(self.updated_text.data)

    cdef int resolve(
        self, const unsigned char* prefix, Py_ssize_t length, const unsigned char** uri,
        Py_ssize_t* uri_len
    ) noexcept nogil:
        """The namespace bound to prefix (length 0: the default one); 0 when undeclared."""
        cdef int i = self.ns_count - 1
        while i >= 0:
            if self.ns_prefix_len[i] == length and (
                length == 0 or memcmp(self.ns_prefix[i], prefix, length) == 0
            ):
                uri[0] = self.ns_uri[i]
                uri_len[0] = self.ns_uri_len[i]
                return 1
            i -= 1
        if length == 0:
            uri[0] = NULL  # no default namespace declared: none
            uri_len[0] = 0
            return 1
        return 0

    cdef bint is_(
        self, const unsigned char* uri, Py_ssize_t uri_len, const unsigned char* want,
        Py_ssize_t want_len, const unsigned char* local, Py_ssize_t local_len, const char* name
    ) noexcept nogil:
        cdef Py_ssize_t n = strlen(name)
        return (
            uri is not NULL and uri_len == want_len and memcmp(uri, want, want_len) == 0
            and local_len == n and memcmp(local, name, n) == 0
        )

    cdef int chars(self, Buffer* out, bint field) except -1 nogil:
        """Character data up to the next '<' or the end, checked, and (out not NULL) appended
        as the parser delivers it: references replaced, line ends normalised to LF. 0 to give
        up."""
        cdef const unsigned char* p = self.p
        cdef const unsigned char* end = self.end
        cdef const unsigned char* start
        cdef Py_ssize_t n
        cdef unsigned char c
        while p < end:
            start = p
            while p < end and PLAIN[p[0]]:
                p += 1
            if out is not NULL and p > start:
                append(out, start, p - start)
            if p >= end:
                break
            c = p[0]
            if c == 60:  # '<'
                break
            if c == 38:  # '&'
                n = reference(p, end, out, field)
                if n == 0:
                    return 0
                p += n
            elif c == 93:  # ']'
                if end - p >= 3 and p[1] == 93 and p[2] == 62:
                    return 0  # "]]>" outside CDATA is not well-formed
                if out is not NULL:
                    append(out, p, 1)
                p += 1
            elif c == 13:  # CR: CRLF and a lone CR both become LF
                if out is not NULL:
                    append(out, <const unsigned char*>b"\n", 1)
                p += 2 if end - p >= 2 and p[1] == 10 else 1
            elif c < 32:
                return 0
            elif c == 127:
                if field:
                    return 0
                if out is not NULL:
                    append(out, p, 1)
                p += 1
            else:
                n = utf8_char(p, end)
                if n == 0 or (field and c == 0xC2 and p[1] <= 0x9F):
                    return 0
                if out is not NULL:
                    append(out, p, n)
                p += n
        self.p = p
        return 1

    cdef int cdata(self, Buffer* out, bint field) except -1 nogil:
        """The CDATA section at self.p (after "<![CDATA["), as chars() does; 0 to give up."""
        cdef const unsigned char* p = self.p
        cdef const unsigned char* end = self.end
        cdef Py_ssize_t n
        cdef unsigned char c
        while True:
            if p >= end:
                return 0
            c = p[0]
            if c == 93 and end - p >= 3 and p[1] == 93 and p[2] == 62:
                self.p = p + 3
                return 1
            if c == 13:
                if out is not NULL:
                    append(out, <const unsigned char*>b"\n", 1)
                p += 2 if end - p >= 2 and p[1] == 10 else 1
                continue
            if c < 32 and c != 9 and c != 10:
                return 0
            if c < 127:
                n = 1
            elif c == 127:
                if field:
                    return 0
                n = 1
            else:
                n = utf8_char(p, end)
                if n == 0 or (field and c == 0xC2 and p[1] <= 0x9F):
                    return 0
            if out is not NULL:
                append(out, p, n)
            p += n

    cdef int comment(self) noexcept nogil:
        """Past the comment at self.p (after "<!--"); 0 to give up."""
        cdef const unsigned char* p = self.p
        cdef const unsigned char* end = self.end
        cdef Py_ssize_t n
        while p < end:
            if p[0] == 45 and end - p >= 2 and p[1] == 45:  # "--" may only end it
                if end - p >= 3 and p[2] == 62:
                    self.p = p + 3
                    return 1
                return 0
            if p[0] < 128:
                if p[0] < 32 and not space(p[0]):
                    return 0
                p += 1
            else:
                n = utf8_char(p, end)
                if n == 0:
                    return 0
                p += n
        return 0

    cdef int spaces_only(self) noexcept nogil:
        """Only white space up to the next '<' (or the end); 0 otherwise."""
        while self.p < self.end and self.p[0] != 60:
            if not space(self.p[0]):
                return 0
            self.p += 1
        return 1

    cdef int declaration(self) noexcept nogil:
        """Past `<?xml version="1.0" [encoding="UTF-8"] [standalone="yes|no"]?>` at the very
        start, when there is one; 0 for any other declaration (lxml judges it)."""
        cdef const unsigned char* p = self.p
        cdef const unsigned char* end = self.end
        cdef const unsigned char* value
        cdef Py_ssize_t n, i
        cdef int part = 0
        cdef unsigned char quote
        if end - p < 6 or memcmp(p, b"<?xml", 5) != 0 or not space(p[5]):
            return 1 if end - p < 2 or p[0] != 60 or p[1] != 63 else 0  # another PI
        p += 5
        while True:
            n = 0
            while p < end and space(p[0]):
                p += 1
                n += 1
            if end - p >= 2 and p[0] == 63 and p[1] == 62:  # "?>"
                if part == 0:
                    return 0
                self.p = p + 2
                return 1
            if n == 0:
                return 0
            if part == 0 and end - p >= 7 and memcmp(p, b"version", 7) == 0:
                p += 7
                part = 1
            elif 1 <= part <= 1 and end - p >= 8 and memcmp(p, b"encoding", 8) == 0:
                p += 8
                part = 2
            elif 1 <= part <= 2 and end - p >= 10 and memcmp(p, b"standalone", 10) == 0:
                p += 10
                part = 3
            else:
                return 0
            p = value_quote(p, end)
            if p == NULL:
                return 0
            quote = p[0]
            p += 1
            value = p
            while p < end and p[0] != quote and p[0] != 60 and p[0] != 62:
                p += 1
            if p >= end or p[0] != quote:
                return 0
            n = p - value
            p += 1
            if part == 1:
                if n != 3 or memcmp(value, b"1.0", 3) != 0:
                    return 0
            elif part == 2:
                if n != 5:
                    return 0
                if (
                    value[0] | 32 != 117 or value[1] | 32 != 116 or value[2] | 32 != 102
                    or value[3] != 45 or value[4] != 56
                ):  # "utf-8" in any case
                    return 0
            elif not (
                (n == 3 and memcmp(value, b"yes", 3) == 0) or (n == 2 and memcmp(value, b"no", 2) == 0)
            ):
                return 0

    cdef int start_tag(self) except -1 nogil:
        """The start tag at self.p: checked, its namespaces declared, its role found; 0 to
        give up."""
        cdef const unsigned char* p = self.p + 1
        cdef const unsigned char* end = self.end
        cdef const unsigned char* name = p
        cdef const unsigned char* a_name[SCAN_ATTRS]
        cdef Py_ssize_t a_len[SCAN_ATTRS]
        cdef Py_ssize_t a_colon[SCAN_ATTRS]
        cdef const unsigned char* a_value[SCAN_ATTRS]
        cdef Py_ssize_t a_value_len[SCAN_ATTRS]
        cdef bint a_special[SCAN_ATTRS]
        cdef bint a_xmlns[SCAN_ATTRS]
        cdef Py_ssize_t name_len, colon, n, i, j, prefix_len
        cdef int attrs = 0, plain_attrs = 0, parent, role, ns_before = self.ns_count
        cdef bint had_space, empty, first_child
        cdef unsigned char quote, c
        cdef const unsigned char* uri
        cdef Py_ssize_t uri_len
        cdef const unsigned char* local
        cdef Py_ssize_t local_len
        name_len = qname(p, end, &colon)
        if name_len == 0:
            return 0
        p += name_len
        while True:
            had_space = 0
            while p < end and space(p[0]):
                p += 1
                had_space = 1
            if p >= end:
                return 0
            if p[0] == 62:  # '>'
                empty = 0
                p += 1
                break
            if p[0] == 47:  # '/'
                if end - p < 2 or p[1] != 62:
                    return 0
                empty = 1
                p += 2
                break
            if not had_space or attrs == SCAN_ATTRS:
                return 0
            n = qname(p, end, &a_colon[attrs])
            if n == 0:
                return 0
            a_name[attrs] = p
            a_len[attrs] = n
            p += n
            p = value_quote(p, end)
            if p == NULL:
                return 0
            quote = p[0]
            p += 1
            a_value[attrs] = p
            a_special[attrs] = 0
            while True:
                if p >= end:
                    return 0
                c = p[0]
                if c == quote:
                    break
                if c == 60:
                    return 0
                if c == 38:
                    n = reference(p, end, NULL, 0)
                    if n == 0:
                        return 0
                    p += n
                    a_special[attrs] = 1
                elif c < 128:
                    if c < 32:
                        if not space(c):
                            return 0
                        a_special[attrs] = 1  # normalised to a space by the parser
                    p += 1
                else:
                    n = utf8_char(p, end)
                    if n == 0:
                        return 0
                    p += n
            a_value_len[attrs] = p - a_value[attrs]
            p += 1
            attrs += 1
        for i in range(attrs):
            for j in range(i):
                if a_len[i] == a_len[j] and memcmp(a_name[i], a_name[j], a_len[i]) == 0:
                    return 0  # an attribute twice
        for i in range(attrs):
            a_xmlns[i] = (
                (a_colon[i] < 0 and a_len[i] == 5) or a_colon[i] == 5
            ) and memcmp(a_name[i], b"xmlns", 5) == 0
            if not a_xmlns[i]:
                plain_attrs += 1
                continue
            if a_special[i]:
                return 0
            prefix_len = a_len[i] - 6 if a_colon[i] == 5 else 0
            if a_colon[i] == 5:
                if a_value_len[i] == 0:
                    return 0  # undeclaring a prefix: not in Namespaces in XML 1.0
                if prefix_len == 3 and memcmp(a_name[i] + 6, b"xml", 3) == 0:
                    if a_value_len[i] == XML_NS_LEN and memcmp(a_value[i], XML_NS, XML_NS_LEN) == 0:
                        continue  # xml: bound to its own namespace, as it always is
                    return 0
                if prefix_len == 5 and memcmp(a_name[i] + 6, b"xmlns", 5) == 0:
                    return 0
            if a_value_len[i] and not uri_taken(a_value[i], a_value_len[i]):
                return 0
            if (a_value_len[i] == XML_NS_LEN and memcmp(a_value[i], XML_NS, XML_NS_LEN) == 0) or (
                a_value_len[i] == XMLNS_NS_LEN and memcmp(a_value[i], XMLNS_NS, XMLNS_NS_LEN) == 0
            ):
                return 0  # the reserved namespaces under another prefix: not well-formed
            if self.ns_count == SCAN_NS:
                return 0
            self.ns_prefix[self.ns_count] = a_name[i] + 6
            self.ns_prefix_len[self.ns_count] = prefix_len
            self.ns_uri[self.ns_count] = a_value[i] if a_value_len[i] else NULL
            self.ns_uri_len[self.ns_count] = a_value_len[i]
            self.ns_count += 1
        for i in range(attrs):
            if a_xmlns[i] or a_colon[i] < 0:
                continue
            # A prefixed attribute: its prefix declared (xml: is left to lxml), and no two of
            # one local name (they might share an expanded name).
            if not self.resolve(a_name[i], a_colon[i], &uri, &uri_len):
                return 0
            for j in range(i):
                if (
                    not a_xmlns[j] and a_colon[j] >= 0
                    and a_len[i] - a_colon[i] == a_len[j] - a_colon[j]
                    and memcmp(a_name[i] + a_colon[i], a_name[j] + a_colon[j], a_len[i] - a_colon[i]) == 0
                ):
                    return 0
        if not self.resolve(name, colon if colon >= 0 else 0, &uri, &uri_len):
            return 0
        local = name + colon + 1
        local_len = name_len - colon - 1

        if self.depth == SCAN_DEPTH:
            return 0
        if self.depth == 0:
            if self.envelope:
                if not self.is_(uri, uri_len, self.soap, self.soap_len, local, local_len, b"Envelope"):
                    return 0
                role = R_ENVELOPE
            else:
                if not self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"feed"):
                    return 0
                role = R_FEED
                self.feed_seen = 1
        else:
            parent = self.open_role[self.depth - 1]
            first_child = not self.open_child[self.depth - 1]
            self.open_child[self.depth - 1] = 1
            if parent == R_SKIP:
                role = R_SKIP
            elif parent == R_RECORD:
                role = R_FIELD
            elif parent == R_ENTRY:
                role = R_SKIP
                if self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"id"):
                    if self.have_id:
                        return 0
                    role = R_ID
                    self.have_id = 1
                elif self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"updated"):
                    if self.have_updated:
                        return 0
                    role = R_UPDATED
                    self.have_updated = 1
                elif self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"content"):
                    if self.have_content:
                        return 0
                    role = R_CONTENT
                    self.have_content = 1
            elif parent == R_FEED:
                role = R_SKIP
                if self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"entry"):
                    role = R_ENTRY
                    self.have_id = self.have_updated = self.have_content = self.have_record = 0
                    self.id_text.size = 0
                    self.updated_text.size = 0
            elif parent == R_CONTENT:
                role = R_RECORD if first_child else R_SKIP
            elif parent == R_ENVELOPE:
                role = R_SKIP
                if not self.body_seen and self.is_(
                    uri, uri_len, self.soap, self.soap_len, local, local_len, b"Body"
                ):
                    role = R_BODY
                    self.body_seen = 1
            elif parent == R_BODY:
                if not first_child:
                    role = R_SKIP
                elif self.is_(
                    uri, uri_len, self.krs, self.krs_len, local, local_len, b"ReplicationResponse"
                ):
                    role = R_RESPONSE
                else:
                    return 0  # a fault, or something else: lxml's path says what
            elif parent == R_RESPONSE:
                if not first_child:
                    role = R_SKIP
                elif self.is_(uri, uri_len, self.atom, self.atom_len, local, local_len, b"feed"):
                    role = R_FEED
                    self.feed_seen = 1
                else:
                    return 0
            else:
                return 0  # an element inside atom:id, atom:updated or a field

        if role == R_RECORD:
            if plain_attrs:
                return 0  # attributes: records.py's full reading
            if self.page_name is NULL:
                self.page_ns = uri
                self.page_ns_len = uri_len
                self.page_name = local
                self.page_name_len = local_len
            elif (
                (uri is NULL) != (self.page_ns is NULL)
                or uri_len != self.page_ns_len
                or (uri is not NULL and memcmp(uri, self.page_ns, uri_len) != 0)
                or local_len != self.page_name_len
                or memcmp(local, self.page_name, local_len) != 0
            ):
                return 0  # one record element and namespace for the whole page
            self.record.size = 0
            self.fields.count = 0
            self.expected = 0
            if self.count < self.profiled:
                with gil:
                    self.current = {}
        elif role == R_FIELD:
            if (
                plain_attrs
                or (uri is NULL) != (self.page_ns is NULL)
                or uri_len != self.page_ns_len
                or (uri is not NULL and uri != self.page_ns and memcmp(uri, self.page_ns, uri_len) != 0)
            ):
                return 0  # an attribute, or a field in another namespace
            self.field_name = local
            self.field_len = local_len
            self.text.size = 0

        self.open_name[self.depth] = name
        self.open_len[self.depth] = name_len
        self.open_ns[self.depth] = ns_before
        self.open_role[self.depth] = role
        self.open_child[self.depth] = 0
        self.depth += 1
        self.p = p
        if empty:
            return self.close()
        return 1

    cdef int end_tag(self) except -1 nogil:
        cdef const unsigned char* p = self.p + 2
        cdef int d = self.depth - 1
        cdef Py_ssize_t n = self.open_len[d]
        if self.end - p < n or memcmp(p, self.open_name[d], n) != 0:
            return 0
        p += n
        while p < self.end and space(p[0]):
            p += 1
        if p >= self.end or p[0] != 62:
            return 0
        self.p = p + 1
        return self.close()

    cdef int close(self) except -1 nogil:
        """The end of the innermost open element."""
        cdef int d = self.depth - 1
        cdef int role = self.open_role[d]
        if role == R_FIELD:
            if not self.field_done():
                return 0
        elif role == R_RECORD:
            self.have_record = 1
            if self.count < self.profiled:
                with gil:
                    self.profiles.append(self.current)
                    self.current = None
        elif role == R_ENTRY:
            if not self.entry_done():
                return 0
        elif role == R_ID or role == R_UPDATED:
            if self.id_text.size > SMALL_TEXT or self.updated_text.size > SMALL_TEXT:
                return 0
        self.ns_count = self.open_ns[d]
        self.depth = d
        return 1

    cdef int field_done(self) except -1 nogil:
        cdef Py_ssize_t length = self.text.size
        cdef Py_ssize_t n = self.field_len
        cdef int j = -1
        cdef int k
        if length > MAX_TEXT_BYTES:
            return 0
        # The field's slot: usually the one after the last (records repeat their order).
        if (
            self.expected < self.name_count
            and self.name_lens[self.expected] == n
            and memcmp(self.names[self.expected], self.field_name, n) == 0
        ):
            j = self.expected
        else:
            for k in range(self.name_count):
                if self.name_lens[k] == n and memcmp(self.names[k], self.field_name, n) == 0:
                    j = k
                    break
        if j < 0:
            if self.name_count == MAX_NAMES:
                return 0
            j = self.name_count
            self.names[j] = self.field_name
            self.name_lens[j] = n
            self.counts[j] = 0
            self.seen_in[j] = -1
            self.name_count += 1
        if self.seen_in[j] == self.count:
            return 0  # a name twice in one record: records.py makes a list
        self.seen_in[j] = self.count
        self.counts[j] += 1
        self.expected = j + 1
        put_field_text(
            &self.record, &self.fields, j, self.field_name, n, self.text.data, length
        )
        if self.count < self.profiled:
            with gil:
                self.current[(<const char*>self.field_name)[:n].decode("ascii")] = (
                    self.text.data[:length].decode("utf-8") if length else ""
                )
        return 1

    cdef int entry_done(self) except -1 nogil:
        cdef const char* token
        cdef Py_ssize_t length = self.id_text.size
        cdef int64_t modified = 0
        cdef int year, i
        cdef Py_ssize_t at, json_length
        if not (self.have_id and self.have_updated and self.have_content and self.have_record):
            return 0
        if length < TOKEN_DIGITS + 1 or self.id_text.data[length - TOKEN_DIGITS - 1] != 47:
            return 0
        token = self.id_text.data + length - TOKEN_DIGITS
        for i in range(TOKEN_DIGITS):
            if token[i] < 48 or token[i] > 57:
                return 0
        # Equal-length digit strings order like the numbers they spell.
        if self.have_previous and memcmp(token, self.previous, TOKEN_DIGITS) <= 0:
            return 0
        memcpy(self.previous, token, TOKEN_DIGITS)
        self.have_previous = 1
        append(&self.updated_text, <const unsigned char*>b"\0", 1)
        if not parse_stamp(self.updated_text.data, &modified, &year):
            return 0
        if self.count == 0:
            memcpy(self.first, token, TOKEN_DIGITS)
        reserve(&self.out, 2)
        put_be(&self.out, 5, 2)
        put_int8(&self.out, pid(token))
        put_int8(&self.out, modified)
        put_text(&self.out, token, TOKEN_DIGITS)
        if self.page_ns is NULL:
            put_null(&self.out)
        else:
            put_text(&self.out, <const char*>self.page_ns, self.page_ns_len)
        reserve(&self.out, 5)
        at = self.out.size
        self.out.data[at + 4] = 1  # jsonb's binary format version
        self.out.size += 5
        json_length = put_object(
            &self.out, self.record.data, &self.fields, self.names, self.name_lens
        ) + 1
        for i in range(4):
            self.out.data[at + i] = <char>((json_length >> (8 * (3 - i))) & 0xFF)
        self.count += 1
        if self.count > self.max_records:
            return 0
        return 1

    cdef int scan(self) except -1 nogil:
        """The whole answer; 1 when every part of it was taken."""
        cdef int role
        cdef Buffer* target
        cdef int ok
        if not self.declaration():
            return 0
        while True:  # before the root: white space and comments
            if not self.spaces_only() or self.p >= self.end:
                return 0
            if self.end - self.p >= 4 and memcmp(self.p, b"<!--", 4) == 0:
                self.p += 4
                if not self.comment():
                    return 0
                continue
            if self.end - self.p < 2 or self.p[1] == 33 or self.p[1] == 63:  # '!' '?'
                return 0
            break
        if not self.start_tag():
            return 0
        while self.depth > 0:
            if self.p >= self.end:
                return 0  # cut short
            role = self.open_role[self.depth - 1]
            target = NULL
            if role == R_FIELD:
                target = &self.text
            elif role == R_ID:
                target = &self.id_text
            elif role == R_UPDATED:
                target = &self.updated_text
            if self.p[0] != 60:
                if role == R_RECORD:
                    ok = self.spaces_only()  # text beside the fields: records.py's reading
                else:
                    ok = self.chars(target, role == R_FIELD)
                if not ok:
                    return 0
                continue
            if self.end - self.p < 2:
                return 0
            if self.p[1] == 47:  # '/'
                ok = self.end_tag()
            elif self.p[1] == 33:  # '!'
                if self.end - self.p >= 4 and memcmp(self.p, b"<!--", 4) == 0:
                    if target is not NULL:
                        return 0  # lxml's .text stops at a comment
                    self.p += 4
                    ok = self.comment()
                elif self.end - self.p >= 9 and memcmp(self.p, b"<![CDATA[", 9) == 0:
                    if role == R_RECORD:
                        return 0
                    self.p += 9
                    ok = self.cdata(target, role == R_FIELD)
                else:
                    return 0  # a declaration inside an element is never well-formed
            elif self.p[1] == 63:  # '?'
                return 0
            else:
                ok = self.start_tag()
            if not ok:
                return 0
        while True:  # after the root: white space and comments
            if not self.spaces_only():
                return 0
            if self.p >= self.end:
                return 1
            if self.end - self.p >= 4 and memcmp(self.p, b"<!--", 4) == 0:
                self.p += 4
                if not self.comment():
                    return 0
                continue
            return 0


def scan_documents(
    bytes body not None,
    bint envelope,
    bytes atom_ns not None,
    bytes soap_ns not None,
    bytes krs_ns not None,
    bytes after not None,
    int max_records,
    int profiled,
):
    """A KRS answer (envelope) or a bare atom:feed read from its bytes into the COPY stream
    `encode_documents` writes, or None where lxml's path must judge it (see above). Returns what
    encode_documents does, and then the first `profiled` records as dicts (field → text)."""
    cdef _Scan scan = _Scan()
    cdef Py_ssize_t k
    cdef int taken
    if after and len(after) != TOKEN_DIGITS:
        return None
    scan.p = <const unsigned char*><const char*>body
    scan.end = scan.p + len(body)
    scan.envelope = envelope
    scan.atom = <const unsigned char*><const char*>atom_ns
    scan.atom_len = len(atom_ns)
    scan.soap = <const unsigned char*><const char*>soap_ns
    scan.soap_len = len(soap_ns)
    scan.krs = <const unsigned char*><const char*>krs_ns
    scan.krs_len = len(krs_ns)
    scan.max_records = max_records
    scan.profiled = profiled
    scan.profiles = []
    scan.current = None
    scan.have_previous = len(after) == TOKEN_DIGITS
    if scan.have_previous:
        memcpy(scan.previous, <const char*>after, TOKEN_DIGITS)
    reserve(&scan.out, max(1 << 16, len(body)))
    memcpy(scan.out.data, b"PGCOPY\n\xff\r\n\x00", 11)
    scan.out.size = 11
    put_be(&scan.out, 0, 4)
    put_be(&scan.out, 0, 4)
    with nogil:  # lxml parses without the GIL too: the fetch and the storing go on meanwhile
        taken = scan.scan()
    if not taken or not scan.feed_seen or scan.count == 0:
        return None
    reserve(&scan.out, 2)
    put_be(&scan.out, 0xFFFF, 2)
    return (
        PyBytes_FromStringAndSize(scan.out.data, scan.out.size),
        scan.count,
        PyBytes_FromStringAndSize(scan.first, TOKEN_DIGITS).decode("ascii"),
        PyBytes_FromStringAndSize(scan.previous, TOKEN_DIGITS).decode("ascii"),
        None if scan.page_ns is NULL else (<const char*>scan.page_ns)[:scan.page_ns_len].decode("utf-8"),
        (<const char*>scan.page_name)[:scan.page_name_len].decode("ascii"),
        [
            ((<const char*>scan.names[k])[:scan.name_lens[k]].decode("ascii"), scan.counts[k])
            for k in range(scan.name_count)
        ],
        scan.profiles,
    )
