"""MNIST do(digit) counterfactuals with a class-conditional pixel DiT (Peebles & Xie 2023) and
anchored classifier-free guidance, trained on one CPU thread.

Graph: digit -> image, the image being MNIST's central 20x20 (the box MNIST centres its digits in;
3% of the ink lies outside it). The image node is a conditional DiT denoiser ``eps(x_t, t, digit)``
on 2x2 patches (the digit through a class embedding with a learned null class, adaLN-Zero),
trained with 10% digit dropout. A counterfactual inverts DDIM under the factual digit (to state ``fraction * K``) and
generates toward the new one with guidance anchored at the factual digit,
``eps(pa) + w [eps(pa*) - eps(pa)]`` on top of classifier-free guidance of weight ``cfg``.

Effectiveness is measured by an independent classifier: the released Morpho-MNIST digit
predictor (``benchmarks/morphomnist/predictors.py``, trained by others on Morpho-MNIST), on the
image padded back to 32x32 (its accuracy on the cropped real test images is 0.989, 0.992 uncropped).
The guidance weights and the abduction fraction are chosen on held-out TRAINING rows (the training
split's last 1000 are never trained on; the sweep uses 60 of them); the chosen setting is reported on
300 test rows, each intervened to another digit (uniform over the nine others).

    python examples/mnist_dit.py train      # resumes from OUT/checkpoints if interrupted
    python examples/mnist_dit.py evaluate   # sweep on held-out training rows, test, grid
    python examples/mnist_dit.py            # both

Environment: CAUSALDIFF_MNIST_DIR (MNIST), MORPHO_PREDICTORS (the released predictors' folder,
default /work/shared/data/morphomnist-deepscm/predictors; without it an MNIST classifier is trained
here instead, and the results say so), CAUSALDIFF_EXAMPLE_STEPS (2000), CAUSALDIFF_EXAMPLE_OUT
(benchmarks/results/mnist_dit), CAUSALDIFF_EXAMPLE_SMALL=1 (the tests' seconds-long setting).
"""

import itertools
import json
import os
import sys
import time
from pathlib import Path

import networkx as nx
import torch
import torch.nn.functional as F

import causaldiff as cd
from causaldiff import metrics as M
from causaldiff.datasets import load_mnist
from causaldiff.evaluation import save_grid
from causaldiff.evaluation.axioms import other_class, with_inference

STEPS = int(os.environ.get("CAUSALDIFF_EXAMPLE_STEPS", "2000"))
OUT = Path(os.environ.get("CAUSALDIFF_EXAMPLE_OUT", "benchmarks/results/mnist_dit"))
PREDICTORS = Path(os.environ.get("MORPHO_PREDICTORS", "/work/shared/data/morphomnist-deepscm/predictors"))
CROP = (slice(None), slice(None), slice(4, 24), slice(4, 24))
HELD_OUT, SWEEP_ROWS, TEST_ROWS, K = 1000, 60, 300, 20
SWEEP = {"anchor_scale": (3.0, 6.0), "abduction_fraction": (0.7, 1.0), "cfg_scale": (2.0,)}
SMALL = os.environ.get("CAUSALDIFF_EXAMPLE_SMALL", "0") == "1"
if SMALL:
    HELD_OUT, SWEEP_ROWS, TEST_ROWS, K = 20, 10, 10, 4
    SWEEP = {"anchor_scale": (3.0,), "abduction_fraction": (1.0,), "cfg_scale": (2.0,)}


def image_mechanism() -> cd.DiffusionMechanism:
    return cd.DiffusionMechanism(
        guidance="conditional", cond_dropout=0.1,
        schedule=cd.ScheduleConfig(kind="cosine", num_train_timesteps=1000),
        net=cd.DiTConfig(patch_size=2, hidden=16 if SMALL else 96, depth=1 if SMALL else 4, num_heads=4),
        sampler=cd.DDIMConfig(num_inference_steps=K),
        train=cd.TrainConfig(steps=min(STEPS, 20) if SMALL else STEPS, batch_size=32, lr=1e-3,
                             warmup_steps=0 if SMALL else 100, lr_schedule="cosine",
                             checkpoint_every=None if SMALL else 200,
                             checkpoint_dir=None if SMALL else str(OUT / "checkpoints")))


