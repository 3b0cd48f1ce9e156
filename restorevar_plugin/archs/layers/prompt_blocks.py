"""The blocks that give a Restormer decoder its task information: PromptIR's learned prompts and
AWRaCLe's in-context blocks. Parameter names follow the official ``net/model.py`` of
va1shn9v/PromptIR (``PromptGenBlock``) and sudraj2002/AWRaCLe (``InContextExtBlock``).
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PromptGenBlock(nn.Module):
    """PromptIR's prompt: a softmax-weighted sum of ``prompt_len`` learned components, resized and convolved.

    The weights are ``softmax(linear_layer(mean over pixels of x))``; the sum is resized bilinearly
    (``align_corners=False``) to ``x``'s size and passed through a bias-free 3x3 conv.

    Args:
        prompt_dim (int): Prompt channels P.
        prompt_len (int): Number of components.
        prompt_size (int): Side of the learned components.
        lin_dim (int): Channels C of the feature map it reads.

    Shapes: ``(B, C, H, W) -> (B, P, H, W)``.
    """

    def __init__(self, prompt_dim=128, prompt_len=5, prompt_size=96, lin_dim=192):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)
        prompt = torch.einsum('bk,kchw->bchw', weights, self.prompt_param[0])
        return self.conv3x3(F.interpolate(prompt, x.shape[-2:], mode='bilinear', align_corners=False))


class ContextSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over context tokens, no residual (official ``ContextAttention``).

    Names ``norm``, ``to_qkv``, ``to_out`` (bias-free); scale ``dim_head ** -0.5``.
    Shapes: ``(B, N, dim) -> (B, N, dim)``.
    """

    def __init__(self, dim, heads=8, dim_head=64):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x):
        q, k, v = (rearrange(t, 'b n (h d) -> b h n d', h=self.heads) for t in self.to_qkv(self.norm(x)).chunk(3, -1))
        return self.to_out(rearrange(F.scaled_dot_product_attention(q, k, v), 'b h n d -> b n (h d)'))


class ContextCrossAttention(nn.Module):
    """Pixels of a feature map attend to context tokens (official ``CrossAttention``), no residual.

    One LayerNorm ``norm`` is applied to both the pixels and the tokens, as officially; ``to_q``,
    ``to_kv``, ``to_out`` are bias-free; scale ``dim_head ** -0.5``.
    Shapes: ``x (B, dim, H, W)``, ``tokens (B, N, dim) -> (B, dim, H, W)``.
    """

    def __init__(self, dim, heads=8, dim_head=64):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, heads * dim_head * 2, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x, tokens):
        height = x.shape[-2]
        q = rearrange(self.to_q(self.norm(rearrange(x, 'b c h w -> b (h w) c'))), 'b n (h d) -> b h n d',
                      h=self.heads)
        k, v = (rearrange(t, 'b n (h d) -> b h n d', h=self.heads) for t in self.to_kv(self.norm(tokens)).chunk(2, -1))
        out = self.to_out(rearrange(F.scaled_dot_product_attention(q, k, v), 'b h n d -> b n (h d)'))
        return rearrange(out, 'b (h w) c -> b c h w', h=height)


class InContextBlock(nn.Module):
    """AWRaCLe's prompt from a (degraded, clean) context pair (official ``InContextExtBlock``).

    1. Context tokens ``(L, 2B, context_dim)`` (CLIP's LND layout, the B degraded contexts first, then
       the B clean ones) -> ``GELU(linear_layer_ctx)``; the degraded and clean halves are concatenated
       along the tokens, ``(B, 2L, P)``, and mixed by :class:`ContextSelfAttention` (``ctx_attn``).
    2. The features: ``GELU(proj_features(x))`` (1x1 conv ``lin_dim -> P``).
    3. :class:`ContextCrossAttention` (``fusion``) from the pixels to the mixed tokens, then
       ``GELU(conv3x3)``.

    Nothing marks which half of the tokens is the degraded context (no position or type embedding after
    the concatenation), so, as in the official block, swapping the degraded and clean images of the pair
    leaves the prompt unchanged.

    Args:
        prompt_dim (int): Prompt channels P.
        lin_dim (int): Channels of the feature map it reads.
        context_dim (int): Channels of the context tokens (768 for CLIP ViT-B/32).
        heads (int): Attention heads of both attentions.
        dim_head (int): Channels per head.

    Shapes: ``x (B, lin_dim, H, W)``, ``tokens (L, 2B, context_dim) -> (B, P, H, W)``.
    """

    def __init__(self, prompt_dim=128, lin_dim=512, context_dim=768, heads=4, dim_head=64):
        super().__init__()
        self.linear_layer_ctx = nn.Linear(context_dim, prompt_dim)
        self.ctx_attn = ContextSelfAttention(prompt_dim, heads, dim_head)
        self.proj_features = nn.Conv2d(lin_dim, prompt_dim, kernel_size=1, bias=False)
        self.fusion = ContextCrossAttention(prompt_dim, heads, dim_head)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x, tokens):
        if tokens.shape[1] != 2 * x.shape[0]:
            raise ValueError(f'InContextBlock: context tokens {tuple(tokens.shape)} must hold 2 x {x.shape[0]} '
                             'images (degraded contexts, then clean contexts) in their second dimension')
        context = F.gelu(self.linear_layer_ctx(tokens.permute(1, 0, 2)))
        degraded, clean = context.chunk(2, dim=0)
        merged = self.ctx_attn(torch.cat([degraded, clean], dim=1))
        return F.gelu(self.conv3x3(self.fusion(F.gelu(self.proj_features(x)), merged)))
