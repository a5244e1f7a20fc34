"""MNIST do(digit) counterfactuals from Python, the Diff-SCM way (Sanchez & Tsaftaris 2022).

Graph: digit -> image. The image node is an unconditional UNet denoiser steered by a noisy
anti-causal classifier p(digit | x_t, t): abduction is DDIM inversion of the observed image,
prediction is DDIM generation guided toward the new digit with scale s. A tiny model trained for
a few minutes on a CPU (seconds in the small settings of the tests); the full-size benchmark is
benchmarks/mnist/ (python -m benchmarks.mnist).

MNIST is read from CAUSALDIFF_MNIST_DIR or ../shared/data/mnist (see causaldiff.datasets.mnist).
Small settings (the tests): CAUSALDIFF_EXAMPLE_STEPS=200 CAUSALDIFF_EXAMPLE_SMALL=1.
"""

import os
from pathlib import Path

import networkx as nx
import torch

import causaldiff as cd
from causaldiff import metrics as M
from causaldiff.datasets import load_mnist
from causaldiff.evaluation import save_grid

STEPS = int(os.environ.get("CAUSALDIFF_EXAMPLE_STEPS", "3000"))
SMALL = os.environ.get("CAUSALDIFF_EXAMPLE_SMALL", "0") == "1"
width = 8 if SMALL else 32

images, digits = load_mnist(split="train", n=5000 if SMALL else 60000, seed=0)  # (n, 1, 28, 28) in [-1, 1]
test_images, test_digits = load_mnist(split="test", n=16, seed=0)

image = cd.DiffusionMechanism(
    guidance="anticausal",           # unconditional eps(x_t, t) + grad log p(digit | x_t, t)
    guidance_scale=2.0,              # s
    guide_abduction=False,           # Diff-SCM: unguided DDIM inversion
    abduction_fraction=0.75,         # invert only the first 75% of the trajectory
    schedule=cd.ScheduleConfig(kind="cosine", num_train_timesteps=1000),
    net=cd.UNetConfig(base_channels=width, channel_mult=(1, 2, 2), num_groups=8, mid_attention=not SMALL),
    predictor=cd.ImagePredictorConfig(base_channels=width, channel_mult=(1, 2), num_groups=8),
    sampler=cd.DDIMConfig(num_inference_steps=8 if SMALL else 50),
    train=cd.TrainConfig(steps=STEPS, batch_size=16 if SMALL else 64, lr=2e-3, warmup_steps=min(100, STEPS // 10)),
    predictor_train=cd.TrainConfig(steps=STEPS // 2, batch_size=16 if SMALL else 64, lr=2e-3))
scm = cd.SCM(nx.DiGraph([("digit", "image")]), {"digit": cd.CategoricalMechanism(), "image": image})
scm.fit({"digit": digits, "image": images})
print(scm)

# What would each test image have looked like, had its digit been 5?
factual = {"digit": test_digits, "image": test_images}
cf = scm.counterfactual(factual, do={"digit": 5}, seed=0)
assert torch.equal(cf["digit"], torch.full_like(test_digits, 5))

# Score with a classifier trained independently of the model (effectiveness), and by how much
# the images moved (minimality: mean absolute pixel change)
classifier = M.train_classifier(images, digits, config=M.ClassifierConfig(steps=100 if SMALL else 1000,
                                                                            batch_size=32 if SMALL else 128))
print(f"independent classifier: factual accuracy {float(M.effectiveness(classifier, test_images, test_digits)):.2f}")
print(f"effectiveness of do(digit=5): {float(M.effectiveness(classifier, cf['image'], cf['digit'])):.2f}")
print(f"minimality (L1 to the factual): {float(M.minimality(test_images, cf['image']).mean()):.3f}")

# Several target digits for the same images: abduct once, then predict under each intervention
noise = scm.abduct(factual, seed=0)
rows = [test_images[:8]] + [scm.predict({"image": noise["image"][:8]}, do={"digit": k})["image"] for k in (0, 3, 7)]
out = Path("outputs/mnist_counterfactuals.png")
save_grid(rows, ["factual", "do(digit=0)", "do(digit=3)", "do(digit=7)"], out, title="MNIST counterfactuals")
print(f"wrote {out}")
