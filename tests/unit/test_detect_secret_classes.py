# ruff: noqa: E501 - one table row a line reads better than rows wrapped at 100
"""Classes of credentials the rules must generalise over, table-driven.

Each class has positives in several syntaxes, adversarial forms (split, escaped, inside
URLs) and near misses of the same shape that are not credentials. Values are assembled at
run time from harmless pieces, so no complete credential appears in the source.
"""

from __future__ import annotations

import base64
import random

import pytest

from smart_orchestrator.detect.normalise import normalise
from smart_orchestrator.detect.secrets import scan_text

B62 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
HEX = "0123456789abcdef"
CRYPT = "./" + B62
P = "pass" + "word"


def b(n: int, alphabet: str = B62, seed: str = "") -> str:
    rng = random.Random(f"{n}:{alphabet}:{seed}")
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        if alphabet != B62 or sum(c.isdigit() for c in value) >= 3:
            return value
        rng.random()


PW = b(4, seed="pw") + "!" + b(7, seed="pw2") + "42"

# class -> (texts with a credential, near misses that hold none)
CLASSES: dict[str, tuple[list[str], list[str]]] = {
    "password hashes of current systems": (
        ["alice:$y$j9T$" + b(22, CRYPT, "y") + "$" + b(43, CRYPT, "y2") + ":19700:0:99999:7:::",
         "svc:$7$CU..../...." + b(16, CRYPT, "s") + "$" + b(43, CRYPT, "s2"),
         "enable secret 9 $9$" + b(14, CRYPT, "c") + "$" + b(43, CRYPT, "c2"),
         "wp_users: $P$" + b(31, CRYPT, "wp"),
         "Administrator:500:" + b(32, HEX, "lm") + ":" + b(32, HEX, "nt") + ":::",
         "$krb5asrep$23$bob@CORP.LOCAL:" + b(32, HEX, "k1") + "$" + b(400, HEX, "k2"),
         "$krb5tgs$23$*svc$CORP.LOCAL$http/web01*$" + b(32, HEX, "t1") + "$" + b(900, HEX, "t2"),
         "pbkdf2_sha256$600000$" + b(22, seed="salt") + "$" + base64.b64encode(bytes(range(32))).decode(),
         "userPassword: {SSHA}" + b(32, B62 + "+/", "ssha"),
         "'bob'@'%' IDENTIFIED BY " + P.upper() + " '*" + b(40, HEX.upper(), "my") + "'"],
        ["price: $9$ a month", "see $krb5tgs$ in the docs", "{SSHA} is a scheme",
         "a:::b", "SELECT '*' FROM t", "pbkdf2_sha256 is the default hasher"]),
    "user then password flags": (
        [r"psexec \\db01 -u CORP\svc -p " + PW + " cmd.exe",
         "sqlcmd -S db01 -U sa -P " + PW + ' -Q "select 1"',
         "xfreerdp /v:db01 /u:svc /p:" + PW,
         "ldapsearch -x -D cn=admin,dc=corp -w " + PW + " -H ldap://db01",
         r"net use Z: \\db01\share /user:CORP\svc " + PW,
         "smbclient //db01/share -U svc%" + PW,
         r"psexec \\db01 -u admin -p " + P.title() + "123 cmd",
         r"psexec.exe \\db01 -p " + PW + " -u admin cmd"],
        ["psql -U app -p 5432 -h db01", "ssh -l deploy -p 2222 host", "git log -u -p -- README.md",
         "sqlcmd -U sa -P $env:SA_" + P.upper(), r"psexec \\host -u %USERNAME% -p %" + P.upper() + "%",
         r"net use Z: \\fileserver\share /persistent:yes", "pg_dump -U app -w mydatabase",
         "psql -U app -P pager=off -c 'select 1'", "tool -u me -p ./profile.json", "x -u bob -p secret"]),
    "one-dash and tool flags": (
        ["keytool -importkeystore -srckeystore a.p12 -srcstorepass " + PW,
         "openssl pkcs12 -export -in c.pem -passout pass:" + PW + " -out c.p12",
         "Connect-Service -" + P.title() + ' "' + PW + '"',
         "$pw = ConvertTo-SecureString \"" + PW + "\" -AsPlainText -Force"],
        ["openssl rsa -in k.pem -passin env:KEY_PASS", "openssl rsa -in k.pem -passin file:/run/k",
         "grep -r -" + P + " .", "tool -token=${TOKEN}", "keytool -list -storepass:env STOREPASS"]),
    "connection strings and .pgpass": (
        ["db01.internal:5432:app:svc:" + PW,
         "*:*:*:replicator:" + PW,
         "Driver={ODBC Driver 18};Server=db01;Uid=svc;Pwd=" + PW + ";",
         "Driver={ODBC Driver 18};Server=db01;Uid=svc;Pwd={" + PW + ";x};",
         "Server = db01; User Id = svc; " + P.title() + " = " + PW + ";",
         "host=db01 port=5432 dbname=app user=svc " + P + "=rootpass"],
        ["10:30:00:00:done", "db01.internal:5432:app:svc:*", "host:5432:db:user:${PGPASS}",
         P + "=abc in a sentence about host=", "dbname=app " + P + "=${PGPASS} host=db01"]),
    "environment-variable passwords": (
        ["POSTGRES_" + P.upper() + "=rootpass", "  MYSQL_ROOT_" + P.upper() + ": mysecretdb",
         "export DB_" + P.upper() + "=hunterhunter"],
        ["DB_" + P.upper() + "=secret", "DB_" + P.upper() + "=${DB_PASS}", "DB_" + P.upper() + "=DB_PASS",
         P.upper() + "_RESET_TIMEOUT=3600", "ADMIN_" + P.upper() + "=changeme", "DB_" + P.upper() + "=required",
         P.upper() + " = get_" + P + "()"]),
    "key names in XML and setters": (
        ['<entry key="db_' + P + '">' + PW + "</entry>",
         '<property name="apiToken">' + b(28, seed="xml") + "</property>",
         'user.set' + P.title() + '("' + PW + '");',
         "client.with_token('" + b(32, seed="setter") + "')",
         P + ' = "supersecret!"'],
        ['<entry key="db_' + P + '">${db.pw}</entry>', '<property name="timeout">30000</property>',
         'user.set' + P.title() + '(request.form["pw"])', 'check_' + P + '("")',
         P + ' = "Passwort"']),
    "YAML values on the next line": (
        ["api_key: |\n  " + b(29, seed="yaml"), "token: >-\n    " + b(29, seed="yaml2"),
         "service:\n  token:\n    " + b(29, seed="yaml3"),
         "secret:\n  key: " + b(29, seed="yaml4")],
        ["token:\nnext: settings.NEXT_HANDLER_NAME", "auth:\n  type: basic", "token: a | b\n  " + b(29, seed="yaml6"),
         "tokens:\n  - name: default"]),
    "DSL setters without an operator": (
        ["credentials {\n    username 'deploy'\n    " + P + " '" + PW + "'\n}",
         'maven { credentials { username "u"; ' + P + ' "' + PW + '" } }'],
        ["print " + P + ' "' + PW + '"', "def " + P + ' "' + PW + '"', "    " + P + " 'changeme'",
         "    " + P + " project.findProperty('repoPw')"]),
    "vendor prefixes of any case": (
        ["KVPAT_" + b(32, seed="upper"), "ZNTK-" + b(40, seed="upper2"),
         "export ACME_TOKEN=tok_" + b(40, HEX, "hex")],
        ["MAX_CONNECTIONS_PER_HOST_DEFAULT_VALUE_FOR_POOL", "HTTP_X_FORWARDED_PROTO_HEADER",
         "QWX_" + "A" * 36, "SHA256_" + b(64, HEX, "digest")]),
    "random values with dots and dashes": (
        ["Deploying with " + b(20, seed="d1") + "." + b(27, seed="d2") + " now",
         "Deploying with mbx.pat." + b(40, seed="d3") + " now",
         "acmecloud: " + b(24, seed="short"), '"acmecloud": "' + b(22, seed="short2") + '"'],
        ["cdn" + b(6, HEX, "h") + ".cloudfront.net", "tobi.CP7AWaXDfAKIRfH49dQzKJx7sKzzSoPq7",
         "module.submodule.SomeClassName", "request_id: " + b(24, seed="rid"),
         # A label of prose before reversed text, which looks random whatever it was.
         "Decode: " + b(20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "rev")[::-1],
         "acmecloud_id: " + b(24, seed="id"), "nonce = '" + b(24, seed="nonce") + "'"]),
}

