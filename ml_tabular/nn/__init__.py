"""Plain torch networks, built from ints and lists (no Lightning, no config objects)."""

from ml_tabular.nn.embeddings import CategoricalEmbeddings, embedding_dim
from ml_tabular.nn.mlp import MLP
from ml_tabular.nn.tabular import TabularNet

__all__ = ["MLP", "CategoricalEmbeddings", "TabularNet", "embedding_dim"]
