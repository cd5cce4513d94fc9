"""Recognise a file by its bytes, never by its name, and find pickles and archives
anywhere in it.

:func:`sniff` names a file's type from its head (modelscan skips a raw pickle renamed
``.pt``; this does not). :func:`scan` reads the *whole* file (an ``mmap``: the bytes are
streamed by the kernel, never copied into memory at once) and reports every kind of
payload it holds at any offset: a pickle stream (protocol 0 to 5, with or without a
PROTO opcode, stacked, or followed by junk), or an archive (zip, tar, gzip, bzip2, xz,
7z, rar, zstd, lz4). Nothing is ever unpickled or decompressed.

Where a payload may start:

* **pickles**: at offset 0 and after every complete stream there (stacked pickles, as
  PyTorch's legacy format writes them); at every PROTO opcode (``\\x80`` then 2..5);
  at every GLOBAL or INST opcode with a dotted-name pair (``cos\\nsystem\\n``, protocols
  0 to 3); at every STACK_GLOBAL fed by two SHORT_BINUNICODE names (protocol 4+, what
  ``pickle.dumps`` writes); in data up to 1 MiB (text files, strings), at every string
  push of a name (SHORT_BINUNICODE, BINUNICODE, SHORT_BINSTRING, BINSTRING). The walker
  keeps the memo's values, so names fetched back with BINGET are names. From each
  start, a small opcode walker (``pickletools``'s opcode table, its own argument reader
  that never reads past the data) follows the stream. It is a pickle when the walk
  imports something (GLOBAL, INST, STACK_GLOBAL) *and calls it* (REDUCE, OBJ, NEWOBJ,
  NEWOBJ_EX with the import as callable, INST, BUILD from a strong start) or ends at
  STOP after an import, or when it is a complete, stack-valid stream of at least three
  opcodes from a strong start (offset 0 or PROTO). A truncated pickle whose tail is
  garbage still executes up to the tail, hence "calls", not "complete".
* **zip**: every local-file header, central-directory header and end-of-central-
  directory record (``PK\\x03\\x04``, ``PK\\x01\\x02``, ``PK\\x05\\x06``, ``PK\\x06\\x06``)
  whose fixed fields are plausible (compression method, name length). A zip reader
  finds the directory from the end, so a zip behind any prefix (``PK\\x07\\x08``, an ONNX
  protobuf: a polyglot) still opens.
* **tar**: a ``ustar`` magic whose 512-byte header checksum is right. **gzip**: the
  magic, deflate, and plausible flag/XFL/OS bytes. bzip2, xz, 7z, rar: their 6-10 byte
  magics, anywhere in files up to 16 MiB and at offset 0 in larger ones (no loader opens
  them mid-file; each pass costs time on a 100 MB model). zstd and lz4 (4-byte magics,
  too weak alone inside weights): at any offset where a well-formed frame follows the
  magic (headers, reserved bits, the lz4 descriptor's checksum, block sizes and the
  chain of blocks to the last one, all inside the file).

Random float weights give false positives at a rate measured by ``tests/test_import_
gate.py`` (none in 256 MiB of random bytes). The whole walk is bounded (``max_ops``);
a file that exhausts it is reported as a possible pickle: the gate fails closed.
"""

from __future__ import annotations

