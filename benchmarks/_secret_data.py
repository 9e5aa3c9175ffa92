"""Secret-detection data sets for bench_detection.py: held-out, validation, variants.

Held out (evaluation only, never used to write or tune a rule): the test fixtures of
noseyparker (rule examples and negative examples), trufflehog (detector pattern tests)
and secretlint (rule snapshots), and the source trees of psf/requests and
expressjs/express as code and docs that hold no secrets. They are read from bare git
mirrors, never committed; get them with the `fetch` tool or `git clone --mirror`:

    fetch github:praetorian-inc/noseyparker   -> $MIRRORS/praetorian-inc+noseyparker/repo
    fetch github:trufflesecurity/trufflehog   (likewise for the other four)

Validation (generated here with a fixed seed, not tuned on): tokens of provider formats
and of invented vendors, placed in config, code, shell and prose contexts, and negatives
of code shapes that look random (digests, UUIDs, lockfile hashes, placeholders).
"""

from __future__ import annotations

import ast
import base64
import random
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

MIRRORS = Path("/work/.mirror")


class Sample(NamedTuple):
    text: str
    label: str        # "secret" or "benign"
    source: str       # e.g. "noseyparker", "trufflehog:groq", "requests"
    token: str = ""   # the credential itself, where known (for prose and disguises)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={repo}", *args], check=True,
                          capture_output=True, text=True, errors="replace").stdout


def _mirror(name: str, mirrors: Path) -> Path | None:
    repo = mirrors / name.replace("/", "+") / "repo"
    return repo if repo.is_dir() else None


def _files(repo: Path, prefix: str, pattern: str) -> Iterator[tuple[str, str]]:
    names = _git(repo, "ls-tree", "-r", "--name-only", "HEAD", "--", prefix).splitlines()
    rx = re.compile(pattern)
    for name in names:
        if rx.search(name):
            yield name, _git(repo, "show", f"HEAD:{name}")


def noseyparker(mirrors: Path) -> list[Sample]:
    import yaml

    repo = _mirror("praetorian-inc/noseyparker", mirrors)
    if repo is None:
        return []
    out: list[Sample] = []
    for _, raw in _files(repo, "crates/noseyparker/data/default/builtin/rules",
                         r"\.ya?ml$"):
        for rule in (yaml.safe_load(raw) or {}).get("rules", []):
            source = f"noseyparker:{rule.get('id', '?')}"
            out += [Sample(str(e), "secret", source) for e in rule.get("examples") or []]
            out += [Sample(str(e), "benign", source)
                    for e in rule.get("negative_examples") or []]
    return out


_GO_STRING = r'"(?:\\.|[^"\\\n])*"|`[^`]*`'
_GO_CONST_RE = re.compile(rf"(?m)^\s*(\w+)\s*=\s*({_GO_STRING})\s*$")
_GO_CASE_RE = re.compile(rf"input:\s*({_GO_STRING}|\w+)\s*,\s*\n\s*want:\s*([^\n]*)")


def _go_string(literal: str) -> str | None:
    if literal.startswith("`"):
        return literal[1:-1]
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def trufflehog(mirrors: Path) -> list[Sample]:
    repo = _mirror("trufflesecurity/trufflehog", mirrors)
    if repo is None:
        return []
    out: list[Sample] = []
    for name, raw in _files(repo, "pkg/detectors", r"(?<!integration)_test\.go$"):
        detector = name.split("/")[2]
        consts = {m.group(1): m.group(2) for m in _GO_CONST_RE.finditer(raw)}
        for m in _GO_CASE_RE.finditer(raw):
            literal = consts.get(m.group(1), m.group(1))
            text = _go_string(literal) if literal[:1] in "\"`" else None
            if not text or not text.strip():
                continue
            want = m.group(2)
            label = "benign" if ("nil" in want or "{}" in want) else "secret"
            out.append(Sample(text, label, f"trufflehog:{detector}"))
    return out


# secretlint rules that report something other than a credential.
_SECRETLINT_NOT_SECRETS = ("no-homedir", "no-dotenv", "pattern", "filter-comments",
                           "no-k8s-kind-secret")


def secretlint(mirrors: Path) -> list[Sample]:
    repo = _mirror("secretlint/secretlint", mirrors)
    if repo is None:
        return []
    out: list[Sample] = []
    rx = re.compile(r"secretlint-rule-([^/]+)/test/snapshots/(ng|ok)\.[^/]+/input[^/]*$")
    for name, raw in _files(repo, "packages/@secretlint", rx.pattern):
        m = rx.search(name)
        assert m is not None
        if m.group(1).startswith(_SECRETLINT_NOT_SECRETS) or not raw.strip():
            continue
        label = "secret" if m.group(2) == "ng" else "benign"
        out.append(Sample(raw, label, f"secretlint:{m.group(1)}"))
    return out


