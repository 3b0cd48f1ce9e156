"""Feed-forward networks of the RestoreVAR transformer and of the latent refiner."""
from torch import nn


class FFN(nn.Module):
    """VAR feed-forward: ``fc2(GELU_tanh(fc1(x)))`` (official names ``fc1``, ``fc2``).

    Args:
        dim (int): Token channels C.
        hidden_dim (int): Hidden channels (4 C in VAR).

    Shapes: ``(..., C) -> (..., C)``.
    """

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate='tanh')
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class PreNormFFN(nn.Module):
    """Refiner feed-forward with its own LayerNorm: ``Linear(GELU(Linear(LN(x))))``, exact GELU.

    The layers live in ``net`` at the official indices (``net.0`` LN, ``net.1`` and ``net.4`` Linear;
    ``net.3`` and ``net.5`` are the dropouts).

    Args:
        dim (int): Token channels.
        hidden_dim (int): Hidden channels.
        dropout (float): Dropout after the activation and after the output Linear.

    Shapes: ``(..., dim) -> (..., dim)``.
    """

    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)
