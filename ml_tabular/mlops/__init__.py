"""Everything that talks to MLflow. Nothing outside this package imports ``mlflow``."""
