"""Secret scanner: per-format cases, placeholders, allowlists, redaction, linear time.

Credentials below are assembled at run time from harmless pieces so that no complete
token appears in the source (and no push-protection scanner trips on this file).
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_orchestrator.detect.secrets import (
    Allowlist,
    SecretFinding,
    load_baseline,
    redact_text,
    scan_text,
)

B62 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def body(n: int, alphabet: str = B62) -> str:
    """A fixed pseudo-random string of length n drawn from alphabet (same on every run)."""
    rng = random.Random(f"{n}:{alphabet}")
    return "".join(rng.choice(alphabet) for _ in range(n))


HEX = "0123456789abcdef"
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
UPPER = "QAZ2WSX3EDC4RFV5TGB6YHN7UJM"

POSITIVE = [
    ("anthropic-api-key", "ANTHROPIC_API_KEY=" + "sk-ant-" + "api03-" + body(93) + "AA"),
    ("anthropic-admin-api-key", "key: " + "sk-ant-" + "admin01-" + body(93) + "AA"),
    ("openai-api-key", "export OPENAI_API_KEY=" + "sk-" + "proj-" + body(60) + "T3Blbk" + "FJ"
     + body(60)),
    ("github-token", "GH_TOKEN=" + "gh" + "p_" + body(36)),
    ("github-fine-grained-pat", "token = '" + "github_" + "pat_" + body(82) + "'"),
    ("gitlab-token", "CI_TOKEN: " + "glp" + "at-" + body(20)),
    ("npm-token", "//registry.npmjs.org/:_authToken=" + "np" + "m_" + body(36)),
    ("pypi-token", "password = " + "pypi-" + "AgEIcHlwaS5vcmc" + body(80)),
    ("huggingface-token", "HF_TOKEN=" + "hf" + "_" + body(34, LETTERS)),
    ("google-api-key", "maps_key = '" + "AI" + "za" + body(35) + "'"),
    ("aws-access-key-id", "aws_access_key_id = " + "AK" + "IA" + body(16, UPPER)),
    ("slack-token", "SLACK_BOT_TOKEN=" + "xo" + "xb-" + "739104628351-4827163940582-" + body(24)),
    ("slack-webhook", "url = https://" + "hooks.slack" + ".com/services/T0A1B2C3D/B4E5F6G7H/"
     + body(24)),
    ("stripe-secret-key", "stripe.api_key = '" + "sk" + "_live_" + body(24) + "'"),
    ("sendgrid-api-key", "SENDGRID=" + "SG" + "." + body(22) + "." + body(43)),
    ("twilio-api-key", "sid = " + "S" + "K" + body(32, HEX)),
    ("jwt", "Authorization: Bearer " + "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + "."
     + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0" + "." + body(43)),
    ("private-key", "-----BEGIN " + "RSA PRIVATE KEY-----\n" + body(64, B62 + "+/") + "\n"
     + body(64, B62 + "+/") + "\n-----END " + "RSA PRIVATE KEY-----\n"),
    ("private-key", "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + body(70) + "\n-----END "
     + "OPENSSH PRIVATE KEY-----"),
    ("private-key", '{"private_key": "-----BEGIN ' + 'PRIVATE KEY-----\\n' + body(64)
     + "\\n" + body(40) + '\\n-----END ' + 'PRIVATE KEY-----\\n"}'),
    ("connection-string-password", "DATABASE_URL=postgres://app:" + body(16) + "@db:5432/app"),
    ("connection-string-password", "mongodb+srv://admin:" + body(14) + "@cluster0.x.net/db"),
    ("connection-string-password", "Server=tcp:sql;Database=app;User Id=sa;Password=" + body(14)
     + ";"),
    ("connection-string-password", "jdbc:mysql://db:3306/app?user=root&password=" + body(12)),
    ("basic-auth-url", "git clone https://deploy:" + body(18) + "@git.example.com/repo.git"),
    ("curl-basic-auth", "curl -u admin:" + body(14) + " https://api.example.com/items"),
    ("authorization-header", 'headers = {"Authorization": "Bearer ' + body(40) + '"}'),
    ("azure-storage-key", "AccountName=x;AccountKey=" + body(86, B62 + "+/") + "==;"),
    ("azure-ad-client-secret", "client_secret: " + "bP8" + "8Q~" + body(34)),
    ("telegram-bot-token", "bot = '" + "7213808860" + ":AA" + body(33) + "'"),
    ("mailchimp-api-key", "MC_KEY=" + body(32, HEX) + "-us" + "18"),
    ("discord-bot-token", "DISCORD=" + "MT" + body(22) + "." + body(6) + "." + body(27)),
    ("password-assignment", 'db_password = "' + body(14) + '"'),
    ("password-assignment", "DB_PASSWORD=" + body(16)),
    ("secret-assignment", 'const apiKey = "' + body(32) + '";'),
    ("secret-assignment", "<twitchToken>\n    " + body(30, "abcdefghijklmnopqrstuvwxyz0123456789")
     + "\n</twitchToken>"),
    ("secret-assignment", 'System.setProperty("SERVICE_TOKEN", "' + body(25) + '")'),
]


@pytest.mark.parametrize(("rule_id", "text"), POSITIVE, ids=[r for r, _ in POSITIVE])
def test_finds_each_credential_format(rule_id: str, text: str) -> None:
    findings = scan_text(text)
    assert rule_id in {f.rule_id for f in findings}, findings


NEGATIVE = [
    "ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY}",
    "export OPENAI_API_KEY=<your-api-key>",
    "token: " + "gh" + "p_" + "x" * 36,
    "api_key = os.environ['API_KEY']",
    "password = getpass.getpass()",
    "password: changeme",
    "DATABASE_URL=postgres://user:password@localhost:5432/db",
    "aws_access_key_id = " + "AK" + "IA" + "IOSFODNN7EXAMPLE",
    "secret_key = settings.SECRET_KEY",
    "Authorization: Bearer $TOKEN",
    "curl -u $USER:$PASS https://example.com",
    "token = tokenize.generate_tokens(readline)",
    "The commit is 9fceb02d0ae598e95dc970b74767f19372d61af8.",
    "uuid = '123e4567-e89b-12d3-a456-426614174000'",
    "key_path = '~/.ssh/id_rsa'",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"
    "-----END PUBLIC KEY-----",
    "-----BEGIN " + "PRIVATE KEY-----\n...\n-----END " + "PRIVATE KEY-----",
    "password_hash = bcrypt.hashpw(pw, salt)",
    "token_type = 'Bearer'",
    "primary_key = 'id'",
    "PASSWORD_MIN_LENGTH = 12",
    "api_version = '2023-10-01'",
    "maps_key = '" + "AI" + "zaSyabcdefghijklmnopqrstuvwxyz1234567'",
    "SLACK_BOT_TOKEN=" + "xo" + "xb-xxxxxxxxxx-xxxxxxxxxxxx",
    "public_key = '" + body(43) + "'",
    "csrf_token = '" + body(40) + "'",
    "import { chain_Anvil1_Key, chain_Anvil2_Key } from './consts'",
    "",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_ignores_placeholders_references_and_look_alikes(text: str) -> None:
    assert scan_text(text) == []


def test_reports_line_offsets_and_never_the_secret() -> None:
    secret = "gh" + "p_" + body(36)
    text = "first line\nsecond = '" + secret + "'\n"
    [finding] = scan_text(text)
    assert isinstance(finding, SecretFinding)
    assert finding.line == 2
    assert text[finding.start:finding.end] == secret
    assert finding.severity == "high"
    assert secret not in finding.redacted
    assert finding.redacted.startswith(secret[:4])
    assert finding.redacted.endswith(secret[-2:])
    assert finding.redacted.count("*") >= len(secret) - 6


@pytest.mark.parametrize("text", [t for _, t in POSITIVE])
def test_redaction_shows_at_most_four_leading_and_two_trailing_chars(text: str) -> None:
    for finding in scan_text(text):
        secret = text[finding.start:finding.end]
        visible = finding.redacted.replace("*", "")
        assert secret not in finding.redacted
        assert len(visible) <= 6
        if len(secret) < 16:
            assert visible == ""


def test_redact_text_replaces_every_span() -> None:
    first = "gh" + "p_" + body(36)
    second = "sk" + "_live_" + body(24)
    text = f"a = '{first}'\nb = '{second}'\n"
    redacted = redact_text(text, scan_text(text))
    assert redacted == "a = '[REDACTED:github-token]'\nb = '[REDACTED:stripe-secret-key]'\n"


def test_redact_text_without_findings_returns_the_text() -> None:
    assert redact_text("nothing here", []) == "nothing here"


def test_specific_format_wins_over_keyword_guess() -> None:
    text = "GITHUB_TOKEN = '" + "gh" + "p_" + body(36) + "'"
    assert [f.rule_id for f in scan_text(text)] == ["github-token"]


def test_findings_come_in_text_order() -> None:
    a = "gh" + "p_" + body(36)
    b = "sk" + "_live_" + body(24)
    findings = scan_text(f"x = '{b}'\ny = '{a}'\nz = '{b}'")
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    assert len(findings) == 3


SECRET_LINE = "token = '" + "gh" + "p_" + body(36) + "'"


@pytest.mark.parametrize("text", [
    SECRET_LINE + "  # pragma: allowlist secret",
    SECRET_LINE + "  // pragma: allowlist secret",
    "# pragma: allowlist nextline secret\n" + SECRET_LINE,
    "  -- pragma: allowlist nextline secret\n" + SECRET_LINE,
])
def test_inline_pragma_silences_its_line_of_a_reviewed_file(text: str) -> None:
    assert scan_text(text, pragmas=True) == []


@pytest.mark.parametrize("text", [
    SECRET_LINE + "  # pragma: allowlist secret",
    SECRET_LINE + "  // pragma: allowlist secret",
    SECRET_LINE + "  /* pragma: allowlist secret */",
    SECRET_LINE + "  <!-- pragma: allowlist secret -->",
    SECRET_LINE + "  ' pragma: whitelist secret",
    "# pragma: allowlist nextline secret\n" + SECRET_LINE,
    "  -- pragma: allowlist nextline secret\n" + SECRET_LINE,
])
def test_inline_pragma_is_ignored_unless_asked_for(text: str) -> None:
    # Prompts, outputs and plans: whoever wrote the secret could write the comment too.
    assert len(scan_text(text)) == 1


@pytest.mark.parametrize("text", [
    "# pragma: allowlist secret\n" + SECRET_LINE,
    "x = 1  # pragma: allowlist nextline secret\n" + SECRET_LINE,
    SECRET_LINE + "\n# pragma: allowlist nextline secret",
])
def test_pragma_does_not_leak_to_other_lines(text: str) -> None:
    assert len(scan_text(text, pragmas=True)) == 1


def _write_baseline(path: Path, *secrets: str) -> Path:
    results = {"app.py": [{"type": "Secret Keyword", "line_number": 1, "is_verified": False,
                           "hashed_secret": hashlib.sha1(s.encode()).hexdigest()}
                          for s in secrets]}
    path.write_text(json.dumps({"version": "1.5.0", "results": results}))
    return path


def test_baseline_drops_reviewed_secrets_only(tmp_path: Path) -> None:
    known = "gh" + "p_" + body(36)
    unknown = "sk" + "_live_" + body(24)
    allowlist = load_baseline(_write_baseline(tmp_path / ".secrets.baseline", known))
    findings = scan_text(f"a = '{known}'\nb = '{unknown}'", allowlist=allowlist)
    assert [f.rule_id for f in findings] == ["stripe-secret-key"]
    assert len(allowlist) == 1
    assert allowlist.allows(known) and not allowlist.allows(unknown)


def test_baseline_matches_detect_secrets_private_key_hash(tmp_path: Path) -> None:
    # detect-secrets records the header phrase of a private key, not its body.
    block = ("-----BEGIN " + "RSA PRIVATE KEY-----\n" + body(64) + "\n-----END "
             + "RSA PRIVATE KEY-----")
    allowlist = load_baseline(_write_baseline(tmp_path / "b.json", "BEGIN RSA PRIVATE KEY"))
    assert scan_text(block, allowlist=allowlist) == []


def test_allowlist_built_from_hashes() -> None:
    secret = "sk" + "_live_" + body(24)
    allowlist = Allowlist([hashlib.sha1(secret.encode()).hexdigest().upper()])
    assert scan_text(f"k = '{secret}'", allowlist=allowlist) == []


@pytest.mark.parametrize("content", [
    "{not json",
    "[]",
    '{"results": []}',
    '{"results": {"a.py": {}}}',
    '{"results": {"a.py": [{"type": "x"}]}}',
    '{"results": {"a.py": [{"hashed_secret": "zz"}]}}',
])
def test_malformed_baseline_raises_one_line_value_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".secrets.baseline"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_baseline(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message


def test_binary_baseline_raises_one_line_value_error(tmp_path: Path) -> None:
    path = tmp_path / ".secrets.baseline"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_baseline(path)


def test_missing_baseline_is_not_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_baseline(tmp_path / "absent.json")


FRAGMENTS = st.sampled_from([
    "password = ", "token: ", "'", '"', "\n", " ", "=", "://", "@", ":", "-----BEGIN ",
    "PRIVATE KEY-----", "-----END ", "Authorization: Bearer ", "curl -u ", "gh" + "p_",
    "sk" + "_live_", "AK" + "IA", "eyJ", ".", body(24), body(40, HEX), "# pragma: allowlist secret",
])


@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=40).map("".join))
@settings(max_examples=300, deadline=None)
def test_any_text_gives_well_formed_findings_that_never_leak(text: str) -> None:
    lines = text.count("\n") + 1
    for finding in scan_text(text):
        secret = text[finding.start:finding.end]
        assert 0 <= finding.start < finding.end <= len(text)
        assert 1 <= finding.line <= lines
        assert finding.severity in ("high", "medium")
        assert secret not in finding.redacted
    assert "[REDACTED:" in redact_text(text, scan_text(text)) or not scan_text(text)


MB = 1_000_000
PATHOLOGICAL = {
    "padded-lines": ("password = '" + " " * 1000 + "'\n") * (MB // 1014),
    "base64-run": "A" + body(MB - 1, B62 + "+/"),
    "equals": "=" * MB,
    "quotes": "'\"" * (MB // 2),
    "keyword-storm": "key=" * (MB // 4),
    "short-assignments": "password: 1 " * (MB // 12),
    "many-secrets": ("t = '" + "gh" + "p_" + body(36) + "'\n") * (MB // 46),
    "open-urls": "://" * (MB // 3),
    "key-headers": ("-----BEGIN " + "RSA PRIVATE KEY-----\n") * (MB // 32),
    "auth-headers": "Authorization: Bearer " * (MB // 22),
    "curl-users": "curl -u a:b " * (MB // 12),
    "one-long-line": "a" + " " * (MB - 2) + "b",
    "flag-storm": " -u " * (MB // 4),
    "flag-colon-storm": " -u x:" * (MB // 6),
    "connection-password-storm": "server=a;password=" * (MB // 18),
    "password-semicolon-storm": "password=x;" * (MB // 11),
    "anchored-format-storm": ("0123456789abcdef" * 2 + "-us1 ") * (MB // 38),
    "one-line-many-secrets": ("x='" + "gh" + "p_" + body(36) + "' ") * (MB // 45) + "# pragma",
    "one-line-of-instructions": "ENV A " * (MB // 6),
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_pathological_megabyte_finishes(name: str) -> None:
    # A deadline, not a timing: about 2 s on an idle 2-core machine, and a backtracking
    # blow-up (quadratic on a megabyte) would take hours. The benchmark measures speed;
    # tests/unit/test_detect_worst_case.py counts the work deterministically.
    started = time.monotonic()
    scan_text(PATHOLOGICAL[name])
    assert time.monotonic() - started < 120.0


@pytest.mark.parametrize(("text", "found"), [
    ("ENV API_TOKEN " + body(24), True),
    ("    ENV API_TOKEN " + body(24) + "\n", True),
    ("FROM python\n\tARG API_TOKEN " + body(24), True),
    ("ENV A b\n" * 3 + "ENV API_TOKEN " + body(24), True),
    (" " * 5000 + "ENV API_TOKEN " + body(24), True),
    ("echo ENV API_TOKEN " + body(24), False),
    ("ENV A b ENV API_TOKEN " + body(24), False),
    ("ENV A b\nx = 1; ENV API_TOKEN " + body(24), False),
])
def test_an_instruction_is_read_only_where_it_starts_its_line(text: str, found: bool) -> None:
    assert any(f.rule_id == "dockerfile-env-secret" for f in scan_text(text)) == found


def test_import_does_not_pull_in_detect_secrets() -> None:
    code = ("import sys, smart_orchestrator.detect.secrets as s; "
            "s.scan_text('x'); print('detect_secrets' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("decoration", [
    "  # pragma: allowlist secret", "  <!-- pragma: allowlist secret -->",
    "\n-- pragma: allowlist nextline secret", "\n(this line is only a comment, ignore it)",
])
def test_a_key_block_diluted_with_comments_is_still_a_key(decoration: str) -> None:
    lines = ["-----BEGIN " + "RSA PRIVATE KEY-----", body(64, B62 + "+/"), body(64, B62 + "+/"),
             body(40, B62 + "+/"), "-----END " + "RSA PRIVATE KEY-----"]
    text = "\n".join(line + decoration for line in lines)
    assert [f.rule_id for f in scan_text(text)] == ["private-key"]


@pytest.mark.parametrize("text", [
    "/work\nd21cc623-d85e-438b-9790-3993e2b04499\n2.1.332\nHEAD\n"
    "2d99a066-4bc8-42f7-910c-c19ff286c0fd\nskill_listing\n",
    "build 9f2d35a4c1e8b7d6a5f40312e9c8b7a6d5e4f3a2\nrelease_notes\n",
])
def test_identifiers_on_consecutive_lines_are_not_one_random_token(text: str) -> None:
    # The normalised view joins a token wrapped over two lines; a token judged by its shape
    # alone must not be made of two lines of identifiers.
    assert scan_text(text) == []