import json
import mmap
import pickletools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ARCHIVES = {
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "gzip": (b"\x1f\x8b",),
    "bzip2": (b"BZh",),
    "xz": (b"\xfd7zXZ\x00",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "7z": (b"7z\xbc\xaf\x27\x1c",),
    "lz4": (b"\x04\x22\x4d\x18",),
    "rar": (b"Rar!\x1a\x07",),
}


# Characters that ordinary text needs and ``str.isprintable`` rejects: every space
# separator (Unicode category Zs: no-break, narrow no-break, ideographic, en/em spaces),
# the soft hyphen, and the joiners and marks of scripts and emoji (ZWSP, ZWNJ for
# Persian, ZWJ for emoji sequences and Indic scripts, LRM/RLM and the Arabic letter
# mark, the word joiner; Unicode TR9, UAX 31).
_TEXT_FORMAT = frozenset({0x00AD, 0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF})
# Invisible characters that carry or reorder text a reader does not see: Unicode tag
# characters (U+E0000-E007F, "ASCII smuggling": hidden instructions for whoever or
# whatever reads the card) and the bidirectional embeddings, overrides and isolates
# (U+202A-202E, U+2066-2069; "Trojan Source", CVE-2021-42574). Text that holds them is
# still text (sniffed so), and :func:`hidden_text` names them for a refusal.
_HIDDEN = {
    "Unicode tag characters (invisible ASCII: text no reader sees)": range(0xE0000, 0xE0080),
    "bidirectional overrides (text shown in another order than stored; CVE-2021-42574)": (
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ),
}
_HIDDEN_CODES = frozenset(c for codes in _HIDDEN.values() for c in codes)


def text_char(c: str) -> bool:
    """Whether ``c`` may appear in text: printable, a line break or tab, a space
    separator, a format character scripts need (``_TEXT_FORMAT``), or a hidden one
    (``_HIDDEN``: allowed here, refused by :func:`hidden_text`)."""
    if c.isprintable() or c in "\n\r\t":
        return True
    o = ord(c)
    return o in _TEXT_FORMAT or o in _HIDDEN_CODES or unicodedata.category(c) == "Zs"


def hidden_text(text: str) -> str:
    """Why ``text`` hides text from its reader ("" when it does not): the kind of
    invisible character, how many, and the first one's position."""
    for what, codes in _HIDDEN.items():
        codes = set(codes)
        at = [i for i, c in enumerate(text) if ord(c) in codes]
        if at:
            return f"{len(at)} {what}, the first at character {at[0]}"
    return ""


def _decode_prefix(data: bytes, partial: bool) -> str | None:
    """UTF-8 text of ``data`` (a leading byte order mark dropped), or None; a prefix of
    a longer file (``partial``) may end inside a character, whose bytes are dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if not (partial and e.reason == "unexpected end of data" and e.start >= len(data) - 3):
            return None
        text = data[: e.start].decode("utf-8")
    return text.removeprefix("\ufeff")


def sniff(data: bytes, partial: bool = False) -> str:
    """One of: pickle, zip, gzip, bzip2, xz, zstd, 7z, lz4, rar, tar, npy, png, jpeg,
    json, text, or binary (a protobuf has no magic: the ONNX check parses it), from the
    head of a file (``data``: its first bytes, up to 64 KiB are enough; ``partial``: the
    file goes on after them, so a character cut at the end is not a reason for binary).
    Payloads deeper in the file are :func:`scan`'s job."""
    head = data[:16]
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "pickle"
    for kind, magics in ARCHIVES.items():
        if any(head.startswith(m) for m in magics):
            return kind
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    text = _decode_prefix(data, partial)
    if text is None:
        return "binary"
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and json_depth_ok(data, 64):
        try:
            json.loads(stripped)
            return "json"
        except (ValueError, RecursionError):
            pass
    if all(map(text_char, text)):
        return "text"
    return "binary"


def json_depth_ok(data: bytes, limit: int) -> bool:
    """True when JSON-ish ``data`` nests brackets at most ``limit`` deep (strings
    skipped). Checked before ``json.loads``, whose recursion on 100,000 ``[`` is a
    RecursionError (issue 15, failure 1)."""
    depth = 0
    in_str = esc = False
    for b in data:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


# ------------------------------------------------------------------ payload scanning
@dataclass(frozen=True)
class Payload:
    """A pickle stream or an archive found inside a file.

    ``kind`` is ``pickle`` or an archive name; ``offset`` its first byte; ``detail``
    what a pickle imports (``posix.system``) or which archive structure was seen.
    """

    kind: str
    offset: int
    detail: str


_OPS = {o.code.encode("latin-1")[0]: o for o in pickletools.opcodes}
_CALLS = {"REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
_STRINGS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{0,127}\Z")
_NL_MAX = 1 << 16  # a newline-terminated argument longer than this is not a pickle's
# fixed-size arguments: (bytes of the length prefix or value, signed)
_FIXED = {"uint1": 1, "uint2": 2, "int4": 4, "uint4": 4, "uint8": 8, "float8": 8}
_COUNTED = {
    "bytes1": 1,
    "string1": 1,
    "unicodestring1": 1,
    "long1": 1,
    "bytes4": 4,
    "string4": 4,
    "unicodestring4": 4,
    "long4": 4,
    "bytes8": 8,
    "unicodestring8": 8,
    "bytearray8": 8,
}


class _Bad(Exception):
    pass


@dataclass
class _Walk:
    end: str  # "stop", "bad", "eof", "budget"
    pos: int
    ops: int
    content_ops: int
    imports: list[str]
    called: bool
    inst: bool = False  # an INST opcode (import and call in one)


def _walk(data, start: int, strict: bool, budget: list[int]) -> _Walk:
    """Follow a pickle opcode stream from ``start`` without executing it.

    ``strict``: the stream must be valid from here (stack and memo); otherwise (a start
    in the middle of a stream) a missing stack item or mark is assumed to be there.
    """
    n = len(data)
    pos = start
    stack: list[object] = []  # items: None, ("str", value) or ("global", name)
    marks: list[int] = []
    memo: dict[int, object] = {}  # memo index -> the item stored (names, globals)
    ops = content = 0
    imports: list[str] = []
    called = inst = False

    def pop(k: int) -> list[object]:
        if len(stack) < k:
            if strict:
                raise _Bad
            got = [None] * (k - len(stack)) + stack[:]
            del stack[:]
            return got
        got = stack[len(stack) - k :]
        del stack[len(stack) - k :]
        return got

    try:
        while True:
            if pos >= n:
                return _Walk("eof", pos, ops, content, imports, called, inst)
            budget[0] -= 1
            if budget[0] < 0:
                return _Walk("budget", pos, ops, content, imports, called, inst)
            op = _OPS.get(data[pos])
            if op is None:
                raise _Bad
            pos += 1
            ops += 1
            arg = None
            kind = op.arg.name if op.arg is not None else None
            if kind in _FIXED:
                k = _FIXED[kind]
                if pos + k > n:
                    raise _Bad
                arg = int.from_bytes(data[pos : pos + k], "little", signed=kind == "int4")
                pos += k
            elif kind in _COUNTED:
                k = _COUNTED[kind]
                if pos + k > n:
                    raise _Bad
                length = int.from_bytes(data[pos : pos + k], "little", signed=k == 4)
                if length < 0 or pos + k + length > n:
                    raise _Bad
                if op.name in _STRINGS and length <= 256:
                    arg = bytes(data[pos + k : pos + k + length])
                pos += k + length
            elif kind is not None:  # newline-terminated: one line, two for a name pair
                lines = []
                for _ in range(2 if kind == "stringnl_noescape_pair" else 1):
                    nl = data.find(b"\n", pos, min(n, pos + _NL_MAX))
                    if nl < 0:
                        raise _Bad
                    lines.append(bytes(data[pos:nl]))
                    pos = nl + 1
                if kind == "stringnl_noescape_pair":
                    if not all(_NAME.match(x) for x in lines):
                        raise _Bad
                    arg = lines
                elif kind.startswith("decimalnl"):
                    s = lines[0].rstrip(b"L")
                    if not re.fullmatch(rb"[+-]?[0-9]+", s):
                        raise _Bad
                    arg = int(s)
                elif kind == "floatnl":
                    if not re.fullmatch(rb"[+-]?[0-9.eEinfa]+", lines[0]):
                        raise _Bad
                elif kind == "stringnl":
                    s = lines[0]
                    if len(s) < 2 or s[:1] not in (b"'", b'"') or s[-1:] != s[:1]:
                        raise _Bad
                    arg = s[1:-1]
                else:
                    arg = lines[0]
            name = op.name
            if name == "STOP":
                if strict and (len(stack) != 1 or marks):
                    raise _Bad
                return _Walk("stop", pos, ops, content, imports, called, inst)
            if name == "PROTO":
                if not 0 <= arg <= 5:
                    raise _Bad
                continue
            if name == "FRAME":
                if pos + arg > n:
                    raise _Bad
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if strict and not stack:
                    raise _Bad
                memo[arg] = stack[-1] if stack else None
                continue
            if name == "MEMOIZE":
                if strict and not stack:
                    raise _Bad
                memo[len(memo)] = stack[-1] if stack else None
                continue
            content += 1
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if strict and arg not in memo:
                    raise _Bad
                stack.append(memo.get(arg))
                continue
            if name == "MARK":
                marks.append(len(stack))
                continue
            before = [s.name for s in op.stack_before]
            if "mark" in before:
                below = before.index("mark")
                if marks:
                    m = marks.pop()
                    above = stack[m:]
                    del stack[m:]
                elif strict:
                    raise _Bad
                else:
                    above = stack[:]
                    del stack[:]
                args = pop(below) + above
            else:
                args = pop(len(before))
            if name == "GLOBAL" or name == "INST":
                imports.append(".".join(x.decode("ascii") for x in arg))
            elif name == "STACK_GLOBAL":
                a, b = args
                if not (isinstance(a, tuple) and isinstance(b, tuple)):
                    if not strict:  # mid-stream: only names seen pushed count
                        raise _Bad
                    imports.append("(names computed on the stack)")
                else:
                    if not (_NAME.match(a[1]) and _NAME.match(b[1])):
                        raise _Bad
                    imports.append(f"{a[1].decode()}.{b[1].decode()}")
            head = args[0] if args else None
            if name == "INST":
                inst = True
            elif (name in _CALLS and isinstance(head, tuple) and head[0] == "global") or (
                name == "BUILD" and strict and imports
            ):
                called = True
            after = [s.name for s in op.stack_after]
            for _ in after:
                stack.append(None)
            if name in _STRINGS and arg is not None:
                stack[-1] = ("str", arg)
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                stack[-1] = ("global", imports[-1])
    except (_Bad, UnicodeDecodeError, ValueError):
        return _Walk("bad", pos, ops, content, imports, called, inst)


def _is_pickle(w: _Walk, strong: bool) -> bool:
    """Strong starts (offset 0, a PROTO opcode) were walked strictly: a stream that
    imports and calls, or imports and stops cleanly, or is a complete stream of a few
    opcodes, is a pickle. Weak starts (a name pair in the middle of the bytes, walked
    leniently) count only when what they import is called."""
    if w.end == "budget":
        return True
    if w.imports and (w.called or (w.inst and (strong or w.end == "stop"))):
        return True
    return strong and w.end == "stop" and (bool(w.imports) or w.content_ops >= 3)


_PROTO = re.compile(rb"\x80[\x02-\x05]")
_GLOBAL_TAIL = re.compile(rb"\n(?=[A-Za-z_][A-Za-z0-9_.]{0,127}\n)")
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.")
_SMALL = 1 << 20
_NAME_PUSH = re.compile(
    rb"(?:\x8c[\x01-\x7f]|X[\x01-\x7f]\x00\x00\x00|U[\x01-\x7f]|T[\x01-\x7f]\x00\x00\x00"
    rb"|\x8d[\x01-\x7f]\x00{7}|V(?=[A-Za-z_][A-Za-z0-9_.]{0,127}\n))"
    rb"(?=[A-Za-z_])"
)
# two pushed names (any string opcode: SHORT_BINUNICODE, BINUNICODE, BINUNICODE8,
# SHORT_BINSTRING, BINSTRING, protocol-0 UNICODE 'V'), each maybe memoized (MEMOIZE,
# BINPUT, LONG_BINPUT, PUT), then STACK_GLOBAL: searched in files of any size. One regex
# per opcode of the first push, so that each starts with a literal byte (the regex
# engine then skips ahead fast: ~0.5 s per 100 MB for all six, against ~17 s for one
# regex that starts with an alternation)
_NAME_ARG = rb"[A-Za-z_][\x21-\x7e]{0,127}?"
_MEMO = rb"(?:\x94|q.|r....|p[0-9]{1,9}\n)?"
_FIRST_PUSHES = (
    rb"\x8c[\x01-\x7f]" + _NAME_ARG,
    rb"X[\x01-\x7f]\x00\x00\x00" + _NAME_ARG,
    rb"\x8d[\x01-\x7f]\x00{7}" + _NAME_ARG,
    rb"U[\x01-\x7f]" + _NAME_ARG,
    rb"T[\x01-\x7f]\x00\x00\x00" + _NAME_ARG,
    rb"V[A-Za-z_][A-Za-z0-9_.]{0,127}\n",
)
_ANY_PUSH = (
    rb"(?:(?:\x8c[\x01-\x7f]|X[\x01-\x7f]\x00\x00\x00|\x8d[\x01-\x7f]\x00{7}|U[\x01-\x7f]"
    rb"|T[\x01-\x7f]\x00\x00\x00)" + _NAME_ARG + rb"|V[A-Za-z_][A-Za-z0-9_.]{0,127}\n)" + _MEMO
)
_STACK_GLOBALS = tuple(
    re.compile(first + _MEMO + _ANY_PUSH + rb"\x93", re.S) for first in _FIRST_PUSHES
)
_ZIP_METHODS = {0, 1, 6, 8, 9, 12, 14, 93, 95, 96, 97, 98, 99}
_MAGICS = {
    "bzip2": re.compile(rb"BZh[1-9]1AY&SY"),
    "xz": re.compile(re.escape(b"\xfd7zXZ\x00")),
    "7z": re.compile(re.escape(b"7z\xbc\xaf\x27\x1c")),
    "rar": re.compile(re.escape(b"Rar!\x1a\x07")),
}


def _finds(data, needle: bytes):
    """Every offset of ``needle`` (``find``: memchr speed, unlike a regex)."""
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)


def _u16(d, p: int) -> int:
    return int.from_bytes(d[p : p + 2], "little")


def _zip_at(d, p: int) -> str | None:
    n = len(d)
    sig = bytes(d[p + 2 : p + 4])
    if sig == b"\x03\x04" and p + 30 <= n:
        method, name_len = _u16(d, p + 8), _u16(d, p + 26)
        if method in _ZIP_METHODS and 1 <= name_len <= 4096 and p + 30 + name_len <= n:
            return "local file header"
    elif sig == b"\x01\x02" and p + 46 <= n:
        method, name_len = _u16(d, p + 10), _u16(d, p + 28)
        if method in _ZIP_METHODS and 1 <= name_len <= 4096 and p + 46 + name_len <= n:
            return "central directory"
    elif sig == b"\x05\x06" and p + 22 <= n:
        on_disk, total, comment = _u16(d, p + 8), _u16(d, p + 10), _u16(d, p + 20)
        if on_disk == total and p + 22 + comment <= n:
            return "end of central directory"
    elif sig == b"\x06\x06" and p + 56 <= n:
        size = int.from_bytes(d[p + 4 : p + 12], "little")
        if 44 <= size <= 1 << 16:
            return "zip64 end of central directory"
    return None


def _tar_at(d, magic: int) -> bool:
    h = magic - 257
    if h < 0 or h + 512 > len(d):
        return False
    block = bytes(d[h : h + 512])
    field = block[148:156].split(b"\0", 1)[0].strip(b" ")
    if not field or not re.fullmatch(rb"[0-7]+", field):
        return False
    return int(field, 8) == sum(block[:148]) + 8 * 32 + sum(block[156:])


def _gzip_at(d, p: int) -> bool:
    if p + 10 > len(d):
        return False
    flags, xfl, os_ = d[p + 3], d[p + 8], d[p + 9]
    return flags & 0xE0 == 0 and xfl in (0, 2, 4) and (os_ <= 13 or os_ == 255)


_ZSTD_MAX_BLOCK = 128 << 10  # RFC 8878 section 3.1.1.2.3: Block_Maximum_Size
_LZ4_BLOCK_MAX = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}


