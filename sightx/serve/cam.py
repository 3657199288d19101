"""Grad-CAM heat maps (captum's LayerGradCam on the backbone's last feature block): where the model looked.

The target is the predicted grade's logit for a classifier and the score for a regression head.
The map is upsampled to the preprocessed field and returned as an RGBA PNG (colour by heat,
alpha rising with it), so a page can lay it over the field and toggle it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from sightx.inference.grader import Grader
from sightx.inference.transforms import normalize_batch
from sightx.models.factory import last_feature_block
from sightx.serve.errors import Refused

NEEDS_TORCH = "Grad-CAM needs PyTorch: serve the hub folder or the .pt checkpoint (--runtime torch), or grade without cam=1"


def heat_map(grader: Grader, tensor: torch.Tensor, grade: int) -> np.ndarray:
    """(H, W) float32 in [0, 1] at the model's input size; zeros where nothing argues for `grade`.

    Runs the model with gradients: call it from the model's thread, like `Grader.outputs`.
    """
    model = grader.model
    if model is None:
        raise Refused(400, NEEDS_TORCH)
    target = grade if grader.head.width > 1 else 0
    x = normalize_batch(tensor[None], grader.device, channels_last=False, norm=grader.checkpoint.normalization)
    cam = LayerGradCam(model, last_feature_block(model))
    with torch.enable_grad():
        attr = cam.attribute(x, target=target, relu_attributions=True)
    up = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[2:]), "bilinear")
    heat = up[0, 0].float().cpu().numpy()
    peak = float(heat.max())
    return (heat / peak if peak > 0 else np.zeros_like(heat)).astype(np.float32)


def overlay_png(heat: np.ndarray, size: int, field: torch.Tensor) -> bytes:
    """The heat map at size x size as an RGBA PNG: the jet colour map, transparent where cold and outside the
    field (`field`: the model's uint8 (3, S, S) input, black where preprocessing masked it), where the model's
    upsampled attention spills but nothing was there to look at."""
    h = cv2.resize(heat, (size, size), interpolation=cv2.INTER_LINEAR)
    u8 = np.clip(h * 255, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
    inside = cv2.resize((field.amax(0) > 8).numpy().astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    alpha = np.clip(h * 1.4 * 200, 0, 200).astype(np.uint8) * inside
    ok, png = cv2.imencode(".png", np.dstack([bgr, alpha]))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
