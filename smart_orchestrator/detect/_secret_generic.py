"""Keyword assignments: `password = "..."`, `SERVICE_TOKEN: ...`, `<apiKey>...</apiKey>`.

A keyword is found in the lower-cased text; the identifier around it is split into
words so that `primary_key`, `token_type` or `secretSize` are not mistaken for
credentials; the assigned value must then look like a credential, not like code,
a path, a version or a placeholder.
"""

from __future__ import annotations

import itertools
import math
import re

from ._candidates import PRIORITY_CONTEXT, PRIORITY_GENERIC, Hit
from ._literals import Literals
from ._text import (
    dotted_names,
    looks_like_code_identifier,
    looks_placeholder,
    mostly_sequential,
    name_parts,
    shannon_entropy,
)

__all__ = ["RULE_IDS", "scan_assignments", "secret_kind", "value_ok"]

RULE_IDS = frozenset({"password-assignment", "secret-assignment", "secret-in-prose"})

# The words that make an identifier a credential's name, found by the scanners' one
# literal search (`_literals`); True where a word boundary must follow (`pass`, not
# `passage`). No two of them match at the same offset once the boundary is checked
# (`pass` is bounded, its longer forms are not), so the earliest occurrence after a
# point is what one alternation of them would have matched there.
_KEYWORDS: dict[str, bool] = {
    "password": False, "passwd": False, "passphrase": False, "passcode": False, "pwd": False,
    "pass": True, "privkey": False, "secret": False, "token": False, "key": False,
    "auth": False, "api": False, "access": False, "credential": False, "creds": False,
    "contrase": False, "login": False, "dsn": False, "hmac": False, "mnemonic": False,
    "_pat": True, "_sk": True,
}


def _keyword_spans(lowered: str, literals: Literals) -> list[tuple[int, int]]:
    """(start, end) of every credential keyword in `lowered`, in text order."""
    spans: list[tuple[int, int]] = []
    for word, bounded in _KEYWORDS.items():
        width = len(word)
        found = literals.positions(word)
        if bounded:
            # A word character (`\w`: alphanumeric or `_`) after it is no boundary.
            spans += [(at, at + width) for at in found
                      if not (lowered[at + width:at + width + 1].isalnum()
                              or lowered[at + width:at + width + 1] == "_")]
        else:
            spans += [(at, at + width) for at in found]
    spans.sort()
    return spans


_IDENT_CHARS = r"[A-Za-z0-9_.\-$@]"
_IDENT_BACK_RE = re.compile(_IDENT_CHARS + r"{0,60}")
_IDENT_FWD_RE = re.compile(r"[A-Za-z0-9_.\-$]{0,60}")
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# From the end of an identifier to the start of its value.
_ASSIGN_RE = re.compile(
    r"""(?P<close>\\?["'`]|\])?\]?
    (?:[ \t]*:?[ \t]{1,4}[A-Za-z_][\w.<>\[\]?]{0,30}(?=[ \t]*=[^=>]))?
    [ \t]{0,8}
    (?P<op>:::=|::=|:=|\?=|\.=|\+=|=>|===?|!==?|=|:|,|>|\()
    (?P<gap>[ \t]{0,16}(?:[|>][-+]?[ \t]{0,8}(?=\r?\n))?(?:\r?\n[ \t]{0,40}(?:-[ \t]{1,4})?)?)
    (?:[rbuf]{1,2}(?=["']))?
    (?P<q>\\?["'`])?""",
    re.VERBOSE,
)
_QUOTED_VALUE_RE = re.compile(r"[^\s\"'`\\]{1,300}")
_BARE_VALUE_RE = re.compile(r"[^\s\"'`\\<>;,(){}\[\]|&]{1,300}")

_PASSWORD_WORDS = frozenset({
    "password", "passwd", "passwrd", "pwd", "pass", "passphrase", "passcode", "contrasena",
    "contraseña",
})
_SECRET_WORDS = _PASSWORD_WORDS | frozenset({
    "secret", "token", "key", "apikey", "accesskey", "secretkey", "privatekey", "authkey",
    "authtoken", "accesstoken", "refreshtoken", "apitoken", "clientsecret", "credential",
    "credentials", "creds", "cred", "auth", "login", "bearer", "jwt",
    # Abbreviations and kinds people name credentials by.
    "pat", "sk", "dsn", "hmac", "privkey", "passkey", "mnemonic", "apisecret", "signingkey",
    # gitleaks' generic keywords: `mailgun_api = ...`, `SERVICE_ACCESS: ...` (vague, below).
    "api", "access",
})
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "accesskey", "secretkey",
                    "privatekey")