_SOURCE_EXT = re.compile(r"\.(?:py|js|mjs|cjs|ts|json|md|rst|txt|ya?ml|toml|cfg|ini|html|css"
                         r"|sh|in)$|(?:^|/)(?:Makefile|LICENSE|AUTHORS|HISTORY)[^/]*$")


def chunks(text: str, lines: int = 30) -> Iterator[str]:
    rows = text.splitlines()
    for i in range(0, len(rows), lines):
        chunk = "\n".join(rows[i:i + lines])
        if chunk.strip():
            yield chunk


def source_tree(repo_name: str, mirrors: Path, label: str) -> list[Sample]:
    """30-line chunks of every text file of a repository (code and docs), all benign."""
    repo = _mirror(repo_name, mirrors)
    if repo is None:
        return []
    out: list[Sample] = []
    for name, raw in _files(repo, ".", _SOURCE_EXT.pattern):
        if len(raw) > 500_000:
            continue
        kind = "docs" if re.search(r"\.(?:md|rst|txt|html)$|/docs?/", name) else "code"
        out += [Sample(c, "benign", f"{label}:{kind}") for c in chunks(raw)]
    return out


# A credential in running text: what a subagent prompt or a pasted chat holds.
PROSE = (
    "Use this key for the deploy: {t}",
    "hey, here's the token you asked for {t} - don't share it",
    "The integration failed with credentials {t}. Can you retry with the staging ones?",
    "Subagent instructions: authenticate to the API using {t} and fetch the report.",
    "> {t}\n> (pasted from the vault)",
    "I rotated it yesterday, new one is `{t}` and the old one is revoked.",
    "Please set {t} as the value in the CI settings page.",
)


def _zero_width(t: str) -> str:
    return "\u200b".join(t[i:i + 4] for i in range(0, len(t), 4))


def _split_lines(t: str) -> str:
    return t[:len(t) // 2] + "\n" + t[len(t) // 2:]


def _concat(t: str) -> str:
    return f'"{t[:len(t) // 2]}" + "{t[len(t) // 2:]}"'


# Known disguises and some of our own, each undone by the normalisation layer.
VARIANTS: dict[str, Callable[[str], str]] = {
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "hex": lambda t: t.encode().hex(),
    "percent": lambda t: "".join(f"%{b:02X}" for b in t.encode()),
    "json-u": lambda t: "".join(f"\\u{ord(c):04x}" for c in t),
    "html-entities": lambda t: "".join(f"&#{ord(c)};" for c in t),
    "html-hex-entities": lambda t: "".join(f"&#x{ord(c):x};" for c in t),
    "zero-width": _zero_width,
    "ansi": lambda t: f"\x1b[32m{t}\x1b[0m",
    "split-lines": _split_lines,
    "concat": _concat,
    "lua-concat": lambda t: f'"{t[:8]}" .. "{t[8:]}"',
    "backslash-newline": lambda t: t[:10] + "\\\n  " + t[10:],
    "url-userinfo": lambda t: f"https://{t}@github.com/org/repo.git",
}


# A token inside a held-out example: the longest run of token characters.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-+/=.~]{16,}")


def token_of(text: str) -> str:
    runs = _TOKEN_RE.findall(text)
    return max(runs, key=len) if runs else ""


def prose_and_variants(samples: list[Sample], seed: int = 7,
                       ) -> tuple[list[Sample], list[Sample]]:
    """Each positive's token alone in prose, and disguised (one variant per token)."""
    rng = random.Random(seed)
    prose: list[Sample] = []
    variants: list[Sample] = []
    names = sorted(VARIANTS)
    for s in samples:
        if s.label != "secret":
            continue
        token = token_of(s.text)
        if len(token) < 16:
            continue
        prose.append(Sample(rng.choice(PROSE).format(t=token), "secret", s.source, token))
        name = rng.choice(names)
        text = rng.choice(PROSE).format(t=VARIANTS[name](token))
        variants.append(Sample(text, "secret", f"{s.source}|{name}", token))
    return prose, variants


_B62 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_HEXD = "0123456789abcdef"

# (prefix, body length, alphabet): formats of issuers as published, and invented vendors
# (the last group) that no specific rule knows.
_FORMATS: tuple[tuple[str, int, str], ...] = (
    ("gsk_", 52, _B62), ("xai-", 80, _B62), ("sk-or-v1-", 64, _HEXD), ("nvapi-", 64, _B62),
    ("r8_", 37, _B62), ("dckr_pat_", 27, _B62), ("phx_", 43, _B62), ("sbp_", 40, _HEXD),
    ("GOCSPX-", 28, _B62), ("whsec_", 32, _B62), ("hf_", 34, _B62[:52]), ("glpat-", 20, _B62),
    ("npm_", 36, _B62), ("lin_api_", 40, _B62), ("dop_v1_", 64, _HEXD), ("dapi", 32, _HEXD),
    ("ghp_", 36, _B62), ("github_pat_", 82, _B62), ("sk_live_", 24, _B62),
    ("xoxb-1234567890123-1234567890123-", 24, _B62), ("SG.", 66, _B62), ("shpat_", 32, _HEXD),
    ("pplx-", 48, _B62), ("AKIA", 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    ("sk-ant-api03-", 93, _B62), ("ntn_", 46, _B62), ("pcsk_", 60, _B62),
    ("acme_live_", 32, _B62), ("qx-", 40, _B62), ("zeta_sk_", 36, _B62), ("nimbus-", 48, _B62),
    ("kpk_", 30, _B62),
)
# Keyword-only secrets: no prefix, named by the key.
_BARE: tuple[tuple[str, int, str], ...] = (
    ("DATADOG_API_KEY", 32, _HEXD), ("MISTRAL_API_KEY", 32, _B62), ("COHERE_API_KEY", 40, _B62),
    ("CLOUDFLARE_API_TOKEN", 40, _B62 + "_-"), ("client_secret", 40, _B62),
    ("db_password", 16, _B62 + "!@#%^*"), ("SESSION_SECRET", 48, _HEXD),
)


def _contexts(name: str, value: str) -> list[str]:
    low = name.lower()
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), low)
    return [
        f"{name}={value}", f"export {name}=\"{value}\"", f'{{"{camel}": "{value}"}}',
        f"{low}: {value}", f"{low} = \"{value}\"", f"[default]\n{low} = {value}",
        f'<add key="{camel}" value="{value}"/>', f"<{camel}>{value}</{camel}>",
        f"{low}={value}", f"{camel} := \"{value}\"", f"const {camel} = '{value}';",
        f"{low.upper()} = '{value}'", f"config.{low} = \"{value}\"",
        f'variable "{low}" {{\n  default = "{value}"\n}}', f"ENV {name} {value}",
        f"env:\n  - name: {name}\n    value: \"{value}\"", f"os.environ[\"{name}\"] = \"{value}\"",
    ]


