"""Credentials in the syntax of tools rather than of assignments.

`.netrc` entries, password flags on command lines (`mysql -pXXX`, `--password=`,
`sshpass -p`, `docker login -p`), API-key request headers, a token as the whole userinfo
of a URL (`https://TOKEN@github.com`), Dockerfile `ENV NAME value`, and name/value pairs
(`- name: DB_PASSWORD` / `value: ...` in Kubernetes and Compose files, .NET's
`<add key="ApiKey" value="..."/>`). Each scanner is gated on a literal and bounded.
"""

from __future__ import annotations

import bisect
import re

from ._candidates import PRIORITY_CONTEXT, Hit
from ._literals import Literals
from ._secret_generic import secret_kind, value_ok
from ._text import looks_placeholder, mostly_sequential, shannon_entropy

__all__ = ["RULE_IDS", "scan_syntax"]

RULE_IDS = frozenset({"netrc-password", "cli-password-flag", "api-key-header", "url-token",
                      "dockerfile-env-secret", "name-value-secret"})

_VALUE = r"""(?:"(?P<dq>[^"\n]{1,300})"|'(?P<sq>[^'\n]{1,300})'|(?P<bare>[^\s"'`;|&<>]{1,300}))"""


def _value(m: re.Match[str]) -> tuple[int, int, str]:
    group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
    return m.start(group), m.end(group), m.group(group)


def _password_like(value: str) -> bool:
    if len(value) < 4 or value[0] in "$%{<[" or looks_placeholder(value):
        return False
    return not mostly_sequential(value, 0.8) and shannon_entropy(value) >= 1.8


# One pattern per entry keyword, each led by its literal (the engine skips to it).
_NETRC_RES = tuple(re.compile(head + r"(?:\s+(?:login|account)\s+\S{1,200}){0,2}\s+password\s+"
                              + _VALUE) for head in (r"machine[ \t]+\S{1,200}", "default"))


