"""One shared smp segmentation model for all region patches, conditioned on the region id.

>>> seg = PatchSegmenter(encoder="resnet18", num_regions=3, allowed_classes=[[1], [2, 3], [4]])
>>> seg(torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 0])).shape     # (N, C, h, w)
torch.Size([4, 13, 64, 64])
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from bonepatch.anatomy import NUM_CLASSES

CONDITIONINGS = ("channels", "film", "none")


class PatchSegmenter(nn.Module):
    """``smp.create_model`` applied to a batch of patches (N, in_channels, h, w) -> logits (N, C, h, w).

    Args:
        arch, encoder, encoder_weights: passed to ``smp.create_model`` (any smp/timm encoder;
            ``encoder_weights=None`` because nothing can be downloaded offline).
        num_classes: C, background included.
        num_regions: R, the number of region ids the conditioning knows.
        conditioning: ``"channels"`` (a learned ``embed_dim``-vector per region broadcast as extra
            input channels), ``"film"`` (per-region scale and shift of the decoder output before
            the segmentation head) or ``"none"``. Without a region id (``region=None``) the
            embedding is zero / FiLM the identity.
        allowed_classes: per region, the class ids it may predict (background always allowed).
            With ``restrict=True`` other classes get logit ``-1e4`` (probability 0).
        pad_to_stride: pad patches whose h, w are not multiples of the encoder's output stride
            (replicate) and crop the logits back; False raises a ValueError instead.
    """

    def __init__(self, arch: str = "Unet", encoder: str = "resnet18", num_classes: int = NUM_CLASSES,
                 num_regions: int = 7, conditioning: str = "channels", encoder_weights: str | None = None,
                 in_channels: int = 1, embed_dim: int = 4, allowed_classes: Sequence[Sequence[int]] | None = None,
                 restrict: bool = True, pad_to_stride: bool = True, **model_kwargs):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise KeyError(f"unknown conditioning {conditioning!r}; choose one of {CONDITIONINGS}")
        self.conditioning, self.in_channels, self.num_classes = conditioning, int(in_channels), int(num_classes)
        self.num_regions, self.restrict, self.pad_to_stride = int(num_regions), bool(restrict), bool(pad_to_stride)
        extra = int(embed_dim) if conditioning == "channels" else 0
        self.model = smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights,
                                      in_channels=self.in_channels + extra, classes=self.num_classes, **model_kwargs)
        self.embed = nn.Embedding(self.num_regions, extra) if extra else None
        self._decoder_star = decoder_takes_star(self.model.decoder)  # inspected once, not per call
        if conditioning == "film":
            dec_ch = self._decoder_channels()
            self.film = nn.Embedding(self.num_regions, 2 * dec_ch)
            nn.init.zeros_(self.film.weight)  # starts as the identity (scale 1 + 0, shift 0)
        self.set_allowed_classes(allowed_classes)

    def _decoder_channels(self) -> int:
        head = self.model.segmentation_head
        conv = next(m for m in head.modules() if isinstance(m, nn.Conv2d))
        return conv.in_channels

    def set_allowed_classes(self, allowed_classes: Sequence[Sequence[int]] | None):
        """(Re)set the per-region allowed classes; None = every class allowed everywhere."""
        mask = torch.ones(self.num_regions, self.num_classes, dtype=torch.bool)
        if allowed_classes is not None:
            if len(allowed_classes) != self.num_regions:
                raise ValueError(f"allowed_classes has {len(allowed_classes)} regions, the segmenter "
                                 f"{self.num_regions}; build it with num_regions={len(allowed_classes)}")
            mask.zero_()
            mask[:, 0] = True  # background is always allowed
            for r, ids in enumerate(allowed_classes):
                mask[r, list(ids)] = True
        self.register_buffer("allowed", mask, persistent=False)

    @property
    def output_stride(self) -> int:
        return int(getattr(self.model.encoder, "output_stride", 32))

    def forward(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Patches (N, in_channels, h, w) and region ids (N,) long or None -> logits (N, C, h, w)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"patches must be (N, {self.in_channels}, h, w), got {tuple(x.shape)}")
        if region is not None and (region.shape != (x.shape[0],) or region.dtype != torch.long):
            raise ValueError(f"region must be (N={x.shape[0]},) long ids, got {tuple(region.shape)} {region.dtype}")
        h, w = x.shape[-2:]
        x = self._pad(x)
        if self.embed is not None:  # region embedding as extra constant input channels
            e = self.embed(region) if region is not None else x.new_zeros(x.shape[0], self.embed.embedding_dim)
            x = torch.cat([x, e.to(x)[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        logits = self._forward_model(x, region)[..., :h, :w]  # crop the padding back
        if self.restrict and region is not None:
            logits = logits.masked_fill(~self.allowed[region][:, :, None, None], -1e4)
        return logits

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.output_stride
        ph, pw = -x.shape[-2] % s, -x.shape[-1] % s
        if ph == pw == 0:
            return x
        if not self.pad_to_stride:
            raise ValueError(f"patch size {tuple(x.shape[-2:])} is not a multiple of the encoder's "
                             f"stride {s}; use a multiple of {s} or pad_to_stride=True")
        return F.pad(x, (0, pw, 0, ph), mode="replicate")  # bottom / right, cropped back after

    def _forward_model(self, x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        if self.conditioning != "film" or region is None:
            return self.model(x)
        m = self.model  # the smp stages, with FiLM between decoder and head
        features = m.encoder(x)
        dec = m.decoder(*features) if self._decoder_star else m.decoder(features)
        gamma, beta = self.film(region).to(dec)[:, :, None, None].chunk(2, 1)
        return m.segmentation_head(dec * (1 + gamma) + beta)


def decoder_takes_star(decoder: nn.Module) -> bool:
    """True for smp 0.3-0.4 decoders (``forward(*features)``), False for smp >= 0.5 (``forward(features)``)."""
    params = inspect.signature(decoder.forward).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def call_decoder(decoder: nn.Module, features: list[torch.Tensor]) -> torch.Tensor:
    """Run an smp decoder on the encoder's feature list: smp >= 0.5 takes the list
    (``forward(features)``), smp 0.3-0.4 takes the features as arguments (``forward(*features)``)."""
    return decoder(*features) if decoder_takes_star(decoder) else decoder(features)
