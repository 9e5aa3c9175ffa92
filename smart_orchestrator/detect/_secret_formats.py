"""Credential formats recognised by a distinctive prefix.

Each rule is matched only where a token starts (after whitespace, a quote or another
delimiter), so ordinary text costs one dictionary lookup per long word. Lengths and
alphabets follow the issuers' documented formats (and gitleaks' rule set, MIT).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import NamedTuple

from ._candidates import PRIORITY_CONTEXT, PRIORITY_FORMAT, Hit
from ._text import looks_like_code_identifier, looks_placeholder, mostly_sequential, shannon_entropy

__all__ = ["RULE_IDS", "TOKEN_RULES_BY_PREFIX", "VENDOR_PREFIXES", "TokenRule", "scan_formats",
           "token_starts"]

# A secret must not run on into more token characters: exact lengths stay exact.
_END = r"(?![A-Za-z0-9_\-])"
_END_B64 = r"(?![A-Za-z0-9_\-+/=])"


class TokenRule(NamedTuple):
    rule_id: str
    # Compiled on first use: most texts never reach most rules.
    regex: str
    min_entropy: float = 3.0
    severity: str = "high"
    check: Callable[[str], bool] | None = None
    # Formats this specific may contain sequences ("abc123") and still be real.
    allow_sequences: bool = False


def _jwt_part_is_json(part: str) -> bool:
    padded = part + "=" * (-len(part) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(b"{") and b'":' in raw[:64]


def _jwt_ok(token: str) -> bool:
    parts = token.split(".")
    return len(parts) >= 2 and _jwt_part_is_json(parts[0]) and _jwt_part_is_json(parts[1])


def _has_digit(token: str) -> bool:
    return any(c.isdigit() for c in token)


def _mixed_alnum(token: str) -> bool:
    return _has_digit(token) and any(c.isalpha() for c in token)


def _rule(rule_id: str, regex: str, min_entropy: float = 3.0, *, severity: str = "high",
          check: Callable[[str], bool] | None = None, allow_sequences: bool = False,
          ) -> TokenRule:
    return TokenRule(rule_id, regex, min_entropy, severity, check, allow_sequences)


# (keys: the two characters a token must start with, rule)
_RULES: tuple[tuple[tuple[str, ...], TokenRule], ...] = (
    (("A3", "AK", "AS", "AB", "AC"), _rule(
        "aws-access-key-id", r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}" + _END)),
    (("AB",), _rule("aws-bedrock-api-key", r"ABSK[A-Za-z0-9+/]{109,269}={0,2}" + _END_B64, 4.0)),
    (("be",), _rule("aws-bedrock-api-key",
                    r"bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/=_-]*" + _END_B64,
                    allow_sequences=True)),
    (("sk",), _rule("anthropic-api-key", r"sk-ant-api03-[\w-]{93}AA" + _END,
                    allow_sequences=True)),
    (("sk",), _rule("anthropic-admin-api-key", r"sk-ant-admin01-[\w-]{93}AA" + _END,
                    allow_sequences=True)),
    (("sk",), _rule("anthropic-oauth-token", r"sk-ant-o[ar]t01-[\w-]{80,120}" + _END, 4.0)),
    (("sk",), _rule("openai-api-key",
                    r"sk-(?:(?:proj|svcacct|admin)-)?[\w-]{20,160}T3BlbkFJ[\w-]{20,160}" + _END)),
    (("sk",), _rule("openai-api-key", r"sk-(?:proj|svcacct|admin)-[\w-]{80,200}" + _END, 4.5)),
    (("sk", "rk"), _rule("stripe-secret-key",
                         r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,99}" + _END, 2.5)),
    (("gh",), _rule("github-token", r"gh[pousr]_[A-Za-z0-9]{36}" + _END)),
    (("gi",), _rule("github-fine-grained-pat", r"github_pat_\w{82}" + _END)),
    (("gl",), _rule("gitlab-token",
                    r"gl(?:pat|dt|rt|soat|cbt|ffct|ft)-(?:[\w-]{20,50}|[\w-]{27,300}\.[a-z0-9]{9})"
                    + _END)),
    (("gl",), _rule("gitlab-token", r"glptt-[\w-]{40}" + _END)),
    (("gl",), _rule("gitlab-token", r"glimt-[\w-]{25}" + _END)),
    (("gl",), _rule("gitlab-token", r"glagent-[\w-]{50,}" + _END)),
    (("gl",), _rule("gitlab-token", r"gloas-[\w-]{64}" + _END)),
    (("gl",), _rule("gitlab-token", r"glrt-t\d_[\w-]{27,300}\.[a-z0-9]{9}" + _END)),
    (("GR",), _rule("gitlab-token", r"GR1348941[\w-]{20,50}" + _END)),
    (("np",), _rule("npm-token", r"npm_[A-Za-z0-9]{36}" + _END)),
    (("py",), _rule("pypi-token",
                    r"pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[\w-]{50,1000}" + _END)),
    (("hf",), _rule("huggingface-token", r"hf_[A-Za-z]{34}" + _END, 3.5)),
    (("ap",), _rule("huggingface-token", r"api_org_[A-Za-z]{34}" + _END, 3.5)),
    (("AI",), _rule("google-api-key", r"AIza[\w-]{35}" + _END, 3.8)),
    (("xo",), _rule("slack-token",
                    r"xoxb-\d{8,14}-(?:\d{8,14}-)?[A-Za-z0-9]{18,34}" + _END)),
    (("xo",), _rule("slack-token", r"xox[pe](?:-\d{8,13}){3}-[A-Za-z0-9]{28,64}" + _END)),
    (("xo",), _rule("slack-token", r"xox[os]-\d+-\d+-\d+-[a-fA-F\d]{10,}" + _END, 2.0)),
    (("xo",), _rule("slack-token", r"xox[ar]-(?:\d-)?[0-9a-zA-Z-]{10,64}" + _END, 2.0,
                    check=_mixed_alnum)),
    (("xo",), _rule("slack-token", r"xoxe\.xox[bp]-\d-[A-Za-z0-9]{150,180}" + _END)),
    (("xo",), _rule("slack-token", r"xoxe-\d-[A-Za-z0-9]{140,160}" + _END)),
    (("xa",), _rule("slack-token", r"xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]{20,}" + _END)),
    (("sq",), _rule("square-token", r"sq0(?:atp|csp)-[\w-]{22,60}" + _END)),
    (("EA",), _rule("square-token", r"EAAA[\w-]{22,60}" + _END, 3.5)),
    (("EA",), _rule("facebook-access-token", r"EAA[MC][A-Za-z0-9]{100,}" + _END, 4.0)),
    (("SG",), _rule("sendgrid-api-key", r"SG\.[\w=.-]{66}" + _END)),
    (("SK",), _rule("twilio-api-key", r"SK[0-9a-fA-F]{32}" + _END)),
    (("ke",), _rule("mailgun-api-key", r"key-[0-9a-f]{32}" + _END)),
    (("pu",), _rule("mailgun-api-key", r"pubkey-[0-9a-f]{32}" + _END)),
    (("sh",), _rule("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _END)),
    (("sh",), _rule("openshift-token", r"sha256~[\w-]{43}" + _END, 3.5)),
    (("sh",), _rule("shippo-api-token", r"shippo_(?:live|test)_[a-fA-F0-9]{40}" + _END)),
    (("da",), _rule("databricks-token", r"dapi[a-f0-9]{32}(?:-\d)?" + _END)),
    (("do",), _rule("digitalocean-token", r"do[opr]_v1_[a-f0-9]{64}" + _END)),
    (("dp",), _rule("doppler-token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}" + _END)),
    (("dt",), _rule("dynatrace-token", r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}" + _END)),
    (("du",), _rule("duffel-token", r"duffel_(?:test|live)_[\w=-]{43}" + _END)),
    (("EZ",), _rule("easypost-token", r"EZ[AT]K[A-Za-z0-9]{54}" + _END)),
    (("FL",), _rule("flutterwave-key", r"FLW(?:SECK|PUBK)_TEST-[a-hA-H0-9]{12,32}(?:-X)?" + _END)),
    (("fo",), _rule("flyio-token", r"fo1_[\w-]{43}" + _END, 4.0)),
    (("fm",), _rule("flyio-token", r"fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3}" + _END_B64, 4.0)),
    (("fi",), _rule("frameio-token", r"fio-u-[\w=-]{64}" + _END)),
    (("ey",), _rule("grafana-api-key", r"eyJrIjoi[A-Za-z0-9]{70,400}={0,3}" + _END_B64)),
    (("ey",), _rule("jwt",
                    r"eyJ[\w-]{10,}={0,2}\.eyJ[\w-]{10,}={0,2}(?:\.[\w\-/+]{10,}={0,2}|\.)?"
                    + _END_B64, check=_jwt_ok)),
    (("gl",), _rule("grafana-token", r"glc_[A-Za-z0-9+/]{32,400}={0,3}" + _END_B64)),
    (("gl",), _rule("grafana-token", r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}" + _END)),
    (("pa", "sa"), _rule("harness-token",
                         r"[ps]at\.[\w-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}" + _END)),
    (("hv",), _rule("vault-token", r"hv[sb]\.[\w-]{90,300}" + _END, 3.5)),
    (("s.",), _rule("vault-token", r"s\.[A-Za-z0-9]{24}" + _END, 3.5, check=_has_digit)),
    (("HR",), _rule("heroku-api-key", r"HRKU-AA[\w-]{58}" + _END, 4.0)),
    (("ic",), _rule("infracost-token", r"ico-[A-Za-z0-9]{32}" + _END)),
    (("s-",), _rule("intra42-secret", r"s-s4t2(?:ud|af)-[a-f0-9]{64}" + _END)),
    (("li",), _rule("linear-api-key", r"lin_api_[A-Za-z0-9]{40}" + _END)),
    (("NR",), _rule("newrelic-key",
                    r"NR(?:AK-[A-Za-z0-9]{27}|II-[\w-]{32}|JS-[a-f0-9]{19})" + _END)),
    (("nt",), _rule("notion-token", r"ntn_\d{11}[A-Za-z0-9]{35}" + _END, 4.0)),
    (("AP",), _rule("octopus-deploy-api-key", r"API-[A-Z0-9]{26}" + _END, 3.0,
                    check=_mixed_alnum)),
    (("pp",), _rule("perplexity-api-key", r"pplx-[A-Za-z0-9]{48}" + _END, 4.0)),
    (("ps",), _rule("planetscale-token", r"pscale_(?:tkn|oauth|pw)_[\w=.-]{32,64}" + _END)),
    (("PM",), _rule("postman-token", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}" + _END)),
    (("pn",), _rule("prefect-token", r"pnu_[A-Za-z0-9]{36}" + _END)),
    (("pu",), _rule("pulumi-token", r"pul-[a-f0-9]{40}" + _END)),
    (("rd",), _rule("readme-token", r"rdme_[a-z0-9]{70}" + _END)),
    (("ru",), _rule("rubygems-token", r"rubygems_[a-f0-9]{48}" + _END)),
    (("tk",), _rule("scalingo-token", r"tk-us-[\w-]{48}" + _END)),
    (("xk",), _rule("sendinblue-token", r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}" + _END)),
    (("sn",), _rule("sentry-token", r"sntryu_[a-f0-9]{64}" + _END, 3.5)),
    (("sn",), _rule("sentry-token", r"sntrys_eyJpYXQiO[A-Za-z0-9+/=_]{60,400}" + _END_B64, 4.5)),
    (("sm",), _rule("settlemint-token", r"sm_(?:pat|aat|sat)_[A-Za-z0-9]{16}" + _END)),
    (("sg",), _rule("sourcegraph-token",
                    r"sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}" + _END)),
    (("tf",), _rule("typeform-token", r"tfp_[\w.=-]{59}" + _END)),
    (("t1",), _rule("yandex-token", r"t1\.[\w-]+={0,2}\.[\w-]{86}={0,2}" + _END_B64)),
    (("AQ",), _rule("yandex-token", r"AQVN[\w-]{35,38}" + _END)),
    (("LT",), _rule("alibaba-access-key-id", r"LTAI[A-Za-z0-9]{20}" + _END)),
    (("p8",), _rule("adobe-client-secret", r"p8e-[A-Za-z0-9]{32}" + _END)),
    (("AG",), _rule("age-secret-key",
                    r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}" + _END)),
    (("AK",), _rule("artifactory-api-key", r"AKCp[A-Za-z0-9]{69}" + _END, 4.5)),
    (("cm",), _rule("artifactory-api-key", r"cmVmd[A-Za-z0-9]{59}" + _END, 4.5)),
    (("AT",), _rule("atlassian-api-token", r"ATATT3[\w=-]{186}" + _END_B64)),
    (("4b",), _rule("clickhouse-api-key", r"4b1d[A-Za-z0-9]{38}" + _END)),
    (("CL",), _rule("clojars-token", r"CLOJARS_[a-z0-9]{60}" + _END)),
    (("v1",), _rule("cloudflare-origin-ca-key", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}" + _END)),
    (("AA",), _rule("twitter-bearer-token", r"A{22}[A-Za-z0-9%]{80,100}" + _END)),
    (("op",), _rule("1password-token", r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}" + _END_B64, 4.0)),
    (("A3",), _rule("1password-secret-key",
                    r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})"
                    r"-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}" + _END, 3.5)),
    # Current AI, developer-platform and cloud formats.
    (("gs",), _rule("groq-api-key", r"gsk_[A-Za-z0-9]{52}" + _END, 4.0)),
    (("xa",), _rule("xai-api-key", r"xai-[A-Za-z0-9]{80}" + _END, 4.0)),
    (("sk",), _rule("openrouter-api-key", r"sk-or-v1-[a-f0-9]{64}" + _END, 3.5)),
    (("sk",), _rule("anthropic-session-key", r"sk-ant-sid0[12]-[\w-]{80,120}" + _END, 4.0)),
    (("nv",), _rule("nvidia-api-key", r"nvapi-[\w-]{64}" + _END, 4.0)),
    (("pc",), _rule("pinecone-api-key", r"pcsk_[A-Za-z0-9]{4,10}_[A-Za-z0-9]{40,80}" + _END, 4.0)),
    (("ls",), _rule("langsmith-api-key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}" + _END, 3.5)),
    (("r8",), _rule("replicate-api-token", r"r8_[A-Za-z0-9]{37}" + _END, 4.0)),
    (("dc",), _rule("docker-pat", r"dckr_(?:pat|oat)_[\w-]{27,40}" + _END, 3.5)),
    (("ph",), _rule("posthog-key", r"ph[cx]_[A-Za-z0-9]{39,48}" + _END, 4.0)),
    (("sb",), _rule("supabase-token", r"sbp_(?:v0_)?[a-f0-9]{40}" + _END, 3.5)),
    (("sb",), _rule("supabase-token", r"sb_secret_[\w-]{24,64}" + _END, 3.5)),
    (("GO",), _rule("google-oauth-client-secret", r"GOCSPX-[\w-]{28}" + _END, 3.5)),
    (("ya",), _rule("google-oauth-access-token", r"ya29\.[\w-]{30,2048}" + _END, 4.0)),
    (("1/",), _rule("google-oauth-refresh-token", r"1//0[\w-]{40,512}" + _END, 4.0)),
    (("wh",), _rule("stripe-webhook-secret", r"whsec_[A-Za-z0-9+/]{32,88}={0,2}" + _END_B64, 4.0)),
    (("se",), _rule("notion-token", r"secret_[A-Za-z0-9]{43}" + _END, 4.0)),
    (("tg",), _rule("together-api-key", r"tgp_v1_[\w-]{40,48}" + _END, 4.0)),
    (("tv",), _rule("tavily-api-key", r"tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}" + _END, 4.0)),
    (("cs",), _rule("cerebras-api-key", r"csk-[a-z0-9]{48}" + _END, 4.0)),
    (("re",), _rule("resend-api-key", r"re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24}" + _END, 3.5)),
    (("nf",), _rule("netlify-token", r"nfp_[A-Za-z0-9]{36,40}" + _END, 4.0)),
    (("rn",), _rule("render-api-key", r"rnd_[A-Za-z0-9]{32}" + _END, 4.0)),
    (("na",), _rule("neon-api-key", r"napi_[a-z0-9]{64}" + _END, 4.0)),
    (("fi",), _rule("figma-token", r"figd_[\w-]{40,50}" + _END, 4.0)),
    (("pa",), _rule("airtable-token", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}" + _END, 3.5)),
    (("AT",), _rule("bitbucket-token", r"ATBB[A-Za-z0-9]{28,40}" + _END, 4.0)),
    (("AT",), _rule("atlassian-api-token", r"ATCTT3[\w=-]{186}" + _END_B64)),
    (("sk",), _rule("mapbox-token", r"sk\.eyJ[\w-]{50,300}\.[\w-]{20,40}" + _END, 4.0)),
    (("CF",), _rule("contentful-token", r"CFPAT-[\w-]{43}" + _END, 4.0)),
    (("bk",), _rule("buildkite-token", r"bkua_[a-f0-9]{40}" + _END, 3.5)),
    (("CC",), _rule("circleci-token", r"CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40}" + _END, 3.5)),
    (("ts",), _rule("tailscale-key",
                    r"tskey-(?:(?:api|auth|client|webhook|scim)-)?[A-Za-z0-9]{6,20}-[A-Za-z0-9]{16,64}"
                    + _END, 3.5)),
    (("vc",), _rule("vercel-token", r"vc[pkiar]_[A-Za-z0-9]{40,64}" + _END, 4.0)),
    (("cf",), _rule("cloudflare-api-token", r"cf(?:ut|at|k)_[A-Za-z0-9]{40,60}" + _END, 4.0)),
    (("ci",), _rule("crates-io-token", r"cio[A-Za-z0-9]{32}" + _END, 4.0, check=_mixed_alnum)),
    (("oy",), _rule("nuget-api-key", r"oy2[a-z0-9]{43}" + _END, 4.0, check=_has_digit)),
    (("sq",), _rule("sonarqube-token", r"sq[pua]_[a-f0-9]{40}" + _END, 3.5)),
    (("sl",), _rule("dropbox-token", r"sl\.(?:u\.)?[\w-]{120,1400}" + _END, 4.5)),
    (("00",), _rule("salesforce-access-token", r"00D[A-Za-z0-9]{12,15}![\w.]{80,300}" + _END, 4.0)),
    (("sk",), _rule("sk-prefixed-api-key", r"sk-(?:[a-f0-9]{32}|[A-Za-z0-9]{48})" + _END, 3.5,
                    check=_mixed_alnum)),
    (("es",), _rule("anyscale-api-key", r"esecret_[A-Za-z0-9]{26}" + _END, 4.0)),
    (("MT", "Mz", "MZ", "Nz", "ND", "NT", "OT", "OD", "MD", "MQ", "Nj", "Mj", "ATM"),
     _rule("discord-bot-token",
           r"[MNOA][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,38}" + _END, 3.5)),
)


def _index(rules: tuple[tuple[tuple[str, ...], TokenRule], ...],
           ) -> dict[str, tuple[TokenRule, ...]]:
    table: dict[str, list[TokenRule]] = {}
    for keys, rule in rules:
        for key in keys:
            table.setdefault(key[:2], []).append(rule)
    return {key: tuple(rules) for key, rules in table.items()}


TOKEN_RULES_BY_PREFIX: dict[str, tuple[TokenRule, ...]] = _index(_RULES)

# Literal prefixes that only a vendor's own format uses.
VENDOR_PREFIXES: tuple[str, ...] = (
    "AKIA", "ASIA", "ABIA", "ACCA", "ABSK", "bedrock-api-key-", "sk-ant-", "sk-proj-",
    "sk-svcacct-", "sk-admin-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "ghp_", "gho_",
    "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glptt-", "glrt-", "glsoat-",
    "glcbt-", "glimt-", "glagent-", "gloas-", "glc_", "glsa_", "GR1348941", "npm_", "pypi-Ag",
    "hf_", "api_org_", "AIza", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxo-", "xoxe",
    "xapp-", "sq0atp-", "sq0csp-", "shpat_", "shpca_", "shppa_", "shpss_", "dapi", "dop_v1_",
    "doo_v1_", "dor_v1_", "dt0c01.", "EZAK", "EZTK", "FLWSECK", "fo1_", "hvs.", "hvb.",
    "HRKU-", "lin_api_", "NRAK-", "ntn_", "pplx-", "pscale_", "PMAK-", "pnu_", "rdme_",
    "rubygems_", "xkeysib-", "sntryu_", "sntrys_", "sm_pat_", "sm_aat_", "sm_sat_", "sgp_",
    "AGE-SECRET-KEY-", "AKCp", "ATATT3", "CLOJARS_", "ops_eyJ", "sha256~", "gsk_", "xai-",
    "sk-or-v1-", "nvapi-", "pcsk_", "lsv2_pt_", "lsv2_sk_", "r8_", "dckr_pat_", "dckr_oat_",
    "phx_", "sbp_", "sb_secret_", "GOCSPX-", "ya29.", "whsec_", "tgp_v1_", "tvly-", "csk-",
    "nfp_", "rnd_", "napi_", "figd_", "ATBB", "ATCTT3", "CFPAT-", "bkua_", "CCIPAT_", "tskey-",
)


# A token starts after a delimiter; the look-ahead demands the shortest useful length.
_TOKEN_START_RE = re.compile(r"""[\s"'`=:(,\[{<>;|@$!&?*)\]}\\#%^]([A-Za-z0-9_\-+/.~]{14})""")


