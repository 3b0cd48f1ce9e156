"""Key/value cache of one self-attention layer during next-scale generation."""
import torch


class KVCache:
    """Keys and values of every token generated so far, for one self-attention layer.

    The keys are stored already L2-normalised and rotated by RoPE (as the official code does), so a new
    scale only computes its own queries, keys and values and attends to everything cached before it.
    """

    def __init__(self):
        self.keys = None
        self.values = None

    def __len__(self):
        return 0 if self.keys is None else self.keys.shape[-2]

    def extend(self, keys, values):
        """Append the current scale and return the keys and values of all tokens so far.

        Args:
            keys (Tensor): ``(B, heads, n, head_dim)`` keys of the current scale.
            values (Tensor): ``(B, heads, n, head_dim)`` values of the current scale.

        Returns:
            tuple[Tensor, Tensor]: ``(B, heads, len(self), head_dim)`` keys and values, oldest first.
        """
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=-2)
            self.values = torch.cat([self.values, values], dim=-2)
        return self.keys, self.values
