"""Redaction of secrets before anything reaches MLflow (params, tags, YAML artifacts, the uploaded git diff)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus, urlsplit

REDACTED = "***"

# ----- key names -----
_SECRET_WORDS = frozenset(
    {
        *("password", "passwords", "passwd", "pwd", "passphrase"),
        *("token", "secret", "secrets", "key", "apikey", "credential", "credentials"),
        *("authorization", "auth", "bearer", "cookie", "sig", "signature"),
    }
)
# Glued spellings (``dbpassword``, ``awsaccesskey``) end with one of these; bare ``key``/``token`` would hit ``monkey``.
_SECRET_SUFFIXES = ("password", "passwd", "passphrase", "secret", "apikey", "accesskey", "secretkey", "privatekey")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")  # snake, kebab, dotted and CamelCase parts


def _words(name: str) -> list[str]:
    """Lower-case word parts of a name: ``AWS_SECRET_ACCESS_KEY``, ``accessKey``, ``X-Amz-Signature``."""
    return [word.lower() for word in _WORD.findall(name)]


def is_secret_key(key: str) -> bool:
    """Whether the last part of a (dotted) key names a secret: ``db.password``, ``api_key``, ``hf_token``, ``apiKey``.

    Whole word parts count, so ``tokenizer``, ``num_tokens``, ``keyboard``, ``monkey`` and ``key_column`` are not.
    """
    words = _words(key.rsplit(".", 1)[-1])
    if words[1:] and words[0] == "key":
        words = words[1:]  # ``key_column``, ``key_size``: a leading ``key`` names a lookup key, not a credential
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES) for word in words)


# ----- URLs -----
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]+")
_QUERY_PARAM = re.compile(r"(?P<head>(?:^|[&;])(?P<name>[^&;=]*)=)(?P<value>[^&;]*)")
_PLAIN_USER = re.compile(r"[A-Za-z][A-Za-z0-9._\-]{0,19}")
# Tokens put where a user name goes (``https://ghp_…@github.com``) from GitHub, GitLab, Hugging Face, OpenAI, Slack,
# Google, npm, PyPI, AWS.
_TOKEN_PREFIXES = (
    *("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "hf_", "sk-", "xox", "ya29."),
    *("npm_", "pypi-", "akia", "asia"),
)


def _looks_like_token(user: str) -> bool:
    """Whether a URL's user name is rather a token: a known prefix, or not a short plain login like ``bob``."""
    return bool(user) and (user.lower().startswith(_TOKEN_PREFIXES) or not _PLAIN_USER.fullmatch(user))


def _userinfo_end(rest: str) -> int:
    """Index in ``rest`` (a URL after ``://``) of the ``@`` that ends the userinfo, or -1 without userinfo.

    The userinfo ends at the last ``@`` before the query, so an unescaped ``@`` or ``/`` in a password stays in it;
    a ``/`` counts as part of a password only after ``user:`` that is not a ``host:port/`` and not a path.
    """
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0 or "/" not in head[:at]:
        return at
    authority = head.split("/", 1)[0]
    _, colon, after = authority.partition(":")
    if colon and after and not after.isdigit():
        return at
    return authority.rfind("@")  # ``github.com/org/repo@v1.0``: the ``@`` is in the path


def _redact_userinfo(userinfo: str) -> str:
    """``user:***``, ``:***`` or ``***`` for a token as user name; a plain user name stays."""
    user, colon, password = userinfo.partition(":")
    if _looks_like_token(user):
        user = REDACTED
    return f"{user}{colon}{REDACTED if password else ''}"


def _redact_params(params: str) -> str:
    """A query (or fragment) with the values of secret-looking names hidden, the rest kept byte for byte."""

    def hide(m: re.Match[str]) -> str:
        return f"{m['head']}{REDACTED}" if m["value"] and is_secret_key(unquote_plus(m["name"])) else m[0]

    return _QUERY_PARAM.sub(hide, params)


def _redact_after_userinfo(tail: str) -> str:
    """Host, path, query and fragment of a URL with secret query and fragment values (``#access_token=``) hidden."""
    try:
        parts = urlsplit(f"//{tail}")
    except ValueError:  # an unclosed IPv6 bracket: not a URL we can split, hide every parameter that looks secret
        return _redact_params(tail)
    query, fragment = _redact_params(parts.query), _redact_params(parts.fragment)
    if (query, fragment) == (parts.query, parts.fragment):
        return tail  # unchanged, byte for byte (``urlsplit`` forgets an empty ``?``)
    return parts.netloc + parts.path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def _redact_url(url: str) -> str:
    """A ``scheme://…`` URL with its password, token-like user name and secret query values replaced by ``***``."""
    scheme, _, rest = url.partition("://")
    at = _userinfo_end(rest)
    userinfo = f"{_redact_userinfo(rest[:at])}@" if at >= 0 else ""
    return f"{scheme}://{userinfo}{_redact_after_userinfo(rest[at + 1 :])}"


def redact_value(value: Any) -> Any:
    """Hide the credentials of every ``scheme://…`` URL inside a string value; other values are returned as they are.

    ``postgresql://u:p@ss/w@db/x`` -> ``postgresql://u:***@db/x``; ``https://ghp_x@github.com/o/r`` ->
    ``https://***@github.com/o/r``; ``https://h/f?sig=abc&v=1`` -> ``https://h/f?sig=***&v=1``.
    """
    if isinstance(value, str):
        return _URL.sub(lambda m: _redact_url(m[0]), value)
    return value


