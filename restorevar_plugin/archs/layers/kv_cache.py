"""Key/value cache of one self-attention layer during next-scale generation."""


class KVCache:
    """Keys and values of every token generated so far, for one self-attention layer.

    The keys are stored already L2-normalised and rotated by RoPE (as the official code does), so a new
    scale only computes its own queries, keys and values and attends to everything cached before it.

    The total number of tokens is known before generation: the storage ``(B, heads, capacity, head_dim)``
    is allocated on the first :meth:`extend` and each scale is written into its slice. The returned keys and
    values are views of the filled part, so no scale copies the earlier ones again (the official cache
    concatenates, copying the whole prefix at every scale).

    Args:
        capacity (int): Tokens the cache will hold at most (``L``, all scales).
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.keys = None
        self.values = None
        self.length = 0

    def __len__(self):
        return self.length

    def extend(self, keys, values):
        """Append the current scale and return the keys and values of all tokens so far.

        Args:
            keys (Tensor): ``(B, heads, n, head_dim)`` keys of the current scale.
            values (Tensor): ``(B, heads, n, head_dim)`` values of the current scale.

        Returns:
            tuple[Tensor, Tensor]: ``(B, heads, len(self), head_dim)`` keys and values, oldest first.
        """
        end = self.length + keys.shape[-2]
        if end > self.capacity:
            raise ValueError(f'KVCache of capacity {self.capacity} cannot hold {end} tokens')
        if self.keys is None:
            shape = (*keys.shape[:-2], self.capacity, keys.shape[-1])
            self.keys, self.values = keys.new_empty(shape), values.new_empty(shape)
        self.keys[..., self.length:end, :] = keys
        self.values[..., self.length:end, :] = values
        self.length = end
        return self.keys[..., :end, :], self.values[..., :end, :]
