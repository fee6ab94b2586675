"""Keypoint net: timm backbone + HRNet-style heatmap head or RTMPose-style SimCC head.

Input: preprocessed images (B, 1, H, W); they are resized to ``input_size``. Output keypoints are
in INPUT-image pixels (x, y) (the half-pixel rule of :mod:`bonepatch.geometry.heatmaps`).

>>> net = KeypointNet(backbone="test_resnet", input_size=(128, 32))
>>> out = net(torch.rand(2, 1, 256, 64)); out.keypoints.shape, out.confidence.shape, out.raw.shape
(torch.Size([2, 16, 2]), torch.Size([2, 16]), torch.Size([2, 16, 32, 8]))
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from bonepatch.anatomy import NUM_KEYPOINTS
from bonepatch.geometry import heatmaps as hm

HEADS = ("heatmap", "simcc")


@dataclass
class KeypointOutput:
    keypoints: torch.Tensor  # (B, K, 2) input-image pixels
    confidence: torch.Tensor  # (B, K) in [0, 1]
    raw: torch.Tensor | tuple  # heatmaps (B, K, h/4, w/4) or SimCC logits (x (B, K, n_x), y (B, K, n_y))


def _conv_bn_relu(cin, cout, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class KeypointNet(nn.Module):
    """Keypoints from a timm feature backbone.

    Args:
        backbone: any timm model that supports ``features_only``. HRNets are built with
            ``feature_location=''`` so their high-resolution branches are the features.
        head: ``"heatmap"`` (Gaussian heatmaps at stride 4, MSE) or ``"simcc"`` (x / y bin
            classification with ``simcc_split_ratio`` bins per pixel, KL loss).
        input_size: (h, w) the image is resized to.
        fuse: concatenate every feature level of stride >= 4, upsampled to stride 4 (HRNetV2
            style); False uses only the stride-4 level (the first level with stride >= 4).
        sigma: target Gaussian std in heatmap pixels (heatmap) or input pixels (SimCC, times the
            split ratio in bins).
        decode / eval_decode: heatmap decoders while training / in eval (``"soft"``: global
            soft-argmax, ``"local"``: windowed, sharper); SimCC in eval uses a window of 3 sigma.
        temperature: soft-argmax temperature (heatmap / temperature).
        channels_last: run the backbone, neck and head in NHWC memory format (weights converted
            here, input on entry): the same result, 15-20 % faster on the CPU (oneDNN) for the
            HRNet's many small convolutions, and the format GPU convolutions prefer.
    """

    def __init__(self, backbone: str = "hrnet_w18_small", head: str = "heatmap", input_size=(512, 128),
                 num_keypoints: int = NUM_KEYPOINTS, pretrained: bool = False, sigma: float = 2.0,
                 simcc_split_ratio: float = 2.0, simcc_hidden: int = 256, fuse: bool = True,
                 head_channels: int = 64, decode: str = "soft", eval_decode: str = "local",
                 temperature: float = 0.05, backbone_kwargs: dict | None = None, channels_last: bool = True):
        super().__init__()
        if head not in HEADS:
            raise KeyError(f"unknown keypoint head {head!r}; choose one of {HEADS}")
        self.head_type, self.input_size = head, (int(input_size[0]), int(input_size[1]))
        self.num_keypoints, self.sigma, self.split = int(num_keypoints), float(sigma), float(simcc_split_ratio)
        self.decode, self.eval_decode, self.temperature = decode, eval_decode, float(temperature)
        kwargs = {"feature_location": ""} if backbone.startswith("hrnet") else {}
        kwargs.update(backbone_kwargs or {})
        self.backbone = timm.create_model(backbone, features_only=True, pretrained=pretrained, in_chans=1, **kwargs)
        red, chans = self.backbone.feature_info.reduction(), self.backbone.feature_info.channels()
        levels = [i for i, s in enumerate(red) if s >= 4]
        if not levels:
            raise ValueError(f"backbone {backbone!r} has no feature level of stride >= 4 (strides {red})")
        self.levels = levels if fuse else levels[:1]
        self.stride = red[self.levels[0]]
        cin = sum(chans[i] for i in self.levels)
        self.heat_size = (self.input_size[0] // self.stride, self.input_size[1] // self.stride)
        self.neck = _conv_bn_relu(cin, head_channels)
        if head == "heatmap":
            self.head = nn.Conv2d(head_channels, self.num_keypoints, 1)
        else:
            self.bins = (round(self.input_size[0] * self.split), round(self.input_size[1] * self.split))
            self.head = nn.Conv2d(head_channels, self.num_keypoints, 7, padding=3)
            flat = self.heat_size[0] * self.heat_size[1]
            self.mlp = nn.Sequential(nn.LayerNorm(flat), nn.Linear(flat, simcc_hidden), nn.GELU())
            self.cls_x, self.cls_y = nn.Linear(simcc_hidden, self.bins[1]), nn.Linear(simcc_hidden, self.bins[0])
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # --- stages -----------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> fused stride-``self.stride`` features (B, C, h/s, w/s) of the resized input."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"KeypointNet wants (B, 1, H, W) images, got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(x)
        size = feats[self.levels[0]].shape[-2:]
        up = [feats[i] if feats[i].shape[-2:] == size else
              F.interpolate(feats[i], size=size, mode="bilinear", align_corners=False) for i in self.levels]
        return self.neck(torch.cat(up, 1))

    def forward_head(self, f: torch.Tensor):
        """Features -> raw head output: heatmaps (B, K, h, w) or SimCC logits (x, y)."""
        if self.head_type == "heatmap":
            return self.head(f)
        # (B, K, h, w) -> (B, K, h*w): one flattened spatial vector per keypoint (RTMPose)
        z = self.mlp(self.head(f).flatten(2))
        return self.cls_x(z), self.cls_y(z)

    def decode_raw(self, raw, image_size):
        """Raw head output -> keypoints (B, K, 2) in pixels of an image of ``image_size``, confidence."""
        H, W = int(image_size[0]), int(image_size[1])
        if self.head_type == "heatmap":
            mode = self.decode if self.training else self.eval_decode
            xy, conf = hm.decode_heatmaps(raw, mode, self.temperature, sigma=self.sigma)
            grid = raw.shape[-2:]
        else:
            s = self.sigma * self.split
            xy, conf = hm.decode_simcc(*raw, radius=None if self.training else int(3 * s + 1), sigma=s)
            grid = self.bins
        x = hm.from_grid(xy[..., 0], W, grid[1])
        y = hm.from_grid(xy[..., 1], H, grid[0])
        return torch.stack([x, y], -1), conf

    def forward(self, x: torch.Tensor) -> KeypointOutput:
        raw = self.forward_head(self.forward_features(x))
        kp, conf = self.decode_raw(raw, x.shape[-2:])
        return KeypointOutput(kp, conf, raw)

    # --- loss -------------------------------------------------------------------------------
    def loss(self, out, keypoints: torch.Tensor, image_size) -> torch.Tensor:
        """Keypoint loss of ``out`` (KeypointOutput or its ``raw``) against (B, K, 3) x, y, vis pixels."""
        raw = out.raw if isinstance(out, KeypointOutput) else out
        if keypoints.ndim != 3 or keypoints.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"keypoints must be (B, {self.num_keypoints}, 3) x, y, vis; got {tuple(keypoints.shape)}")
        H, W = int(image_size[0]), int(image_size[1])
        kp = torch.nan_to_num(keypoints[..., :2].float())
        vis = keypoints[..., 2].float().clamp(0, 1)
        if self.head_type == "heatmap":
            h, w = raw.shape[-2:]
            g = torch.stack([hm.to_grid(kp[..., 0], W, w), hm.to_grid(kp[..., 1], H, h)], -1)
            return hm.heatmap_loss(raw, hm.render_heatmaps(g, (h, w), self.sigma), vis)
        ny, nx = self.bins
        g = torch.stack([hm.to_grid(kp[..., 0], W, nx), hm.to_grid(kp[..., 1], H, ny)], -1)
        tx, ty = hm.render_simcc(g, self.bins, self.sigma * self.split)
        return hm.simcc_loss(raw[0], raw[1], tx, ty, vis)
