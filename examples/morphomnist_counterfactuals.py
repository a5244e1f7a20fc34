"""Morpho-MNIST from Python: "make this digit thicker", with the exact true counterfactual beside it.

Graph: thickness -> intensity -> image <- digit (the benchmark's data set, benchmarks/morphomnist/ of
this checkout, renders the images
from the MNIST handwriting, so it knows the true counterfactual: the same handwriting re-rendered).
The image node is a conditional diffusion model; abduction is DDIM inversion under the factual
parents, prediction DDIM generation under do(thickness = t + 1.5) (intensity follows its fitted
mechanism). A small model trained for a few minutes on a CPU (seconds in the tests' settings);
the benchmark is benchmarks/morphomnist/ (`python -m benchmarks.morphomnist`).

MNIST is read from CAUSALDIFF_MNIST_DIR or ../shared/data/mnist.
Small settings (the tests): CAUSALDIFF_EXAMPLE_STEPS=200 CAUSALDIFF_EXAMPLE_SMALL=1.
"""

import os
import sys
from pathlib import Path

import torch

import causaldiff as cd
from causaldiff.evaluation import save_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's benchmarks/ (not installed)
from benchmarks.morphomnist.dataset import MorphoMNIST, measure  # noqa: E402

STEPS = int(os.environ.get("CAUSALDIFF_EXAMPLE_STEPS", "3000"))
SMALL = os.environ.get("CAUSALDIFF_EXAMPLE_SMALL", "0") == "1"

data = MorphoMNIST(subset=48 if SMALL else 3000, workers=1 if SMALL else 2)
train, test = data.load("train", 48 if SMALL else 3000), data.load("test", 8)

width = 8 if SMALL else 32
image = cd.DiffusionMechanism(cd.DiffusionConfig(
    guidance="conditional", schedule=cd.ScheduleConfig(kind="cosine"),
    sampler=cd.DDIMConfig(num_inference_steps=5 if SMALL else 50, inversion_fixed_point_iters=3),
    net=cd.UNetConfig(base_channels=width, channel_mult=(1, 2), mid_attention=False, num_groups=4),
    train=cd.TrainConfig(steps=STEPS, batch_size=32 if SMALL else 128, lr=1e-3)))
parents = cd.AdditiveNoiseConfig(hidden=(32, 32), steps=min(STEPS, 1000))
scm = cd.SCM(data.graph(), {"digit": cd.CategoricalMechanism(num_classes=10),
                            "thickness": cd.AdditiveNoiseMechanism(parents),
                            "intensity": cd.AdditiveNoiseMechanism(parents), "image": image})
scm.fit(train.values)

thicker = {"thickness": test.values["thickness"] + 1.5}
ours = scm.counterfactual(test.values, do=thicker, seed=0)      # the model's answer
truth = data.counterfactual(test, thicker)                      # the same handwriting, re-rendered

print("thickness  factual  target  measured(ours)  measured(true)")
for f, t, m, mt in zip(test.values["thickness"], thicker["thickness"], measure(ours["image"])["thickness"],
                       measure(truth["image"])["thickness"]):
    print(f"           {f:7.2f} {t:7.2f} {m:15.2f} {mt:15.2f}")
mse = (ours["image"] - truth["image"]).pow(2).mean().item()
unchanged = (test.values["image"] - truth["image"]).pow(2).mean().item()
print(f"MSE to the true counterfactual: {mse:.4f} (the unchanged image: {unchanged:.4f})")
path = save_grid([test.values["image"], ours["image"], truth["image"]],
                 ["factual", "ours: thicker", "true: thicker"], "morphomnist_thicker.png")
print(f"saved {path}")