def token_starts(text: str) -> list[int]:
    """Offsets where a token of at least 14 token characters begins."""
    starts = [m.start(1) for m in _TOKEN_START_RE.finditer(text)]
    if _TOKEN_START_RE.match(" " + text[:14]):
        starts.insert(0, 0)
    return starts


def _accept(rule: TokenRule, secret: str) -> bool:
    if shannon_entropy(secret) < rule.min_entropy or looks_placeholder(secret):
        return False
    if not rule.allow_sequences and mostly_sequential(secret):
        return False
    return rule.check is None or rule.check(secret)


# An issuer we have no rule for still marks its tokens the way the others do: a short
# lower-case prefix (`xyz_`, `xyz-`, `xyz_live_`) before a long random body.
_VENDOR_SHAPE_RE = re.compile(
    r"(?P<prefix>[a-z][a-z0-9]{1,11}(?:[_-][a-z0-9]{1,8}){0,2}[_-]"
    # Upper-case prefixes too (`FLWSECK_`, `CFPAT-`, `KVPAT_`), before a mixed body.
    r"|[A-Z][A-Z0-9]{1,9}(?:[_-][A-Z0-9]{1,8}){0,2}[_-])"
    r"(?P<body>[A-Za-z0-9]{20,200}(?:[_-][A-Za-z0-9]{4,80}){0,2})" + _END)