def _zstd_frame_at(d, p: int, max_blocks: int = 4096) -> int | None:
    """The end of a well-formed Zstandard frame (RFC 8878 section 3.1.1) at ``p``, or
    None: the frame header's reserved bit clear, a window of at most 2**31, then block
    headers (type 3 is reserved) whose sizes fit the frame and the block limit, up to
    the last block and its optional checksum, all inside ``d``. Nothing is decompressed.
    Random bytes after the magic pass with a chance under 1 in 100."""
    n = len(d)
    q = p + 4
    if q >= n:
        return None
    fhd = d[q]
    q += 1
    if fhd & 0x08:  # reserved bit
        return None
    fcs_flag, single, checksum, dict_flag = fhd >> 6, fhd >> 5 & 1, fhd >> 2 & 1, fhd & 3
    if not single:
        if q >= n or (d[q] >> 3) > 21:  # window log 10 + exponent <= 31
            return None
        q += 1
    q += (0, 1, 2, 4)[dict_flag]
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    fcs = int.from_bytes(d[q : q + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    q += fcs_len
    first, exact, regenerated = True, True, 0  # regenerated: a lower bound unless exact
    for _ in range(max_blocks):
        if q + 3 > n:
            return None
        h = int.from_bytes(d[q : q + 3], "little")
        q += 3
        last, kind, size = h & 1, h >> 1 & 3, h >> 3
        if kind == 3 or size > _ZSTD_MAX_BLOCK:
            return None
        if kind == 2:
            lits = _zstd_block_literals(d, q, size, first, dict_flag != 0)
            if lits is None:
                return None
            regenerated, exact = regenerated + lits, False
        else:
            regenerated += size
        first = False
        if fcs_len and regenerated > fcs:
            return None  # more content than the frame header declares
        q += 1 if kind == 1 else size  # RLE: one byte; raw and compressed: ``size``
        if q > n:
            return None
        if last:
            q += 4 * checksum
            if fcs_len and exact and regenerated != fcs:
                return None  # stored and RLE blocks: the content size is known exactly
            return q if q <= n else None
    return None


def _zstd_block_literals(d, q: int, size: int, first: bool, has_dict: bool) -> int | None:
    """The literals' regenerated size of a compressed block, or None when the block is
    malformed: its literals section header (RFC 8878 section 3.1.1.3.1.1) and
    sequences section header (3.1.1.3.2.1) parse and fit inside the block: sizes, the
    reserved bits of the compression modes, no treeless literals or repeated tables in a
    frame's first block without a dictionary."""
    end = q + size
    if end > len(d) or size < 2:
        return None
    b0 = d[q]
    ltype, sf = b0 & 3, b0 >> 2 & 3
    if ltype in (0, 1):  # raw or RLE literals
        hsize = (1, 2, 1, 3)[sf]
        if q + hsize > end:
            return None
        h = int.from_bytes(d[q : q + hsize], "little")
        regen = h >> 3 if sf in (0, 2) else h >> 4
        body = regen if ltype == 0 else 1
    else:  # compressed or treeless literals
        if ltype == 3 and first and not has_dict:
            return None  # treeless needs the table of an earlier block
        hsize, bits = ((3, 10), (3, 10), (4, 14), (5, 18))[sf]
        if q + hsize > end:
            return None
        h = int.from_bytes(d[q : q + hsize], "little") >> 4
        mask = (1 << bits) - 1
        regen, body = h & mask, h >> bits & mask
        if body == 0 or (sf == 0 and regen > 1023):
            return None
    if regen > _ZSTD_MAX_BLOCK:
        return None
    p = q + hsize + body  # the sequences section
    if p >= end:
        return None
    nseq = d[p]
    if nseq == 0:
        return regen if p + 1 == end else None  # no sequences: the block ends here
    p += 1 if nseq < 128 else 2 if nseq < 255 else 3
    if p >= end:
        return None
    modes = d[p]
    if modes & 3:  # reserved bits
        return None
    if first and not has_dict and any((modes >> s & 3) == 3 for s in (2, 4, 6)):
        return None  # "repeat" mode needs the table of an earlier block
    return regen if p + 1 < end else None


def _xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of a short input (the LZ4 frame descriptor, at most 15 bytes; the
    algorithm of https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md)."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    m = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & m

    acc, i = (seed + p5 + len(data)) & m, 0
    assert len(data) < 16  # no stripes of 16 bytes in a frame descriptor
    while i + 4 <= len(data):
        acc = rotl((acc + int.from_bytes(data[i : i + 4], "little") * p3) & m, 17) * p4 & m
        i += 4
    while i < len(data):
        acc = rotl((acc + data[i] * p5) & m, 11) * p1 & m
        i += 1
    acc ^= acc >> 15
    acc = acc * p2 & m
    acc ^= acc >> 13
    acc = acc * p3 & m
    return acc ^ (acc >> 16)


def _lz4_frame_at(d, p: int, max_blocks: int = 4096) -> int | None:
    """The end of a well-formed LZ4 frame (LZ4 Frame Format 1.6.x) at ``p``, or None:
    version 01, reserved bits clear, a block size code 4-7, the descriptor's xxHash32
    check byte right (1 in 256 for random bytes on its own), then data blocks within the
    block size up to the end mark, all inside ``d``. Nothing is decompressed."""
    n = len(d)
    q = p + 4
    if q + 2 > n:
        return None
    flg, bd = d[q], d[q + 1]
    if flg >> 6 != 1 or flg & 0x02 or bd & 0x8F or (bd >> 4 & 7) < 4:
        return None
    end = q + 2 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    if end + 1 > n or _xxh32(bytes(d[q:end])) >> 8 & 0xFF != d[end]:
        return None
    q, limit, block_sum = end + 1, _LZ4_BLOCK_MAX[bd >> 4 & 7], 4 if flg & 0x10 else 0
    for _ in range(max_blocks):
        if q + 4 > n:
            return None
        size = int.from_bytes(d[q : q + 4], "little")
        q += 4
        if size == 0:  # end mark, then the optional content checksum
            q += 4 if flg & 0x04 else 0
            return q if q <= n else None
        size &= 0x7FFFFFFF  # the high bit marks an uncompressed block
        if size > limit:
            return None
        q += size + block_sum
        if q > n:
            return None
    return None


def _pickle_starts(data):
    """(offset, strict) of every place a pickle stream may start, cheapest first."""
    for m in _PROTO.finditer(data):
        yield m.start(), True
    for m in _GLOBAL_TAIL.finditer(data):
        # the module name ends just before the match; GLOBAL ('c') or INST ('i') is
        # one of the name characters before it (the byte before may be a name char too)
        j = m.start()
        k = j
        while k > 0 and j - k < 129 and data[k - 1] in _NAME_CHARS:
            k -= 1
        for s in range(k, j - 1):
            if data[s] in (0x63, 0x69):  # c, i
                yield s, False
    if len(data) <= _SMALL:
        # small files and strings: every string push of a name may start a stream
        # (STACK_GLOBAL fed by BINUNICODE, SHORT_BINSTRING or memoized names)
        for m in _NAME_PUSH.finditer(data):
            yield m.start(), False
    for rx in _STACK_GLOBALS:
        for m in rx.finditer(data):
            yield m.start(), False


def scan(data, *, max_ops: int = 20_000_000, first_only: bool = True) -> list[Payload]:
    """Every payload kind found in ``data`` (bytes or mmap), each at its first offset;
    with ``first_only`` (the gate's use), stop at the first one found.

    Bounded: at most ``max_ops`` pickle opcodes are walked over all candidate starts; a
    file that needs more is reported as a pickle (``detail`` says so).
    """
    found: dict[str, Payload] = {}
    budget = [max_ops]
    n = len(data)

    def add(p: Payload) -> bool:
        found.setdefault(p.kind, p)
        return first_only

    pos = 0  # offset 0 and the streams stacked after it
    for _ in range(64):
        if pos >= n:
            break
        w = _walk(data, pos, True, budget)
        if _is_pickle(w, True):
            if add(Payload("pickle", pos, _what(w))):
                return list(found.values())
            break
        if w.end != "stop":
            break
        pos = w.pos
    if "pickle" not in found:
        for start, strict in _pickle_starts(data):
            w = _walk(data, start, strict, budget)
            if _is_pickle(w, strict):
                if add(Payload("pickle", start, _what(w))):
                    return list(found.values())
                break
    for i in _finds(data, b"PK"):
        what = _zip_at(data, i)
        if what:
            if add(Payload("zip", i, what)):
                return list(found.values())
            break
    for i in _finds(data, b"ustar"):
        if _tar_at(data, i):
            if add(Payload("tar", i - 257, "ustar header with a valid checksum")):
                return list(found.values())
            break
    for i in _finds(data, b"\x1f\x8b\x08"):
        if _gzip_at(data, i):
            if add(Payload("gzip", i, "gzip member header")):
                return list(found.values())
            break
    for kind, rx in _MAGICS.items():
        # anywhere, in files of any size (issue 15 round 2: xz at any offset)
        m = rx.search(data)
        if m and add(Payload(kind, m.start(), f"{kind} magic")):
            return list(found.values())
    # zstd and lz4 have 4-byte magics, which random weights hold (about 2 in 100 MB):
    # at any offset a magic counts only with a well-formed frame behind it
    for kind, at in (("zstd", _zstd_frame_at), ("lz4", _lz4_frame_at)):
        for k, i in enumerate(_finds(data, ARCHIVES[kind][0])):
            if k >= 100_000:  # a file made of magics: fail closed
                add(Payload(kind, i, f"too many {kind} magics to rule out"))
                break
            if at(data, i) is not None:
                add(Payload(kind, i, f"a well-formed {kind} frame"))
                break
    return list(found.values())


def _what(w: _Walk) -> str:
    if w.end == "budget":
        return "too many pickle-like opcodes to rule out (scan budget spent)"
    if w.imports:
        return "imports " + ", ".join(dict.fromkeys(w.imports))
    return f"a complete pickle stream of {w.ops} opcodes"


def scan_file(path: Path | str, **kw) -> list[Payload]:
    """:func:`scan` over a whole file through ``mmap`` (an empty file holds nothing)."""
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return []
        with mm:
            return scan(mm, **kw)


# ------------------------------------------------------------------ decoded streams
# A payload need not be raw: a loader may decompress or decode bytes before it unpickles
# them (``pickle.loads(zlib.decompress(w))``). These are decoded and scanned again, to a
# bounded depth and size: zlib (RFC 1950) and legacy LZMA-alone streams at any offset of
# any file (gzip, xz, bzip2 are found by their magics above); in text and strings also
# base64 (RFC 4648, also wrapped over lines as MIME writes it, and after JSON ``\\uXXXX``
# escapes are undone), base32 and base32hex (wrapped or not), hex, Ascii85 and base85.
_ZLIB = re.compile(rb"\x78[\x01\x5e\x9c\xda]")
_LZMA_ALONE = re.compile(
    rb"\x5d\x00\x00[\x00\x01\x02\x04\x08\x10\x20\x40\x80\xc0][\x00\x01\x02\x04\x08\x10\x20\x40\x80]"
    rb"(?:\xff{8}|[\x00-\xff]{4}\x00{4})",
    re.S,
)
_B64_BLOCK = re.compile(rb"(?:[A-Za-z0-9+/_-][ \t\r\n>]*){40,}={0,2}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}[ :\r\n\t]?){24,}")
_A85_RUN = re.compile(rb"<~[!-uz\s]{20,}~>|[!-uz]{40,}")
_B85_RUN = re.compile(rb"[0-9A-Za-z!#$%&()*+;<=>?@^_`{|}~-]{40,}")
_B32_BLOCK = re.compile(rb"(?:[A-Z2-7][ \t\r\n>]*){40,}=*|(?:[0-9A-V][ \t\r\n>]*){40,}=*")
_JSON_ESC = re.compile(rb"\\u00([0-9a-fA-F]{2})|\\x([0-9a-fA-F]{2})")
_DECODED_MAX = 16 << 20
_MAX_CANDIDATES = 20_000


def _inflate(data, start: int, fmt: str) -> bytes | None:
    """The stream at ``start`` decompressed (at most ``_DECODED_MAX``), or None when it
    is not a complete, valid stream (zlib: header, deflate data and Adler-32)."""
    import lzma
    import zlib

    # fed in growing pieces: almost every candidate in weights fails in its first bytes,
    # so it must not cost a copy of megabytes
    d = zlib.decompressobj() if fmt == "zlib" else lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    out = bytearray()
    pos, step = start, 64
    try:
        while pos < len(data) and len(out) < _DECODED_MAX and not d.eof:
            chunk = bytes(data[pos : pos + step])
            pos += step
            step = min(step * 4, 1 << 20)
            out += d.decompress(chunk, _DECODED_MAX - len(out))
            if fmt == "zlib" and d.unconsumed_tail:
                break  # output limit reached
    except (zlib.error, lzma.LZMAError, EOFError, ValueError, MemoryError):
        return None
    if fmt == "zlib":
        return bytes(out) if d.eof and out else None
    return bytes(out) if len(out) >= 8 else None


def _text_decodings(data: bytes):
    """(how, bytes) for every encoded run in text ``data``."""
    import base64
    import binascii

    plain = _JSON_ESC.sub(lambda m: bytes([int(m.group(1) or m.group(2), 16)]), data)
    for m in _B64_BLOCK.finditer(plain):
        run = re.sub(rb"[ \t\r\n>]", b"", m.group())
        if len(run) < 40:
            continue
        alt = b"-_" if (b"-" in run or b"_" in run) else None
        for k in range(min(4, len(run) - 39)):  # an unaligned start inside a longer run
            body = run[k:]
            cut = body.rstrip(b"=")
            # padded as it stands, or cut to whole quanta (bytes that look like base64
            # may follow the encoded run)
            for cand in (body + b"=" * (-len(body) % 4), cut[: len(cut) - len(cut) % 4]):
                try:
                    yield "base64", base64.b64decode(cand, altchars=alt)
                except (binascii.Error, ValueError):
                    continue
    for m in _HEX_RUN.finditer(plain):
        run = re.sub(rb"[ :\r\n\t]", b"", m.group())
        for k in (0, 1):
            yield "hex", _try(binascii.unhexlify, run[k : len(run) - ((len(run) - k) % 2)])
    for m in _B32_BLOCK.finditer(plain):  # RFC 4648 base32 and base32hex, wrapped too
        run = re.sub(rb"[ \t\r\n>]", b"", m.group()).rstrip(b"=")
        for k in range(min(8, max(1, len(run) - 39))):  # unaligned starts
            body = run[k:]
            body = body[: len(body) - len(body) % 8]
            for hexalpha in (False, True):
                yield "base32", _try(lambda r, h=hexalpha: _b32(r, h), body)
    for m in _A85_RUN.finditer(plain):
        run = m.group()
        yield "ascii85", _try(lambda r: base64.a85decode(r, adobe=r.startswith(b"<~")), run)
    for m in _B85_RUN.finditer(plain):
        yield "base85", _try(base64.b85decode, m.group())


def _b32(run: bytes, hexalpha: bool) -> bytes:
    import base64

    return base64.b32hexdecode(run) if hexalpha else base64.b32decode(run)


def _try(decode, run: bytes) -> bytes:
    import binascii

    try:
        return decode(run)
    except (ValueError, binascii.Error):
        return b""


def decoded_payload(data, *, text: bool, depth: int = 3) -> str:
    """A description of the first payload (pickle or archive) found after decoding
    ``data`` (see above), or "". ``text``: also look for base64, hex, Ascii85 and base85.
    Bounded: ``depth`` levels of decoding, ``_DECODED_MAX`` bytes per stream,
    ``_MAX_CANDIDATES`` candidate streams per level (more candidates: reported, the gate
    fails closed)."""
    if depth <= 0:
        return ""
    tried = 0
    streams = []
    for rx, fmt in ((_ZLIB, "zlib"), (_LZMA_ALONE, "lzma-alone")):
        for m in rx.finditer(data):
            tried += 1
            if tried > _MAX_CANDIDATES + len(data) // 2048:
                return "too many compressed-stream candidates to rule out"
            out = _inflate(data, m.start(), fmt)
            if out is not None:
                streams.append((f"{fmt} stream at byte {m.start()}", out))
    if text and len(data) <= _DECODED_MAX:
        for how, raw in _text_decodings(bytes(data)):
            tried += 1
            if tried > _MAX_CANDIDATES:
                return "too many encoded-run candidates to rule out"
            if len(raw) >= 8:
                streams.append((how, raw))
    for how, raw in streams:
        found = scan(raw, max_ops=2_000_000)
        if found:
            p = found[0]
            return f"{how} decodes to {p.kind} data ({p.detail})"
        inner = decoded_payload(raw, text=True, depth=depth - 1)
        if inner:
            return f"{how}, then {inner}"
    return ""
