"""A pretrained diffusers UNet as the image node (Diff-SCM's setting: a pretrained unconditional
diffusion model steered by a noisy anti-causal predictor of the image's parents).

Needs the optional extra: pip install 'causaldiff[diffusers]'. Point CAUSALDIFF_DIFFUSERS_UNET at a
local folder written by ``UNet2DModel.save_pretrained`` (with its ``scheduler_config.json`` beside it
or in ``../scheduler``) for 1 x 16 x 16 images in [-1, 1]; nothing is ever downloaded. The predictor
trains 2000 steps on 10000 images and the run is saved to ``outputs/pretrained_diffusers/run``
(git-ignored). Without a UNet, a tiny randomly initialised one is written to a temporary folder and
used instead, to show the calls in seconds: its counterfactual images are noise whatever the
predictor learns, so the predictor trains 30 steps on 256 images and the run goes to the
temporary folder, removed at exit.
"""

import os
import tempfile
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

import causaldiff as cd
from causaldiff.datasets import ShapesSCM

unet_dir = os.environ.get("CAUSALDIFF_DIFFUSERS_UNET")
SMALL = unet_dir is None or os.environ.get("CAUSALDIFF_EXAMPLE_SMALL", "0") == "1"  # train only what shows
scratch = None
if unet_dir is None:
    scratch = tempfile.TemporaryDirectory(prefix="causaldiff_example_")  # removed at the end of the script
    workdir = Path(scratch.name)
    unet_dir = workdir / "unet"
    torch.manual_seed(0)
    UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(unet_dir)
    DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").save_pretrained(unet_dir)
else:
    workdir = Path("outputs/pretrained_diffusers")

# the UNet stays frozen: fit trains only the anti-causal predictor p(shape, size, intensity | x_t, t)
image = cd.DiffusionMechanism.from_diffusers(
    unet_dir, guidance_scale=2.0,
    predictor_train=cd.TrainConfig(steps=30 if SMALL else 2000, batch_size=64, lr=2e-3),
    sampler=cd.DDIMConfig(num_inference_steps=5 if SMALL else 50, inversion_fixed_point_iters=1))
print(image)

truth = ShapesSCM(resolution=16)
gen = torch.Generator().manual_seed(0)
train, test = truth.sample(256 if SMALL else 10000, gen), truth.sample(8, gen)
scm = cd.SCM(truth.scm_graph(image_mechanism=image))  # parents: the data set's Pyro mechanisms
scm.fit(train.values)

cf = scm.counterfactual(test.values, do={"shape": 2}, seed=0)   # every shape a cross
print(f"counterfactual images {tuple(cf['image'].shape)}, shapes {cf['shape'].tolist()}")

scm.save(workdir / "run")                 # the UNet travels inside the run, with its diffusers config
code = {v: m for v, m in truth.true_mechanisms().items() if v != "image"}  # Pyro callables: code, not saved
again = cd.load(workdir / "run", mechanisms=code)
same = torch.equal(again.counterfactual(test.values, do={"shape": 2}, seed=0)["image"], cf["image"])
print(f"saved and loaded: identical counterfactuals: {same}")
if scratch is not None:  # the scratch UNet of this run: nothing left behind
    scratch.cleanup()
