"""Credentials recognised by their surroundings rather than by a prefix.

Private key blocks, passwords inside URLs and connection strings, HTTP authorization
headers, `curl -u user:pass`, and formats whose distinctive part sits mid-token
(Azure client secrets, Telegram bot tokens, webhooks). Every scanner here is gated on
a literal that ordinary text rarely contains and uses bounded patterns only.
"""

from __future__ import annotations

import base64
import binascii
import re

from ._candidates import PRIORITY_CONTEXT, PRIORITY_FORMAT, Hit
from ._literals import Literals, windows_at
from ._text import (
    anchor_windows,
    looks_like_code_identifier,
    looks_placeholder,
    mostly_sequential,
    shannon_entropy,
)

__all__ = ["RULE_IDS", "scan_context"]

_KEY_BEGIN_RE = re.compile(r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END_RE = re.compile(r"-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----")
_KEY_BODY_NOISE_RE = re.compile(r"\\[nr]|\s|^[A-Za-z-]+: .*$|\"|'|,|\+$", re.MULTILINE)
_BASE64_CHARS_RE = re.compile(r"[A-Za-z0-9+/=]")
_MAX_KEY_BLOCK = 64_000


_KEY_LINE_RE = re.compile(r"[A-Za-z0-9+/]{32,}={0,2}")


def _decorated_key(raw: str) -> bool:
    """Key lines with text between or beside them (comments, markup): still a key.

    Prose and placeholders have no runs of 32+ base64 characters; a real key body is
    made of them, whatever was written around them to dilute it.
    """
    runs = _KEY_LINE_RE.findall(raw)
    material = "".join(runs)
    return len(runs) >= 2 and len(material) >= 64 and not looks_placeholder(material[:200])


def _private_keys(text: str) -> list[Hit]:
    hits: list[Hit] = []
    begins = list(_KEY_BEGIN_RE.finditer(text))
    for i, begin in enumerate(begins):
        limit = begins[i + 1].start() if i + 1 < len(begins) else len(text)
        end = _KEY_END_RE.search(text, begin.end(), min(limit, begin.end() + _MAX_KEY_BLOCK))
        if end is None:
            continue
        raw = text[begin.end():end.start()]
        body = _KEY_BODY_NOISE_RE.sub("", raw)
        b64 = len(_BASE64_CHARS_RE.findall(body))
        clean = b64 >= 40 and b64 >= len(body) * 0.9 and not looks_placeholder(body[:200])
        if not clean and not _decorated_key(raw):
            continue
        header = begin.group(0).strip("-")
        hits.append(Hit("private-key", begin.start(), end.end(), "high", PRIORITY_FORMAT,
                        (header, text[begin.start():end.end()])))
    return hits


_DB_SCHEMES = frozenset({
    "postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
    "amqp", "amqps", "mssql", "sqlserver", "oracle", "cockroachdb", "clickhouse", "cassandra",
    "neo4j", "bolt", "couchdb", "memcached", "ldap", "ldaps", "mqtt", "nats", "kafka", "snowflake",
    "db2", "sqlite", "jdbc", "odbc", "elasticsearch", "influxdb", "rabbitmq", "smtp", "smtps",
})
_URL_CRED_RE = re.compile(
    r"://(?P<user>[^\s:/?#@'\"<>\[\]{},]{0,128}):(?P<pw>[^\s:/?#'\"<>,]{1,256})@(?=[A-Za-z0-9\[_])"
)
_SCHEME_BACK_RE = re.compile(r"[A-Za-z0-9+.\-]{1,30}")


def _password_ok(password: str, user: str = "") -> bool:
    if len(password) < 3 or looks_placeholder(password) or password == user:
        return False
    if password[0] in "$%{[<" or password.startswith(("#{", "@{")):
        return False
    return not mostly_sequential(password, 0.8) and shannon_entropy(password) >= 1.5


def _url_credentials(text: str) -> list[Hit]:
    hits: list[Hit] = []
    verdicts: dict[tuple[str, str], bool] = {}
    for m in _URL_CRED_RE.finditer(text):
        user, password = m.group("user"), m.group("pw")
        ok = verdicts.get((password, user))
        if ok is None:
            ok = verdicts[password, user] = _password_ok(password, user)
        if not ok:
            continue
        back = _SCHEME_BACK_RE.match(text[max(0, m.start() - 30):m.start()][::-1])
        scheme = text[m.start() - back.end():m.start()].lower() if back else ""
        scheme = scheme.split(":")[-1]
        db = scheme in _DB_SCHEMES or scheme.startswith("jdbc")
        rule = "connection-string-password" if db else "basic-auth-url"
        hits.append(Hit(rule, m.start("pw"), m.end("pw"), "high", PRIORITY_CONTEXT, (password,)))
    return hits


# ADO.NET / JDBC / ODBC style: `...;Password=secret;` or `?user=x&password=secret`.
# ODBC wraps a value holding `;` in braces (`PWD={p;w}`); spaces may surround `=`.
_CONN_PW_RE = re.compile(r"(?:password|passwd|pwd)[ \t]{0,3}=[ \t]{0,3}"
                         r"(?:\{(?P<braced>[^{}\n]{1,128})\}|(?P<pw>[^;&\s\"'<>]{1,128}))")
_CONN_CONTEXT_RE = re.compile(r"(?:server|data source|host|hostaddr|database|dbname|initial catalog"
                              r"|user id|uid|user|username|dsn|driver|provider)[ \t]{0,3}="
                              r"|jdbc:|odbc")


_LIBPQ_RE = re.compile(r"(?<![\w.-])(?:host|hostaddr|port|dbname|user|sslmode)=[^\s=]")


def _connection_strings(text: str, lowered: str) -> list[Hit]:
    hits: list[Hit] = []
    find, search = lowered.find, _CONN_CONTEXT_RE.search
    # Repeated values are judged once.
    verdicts: dict[str, bool] = {}
    for m in _CONN_PW_RE.finditer(lowered):
        at = m.start()
        if at and lowered[at - 1] not in ";?& \t\"'":
            continue
        # The same line, at most 300 characters back, searched in place: slicing a copy of
        # it for every one of thousands of `password=` on a line made this quadratic-like.
        lo = max(0, at - 300)
        lo = lowered.rfind("\n", lo, at) + 1 or lo
        context = search(lowered, lo, at)
        if context is None:
            continue
        if find(";", lo, at) == -1 and find("&", lo, at) == -1 and find("jdbc:", lo, at) == -1 and (
                # libpq's `host=db user=app password=…`: keywords separated by spaces.
                len(_LIBPQ_RE.findall(lowered, lo, at)) < 2):
            continue
        group = "braced" if m.group("braced") is not None else "pw"
        password = text[m.start(group):m.end(group)]
        ok = verdicts.get(password)
        if ok is None:
            ok = verdicts[password] = _password_ok(password)
        if ok:
            hits.append(Hit("connection-string-password", m.start(group), m.end(group), "high",
                            PRIORITY_CONTEXT, (password,)))
    return hits


_AUTH_VALUE = r"(?P<value>[A-Za-z0-9_\-.~+/=@:!%]{8,2000})"
_AUTH_HEADER_RES = (
    re.compile(r"authorization[\"']?[ \t]{0,3}[:=][ \t]{0,5}[\"']?"
               r"(?:(?P<scheme>bearer|basic|token|api-token|apikey|digest|bot|sso-key)[ \t]{1,3})?"
               + _AUTH_VALUE),
    re.compile(r"bearer[ \t]{1,3}" + _AUTH_VALUE),
)


def _auth_value_ok(value: str, scheme: str | None) -> bool:
    if len(value) < 8 or value[0] in "$%{<[":
        return False
    if scheme == "basic":
        try:
            raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            return False
        return b":" in raw and not looks_placeholder(value)
    if len(value) < 12 or not _DIGIT_RE.search(value) or shannon_entropy(value) < 3.0:
        return False
    return not (looks_placeholder(value) or mostly_sequential(value)
                or looks_like_code_identifier(value))


_DIGIT_RE = re.compile(r"\d")


def _auth_headers(text: str, lowered: str) -> list[Hit]:
    hits: list[Hit] = []
    verdicts: dict[tuple[str, str | None], bool] = {}
    matches = [m for rx in _AUTH_HEADER_RES for m in rx.finditer(lowered)]
    for m in matches:
        start, end = m.span("value")
        value = text[start:end].rstrip(".,:")
        key = (value, m.groupdict().get("scheme"))
        ok = verdicts.get(key)
        if ok is None:
            ok = verdicts[key] = _auth_value_ok(*key)
        if ok:
            hits.append(Hit("authorization-header", start, start + len(value), "high",
                            PRIORITY_CONTEXT, (value,)))
    return hits


_CURL_USER_RE = re.compile(
    r"-(?:u|-user)(?:=|[ \t]{1,5})"
    r"(?:\"(?P<dq>[^\"\n]{1,200})\"(?::\"(?P<dq2>[^\"\n]{1,200})\")?"
    r"|'(?P<sq>[^'\n]{1,200})'"
    # A bare value without a colon is never reported; the look-ahead rejects it inside the
    # regex engine, so a run of `-u` flags costs no Python work per flag.
    r"|(?P<bare>(?=[^\s\"']{0,200}:)[^\s\"']{1,200}(?::'[^'\n]{1,200}')?))"
)


def _curl_users(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for m in _CURL_USER_RE.finditer(text):
        if m.start() and text[m.start() - 1] not in " \t\n":
            continue
        group = m.lastgroup or "bare"
        if group == "dq2":
            start, value = m.start("dq2"), m.group("dq2")
            user = m.group("dq")
        else:
            raw = m.group(group)
            if ":" not in raw:
                continue
            user, _, value = raw.partition(":")
            start = m.start(group) + len(user) + 1
            if not value:
                start, value, user = m.start(group), user, ""
        quote = value[:1] if value[:1] in "'\"" else ""
        value = value.strip("'\"")
        start += len(quote)
        candidate = value.strip("{} ")
        start += value.find(candidate)
        if len(candidate) < 3 or looks_placeholder(m.group(0)):
            continue
        if _password_ok(candidate, user.strip("'\"{}")):
            hits.append(Hit("curl-basic-auth", start, start + len(candidate), "high",
                            PRIORITY_CONTEXT, (candidate,)))
    return hits


# Formats whose distinctive marker is not at the token start; each gated by a literal.
_ANCHORED: tuple[tuple[str, str, str, float], ...] = (
    ("q~", "azure-ad-client-secret",
     r"(?<![\w~.-])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])", 3.0),
    (":a", "telegram-bot-token",
     r"(?<![\w:])\d{5,16}:A[A-Za-z0-9_-]{34}(?![\w-])", 3.0),
    ("|", "facebook-access-token", r"(?<!\w)\d{15,16}\|[0-9A-Za-z_-]{27,40}(?![\w-])",
     3.0),
    ("-us", "mailchimp-api-key", r"(?<![A-Za-z0-9])[0-9a-f]{32}-us\d{1,2}(?!\w)", 3.0),
    ("hooks.slack.com", "slack-webhook",
     r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}", 3.0),
    ("webhook.office.com", "teams-webhook",
     r"[a-z0-9]+\.webhook\.office\.com/webhookb2/[\w@/-]{60,250}", 3.0),
    ("/api/webhooks/", "discord-webhook",
     r"discord(?:app)?\.com/api/webhooks/\d{17,20}/[\w-]{60,68}", 3.0),
    ("accountkey=", "azure-storage-key",
     r"(?i:AccountKey)=(?P<s>[A-Za-z0-9+/]{86,88}={0,2})", 4.0),
    ("atlasv1", "terraform-api-token",
     r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}(?![\w=-])", 3.5),
    ("_mmk", "maxmind-license-key",
     r"(?<![\w])[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk(?![\w])", 3.5),
    ("contribsys", "sidekiq-secret",
     r"(?i:BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM)[\"']?[ \t]*[:=][ \t]*[\"']?"
     r"(?P<s>[a-f0-9]{8}:[a-f0-9]{8})(?![\w])", 0.0),
    # Azure shared access signatures: `sig=` beside the other SAS parameters.
    ("sig=", "azure-sas-token",
     r"(?i:[?&](?:sv|se|sp|sr|st|spr|srt|ss|skoid|sktid)=[^\s&\"'<>]{1,100}"
     r"(?:&[a-z]{2,6}=[^\s&\"'<>]{0,100}){0,12}&sig=)(?P<s>[A-Za-z0-9%+/=]{20,120})", 3.5),
    ("sig=", "azure-sas-token",
     r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{20,120})(?=&(?i:sv|se|sp|sr|st)=)", 3.5),
    # Password hashes (bcrypt, sha-crypt, md5-crypt, Apache apr1, argon2): crackable
    # offline, so as sensitive as the password for a weak one.
    ("$2", "password-hash", r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}(?![./A-Za-z0-9$])", 3.5),
    ("$6$", "password-hash",
     r"\$6\$(?:rounds=\d{1,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}(?![./A-Za-z0-9$])", 3.5),
    ("$5$", "password-hash",
     r"\$5\$(?:rounds=\d{1,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9$])", 3.5),
    ("$1$", "password-hash", r"\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}(?![./A-Za-z0-9$])", 3.0),
    ("$apr1$", "password-hash",
     r"\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}(?![./A-Za-z0-9$])", 3.0),
    ("$argon2", "password-hash",
     r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{11,64}\$[A-Za-z0-9+/]{22,128}"
     r"(?![A-Za-z0-9+/$])", 3.5),
    # yescrypt (the default of current Debian, Fedora, Arch), scrypt `$7$`, Cisco type 8
    # (PBKDF2) and 9 (scrypt), phpass (WordPress, phpBB).
    ("$y$", "password-hash",
     r"\$g?y\$[./A-Za-z0-9]{1,12}\$[./A-Za-z0-9]{1,86}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9$])", 3.5),
    ("$7$", "password-hash", r"\$7\$[./A-Za-z0-9]{11,64}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9$])",
     3.5),
    ("$9$", "password-hash", r"\$9\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9$])",
     3.5),
    ("$8$", "password-hash", r"\$8\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9$])",
     3.5),
    ("$p$", "password-hash", r"\$P\$[./A-Za-z0-9]{31}(?![./A-Za-z0-9$])", 3.5),
    ("$h$", "password-hash", r"\$H\$[./A-Za-z0-9]{31}(?![./A-Za-z0-9$])", 3.5),
    # Kerberos AS-REP and TGS-REP hashes as roasting tools print them (etype 23, 17, 18).
    ("$krb5", "password-hash",
     r"\$krb5(?:asrep|tgs|pa)\$(?:23|17|18)\$\S{0,400}?\$[0-9a-fA-F]{64}", 3.0),
    # Django's and passlib's PBKDF2 / argon2 / bcrypt-sha256 records.
    ("pbkdf2_sha", "password-hash",
     r"(?<![\w$])pbkdf2_sha(?:1|256|512)\$\d{4,7}\$[A-Za-z0-9./]{8,64}\$[A-Za-z0-9+/]{27,88}={0,2}"
     r"(?![A-Za-z0-9+/=])", 3.5),
    ("$pbkdf2", "password-hash",
     r"\$pbkdf2(?:-sha(?:1|256|512))?\$\d{3,7}\$[./A-Za-z0-9]{8,64}\$[./A-Za-z0-9]{27,88}"
     r"(?![./A-Za-z0-9])", 3.5),
    # LDAP userPassword schemes (`{SSHA}base64`, `{SHA256}…`).
    ("{ssha", "password-hash",
     r"\{(?i:SSHA(?:256|512)?)\}[A-Za-z0-9+/]{20,200}={0,2}(?![A-Za-z0-9+/=])", 3.5),
    ("{sha", "password-hash",
     r"\{(?i:SHA(?:256|512)?)\}[A-Za-z0-9+/]{20,200}={0,2}(?![A-Za-z0-9+/=])", 3.5),
    # pwdump / secretsdump lines: `user:RID:LM:NT:::`.
    (":::", "password-hash",
     r"(?m:^)[^\s:]{1,64}:\d{1,10}:(?P<s>[0-9a-fA-F]{32}:[0-9a-fA-F]{32}):::", 2.5),
    # MySQL's mysql_native_password digest: `*` and 40 upper-case hex.
    ("'*", "password-hash", r"(?<=')\*[0-9A-F]{40}(?=')", 3.0),
    ("service_account", "gcp-service-account",
     r"\"type\"[ \t]*:[ \t]*\"(?P<s>service_account)\"", 0.0),
)


# Every password-hash literal at once: `$` is common in code, the marks after it are not.
_HASH_MARK_RE = re.compile("\\$(?:" + "|".join(sorted(
    {re.escape(literal[1:]) for literal, _, _, _ in _ANCHORED if literal.startswith("$")},
    key=len, reverse=True)) + ")")


_HEX_TAIL_RE = re.compile(r"[0-9a-fA-F]*")


# A hash is not the password itself, and a service-account marker is not its key.
_MEDIUM = frozenset({"gcp-service-account", "password-hash"})


def _anchored(text: str, lowered: str, literals: Literals) -> list[Hit]:
    hits: list[Hit] = []
    size = len(text)
    verdicts: dict[tuple[str, float], bool] = {}  # repeated secrets are judged once
    marks = {m.group() for m in _HASH_MARK_RE.finditer(lowered)}
    for literal, rule_id, source, min_entropy in _ANCHORED:
        if literal.startswith("$"):
            if literal not in marks:
                continue
            windows = anchor_windows(lowered, literal, _WINDOW, _WINDOW)
        elif literal in literals:
            windows = windows_at(literals.positions(literal), len(literal), _WINDOW, _WINDOW,
                                 size)
        else:
            continue
        pattern = re.compile(source)
        group = "s" if "s" in pattern.groupindex else 0
        for lo, hi in windows:
            for m in pattern.finditer(text, lo, hi):
                if m.end() == hi < size:
                    continue
                secret = m.group(group)
                if min_entropy:
                    ok = verdicts.get((secret, min_entropy))
                    if ok is None:
                        # A hash's `$id$` fields read as a template variable: judge its body.
                        body = secret.rsplit("$", 1)[-1] if rule_id == "password-hash" else secret
                        ok = verdicts[secret, min_entropy] = not (
                            shannon_entropy(secret) < min_entropy or looks_placeholder(body))
                    if not ok:
                        continue
                severity = "medium" if rule_id in _MEDIUM else "high"
                end = m.end(group)
                if literal == "$krb5":
                    # Its encrypted part runs to thousands of characters, past any window.
                    end = _HEX_TAIL_RE.match(text, end).end()  # type: ignore[union-attr]
                hits.append(Hit(rule_id, m.start(group), end, severity, PRIORITY_FORMAT,
                                (text[m.start(group):end],)))
    return hits


RULE_IDS = frozenset({rule_id for _, rule_id, _, _ in _ANCHORED} | {
    "private-key", "connection-string-password", "basic-auth-url", "authorization-header",
    "curl-basic-auth"})

# Longer than any anchored format, so a window always holds a whole secret.
_WINDOW = 320


def scan_context(text: str, lowered: str, literals: Literals) -> list[Hit]:
    """Hits from every context-gated scanner."""
    hits = _anchored(text, lowered, literals)
    if "-----begin" in literals:
        hits += _private_keys(text)
    if "://" in literals:
        hits += _url_credentials(text)
    if "password" in literals or "pwd" in literals:
        hits += _connection_strings(text, lowered)
    if "authorization" in literals or "bearer" in literals:
        hits += _auth_headers(text, lowered)
    if literals.in_text(" -u") or literals.in_text("--user"):
        hits += _curl_users(text)
    return hits