# A word after the keyword that turns the name into metadata about a secret.
_DENY_AFTER = frozenset({
    "id", "ids", "name", "names", "length", "len", "size", "type", "types", "url", "uri", "urls",
    "endpoint", "path", "paths", "file", "files", "filename", "dir", "directory", "version",
    "format", "fmt", "count", "num", "number", "mode", "method", "methods", "policy", "header",
    "headers", "field", "fields", "prefix", "suffix", "class", "kind", "style", "label",
    "enabled", "enable", "disabled", "required", "expiry", "expires", "expiration", "ttl",
    "timeout", "index", "idx", "ref", "location", "env", "var", "variable", "param", "params",
    "parameter", "regex", "pattern", "query", "sep", "separator", "char", "chars", "list", "map",
    "dict", "set", "cache", "manager", "mgr", "provider", "helper", "handler", "generator",
    "factory", "validator", "error", "errors", "exception", "message", "msg", "text", "title",
    "description", "hint", "help", "input", "event", "events", "callback", "fn", "func",
    "function", "option", "options", "spec", "schema", "bits", "strength", "usage", "scope",
    "scopes", "audience", "issuer", "request", "response", "host", "port", "email", "owner",
    "source", "up", "down", "left", "right", "press", "pressed", "board", "code", "codes",
    "frame", "stroke", "word", "pair", "ring", "chain", "store", "tab", "vault", "hash",
    "signature", "signatures", "alias", "selector", "mesh", "meshing", "storetype", "service",
    "col", "column", "row", "sort", "order", "bytes", "iterator", "iter", "stream", "reader",
    "writer", "parser", "lexer", "tokenizer", "kwargs", "args", "object", "obj", "node", "tree",
    "info", "item", "items", "entry", "entries", "mapping", "slot", "slots", "attr",
    "attribute", "attrs",
})
# A word before the keyword that makes the whole name something other than a credential.
_DENY_BEFORE = frozenset({
    "public", "pub", "primary", "foreign", "unique", "sort", "partition", "range", "cache",
    "lookup", "dict", "map", "row", "column", "col", "composite", "natural", "surrogate",
    "sequence", "schema", "bucket", "hot", "next", "prev", "previous", "page", "continuation",
    "pagination", "cursor", "sync", "csrf", "xsrf", "max", "min", "num", "idx", "index",
    "translation", "msg", "label", "locale", "authenticity", "group", "item", "object", "hash",
    "dedup", "idempotency", "registry", "sentinel", "fake", "dummy", "mock", "example",
    "sample", "placeholder", "is", "has", "get", "use", "random", "parse", "tokenize",
    "expect", "expected",
})

_FILE_EXT_RE = re.compile(
    r"\.(?:pem|key|crt|cer|der|p12|pfx|jks|keystore|keytab|json|ya?ml|toml|ini|cfg|conf|txt|env"
    r"|py|js|ts|sh|png|jpe?g|gif|svg|html?|xml|csv|log|gpg|asc|pub)$",
    re.IGNORECASE,
)
_VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)*(?:[-.][A-Za-z0-9]+)*$")
_EMAIL_RE = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_REGEX_SYNTAX_RE = re.compile(r"\[[^\]]*-[^\]]*\]|\{\d+(?:,\d*)?\}|\(\?[:=!<]|\\[dws]")
_NAMEY_WORDS = frozenset({"key", "keys", "token", "secret", "password", "passwd", "private",
                          "public", "auth", "credential", "credentials"})


def _words(identifier: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(identifier)]


def _secret_kind(identifier: str) -> str | None:
    """"password", "token" or "vague" when the identifier names a credential, else None."""
    words = _words(identifier)
    for i in range(len(words) - 1, -1, -1):
        word = words[i]
        is_secret = word in _SECRET_WORDS or (
            word.endswith(_SECRET_SUFFIXES) and word not in ("tokenizer",))
        if not is_secret:
            continue
        after = words[i + 1:]
        if any(w in _DENY_AFTER for w in after) or len(after) > 3:
            return None
        if any(w in _DENY_BEFORE for w in words[:i]):
            return None
        if word in _PASSWORD_WORDS or word.endswith(("password", "passwd")):
            return "password"
        if word in _ALWAYS_VAGUE or (len(words) == 1 and word in _VAGUE_WORDS):
            return "vague"
        return "token"
    return None


