"""Generated credentials of the classes a rule set must generalise over, and look-alikes.

Each class is written from format documentation (provider docs, tool manuals, gitleaks'
and detect-secrets' public rule sets), never from the held-out fixtures: a credential
named by its key in every configuration syntax, in command lines and connection strings,
in a URL's userinfo (with or without a colon), vendor-style prefixes of any case with a
random body, values holding `-` or `.`, and password hashes of current systems. The
negatives are the code and data shapes those rules must leave alone.
"""

from __future__ import annotations

import base64
import hashlib
import random

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_DIGITS = "0123456789"
_B62 = _LOWER + _UPPER + _DIGITS
_HEX = "0123456789abcdef"
_B64 = _B62 + "+/"
_CRYPT = "./" + _B62
# Django's get_random_secret_key() alphabet.
_DJANGO = _LOWER + _DIGITS + "!@#$%^&*(-_=+)"


def _key_contexts(name: str, value: str) -> list[str]:
    """One credential-named key in many syntaxes (what a config file or a log line holds)."""
    low = name.lower()
    camel = low.split("_")[0] + "".join(w.title() for w in low.split("_")[1:])
    return [
        f"<{camel}>{value}</{camel}>",
        f'<property name="{camel}" value="{value}"/>',
        f'<entry key="{low}">{value}</entry>',
        f"{low}: '{value}'",
        f"  {camel}: {value}",
        f'"{camel}": "{value}",',
        f"[service]\n{low} = {value}",
        f"app.{low.replace('_', '.')}={value}",
        f"{name}={value}",
        f"set {name}={value}",
        f"$env:{name} = \"{value}\"",
        f"{camel}: \"{value}\"",
        f"--{low.replace('_', '-')} {value}",
        f"--{low.replace('_', '-')}={value}",
        f"-D{camel}={value}",
        f"{low} => '{value}',",
        f"{camel} = \"{value}\"",
        f"2024-05-01 12:00:03 DEBUG using {low}={value} for upload",
        f"setx {name} {value}",
        f"{name.upper()}: {value}",
    ]


def _vendor_values(rng: random.Random) -> list[tuple[str, str]]:
    """(class, token): vendor-style prefixes of several cases around random bodies."""
    def body(n: int, alphabet: str = _B62) -> str:
        while True:
            v = "".join(rng.choice(alphabet) for _ in range(n))
            if any(c.isdigit() for c in v) and (alphabet != _B62 or not v.isalnum() or (
                    any(c.islower() for c in v) and any(c.isupper() for c in v))):
                return v

    return [
        ("upper-prefix", f"QWX_{body(36)}"),
        ("upper-prefix", f"ZNTK-{body(40)}"),
        ("upper-prefix", f"KVPAT_{body(30)}"),
        ("dotted-prefix", f"zq.{body(48)}"),
        ("dotted-prefix", f"mbx.pat.{body(40)}"),
        ("lower-prefix-short", f"wrk_{body(24)}"),
        ("lower-prefix-live", f"pay_live_{body(28)}"),
        ("lower-prefix-hex", f"tok_{body(40, _HEX)}"),
        ("dash-dot-value", f"{body(8)}-{body(4)}-{body(12)}.{body(16)}"),
        ("dash-dot-value", f"{body(20)}.{body(27)}"),
    ]


def _tool_lines(rng: random.Random) -> list[tuple[str, str]]:
    """(class, text) for credentials in command lines, connection strings and URLs."""
    def body(n: int, alphabet: str = _B62) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    pw = body(3) + rng.choice("!@#%") + body(9) + str(rng.randrange(10, 99))
    # In a URL's userinfo `@`, `#` and `%` must be percent-encoded.
    url_pw = body(3) + rng.choice("!~*") + body(9) + str(rng.randrange(10, 99))
    tok = body(32)
    user = rng.choice(("svc_deploy", "admin", "backup", "jdoe", "ci-runner"))
    host = rng.choice(("db.internal", "10.0.3.7", "sql01.corp.example.net", "cache-2"))
    return [
        ("cli-user-pass", rf"psexec \\{host} -u CORP\{user} -p {pw} cmd.exe"),
        ("cli-user-pass", rf"net use Z: \\{host}\share /user:CORP\{user} {pw}"),
        ("cli-user-pass", f"sqlcmd -S {host} -U {user} -P {pw} -Q \"select 1\""),
        ("cli-user-pass", f"smbclient //{host}/share -U {user}%{pw}"),
        ("cli-user-pass", f"wget --user={user} --password={pw} https://{host}/f"),
        ("cli-user-pass", f"xfreerdp /v:{host} /u:{user} /p:{pw}"),
        ("cli-user-pass", f"ldapsearch -x -D cn={user},dc=corp -w {pw} -H ldap://{host}"),
        ("connection", f"Driver={{ODBC Driver 18 for SQL Server}};Server={host};"
                       f"Database=app;Uid={user};Pwd={pw};"),
        ("connection", f"host={host} port=5432 dbname=app user={user} password={pw}"),
        ("connection", f"{host}:5432:app:{user}:{pw}"),
        ("connection", f"Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName="
                       f"RootManageSharedAccessKey;SharedAccessKey={body(43, _B64)}="),
        ("connection", f"jdbc:sqlserver://{host}:1433;databaseName=app;user={user};"
                       f"password={pw}"),
        ("connection", f"PGPASSWORD={pw} psql -h {host} -U {user} app"),
        ("url-userinfo", f"https://{tok}@gitlab.example.com/group/app.git"),
        ("url-userinfo", f"https://oauth2:{tok}@git.example.org/team/repo.git"),
        ("url-userinfo", f"amqp://{user}:{url_pw}@{host}:5672/vhost"),
        ("url-userinfo", f"https://{user}:{url_pw}@{host}/private/feed"),
        ("netrc", f"machine {host}\n  login {user}\n  password {pw}"),
        ("npmrc", f"//npm.example.com/:_authToken={tok}"),
        ("npmrc", f"//npm.example.com/:_password={base64.b64encode(pw.encode()).decode()}"),
        ("docker-auth", '{"auths": {"registry.example.com": {"auth": "'
                        + base64.b64encode(f"{user}:{pw}".encode()).decode() + '"}}}'),
        ("django", f"SECRET_KEY = '{body(50, _DJANGO)}'"),
        ("django", f"SECRET_KEY = 'django-insecure-{body(50, _DJANGO)}'"),
        ("laravel", f"APP_KEY=base64:{base64.b64encode(rng.randbytes(32)).decode()}"),
        ("rails", f"secret_key_base: {rng.randbytes(64).hex()}"),
        ("aws-file", f"[default]\naws_access_key_id = AKIA{body(16, _UPPER + '234567')}\n"
                     f"aws_secret_access_key = {body(40, _B64)}"),
    ]


