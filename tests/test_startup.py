"""``ml_tabular --help`` starts as fast as Lightning allows: nothing heavy beyond Lightning is imported for it."""

from __future__ import annotations

import subprocess
import sys

import pytest

NOT_FOR_HELP = ("pandas", "pyarrow", "mlflow")  # matplotlib comes with Lightning (torchmetrics imports it)


@pytest.mark.slow
def test_help_imports_no_data_or_tracking_libraries(tmp_path):
    code = (
        "import contextlib, io, sys\nfrom ml_tabular.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *NOT_FOR_HELP], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
