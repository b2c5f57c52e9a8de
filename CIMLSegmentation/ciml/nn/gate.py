"""The Cross-modality Information Gate (CIG): how an auxiliary modality talks to a primary.

The project's interpretation of CIML (Shen et al., 2024; see README): an auxiliary's features
pass a variational information bottleneck, which under the KL pressure keeps only what helps the
primary's sub-task (the complementary information), and are weighted by a spatial attention map
computed from both modalities, which says where the auxiliary should speak. The product is the
*message* that is added to the primary's features. By default the latent is decoded by a learned
1x1 convolution first, as a deep variational information bottleneck decodes its latent
(Alemi et al., 2017): added raw, the latent collapsed to the prior (docs/training.md).
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Act, Conv
from torch import nn

from ciml.nn.output import GateOutput

# Keeps exp(log_var) finite in float16 autocast; far outside what training reaches.
LOG_VAR_LIMIT = 10.0


class Weighting(nn.Module):
    """``attention * latent`` as a module of its own, so that hooks (Captum's LayerGradCam,
    forward hooks for inspection) can reach the message as a layer output."""

    def forward(self, attention: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return attention * latent


class CrossModalityInformationGate(nn.Module):
    """Message from one auxiliary modality to one primary modality at one encoder level.

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels C of both modalities at this level.
        bottleneck: use the variational bottleneck (mean and log-variance 1x1 convolutions,
            reparameterised sample and KL in training, the mean and zero KL in eval); otherwise
            a plain 1x1 projection with zero KL (the "attention only" ablation).
        attention: weight the message by a sigmoid spatial attention map computed from the
            primary and auxiliary features; otherwise the map is all ones (the "bottleneck
            only" ablation).
        message: ``decoded`` passes the latent through a learned 1x1 convolution before it is
            weighted and added (a deep VIB's decoder: the network can scale the sampling noise
            down and map the latent into the primary's feature space); ``latent`` adds the
            latent itself (the earlier gate, which collapsed to the prior).
        free_bits: nats per voxel each latent channel may carry without penalty; the gate's
            ``kl_term`` is the sum over channels of ``max(KL_c, free_bits)`` (``kl`` stays the
            true KL).

    Shapes: ``forward(primary (B, C, *S), auxiliary (B, C, *S)) -> GateOutput`` with a message
    of shape (B, C, *S) and an attention map of shape (B, 1, *S).
    """

    def __init__(self, spatial_dims: int, channels: int, bottleneck: bool = True, attention: bool = True,
                 message: str = "decoded", free_bits: float = 0.0):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.use_bottleneck = bottleneck
        self.use_attention = attention
        self.free_bits = free_bits
        self.mean = conv(channels, channels, kernel_size=1)
        self.log_var = conv(channels, channels, kernel_size=1) if bottleneck else None
        self.decoder = conv(channels, channels, kernel_size=1) if message == "decoded" else nn.Identity()
        if attention:
            hidden = max(channels // 2, 1)
            self.attention = nn.Sequential(
                conv(2 * channels, hidden, kernel_size=1), Act[Act.RELU](),
                conv(hidden, 1, kernel_size=1), Act[Act.SIGMOID]())
        else:
            self.attention = None
        self.message = Weighting()

    def forward(self, primary: torch.Tensor, auxiliary: torch.Tensor) -> GateOutput:
        if not self.training:
            return self._inference(primary, auxiliary)
        mean = self.mean(auxiliary)
        if self.log_var is not None:
            log_var = self.log_var(auxiliary).clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT)
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
            per_channel = channel_kl(mean, log_var)
            kl, kl_term = per_channel.sum(), per_channel.clamp(min=self.free_bits).sum()
        else:  # no bottleneck: the projection is the message's latent, with no KL
            latent, kl = mean, mean.new_zeros(())
            kl_term = kl
        if self.attention is not None:
            attention = self.attention(torch.cat([primary, auxiliary], dim=1))
        else:
            attention = torch.ones_like(latent[:, :1])
        return GateOutput(message=self.message(attention, self.decoder(latent)), attention=attention,
                          kl=kl, kl_term=kl_term)

    def _inference(self, primary: torch.Tensor, auxiliary: torch.Tensor) -> GateOutput:
        """The eval forward, the same function as training's with the mean for the latent, as
        channel matrix products: PyTorch's CPU conv3d is slow for 1x1 kernels (a full-resolution
        gate took longer than its level's 3x3x3 encoder block), and in eval the mean and decoder
        convolutions compose into one linear map."""
        weight, bias = _pointwise(self.mean)
        if not isinstance(self.decoder, nn.Identity):
            outer, outer_bias = _pointwise(self.decoder)
            weight, bias = outer @ weight, outer @ bias + outer_bias
        decoded = _apply(weight, bias, auxiliary)
        if self.attention is not None:
            first, last = self.attention[0], self.attention[2]
            w, b = _pointwise(first)
            c = primary.shape[1]  # the first layer reads cat([primary, auxiliary]): split, not copy
            hidden = torch.relu(_apply(w[:, :c], b, primary) + _apply(w[:, c:], None, auxiliary))
            attention = torch.sigmoid(_apply(*_pointwise(last), hidden))
        else:
            attention = torch.ones_like(decoded[:, :1])
        zero = decoded.new_zeros(())
        return GateOutput(message=self.message(attention, decoded), attention=attention, kl=zero, kl_term=zero)


def pointwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied as a channel matrix product (faster than CPU conv3d)."""
    return _apply(*_pointwise(conv), x)


def _pointwise(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 convolution's (C_out, C_in) weight and (C_out,) bias."""
    return conv.weight.flatten(1), conv.bias


def _apply(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x + bias`` over the channels of x (B, C_in, *S) -> (B, C_out, *S)."""
    flat = x.flatten(2)
    batch = weight.expand(flat.shape[0], *weight.shape)
    out = torch.bmm(batch, flat) if bias is None else torch.baddbmm(bias[:, None], batch, flat)
    return out.view(x.shape[0], weight.shape[0], *x.shape[2:])


def channel_kl(mean: torch.Tensor, log_var: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) of each latent channel, averaged over batch and space.

    Args:
        mean, log_var: (B, C, *S).
        dtype: accumulate the averages in this type (float64 for a large window's diagnostics).

    Returns:
        (C,) nats per voxel.
    """
    per_element = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var)
    return per_element.mean(dim=[0, *range(2, per_element.dim())], dtype=dtype)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)), summed over channels, averaged over batch and space.

    Args:
        mean, log_var: (B, C, *S).
    """
    return channel_kl(mean, log_var).sum()