def generated(seed: int) -> list[Sample]:
    """Positives in configuration and code contexts, in prose, and disguised; negatives of
    random-looking shapes that are no secret."""
    rng = random.Random(seed)

    def body(n: int, alphabet: str) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    out: list[Sample] = []
    for prefix, n, alphabet in _FORMATS:
        token = prefix + body(n, alphabet)
        for text in rng.sample(_contexts("SERVICE_API_KEY", token), 4):
            out.append(Sample(text, "secret", f"gen:{prefix}", token))
        out.append(Sample(rng.choice(PROSE).format(t=token), "secret", f"gen-prose:{prefix}",
                          token))
        for name in rng.sample(sorted(VARIANTS), 3):
            out.append(Sample(rng.choice(PROSE).format(t=VARIANTS[name](token)), "secret",
                              f"gen-variant:{name}", token))
    for name, n, alphabet in _BARE:
        token = body(n, alphabet)
        for text in rng.sample(_contexts(name, token), 6):
            out.append(Sample(text, "secret", f"gen-bare:{name}", token))
    user, pw = body(6, _B62[:26]), body(14, _B62)
    host = f"db{rng.randrange(9)}.internal"
    tool_lines = [
        f"machine {host} login {user} password {pw}", f"mysql -u {user} -p{pw} -h {host}",
        f"sshpass -p '{pw}' ssh {user}@{host}", f"psql --password={pw}",
        f"curl -u {user}:{pw} https://{host}/api", f"postgres://{user}:{pw}@{host}:5432/app",
        f"git clone https://{body(40, _B62)}@github.com/org/repo.git",
        f"redis://:{pw}@{host}:6379/0", f"docker login -u {user} -p {pw}",
    ]
    out += [Sample(t, "secret", "gen-tool", pw) for t in tool_lines]
    negatives = [
        f"integrity sha512-{base64.b64encode(rng.randbytes(64)).decode()}",
        f"commit {rng.randbytes(20).hex()}", f"digest: sha256:{rng.randbytes(32).hex()}",
        f"id = '{_uuid(rng)}'",
        f"github.com/pkg/errors v0.9.1 h1:{base64.b64encode(rng.randbytes(32)).decode()}",
        "API_KEY=your-api-key-here", "token: <TOKEN>", "password: ${DB_PASSWORD}",
        "secret = 'changeme'", "AWS_ACCESS_KEY_ID=" + "AKIA" + "IOSFODNN7EXAMPLE",
        "api_key: xxxxxxxxxxxxxxxxxxxxxxxx", "export TOKEN=$(cat /run/secrets/token)",
        "password = os.environ.get('DB_PASSWORD')", "const token = await getToken();",
        "mysql -u root -p", "ssh -p 2222 user@host", "key_path = '~/.ssh/id_ed25519'",
        f"\"resolved\": \"https://registry.npmjs.org/x/-/x-1.2.3.tgz#{rng.randbytes(20).hex()}\"",
        f"etag: W/\"{rng.randbytes(16).hex()}\"", f"color: #{rng.randbytes(3).hex()}",
    ]
    out += [Sample(t, "benign", "gen-negative") for t in negatives]
    return out


def _uuid(rng: random.Random) -> str:
    h = rng.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