def _hashes(rng: random.Random) -> list[tuple[str, str]]:
    """Password hashes in the formats of current systems (crackable offline)."""
    def c(n: int) -> str:
        return "".join(rng.choice(_CRYPT) for _ in range(n))

    user = rng.choice(("alice", "svc", "deploy"))
    nt = rng.randbytes(16).hex()
    b64 = base64.b64encode
    return [
        ("pwhash", f"{user}:$y$j9T${c(22)}${c(43)}:19700:0:99999:7:::"),
        ("pwhash", f"{user}:$7$CU..../....{c(16)}${c(43)}"),
        ("pwhash", f"{user}:1001:aad3b435b51404eeaad3b435b51404ee:{nt}:::"),
        ("pwhash", f"$krb5asrep$23${user}@CORP.LOCAL:{rng.randbytes(16).hex()}$"
                   f"{rng.randbytes(120).hex()}"),
        ("pwhash", f"$krb5tgs$23$*{user}$CORP.LOCAL$http/web01*${rng.randbytes(16).hex()}$"
                   f"{rng.randbytes(200).hex()}"),
        ("pwhash", f"pbkdf2_sha256$600000${c(22).replace('.', 'x').replace('/', 'y')}$"
                   f"{b64(rng.randbytes(32)).decode()}"),
        ("pwhash", f"{user}:{{SSHA}}{b64(rng.randbytes(24)).decode()}"),
        ("pwhash", f"enable secret 9 $9${c(14)}${c(43)}"),
        ("pwhash", f"'{user}'@'%' IDENTIFIED BY PASSWORD '*"
                   f"{hashlib.sha1(rng.randbytes(20)).hexdigest().upper()}'"),
    ]


def _negatives(rng: random.Random) -> list[str]:
    """Look-alikes the new classes must not report."""
    h = rng.randbytes(20).hex()
    return [
        "net use Z: \\\\fileserver\\share /persistent:yes",
        "psexec \\\\host -u %USERNAME% -p %PASSWORD% cmd",
        "sqlcmd -S localhost -U sa -P $env:SA_PASSWORD",
        "host=localhost port=5432 dbname=app user=postgres password=${PGPASSWORD}",
        "git clone https://github.com/pallets/flask.git",
        "https://jdoe@bitbucket.org/team/repo.git",
        "postgres://postgres@localhost:5432/app",
        f"commit_sha: {h}",
        f"QWX_{'A' * 36}",
        "MAX_CONNECTIONS_PER_HOST_DEFAULT_VALUE_FOR_POOL",
        "HTTP_X_FORWARDED_PROTO_HEADER_NAME",
        "app.session.cookie-name=JSESSIONID",
        "--token-file /run/secrets/registry-token",
        "--password-stdin < ~/.docker/pass.txt",
        "SECRET_KEY = os.environ['DJANGO_SECRET_KEY']",
        "api_key: {{ .Values.apiKey }}",
        "<password>${db.password}</password>",
        "x-request-id: 6f1c2e8a-93b4-4d7e-a1f0-5b2c8d9e7f10",
        "image: registry.example.com/app@sha256:" + rng.randbytes(32).hex(),
        "\"integrity\": \"sha512-" + base64.b64encode(rng.randbytes(64)).decode() + "\"",
        "$ mkpasswd --method=yescrypt",
        "version: 2.31.0-rc.1+build.20240501",
        "module.exports.someLongFunctionName = anotherModule.helperFunctionName;",
    ]


def generated_classes(seed: int) -> list[tuple[str, str, str]]:
    """(label, class, text) for every generated case."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str]] = []
    names = ("ACME_API_KEY", "PAYMENT_TOKEN", "DB_PASSWORD", "CLIENT_SECRET", "AUTH_TOKEN")
    for cls, token in _vendor_values(rng):
        for text in rng.sample(_key_contexts(rng.choice(names), token), 4):
            out.append(("secret", f"key-context/{cls}", text))
        out.append(("secret", f"bare/{cls}", f"Deploying with {token} now"))
    for name in names:
        value = "".join(rng.choice(_B62) for _ in range(rng.randrange(18, 33)))
        if not any(c.isdigit() for c in value):
            value += "7"
        for text in _key_contexts(name, value):
            out.append(("secret", "key-context/syntax", text))
    out += [("secret", cls, text) for cls, text in _tool_lines(rng) + _hashes(rng)]
    out += [("benign", "negative", text) for text in _negatives(rng)]
    return out
