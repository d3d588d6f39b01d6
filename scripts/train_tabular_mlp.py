"""Train the tabular MLP: the same as ``ml_tabular fit --config configs/tabular.yaml``.

Extra arguments pass through, e.g. ``python scripts/train_tabular_mlp.py --trainer.max_epochs 5``.
"""

import sys
from pathlib import Path

from ml_tabular.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tabular.yaml"

if __name__ == "__main__":
    main(["fit", "--config", str(CONFIG), *sys.argv[1:]])