# Prefixes of digests, hashes and identifiers: random bodies that are not secrets.
_NOT_VENDOR = frozenset({
    "sha", "sha1", "sha224", "sha256", "sha384", "sha512", "md5", "blake2b", "blake3", "xxh",
    "crc32", "h1", "commit", "rev", "uuid", "guid", "id", "ids", "hash", "digest", "nonce",
    "salt", "iv", "data", "base64", "b64", "hex", "test", "sha3", "integrity", "checksum",
    "cid", "etag", "build", "run", "job", "trace", "span", "req", "request", "msg", "event",
    "session", "user", "org", "project", "file", "img", "image", "asset", "chunk", "video",
    # Object ids of APIs (Anthropic, OpenAI, Stripe): public names, not credentials.
    "toolu", "srvtoolu", "msgbatch", "call", "chatcmpl", "asst", "thread", "batch",
    "cus", "pi", "ch", "sub", "evt", "acct", "price", "prod", "pm", "seti", "src", "txn",
})


_HEX_BODY_RE = re.compile(r"[0-9a-f]{32,}")


def _random_body(core: str, underscore: bool) -> bool:
    """Mixed case and digits; or lower case with many digits; or long hex after `xyz_`."""
    digits = sum(c.isdigit() for c in core)
    if not digits:
        return False
    size = len(core)
    if _HEX_BODY_RE.fullmatch(core):
        return underscore and shannon_entropy(core) >= 3.3
    entropy = shannon_entropy(core)
    if core.islower() or core.isupper():
        return size >= 24 and digits >= 4 and entropy >= min(4.0, math.log2(size) - 0.6)
    return entropy >= min(4.0, math.log2(size) - 0.6)