def train() -> None:
    images, digits = mnist("train", **({"n": 300} if SMALL else {}))
    scm = cd.SCM(nx.DiGraph([("digit", "image")]), {"digit": cd.CategoricalMechanism(), "image": image_mechanism()})
    t0 = time.perf_counter()
    scm.fit({"digit": digits[:-HELD_OUT], "image": images[:-HELD_OUT]})
    print(f"trained {scm.mechanisms['image'].config.train.steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    scm.save(OUT / "model")


def mnist(split: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    images, digits = load_mnist(split=split, **kw)
    return images[CROP].contiguous(), digits


def digit_predictor() -> tuple[str, object]:
    """The released Morpho-MNIST digit predictor, or (without its file) an MNIST classifier trained here."""
    if not (PREDICTORS / "digit.safetensors").is_file():
        images, digits = load_mnist(split="train", **({"n": 300} if SMALL else {}))
        model = M.train_classifier(images, digits, config=M.ClassifierConfig(steps=20 if SMALL else 1000))
        return "an MNIST classifier trained here (the released predictor was not found)", \
            lambda x: M.predict(model, F.pad(x, (4, 4, 4, 4), value=-1.0))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.morphomnist.predictors import load_predictor

    model = load_predictor(PREDICTORS / "digit.safetensors", "digit")
    return ("the released Morpho-MNIST digit predictor (eval-mode BatchNorm)",
            lambda x: model(F.pad(x, (6, 6, 6, 6), value=-1.0)).argmax(1))


def effectiveness(scm: cd.SCM, rows: dict, targets: torch.Tensor, predict, **settings) -> float:
    cf = with_inference(scm, ["image"], **settings).counterfactual(rows, do={"digit": targets}, seed=0)
    return float((predict(cf["image"]) == targets).double().mean())


def evaluate() -> None:
    t0, (name, predict), scm = time.perf_counter(), digit_predictor(), cd.load(OUT / "model")
    images, digits = mnist("train", **({"n": 300} if SMALL else {}))
    held = {"digit": digits[-HELD_OUT:][:SWEEP_ROWS], "image": images[-HELD_OUT:][:SWEEP_ROWS]}
    test_images, test_digits = mnist("test", n=TEST_ROWS, seed=0)
    test = {"digit": test_digits, "image": test_images}
    gen = torch.Generator().manual_seed(0)
    held_to, test_to = other_class(held["digit"], 10, gen), other_class(test_digits, 10, gen)
    results = {"factual_accuracy_test": float((predict(test_images) == test_digits).double().mean()),
               "classifier": name, "K": K, "sweep_rows": SWEEP_ROWS, "test_rows": TEST_ROWS, "sweep": [],
               "command": "python examples/mnist_dit.py evaluate", "date": time.strftime("%Y-%m-%d"),
               "device": "CPU, one thread (shared with other jobs)"}
    with torch.no_grad():
        for values in itertools.product(*SWEEP.values()):
            setting = dict(zip(SWEEP, values))
            acc = effectiveness(scm, held, held_to, predict, **setting)
            results["sweep"].append({**setting, "effectiveness_held_out_train": acc})
            print(setting, f"{acc:.3f}", flush=True)
        best = max(results["sweep"], key=lambda r: r["effectiveness_held_out_train"])
        chosen = {k: best[k] for k in SWEEP}
        results["chosen"] = chosen
        results["effectiveness_test"] = effectiveness(scm, test, test_to, predict, **chosen)
        print("test", chosen, f"{results['effectiveness_test']:.3f}", flush=True)
        tuned = with_inference(scm, ["image"], **chosen)
        rows = [test_images[:10]] + [tuned.counterfactual({k: v[:10] for k, v in test.items()},
                                                          do={"digit": torch.full((10,), d)}, seed=0)["image"]
                                     for d in range(10)]
    save_grid(rows, ["factual"] + [f"do(digit={d})" for d in range(10)], OUT / "grid.png",
              title=f"MNIST do(digit), conditional DiT, anchored w={chosen['anchor_scale']}, "
                    f"cfg={chosen['cfg_scale']}, fraction={chosen['abduction_fraction']}")
    results["evaluate_seconds"] = round(time.perf_counter() - t0)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    for step in {"train": [train], "evaluate": [evaluate]}.get(what, [train, evaluate]):
        step()
