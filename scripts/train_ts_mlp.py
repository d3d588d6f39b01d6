"""Train the time-series MLP: the same as ``ml_tabular fit --config configs/timeseries.yaml``.

Extra arguments pass through, e.g. ``python scripts/train_ts_mlp.py --data.init_args.horizon 24``.
"""

import sys
from pathlib import Path

from ml_tabular.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "timeseries.yaml"

if __name__ == "__main__":
    main(["fit", "--config", str(CONFIG), *sys.argv[1:]])
