"""Grad-CAM (sightx.serve.cam, captum's LayerGradCam) peaks over a lesion: on synthetic fields with a
haemorrhage-coloured blot at a known, random place, graded by a checkpoint whose features respond
to that colour and nothing else.

Why a hand-set model and not a trained one: a ResNet trained for the seconds a test may take (on
two CPU cores) learns to tell blotted from clean fields, but its last block has not yet learnt to
localise (measured: the heat map was flat, its mean inside the blot 1.0x the field's). The
weights below make the model's only evidence a map of the lesion colour, carried unchanged
through every residual stage (residual branches zeroed, the shortcuts identity on one channel),
so the test checks what the heat-map code owns: the target class, the layer it hooks, the
upsampling, orientation and normalisation of the map, through a checkpoint file and the Grader.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sightx.contracts import sample
from sightx.contracts.checkpoint import Checkpoint, save
from sightx.image.preprocess import PreprocessOptions
from sightx.inference.grader import Grader
from sightx.models.factory import build_model
from sightx.serve.cam import heat_map
from sightx.synth.render import ImageSpec, render

SIZE = 256  # model input: ResNet's last stage is then an 8 x 8 map
LESION_R = 20  # px at SIZE: a large blot haemorrhage, wider than the last stage's sampling stride
BLOOD = np.array([0.5, 0.22, 0.28])  # what blood leaves of red, green and blue (the generator's tint, deepened)
TARGET = 4


def _lesion_detector() -> nn.Module:
    """resnet18 whose logit TARGET is the mean over the image of relu(R - 1.5 G) (raw 0-1 units)."""
    torch.manual_seed(0)
    model = build_model("resnet18", "classify")
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])  # the checkpoint's ImageNet normalisation
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()  # mean 0, var 1: each BatchNorm is weight * x + bias
        taps = model.conv1.weight.shape[2] * model.conv1.weight.shape[3]
        model.conv1.weight[0, 0] = std[0] / taps  # R - 1.5 G of the un-normalised pixel, averaged over the 7 x 7 window
        model.conv1.weight[0, 1] = -1.5 * std[1] / taps
        model.bn1.weight[0] = 1.0
        model.bn1.bias[0] = mean[0] - 1.5 * mean[1]
        for layer in (model.layer2, model.layer3, model.layer4):
            conv, bn = layer[0].downsample
            conv.weight[0, 0] = 1.0  # the shortcut carries channel 0; every residual branch ends in a zero BatchNorm
            bn.weight[0] = 1.0
        model.fc.weight[TARGET, 0] = 50.0
    return model.eval()


@pytest.fixture(scope="module")
def grader(tmp_path_factory: pytest.TempPathFactory) -> Grader:
    path = tmp_path_factory.mktemp("cam") / "best.pt"
    pre = PreprocessOptions(size=SIZE, quality=95).to_dict()
    save(path, Checkpoint("resnet18", "classify", SIZE, pre, [0.5, 1.5, 2.5, 3.5], _lesion_detector().state_dict()))
    return Grader(path, "cpu")


def _field(seed: int, grader: Grader) -> np.ndarray:
    """A healthy synthetic eye through the checkpoint's preprocessing: what the model sees."""
    jpeg = render(ImageSpec((11, seed), 0, seed % 2 == 1, (640, 427), 90, 0.0)).jpeg
    return sample.decode_sample(grader.prepare(jpeg).jpeg)


def _with_lesion(field: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """The field with a blot at a random place inside it; its centre (x, y) and mask."""
    angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6) * SIZE / 2
    x, y = SIZE / 2 + reach * np.cos(angle), SIZE / 2 + reach * np.sin(angle)
    yy, xx = np.ogrid[:SIZE, :SIZE]
    mask = (xx - x) ** 2 + (yy - y) ** 2 <= LESION_R**2
    out = field.copy()
    out[mask] = (out[mask] * BLOOD).astype(np.uint8)
    return out, (x, y), mask


def test_heat_map_peaks_over_the_lesion(grader: Grader) -> None:
    rng = np.random.default_rng(5)
    fields = [_field(seed, grader) for seed in range(3)]
    hits, concentration = 0, []
    without = grader.outputs([grader.transform(f) for f in fields])[:, TARGET]
    for k in range(6):
        img, (x, y), mask = _with_lesion(fields[k % 3], rng)
        tensor = grader.transform(img)
        out = grader.outputs([tensor])[0]
        assert int(out.argmax()) == TARGET and out[TARGET] > without[k % 3]  # the blot is the model's evidence
        heat = heat_map(grader, tensor, TARGET)
        assert heat.shape == (SIZE, SIZE) and heat.max() == pytest.approx(1.0)
        row, col = np.unravel_index(int(heat.argmax()), heat.shape)
        hits += np.hypot(col - x, row - y) <= LESION_R + SIZE / 8  # within the lesion, give or take one cell of the 8 x 8 map
        concentration.append(heat[mask].mean() / heat.mean())
    assert hits == 6, hits
    assert min(concentration) > 3, concentration  # the heat sits on the lesion, not spread over the field