def redact(tree: Any, key: str = "") -> Any:
    """A copy of a nested config with secret-looking keys' values and URL credentials replaced by ``***``.

    ``None`` and booleans under a secret-looking key stay: flags like ``use_auth: true`` hide nothing.
    """
    if isinstance(tree, Mapping):
        return {k: redact(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact(v, key) for v in tree]
    if key and is_secret_key(key) and tree is not None and not isinstance(tree, bool):
        return REDACTED
    return redact_value(tree)


# ----- free text (the git diff) -----
# Files whose lines are code: there ``token = token`` or ``password: str`` is not a secret, only a quoted literal is.
_CODE_SUFFIXES = frozenset(
    {".py", ".pyi", ".pyx", ".js", ".jsx", ".ts", ".tsx", ".java", ".kt", ".scala", ".go", ".rs", ".c", ".cc", ".cpp"}
    | {".h", ".hpp", ".cs", ".rb", ".php", ".swift", ".r"}
)
_PLACEHOLDER = re.compile(
    r"|\*+|null|none|nil|~|true|false|[|>][+-]?|[{\[]|\$\{[^}]*\}|\$\w+|\{\{.*\}\}|<[^<>]*>", re.I
)
_AUTH_SCHEME = re.compile(r"(?:bearer|basic|token|digest)\s+", re.I)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?=[\w.~+/\-]*\d)[\w.~+/\-]{8,}=*", re.I)
# ``name = "value"``, ``"name": "value"``, ``os.environ["NAME"] = "value"``, ``name: str = "value"``,
# ``f(name="value")``; the literal must end the expression, so ``"password: " + pw + "!"`` is left alone.
_QUOTED = re.compile(
    r"(?<![\w\-])(?P<name>[A-Za-z_][\w\-]*)[\"']?\]?(?:\s*:\s*[A-Za-z_][\w.\[\], |]*?)?\s*(?:=(?![=>~])|:)\s*"
    r"[rbuRBU]?(?P<q>[\"'])(?P<value>(?!\s)(?:\\.|(?!(?P=q)).)*)(?P=q)(?=\s*(?:[,;)\]}#]|//|$))"
)
# ``export NAME=value`` or ``NAME=value cmd`` anywhere on a line: an upper-case environment variable.
_ENV = re.compile(r"(?<![\w$.\-/])(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>[^\s\"'=][^\s\"';&|]*)")
# A whole line ``name: value``, ``name = value``, ``"name": value,`` (YAML, INI, headers, JSON, .env), after the diff
# marker, indentation, ``export`` or a YAML list dash; a `` #`` comment and a trailing comma stay.
_BARE = re.compile(
    r"(?P<lead>[+ \-]?\s*(?:export\s+|-\s+)?(?P<q>[\"']?))(?P<name>[A-Za-z_][\w.\-]*)(?P=q)"
    r"(?P<sep>\s*(?::\s|=(?![=>~]))\s*)(?P<value>[^\s\"'].*?)(?P<tail>,?(?:\s+[#;].*)?\s*)"
)


def _hidden(value: str) -> str:
    """``***`` for a secret value; an auth scheme (``Bearer``) stays readable, placeholders stay as they are."""
    if _PLACEHOLDER.fullmatch(value.strip()):
        return value
    scheme = _AUTH_SCHEME.match(value)
    return f"{scheme[0] if scheme else ''}{REDACTED}"


def _secret_name(name: str, code: bool) -> bool:
    """Whether an assigned name is secret; in code a lone ``key`` is the everyday dict key, not an API key."""
    return is_secret_key(name) and not (code and _words(name.rsplit(".", 1)[-1]) == ["key"])


def _redact_quoted(m: re.Match[str], code: bool) -> str:
    if not _secret_name(m["name"], code):
        return m[0]
    start, end = m.span("value")
    return m[0][: start - m.start()] + _hidden(m["value"]) + m[0][end - m.start() :]


def _redact_env(m: re.Match[str]) -> str:
    return f"{m['name']}={_hidden(m['value'])}" if is_secret_key(m["name"]) else m[0]


def _redact_bare(line: str) -> str:
    """A whole-line ``name: value`` assignment with a secret name, its value hidden."""
    m = _BARE.fullmatch(line)
    if not m or not is_secret_key(m["name"]):
        return line
    value, rest = m["value"], ""
    if m["sep"] == "=":  # ``NAME=value command``: the value ends at the first blank
        value, _, rest = value.partition(" ")
        rest = f" {rest}" if rest else ""
    return f"{m['lead']}{m['name']}{m['q']}{m['sep']}{_hidden(value)}{rest}{m['tail']}"


def _redact_line(line: str, code: bool) -> str:
    line = _BEARER.sub(lambda m: f"{m['head']}{REDACTED}", redact_value(line))
    line = _ENV.sub(_redact_env, _QUOTED.sub(lambda m: _redact_quoted(m, code), line))
    return line if code else _redact_bare(line)


def _is_code_file(header: str) -> bool:
    """Whether a ``diff --git a/x b/x`` header opens the diff of a source-code file."""
    return PurePosixPath(header.split()[-1].strip('"')).suffix.lower() in _CODE_SUFFIXES


def redact_text(text: str) -> str:
    """Free text (a git diff, a log) with URL credentials and secret assignments hidden, line by line.

    Hidden: ``password: hunter2``, ``MLFLOW_TRACKING_PASSWORD=abc``, ``Authorization: Bearer abc.def``,
    ``"token": "abc"``, ``api_key = "abc"``, ``Bearer <token>``. In a git diff's source-code files only quoted
    literals count as values, so ``token = tokenizer(x)`` or ``password: str`` stay as they are.
    """
    out, code = [], False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if body.startswith("diff --git "):
            code = _is_code_file(body)
        out.append(_redact_line(body, code) + line[len(body) :])
    return "".join(out)