def _vendor_shape(text: str, start: int) -> Hit | None:
    m = _VENDOR_SHAPE_RE.match(text, start)
    if m is None:
        return None
    prefix, body = m.group("prefix"), m.group("body")
    if prefix[:-1].replace("-", "_").split("_")[0].lower() in _NOT_VENDOR:
        return None
    if body.startswith("01"):
        # Anthropic's object ids (`toolu_01…`, `msg_01…`, `req_011C…`), and any tail of
        # one (`olu_01…`): Claude Code's tool-use ids are checked suffix by suffix.
        return None
    core = body.replace("_", "").replace("-", "")
    if not _random_body(core, prefix.endswith("_")):
        return None
    if prefix.isupper() and (core.isupper() or core.islower()) and sum(
            c.isdigit() for c in core) < 6:
        return None  # `MAX_RETRIES_PER_HOST2`: a constant's name, not a key
    if looks_placeholder(body) or mostly_sequential(body) or looks_like_code_identifier(body):
        return None
    return Hit("vendor-prefixed-token", start, m.end(), "medium", PRIORITY_CONTEXT,
               (m.group(0),))


def scan_formats(text: str) -> list[Hit]:
    """Hits for every prefixed credential format in `text`, and for unknown issuers'
    tokens of the same shape."""
    hits: list[Hit] = []
    table = TOKEN_RULES_BY_PREFIX
    verdicts: dict[tuple[int, str], bool] = {}
    shapes = _VENDOR_SHAPE_RE.match
    for start in token_starts(text):
        rules = table.get(text[start:start + 2])
        if rules is None:
            if ("a" <= text[start] <= "z" or "A" <= text[start] <= "Z") and shapes(text, start):
                generic = _vendor_shape(text, start)
                if generic is not None:
                    hits.append(generic)
            continue
        matched = False
        for rule in rules:
            m = re.compile(rule.regex).match(text, start)
            if m is None:
                continue
            secret = m.group(0)
            key = (id(rule), secret)
            ok = verdicts.get(key)
            if ok is None:
                ok = verdicts[key] = _accept(rule, secret)
            if ok:
                hits.append(Hit(rule.rule_id, start, m.end(), rule.severity, PRIORITY_FORMAT,
                                (secret,)))
                matched = True
                break
        if not matched and text[start].isalpha() and shapes(text, start):
            generic = _vendor_shape(text, start)
            if generic is not None:
                hits.append(generic)
    return hits


RULE_IDS: frozenset[str] = frozenset(
    {rule.rule_id for _, rule in _RULES} | {"vendor-prefixed-token"})
