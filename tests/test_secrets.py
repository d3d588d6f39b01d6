"""Secret redaction: key names, credentials in URLs, assignments in free text, and the uploaded git diff."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ml_tabular.mlops import recorder
from ml_tabular.mlops.secrets import is_secret_key, redact, redact_text, redact_value


# ----- key names -----
@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "auth",
        "bearer",
        "passphrase",
        "gpg.passphrase",
        "cookie",
        "sig",
        "signature",
        "X-Amz-Signature",
        "accessKey",
        "clientSecret",
        "dbPassword",
    ],
)
def test_secret_key_names(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["key_column", "key_size", "data.key_columns"])
def test_a_leading_key_is_a_lookup_key(key):
    assert not is_secret_key(key)


def test_flags_under_secret_keys_stay():
    config = {"use_token": True, "save_api_key": False, "token": "abc"}

    assert redact(config) == {"use_token": True, "save_api_key": False, "token": "***"}


# ----- URLs in values -----
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgresql://u:p@ss/w@host:5432/db", "postgresql://u:***@host:5432/db"),
        ("mysql://u:pa/ss@db/x", "mysql://u:***@db/x"),
        ("https://ghp_abc123@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://a0b1c2d3e4f5a6b7c8d9e0f1a2@github.com/o/r", "https://***@github.com/o/r"),
        ("https://ghp_abc:x-oauth-basic@github.com/o/r", "https://***:***@github.com/o/r"),
        ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
        ("https://h/x?password=hunter2", "https://h/x?password=***"),
        ("https://blob.example/f?sv=2022&sig=ab%2Bc&se=1", "https://blob.example/f?sv=2022&sig=***&se=1"),
        (
            "s3://b/k?X-Amz-Credential=AKIA%2F1&X-Amz-Date=20240101&X-Amz-Signature=ff00",
            "s3://b/k?X-Amz-Credential=***&X-Amz-Date=20240101&X-Amz-Signature=***",
        ),
        ("https://maps.example/api?key=AIzaSy0&q=1", "https://maps.example/api?key=***&q=1"),
        ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1"),
        ("https://u:p@h/x?email=a@b.com&token=t", "https://u:***@h/x?email=a@b.com&token=***"),
        ("http://bob@host:5000/x?sig=s", "http://bob@host:5000/x?sig=***"),
        ("https://host:8080/x@y?api_key=k", "https://host:8080/x@y?api_key=***"),
        (
            "pip install git+https://github.com/o/r@v1.0 -i https://ghp_x@pypi.example/simple",
            "pip install git+https://github.com/o/r@v1.0 -i https://***@pypi.example/simple",
        ),
        ("see https://u:p@h/a and ftp://x:p/w@files/y", "see https://u:***@h/a and ftp://x:***@files/y"),
    ],
    ids=[
        "at-and-slash-in-password",
        "slash-in-password",
        "token-as-user",
        "hex-token-as-user",
        "token-user-and-password",
        "token-query",
        "password-query",
        "sas-sig",
        "s3-presigned",
        "api-key-query",
        "fragment-token",
        "at-in-query-value",
        "plain-user-stays",
        "at-in-path-stays",
        "at-in-pip-url-stays",
        "two-urls",
    ],
)
def test_redact_value_hides_url_credentials(value, expected):
    assert redact_value(value) == expected
    assert redact({"uri": value}) == {"uri": expected}


# ----- free text -----
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("password: hunter2", "password: ***"),
        ("+  db_password: hunter2  # prod", "+  db_password: ***  # prod"),
        ("MLFLOW_TRACKING_PASSWORD=abc", "MLFLOW_TRACKING_PASSWORD=***"),
        ("export HF_TOKEN=hf_abc", "export HF_TOKEN=***"),
        ("MLFLOW_TRACKING_PASSWORD=abc mlflow ui --port 5000", "MLFLOW_TRACKING_PASSWORD=*** mlflow ui --port 5000"),
        ("run: FOO=1 AWS_SECRET_ACCESS_KEY=wJalr/K7 python x.py", "run: FOO=1 AWS_SECRET_ACCESS_KEY=*** python x.py"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ('curl -H "Authorization: Bearer eyJhbGci.J9x1" https://h', 'curl -H "Authorization: Bearer ***" https://h'),
        ('  "token": "abc",', '  "token": "***",'),
        ('  "pin_pwd": 1234,', '  "pin_pwd": ***,'),
        ('api_key = "abc"', 'api_key = "***"'),
        ("passphrase = s3cret", "passphrase = ***"),
        ("uri: postgresql://u:p@ss/w@db/x", "uri: postgresql://u:***@db/x"),
    ],
)
def test_redact_text_hides_secret_assignments(line, expected):
    assert redact_text(f"{line}\n") == f"{expected}\n"


DIFF = """\
diff --git a/train.py b/train.py
--- a/train.py
+++ b/train.py
@@ -1,2 +1,9 @@
+    token = tokenizer(x)
+    self.token = token
+    password: str | None = None
+    key = "lr"
+    print("password: " + pw + "!")
+    password = "hunter2"
+    os.environ["MLFLOW_TRACKING_PASSWORD"] = "abc"
diff --git a/config.yaml b/config.yaml
@@ -1 +1,4 @@
 lr: 0.1
+token: ${oc.env:HF_TOKEN}
+password: hunter2
-password: old
"""


def test_redact_text_in_code_hides_only_literals():
    # In train.py only the quoted literals go; ordinary code lines and the placeholder stay as they are.
    expected = (
        DIFF.replace('password = "hunter2"', 'password = "***"')
        .replace('= "abc"', '= "***"')
        .replace("password: hunter2", "password: ***")
        .replace("password: old", "password: ***")
    )

    assert redact_text(DIFF) == expected


# ----- the uploaded git diff -----
def git(repo: Path, *args: str) -> bytes:
    command = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]
    return subprocess.run([*command, *args], check=True, capture_output=True).stdout


@pytest.fixture
def dirty_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repo whose committed ``config.yaml`` gained a password and a database URL with credentials."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    (tmp_path / "config.yaml").write_text("lr: 0.1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "config.yaml")
    git(tmp_path, "commit", "-q", "-m", "init")
    (tmp_path / "config.yaml").write_text("lr: 0.1\npassword: hunter2\nuri: postgresql://bob:zq9s/cr@t@db:5432/x\n")
    return tmp_path


def test_git_diff_is_redacted(dirty_repo):
    diff = recorder._git_diff(dirty_repo)

    assert "+password: ***" in diff
    assert "+uri: postgresql://bob:***@db:5432/x" in diff
    assert "hunter2" not in diff and "zq9" not in diff and "cr@t" not in diff


def test_a_cut_git_diff_ends_before_a_half_secret(dirty_repo, monkeypatch):
    # Cut inside the URL's password: its first characters alone could not be recognised as a secret.
    monkeypatch.setattr(recorder, "MAX_DIFF_BYTES", git(dirty_repo, "diff", "HEAD").index(b"zq9s") + 3)

    diff = recorder._git_diff(dirty_repo)

    assert "+password: ***" in diff and "diff cut at" in diff
    assert "zq9" not in diff and "postgresql" not in diff