def _netrc(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for m in (m for rx in _NETRC_RES for m in rx.finditer(text)):
        if m.start() and not text[m.start() - 1].isspace():
            continue
        start, end, value = _value(m)
        if _password_like(value):
            hits.append(Hit("netrc-password", start, end, "high", PRIORITY_CONTEXT, (value,)))
    return hits


_MYSQL_P_RE = re.compile(r"(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlcheck|mariadb"
                         r"|mariadb-dump|mycli)\b[^\n|;&]{0,200}?[ \t]-p(?!assword)" + _VALUE)
_SEPARATE_P_RE = re.compile(r"(?:sshpass|(?:docker|podman|helm|nerdctl)[ \t]+(?:registry[ \t]+)?"
                            r"login)\b[^\n|;&]{0,200}?[ \t]-p[ \t]*" + _VALUE)
_LONG_FLAG_RE = re.compile(
    r"--(?:[a-z0-9]{1,20}-){0,3}(?:password|passwd|pass|passphrase|token|secret"
    r"|api-key|apikey|access-key|secret-key|auth-token|client-secret)(?:=|[ \t]+)" + _VALUE)
# One dash: PowerShell (`-Password x`), keytool (`-storepass x`, `-keypass x`), openssl
# (`-passin pass:x`, `-passout pass:x`), Java and Go tools (`-password=x`, `-token x`).
_SHORT_LONG_FLAG_RE = re.compile(
    r"-(?<=[ \t]-)(?:[a-z0-9]{1,20}-){0,2}(?:password|passwd|passphrase|pwd|token|secret"
    r"|apikey|api-key|accesskey|secretkey|clientsecret|client-secret|(?:src|dest)?storepass"
    r"|(?:src|dest)?keypass|pass(?:in|out)?)(?:=|:|[ \t]+)(?!-)" + _VALUE)
# PowerShell's plain-text secure string: `ConvertTo-SecureString "x" -AsPlainText`.
_SECURE_STRING_RE = re.compile(
    r"convertto-securestring[ \t]+(?:-string[ \t]+)?" + _VALUE + r"[ \t]+-asplaintext")


_TOOL_PATTERNS = (_MYSQL_P_RE, _SEPARATE_P_RE)


def _matches(pattern: re.Pattern[str], lowered: str, flags: list[int]) -> list[re.Match[str]]:
    """`pattern`'s matches; a tool's `-p` pattern is tried only on the lines that hold a
    ` -p` (at `flags`), each line once: an alternation of tool names has no literal for
    the regex engine to skip to, and searching a large text for every name cost more
    than the few lines with the flag."""
    if pattern not in _TOOL_PATTERNS:
        return list(pattern.finditer(lowered))
    found: list[re.Match[str]] = []
    done = -1
    for at in flags:
        if at < done:
            continue
        lo = lowered.rfind("\n", 0, at) + 1
        done = lowered.find("\n", at)
        done = len(lowered) if done == -1 else done
        found += pattern.finditer(lowered, lo, done)
    return found


def _cli_flags(text: str, lowered: str, literals: Literals) -> list[Hit]:
    hits: list[Hit] = []
    patterns: list[re.Pattern[str]] = []
    # `-p` as written (the lowered text also holds `-P` there).
    flags = sorted(at for literal in (" -p", "\t-p") for at in literals.positions(literal)
                   if text.startswith(literal, at))
    if flags:
        patterns += _TOOL_PATTERNS
    if "--" in literals:
        patterns.append(_LONG_FLAG_RE)
    if " -" in literals or "\t-" in literals:
        patterns.append(_SHORT_LONG_FLAG_RE)
    if "convertto-securestring" in literals:
        patterns.append(_SECURE_STRING_RE)
    for pattern in patterns:
        for m in _matches(pattern, lowered, flags):
            before = lowered[m.start() - 1] if m.start() else " "
            if before.isalnum() or before in "_-":
                continue  # inside a longer word or flag
            start, end, _ = _value(m)
            value = text[start:end]
            if value.startswith("pass:"):
                start, value = start + 5, value[5:]  # openssl's `pass:` source
            elif pattern is _SHORT_LONG_FLAG_RE and value.startswith(("env:", "file:", "fd:")):
                continue  # openssl reads it from elsewhere
            password = pattern not in _TOKEN_FLAGS or "pass" in lowered[m.start():start] or (
                "pwd" in lowered[m.start():start])
            ok = _password_like(value) if password else value_ok(value, "token", True)
            if ok and not value.startswith("-"):
                hits.append(Hit("cli-password-flag", start, end, "high", PRIORITY_CONTEXT,
                                (value,)))
    return hits


_TOKEN_FLAGS = (_LONG_FLAG_RE, _SHORT_LONG_FLAG_RE)


# A password flag after a user flag on the same command line: `psexec -u U -p P`,
# `sqlcmd -U U -P P`, `ldapsearch -D dn -w P`, `xfreerdp /u:U /p:P`. A `-p` alone is a
# port, a path or a profile as often as a password; after a user it is the password.
_PW_AFTER_USER_RE = re.compile(r"(?:-(?<=[ \t]-)[pPw][ \t]+|/(?<=[ \t]/)p(?:ass(?:word)?)?:)"
                               r"(?![-/])(?=\S{4})" + _VALUE)
_USER_FLAG_RE = re.compile(r"(?:^|[ \t])(?:-[uUlD][ \t]+|--user(?:name)?[ \t=]+|/u(?:ser)?:)"
                           r"[^\s-]")
# `net use Z: \\host\share /user:DOMAIN\name PASSWORD`, `smbclient -U name%PASSWORD`.
_NET_USE_RE = re.compile(r"/user:[^\s/]{1,100}[ \t]+" + _VALUE)
_SMB_USER_RE = re.compile(r"(?:-U[ \t]+|--user=)[^\s%\"']{1,100}%" + _VALUE)


_BIND_DN_RE = re.compile(r"(?:^|[ \t])-D[ \t]+[^\s-]")
_SETTING_RE = re.compile(r"[A-Za-z_]\w*=")
_FILE_OR_PATH_RE = re.compile(r"^[~.]?/|\\\\|^[A-Z]:\\\\"
                              r"|\.(?:txt|pem|key|json|ya?ml|conf|ini|cfg|env)$")


def _any_within(sorted_ends: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_left(sorted_ends, lo + 1)
    return i < len(sorted_ends) and sorted_ends[i] <= hi


def _user_password_flags(text: str, lowered: str, literals: Literals) -> list[Hit]:
    hits: list[Hit] = []
    found: list[re.Match[str]] = []
    if " -p" in literals or literals.in_text(" -w") or "/p" in literals:
        line_lo = line_hi = -1
        users: list[int] = []
        binds: list[int] = []
        for m in _PW_AFTER_USER_RE.finditer(text):
            if m.start() >= line_hi:
                # The user flags of each line holding a candidate, found once for the
                # line (a storm of `-p` flags must not search its line once per flag).
                line_lo = text.rfind("\n", max(0, line_hi), m.start()) + 1 or max(0, line_hi)
                line_hi = text.find("\n", m.start())
                line_hi = len(text) if line_hi == -1 else line_hi
                users = [u.end() for u in _USER_FLAG_RE.finditer(text, line_lo, line_hi)]
                binds = [u.end() for u in _BIND_DN_RE.finditer(text, line_lo, line_hi)]
            # The user flag may come before or after (`psexec -p P -u U` works too), within
            # 300 characters. `-w` is ldapsearch's password only beside its bind DN (`-D`);
            # pg_dump's `-w` means "never prompt" and takes no value.
            ends = binds if m.group(0).startswith("-w") else users
            if _any_within(ends, max(line_lo, m.start() - 300), m.start()) or _any_within(
                    ends, m.end() + 1, min(line_hi, m.end() + 300) + 1):
                found.append(m)
    if "net use" in literals and "/user:" in literals:
        found += [m for m in _NET_USE_RE.finditer(text)
                  if "net use" in lowered[max(0, m.start() - 200):m.start()]]
    if "%" in literals and ("-U" in text or "--user=" in literals):
        found += list(_SMB_USER_RE.finditer(text))
    for m in found:
        start, end, value = _value(m)
        if value[0] in "-/" or value.isdigit() or _SETTING_RE.match(value):
            continue  # the next flag, a port, or a setting (`psql -P pager=off`)
        # Given to a user's password flag, a word with digits (`Password123`) is the
        # password, not a placeholder for one: only the shape checks apply.
        if _password_like(value) and len(value) >= 6 and not _FILE_OR_PATH_RE.search(value):
            hits.append(Hit("cli-password-flag", start, end, "high", PRIORITY_CONTEXT, (value,)))
    return hits


# `.pgpass`: `host:port:database:user:password`, one entry a line.
_PGPASS_RE = re.compile(r":(?:\d{2,5}|\*):[^:\s]{1,100}:[^:\s]{1,100}:(?P<pw>[^\s:]{1,200})$",
                        re.MULTILINE)


def _pgpass(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for m in _PGPASS_RE.finditer(text):
        line_start = text.rfind("\n", max(0, m.start() - 300), m.start()) + 1
        if not line_start and m.start() > 300:
            continue  # a host name is shorter than that
        host = text[line_start:m.start()]
        if not host or host.isdigit() or any(c.isspace() or c == ":" for c in host):
            continue  # a host name, an address or `*`; not a clock (`10:30:00:00:…`)
        value = m.group("pw")
        if _password_like(value) and not value.isdigit():
            hits.append(Hit("connection-string-password", m.start("pw"), m.end("pw"), "high",
                            PRIORITY_CONTEXT, (value,)))
    return hits


_HEADER_NAMES = ("api-key", "apikey", "auth-token", "access-token", "private-token",
                 "api-token", "client-secret")
# One pattern per header name, each led by its literal.
_KEY_HEADER_RES = {name: re.compile(re.escape(name) + r"[\"']?[ \t]{0,3}:[ \t]{0,3}" + _VALUE)
                   for name in _HEADER_NAMES}


def _key_headers(text: str, lowered: str, names: list[str]) -> list[Hit]:
    hits: list[Hit] = []
    matches = [m for name in names for m in _KEY_HEADER_RES[name].finditer(lowered)]
    for m in matches:
        before = lowered[max(0, m.start() - 2):m.start()]
        if before[-1:].isalnum() or before[-1:] == "_" or (before[-1:] == "-" and before != "x-"):
            continue
        start, end, _ = _value(m)
        value = text[start:end]
        # A header name alone, without x-: only when written as a header (`-H "Token: v"`).
        if value_ok(value, "token", True):
            hits.append(Hit("api-key-header", start, end, "high", PRIORITY_CONTEXT, (value,)))
    return hits


_URL_TOKEN_RE = re.compile(r"://(?P<tok>[A-Za-z0-9_\-.~%]{16,256})@(?=[A-Za-z0-9\[])")


def _url_tokens(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for m in _URL_TOKEN_RE.finditer(text):
        token = m.group("tok")
        if value_ok(token, "token", True) and any(c.isdigit() for c in token):
            hits.append(Hit("url-token", m.start("tok"), m.end("tok"), "high", PRIORITY_CONTEXT,
                            (token,)))
    return hits


_DOCKER_ENV_RES = tuple((word, re.compile(word + r"[ \t]+(?P<name>[A-Za-z_][A-Za-z0-9_.-]{0,80})"
                                           r"[ \t]+" + _VALUE))
                        for word in ("ENV", "ARG", "setx", "setenv"))


_DOCKER_WORDS = ("ENV ", "ARG ", "ENV\t", "ARG\t", "setx ", "setenv ")


def _matches_at(text: str, word: str, pattern: re.Pattern[str],
                literals: Literals) -> list[re.Match[str]]:
    """`pattern.finditer(text)` for a pattern that starts with `word` and a blank, tried
    only where the literal search saw them: the same matches, without a pass of its own."""
    lowered = word.lower()
    starts = sorted(literals.positions(lowered + " ") + literals.positions(lowered + "\t"))
    found: list[re.Match[str]] = []
    done = 0
    for at in starts:
        if at >= done and text.startswith(word, at):
            m = pattern.match(text, at)
            if m is not None:
                found.append(m)
                done = m.end()
    return found


# The blanks that start a line (`str.strip`'s whitespace, the line break aside).
_INDENT_RE = re.compile(r"[^\S\n]*")


def _line_starters(text: str, matches: list[re.Match[str]]) -> list[re.Match[str]]:
    """The `matches` (in text order) with only blanks before them on their line.

    Each line's start and indentation are found once, from the previous match on: on one
    long line of `ENV a ENV a …`, searching back to the line start for every match made
    the scan quadratic."""
    kept: list[re.Match[str]] = []
    seen, indent_end = 0, -1
    for m in matches:
        newline = text.rfind("\n", seen, m.start())
        seen = m.start()
        if newline != -1 or indent_end < 0:
            indent_end = _INDENT_RE.match(text, newline + 1).end()  # type: ignore[union-attr]
        if indent_end >= m.start():
            kept.append(m)
    return kept


def _dockerfile(text: str, literals: Literals) -> list[Hit]:
    hits: list[Hit] = []
    matches = [m for word, rx in _DOCKER_ENV_RES
               for m in _line_starters(text, _matches_at(text, word, rx, literals))]
    for m in matches:
        kind = secret_kind(m.group("name"))
        start, end, value = _value(m)
        if kind is not None and value_ok(value, kind, m.group("bare") is None):
            hits.append(Hit("dockerfile-env-secret", start, end, "high", PRIORITY_CONTEXT,
                            (value,)))
    return hits


# (Dockerfile `ENV`/`ARG`, Windows `setx`, csh `setenv`: a name and its value.)


# `- name: DB_PASSWORD` then `value: ...`, or `key="ApiKey" value="..."`: found from the
# `value` literal, then the name looked for just before it.
_VALUE_OF_RE = re.compile(r"value[\"']?[ \t]{0,3}[=:][ \t]{0,3}" + _VALUE)
_NAME_BEFORE_RE = re.compile(
    r"(?<![\w-])(?:name|key)[\"']?[ \t]{0,3}[=:][ \t]{0,3}[\"']?(?P<name>[A-Za-z_][\w.-]{1,80})"
    r"[\"']?[ \t]{0,3},?[ \t]*(?:\r?\n[ \t]{0,40}-?[ \t]{0,4})?[\"']?$")


# Terraform: `variable "db_password" { default = "..." }`.
_TF_DEFAULT_RE = re.compile(r"variable[ \t]+\"(?P<name>[\w.-]{1,80})\"[ \t]*\{[^}]{0,300}?"
                            r"\bdefault[ \t]*=[ \t]*" + _VALUE)


# `<entry key="db_password">…</entry>`, `<property name="apiToken">…</property>`,
# `<setting name="Secret" serializeAs="String"><value>…</value>`: the element's text.
# One pattern per attribute, each led by its literal (an alternation of the two, behind a
# look-behind, tried every offset of the text).
_XML_NAMED_RES = tuple(re.compile(
    attr + r"""=["'](?P<name>[A-Za-z_][\w.-]{1,80})["'][^<>]{0,200}>"""
    r"""(?:[ \t]*<value>)?[ \t]*(?:(?P<dq>(?!))|(?P<sq>(?!))|(?P<bare>[^<>\s]{1,300}))[ \t]*</""")
    for attr in ("key", "name"))


def _name_values(text: str, literals: Literals) -> list[Hit]:
    hits: list[Hit] = []
    pairs: list[tuple[str, re.Match[str]]] = []
    for m in _VALUE_OF_RE.finditer(text):
        if m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_-"):
            continue
        named = _NAME_BEFORE_RE.search(text, max(0, m.start() - 200), m.start())
        if named is not None:
            pairs.append((named.group("name"), m))
    if literals.in_text("variable"):
        pairs += [(m.group("name"), m) for m in _TF_DEFAULT_RE.finditer(text)]
    if "</" in literals and (literals.in_text("key=") or literals.in_text("name=")):
        pairs += [(m.group("name"), m) for rx in _XML_NAMED_RES for m in rx.finditer(text)
                  if not m.start() or not (text[m.start() - 1].isalnum()
                                           or text[m.start() - 1] in "_-")]
    for name, m in pairs:
        kind = secret_kind(name)
        start, end, value = _value(m)
        if kind is not None and value_ok(value, kind, m.group("bare") is None):
            hits.append(Hit("name-value-secret", start, end, "high", PRIORITY_CONTEXT, (value,)))
    return hits


def scan_syntax(text: str, lowered: str, literals: Literals) -> list[Hit]:
    """Hits from every tool-syntax scanner whose literal `text` holds."""
    hits: list[Hit] = []
    if "machine" in literals and "password" in literals:
        hits += _netrc(text)
    hits += _cli_flags(text, lowered, literals)
    hits += _user_password_flags(text, lowered, literals)
    if ":" in text:
        hits += _pgpass(text)
    headers = [name for name in _HEADER_NAMES if name in literals]
    if headers:
        hits += _key_headers(text, lowered, headers)
    if "://" in literals:
        hits += _url_tokens(text)
    if any(literals.in_text(word) for word in _DOCKER_WORDS):
        hits += _dockerfile(text, literals)
    if "value" in literals or "default" in literals or "</" in literals:
        hits += _name_values(text, literals)
    return hits