CASES = [(cls, text) for cls, (pos, _) in CLASSES.items() for text in pos]
MISSES = [(cls, text) for cls, (_, neg) in CLASSES.items() for text in neg]


@pytest.mark.parametrize(("cls", "text"), CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_class_positive_is_found(cls: str, text: str) -> None:
    assert scan_text(text), text


@pytest.mark.parametrize(("cls", "text"), MISSES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(MISSES)])
def test_class_near_miss_reports_nothing(cls: str, text: str) -> None:
    assert scan_text(text) == [], [f.rule_id for f in scan_text(text)]


@pytest.mark.parametrize("text", [
    "db01.internal:5432:app:svc:" + PW,
    'user.set' + P.title() + '("' + PW + '");',
    "sqlcmd -S db01 -U sa -P " + PW,
])
def test_finding_covers_the_value_exactly(text: str) -> None:
    spans = [(f.start, f.end) for f in scan_text(text)]
    start = text.index(PW)
    assert (start, start + len(PW)) in spans


def test_kerberos_hash_is_redacted_to_its_end() -> None:
    tail = b(1200, HEX, "long")
    text = "$krb5tgs$23$*svc$CORP$http/web*$" + b(32, HEX, "cs") + "$" + tail + "\nnext line"
    [finding] = scan_text(text)
    assert text[finding.start:finding.end].endswith(tail)


# Adversarial forms: the same credentials split, escaped and inside URLs.
ADVERSARIAL = [
    "acmecloud: " + "\u200b".join(b(24, seed="short")[i:i + 4] for i in range(0, 24, 4)),
    'ACME_TOKEN = "KVPAT_' + b(16, seed="upper") + '" + "' + b(16, seed="upper3") + '"',
    "".join(f"\\u{ord(c):04x}" for c in "sqlcmd -U sa -P " + PW),
    "https://deploy:" + PW.replace("!", "%21") + "@db01.internal/feed",
    "https://" + b(40, seed="userinfo") + "@git.example.org/team/repo.git",
    "<entry key=\"db_" + P + "\">" + "".join(f"&#{ord(c)};" for c in PW) + "</entry>",
    "$krb5asrep$23$bob@CORP:" + b(32, HEX, "k1") + "$" + b(200, HEX, "k2") + "\\\n" + b(200, HEX, "k3"),
]


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_adversarial_forms_are_found(text: str) -> None:
    assert scan_text(text), text


def test_sentence_concatenation_is_not_joined() -> None:
    # Implicit concatenation of sentences (`'word\\n' 'Next'`) is text, not a split token.
    text = "doc = ('the first line of a long paragraph\\n'\n       'See also the second')"
    assert normalise(text).text == text
