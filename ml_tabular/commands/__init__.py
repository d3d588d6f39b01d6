"""Commands beside LightningCLI's fit/validate/test/predict: ``ml_tabular <name> --help``."""

COMMANDS = {
    "ui": "ml_tabular.commands.ui",
    "serve": "ml_tabular.commands.serve",
    "register": "ml_tabular.commands.register",
    "score": "ml_tabular.commands.score",
    "server": "ml_tabular.commands.server",
    "tune": "ml_tabular.commands.tune",
    "sync": "ml_tabular.commands.sync",
}  # name -> module with ``main(argv)``, imported on use
