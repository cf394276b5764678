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


cdef int reserve(Buffer* buf, Py_ssize_t extra) except -1:
    cdef Py_ssize_t wanted = buf.size + extra
    cdef Py_ssize_t capacity = buf.capacity
    cdef char* grown
    if wanted <= capacity:
        return 0
    while capacity < wanted:
        capacity = capacity * 2 if capacity else 1 << 16
    grown = <char*>realloc(buf.data, capacity)
    if grown is NULL:
        raise MemoryError()
    buf.data = grown
    buf.capacity = capacity
    return 0


cdef inline void put_be(Buffer* buf, uint64_t value, int width) noexcept:
    """Append the low `width` bytes of value, big-endian (room must be reserved)."""
    cdef int i
    for i in range(width):
        buf.data[buf.size + i] = <char>((value >> (8 * (width - 1 - i))) & 0xFF)
    buf.size += width


cdef int put_int8(Buffer* buf, int64_t value) except -1:
    reserve(buf, 12)
    put_be(buf, 8, 4)
    put_be(buf, <uint64_t>value, 8)
    return 0


cdef int put_null(Buffer* buf) except -1:
    reserve(buf, 4)
    put_be(buf, <uint64_t>(<int64_t>-1) & 0xFFFFFFFF, 4)
    return 0


cdef int put_text(Buffer* buf, const char* text, Py_ssize_t length) except -1:
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


cdef inline int digits(const char* s, int count) noexcept:
    """The value of `count` ASCII digits at s, or -1."""
    cdef int value = 0
    cdef int i
    for i in range(count):
        if s[i] < 48 or s[i] > 57:
            return -1
        value = value * 10 + (s[i] - 48)
    return value


cdef inline int64_t pid(const char* token) noexcept:
    cdef int64_t value = 0
    cdef int i
    for i in range(10, TOKEN_DIGITS):
        value = value * 10 + (token[i] - 48)
    return value


cdef int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept:
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int days_in_month(int y, int m) noexcept:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef int parse_stamp(const char* s, int64_t* micros, int* year) noexcept:
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


cdef int put_json_string(Buffer* buf, const char* text, Py_ssize_t length) except -1:
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
    cdef Py_ssize_t counts[MAX_NAMES]
    cdef Py_ssize_t seen_in[MAX_NAMES]
    cdef int name_count = 0
    cdef int j, k, expected
    cdef char previous[TOKEN_DIGITS]
    cdef char first[TOKEN_DIGITS]
    cdef bint have_previous = len(after) == TOKEN_DIGITS
    cdef bint first_field
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t length, field_start
    cdef int64_t modified = 0
    cdef Buffer buf
    if after and not have_previous:
        return None
    if have_previous:
        memcpy(previous, <const char*>after, TOKEN_DIGITS)
    buf.data = NULL
    buf.size = 0
    buf.capacity = 0
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
            reserve(&buf, 6)
            field_start = buf.size
            buf.size += 4  # the jsonb field's length, written below
            buf.data[buf.size] = 1  # jsonb's binary format version
            buf.data[buf.size + 1] = 123  # '{'
            buf.size += 2
            first_field = True
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
                k = <int>strlen(<const char*>child.name)
                reserve(&buf, k + 4)
                if not first_field:
                    buf.data[buf.size] = 44  # ','
                    buf.size += 1
                first_field = False
                buf.data[buf.size] = 34
                memcpy(buf.data + buf.size + 1, child.name, k)
                buf.data[buf.size + 1 + k] = 34
                buf.data[buf.size + 2 + k] = 58  # ':'
                buf.size += k + 3
                put_json_string(&buf, text, length)  # length 0 reads nothing of a NULL text
                child = child.next
            reserve(&buf, 1)
            buf.data[buf.size] = 125  # '}'
            buf.size += 1
            length = buf.size - field_start - 4
            for k in range(4):
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