# A bare `key`, `auth` or `login` names many things besides credentials (dictionary keys,
# sort keys, login names): such assignments need a longer, more random value.
_VAGUE_WORDS = frozenset({"key", "auth", "login"})
# Names a credential only sometimes, whatever words come before (`mailgun_api`,
# `ACCESS_LEVEL`): always a vague name.
_ALWAYS_VAGUE = frozenset({"api", "access"})


_DIGIT_RE = re.compile(r"\d")
_WORDLIKE_RE = re.compile(r"[A-Z]?[a-z]{3,}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_$][\w$]*")


_CAMEL_HUMP_RE = re.compile(r"[a-z][A-Z][a-z]")


def _wordy_identifier(value: str) -> bool:
    """camelCase words with a digit or two: `defaultToConfig2`, not `l70sfohjtve9pz4u`."""
    if not _IDENTIFIER_RE.fullmatch(value) or sum(c.isdigit() for c in value) > 2:
        return False
    if not _CAMEL_HUMP_RE.search(value):
        return False
    letters = sum(c.isalpha() for c in value)
    return sum(map(len, _WORDLIKE_RE.findall(value))) >= 0.7 * letters


def _mixed(value: str) -> bool:
    letters = [c for c in value if c.isalpha()]
    if sum(map(len, _WORDLIKE_RE.findall(value))) >= 0.6 * len(letters):
        return False  # `defaultToConfig2`: words, whatever their case
    upper = sum(c.isupper() for c in letters)
    # Case switching every few letters: `aB3dE5` rather than `MyApp2Config`, whose case
    # changes twice a word.
    switches = sum(a.isupper() != b.isupper() for a, b in itertools.pairwise(letters))
    return (0 < upper < len(letters) and switches >= max(4, len(letters) // 3)
            and shannon_entropy(value) >= 3.5)


_HEX_RE = re.compile(r"[0-9a-fA-F-]+")
_PW_SYMBOL_RE = re.compile(r"[!@#$%^&*+=?~]")
_SEPARATORS_RE = re.compile(r"[-_.]")
_DIGITS_RE = re.compile(r"\d{12,}")


def _value_ok(value: str, kind: str, quoted: bool) -> bool:
    """Whether `value` looks like a credential rather than code, a name or a placeholder."""
    size = len(value)
    if size < (6 if kind == "password" else 10) or looks_placeholder(value):
        return False
    if "://" in value or value.startswith(("/", "./", "../", "~/", "\\")):
        return False
    if _FILE_EXT_RE.search(value) or _EMAIL_RE.fullmatch(value) or _VERSION_RE.search(value):
        return False
    # Upper, lower and digits together, with a random stretch: a credential's alphabet,
    # even with `-` or `.` inside (`Xk9-pQ2.zz`) or a word in it (Notion's `secret_...`).
    random_part = _mixed(value) and _DIGIT_RE.search(value) is not None
    # A quoted password with digits is a literal, whatever it looks like: `'zw5Oglshr6MU'`
    # has the shape of an identifier but no program names a variable so.
    literal_password = (kind == "password" and quoted and _DIGIT_RE.search(value) is not None
                        and "." not in value and not _wordy_identifier(value))
    if not random_part and (dotted_names(value) or (
            looks_like_code_identifier(value) and not literal_password)):
        return False
    if not quoted and not random_part and _wordy_identifier(value):
        return False  # `cancelToken: defaultToConfig2`: a reference to code, not a value
    if _REGEX_SYNTAX_RE.search(value):
        return False
    if value.lower().startswith(("password", "passw0rd")) and not (
            # `"Password123!"` quoted is a weak password, still a password; `password_hash`
            # or `passwordConfirm` is a name.
            quoted and _DIGIT_RE.search(value) is not None and "_" not in value
            and not _wordy_identifier(value)):
        return False
    if not random_part and any(part.lower() in _NAMEY_WORDS for part in name_parts(value)):
        # `rust_openssl.MLKEM768PrivateKey`: a type or attribute named after a key.
        return False
    if not _DIGIT_RE.search(value) and not (
            # A quoted password with a symbol among its letters: `supersecret!`, `abc$de&f`.
            kind == "password" and quoted and _PW_SYMBOL_RE.search(value) is not None
            and sum(c.isalpha() for c in value) >= 4) and not (
            kind == "password" and size >= 8 and value.lower() != value
            and value.upper() != value and not value.istitle()  # `"Passwort"`: a label
            and (quoted or _mixed(value))):
        return False
    if mostly_sequential(value):
        return False
    entropy = shannon_entropy(value)
    if _DIGITS_RE.fullmatch(value):
        # Numeric client ids and account numbers: digits carry at most 3.3 bits each.
        return kind == "token" and entropy >= 2.3
    if kind == "vague":
        # Words joined by separators (`read-write-admin-2024`) are a setting, not a key.
        parts = _SEPARATORS_RE.split(value)
        wordy = sum(p.isalpha() and len(p) >= 3 for p in parts)
        if wordy >= 2 and wordy >= len(parts) - 1:
            return False
        return size >= 20 and entropy >= (3.3 if _HEX_RE.fullmatch(value) else 3.5)
    if kind == "password":
        return entropy >= min(2.5, math.log2(size) - 0.5)
    if _HEX_RE.fullmatch(value):
        # Sixteen hex characters rarely reach three bits each even when random.
        return entropy >= 2.7
    return entropy >= min(3.0, math.log2(size) - 0.7)


_IDENT_SET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-$@")


def _identifier_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    left = start
    if start and text[start - 1] in _IDENT_SET:
        back = _IDENT_BACK_RE.match(text[max(0, start - 60):start][::-1])
        left = start - (back.end() if back else 0)
        while left < start and text[left] in ".@":
            left += 1
    if end < len(text) and text[end] in _IDENT_SET:
        fwd = _IDENT_FWD_RE.match(text, end)
        return left, fwd.end() if fwd else end
    return left, end


_SETTER_RE = re.compile(r"(?:set|with|put)_?[A-Za-z]", re.IGNORECASE)


# Groovy, Gradle and Ruby DSLs call a setter without an operator: `password 'x'`
# starting its statement (`credentials { username 'u'; password 'p' }`).
_COMMAND_VALUE_RE = re.compile(r"[ \t]+(?P<q>[\"'])(?P<v>[^\"'\n\\]{1,300})(?P=q)"
                               r"[ \t]*(?=\r?\n|$|[;}])")


def _command_value(text: str, left: int, ident_end: int) -> tuple[int, int, bool] | None:
    m = _COMMAND_VALUE_RE.match(text, ident_end)
    if m is None:
        return None
    line_start = text.rfind("\n", max(0, left - 200), left) + 1
    before = text[line_start or max(0, left - 200):left]
    if before.replace("{", ";").rsplit(";", 1)[-1].strip():
        return None  # the name must start its statement
    return m.start("v"), m.end("v"), True


def _yaml_next_line(text: str, left: int, gap: str) -> bool:
    """`token:` ending a YAML line, its value on the next, deeper line (`|`, `>-` block
    scalars and `- ` list items included)."""
    line_start = text.rfind("\n", max(0, left - 200), left) + 1
    before = text[line_start or max(0, left - 200):left]
    if before.strip(" \t-"):
        return False  # the key must start its line
    indent = len(before) - len(before.lstrip(" \t"))
    after = gap.rsplit("\n", 1)[1]
    return len(after) - len(after.lstrip(" \t")) > indent


def _value_span(text: str, left: int, ident_end: int) -> tuple[int, int, bool] | None:
    """(start, end, quoted) of the value assigned to the identifier ending at ident_end."""
    m = _ASSIGN_RE.match(text, ident_end)
    if m is None:
        return _command_value(text, left, ident_end)
    op, quote = m.group("op"), m.group("q")
    gap = m.group("gap")
    if "\n" in gap and op != ">" and not (op == ":" and _yaml_next_line(text, left, gap)):
        return None
    if "\n" not in gap and gap.strip():
        return None  # a block indicator (`|`, `>-`) must end its line
    if op == ">" and (left == 0 or text[left - 1] != "<"):
        return None
    if op in (",", "==", "===", "!=", "!==") and not (quote and m.group("close")):
        return None
    if op == "(" and not (quote and _SETTER_RE.match(text[left:ident_end].rsplit(".", 1)[-1])):
        return None  # only a setter's literal argument: `setPassword("…")`, `with_token('…')`
    if quote:
        v = _QUOTED_VALUE_RE.match(text, m.end())
        if v is None or not text.startswith(quote, v.end()):
            return None
        return v.start(), v.end(), True
    v = _BARE_VALUE_RE.match(text, m.end())
    if v is None:
        return None
    tail = text[v.end():v.end() + 1]
    if tail in ("(", "[", "{"):
        return None
    return v.start(), v.end(), False


def scan_assignments(text: str, lowered: str, literals: Literals) -> list[Hit]:
    """Hits for credential-looking values assigned to credential-named identifiers."""
    hits: list[Hit] = []
    kinds: dict[str, str | None] = {}
    verdicts: dict[tuple[str, str, bool], bool] = {}
    pos = 0
    for kw_start, kw_end in _keyword_spans(lowered, literals):
        if kw_start < pos:
            continue  # inside an identifier or a value already read
        left, ident_end = _identifier_bounds(text, kw_start, kw_end)
        pos = max(ident_end, kw_end)
        identifier = text[left:ident_end]
        kind = kinds.get(identifier, "?")
        if kind == "?":
            kind = kinds[identifier] = _secret_kind(identifier)
        if kind is None:
            continue
        span = _value_span(text, left, ident_end)
        if span is None:
            prose = _prose_value(text, ident_end)
            if prose is not None:
                hits.append(prose)
                pos = max(pos, prose.end)
            continue
        start, end, quoted = span
        pos = max(pos, end)
        value = text[start:end]
        key = (value, kind, quoted)
        ok = verdicts.get(key)
        if ok is None:
            ok = verdicts[key] = _value_ok(value, kind, quoted)
        if not ok and kind == "password" and _ENV_NAME_RE.fullmatch(identifier):
            ok = _env_password(value)
        if not ok and "\n" in text[ident_end:start]:
            # A YAML key whose next line is not its credential: that line is read on
            # its own (`secret:` above `key: …` is a mapping, not a value).
            pos = max(ident_end, kw_end)
            continue
        if ok:
            rule_id = "password-assignment" if kind == "password" else "secret-assignment"
            hits.append(Hit(rule_id, start, end, "medium", PRIORITY_GENERIC, (value,)))
    return hits


# An environment variable's name (`POSTGRES_PASSWORD`, `MYSQL_ROOT_PASSWORD`): in a `.env`
# file, a Compose `environment:` block or a shell, its value is a literal, never a
# reference to code, so a password without digits (`rootpass`) is still a password.
_ENV_NAME_RE = re.compile(r"(?:export[ \t]+)?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_ENV_VALUE_RE = re.compile(r"[A-Za-z0-9!@#%^&*+=?~_.-]{6,64}")


def _env_password(value: str) -> bool:
    if not _ENV_VALUE_RE.fullmatch(value) or looks_placeholder(value) or "." in value:
        return False
    if _ENV_NAME_RE.fullmatch(value) or value.lower().startswith(("pass", "secret")):
        return False  # another variable's name, or the word itself
    if value.lower() in ("required", "optional", "disabled", "enabled", "prompt", "none"):
        return False
    return not mostly_sequential(value, 0.8) and shannon_entropy(value) >= 2.0


# "the token you asked for: X", "use this key for the deploy X", "credentials X": a few
# words between the credential's name and a value that is random on its face.
_PROSE_RE = re.compile(r"(?:[ \t]{1,3}[A-Za-z]{1,12}){0,5}[ \t]{0,3}[:=\-\u2014]?[ \t]{0,3}"
                       r"[`'\"(<]?"
                       r"(?P<v>[A-Za-z0-9_\-+/=.~]{16,200})(?![A-Za-z0-9_\-+/=~])")
_PROSE_HEX_RE = re.compile(r"[0-9a-f]{32,}")


def _random_alnum(value: str) -> bool:
    """One case and digits spread through it: `l70sfohjtve9pz4u0cph`, `Q7ZK2M9XW4`."""
    size = len(value)
    digits = sum(c.isdigit() for c in value)
    return (size >= 20 and value.isalnum() and digits >= 3 and digits <= size * 0.7
            and shannon_entropy(value) >= min(3.8, math.log2(size) - 0.6))


def _prose_value(text: str, ident_end: int) -> Hit | None:
    m = _PROSE_RE.match(text, ident_end)
    if m is None:
        return None
    value = m.group("v").rstrip(".")
    if not _DIGIT_RE.search(value) or not _value_ok(value, "token", True):
        return None
    if not (_mixed(value) or _PROSE_HEX_RE.fullmatch(value) or _random_alnum(value)):
        return None
    start = m.start("v")
    # Named by the text, so it outranks the same token found by shape alone.
    return Hit("secret-in-prose", start, start + len(value), "medium", PRIORITY_CONTEXT,
               (value,))


# For scanners of other syntaxes that name a credential and give its value.
secret_kind = _secret_kind
value_ok = _value_ok
