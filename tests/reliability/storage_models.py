"""Small fitted SCMs and file helpers shared by the storage tests of the reliability catalogue
(imported by name: the tests directory is not a package)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pyro.distributions as dist
import torch
from safetensors.torch import load_file, save_file

import causaldiff as cd
from causaldiff.diffusion import DDIMConfig
from causaldiff.serialization import CONFIG_FILE, WEIGHTS_FILE

REPO = Path(__file__).resolve().parents[2]
TINY_DIFFUSION = dict(schedule=cd.ScheduleConfig(kind="linear", num_train_timesteps=20, beta_end=0.1),
                      sampler=DDIMConfig(num_inference_steps=4), net=cd.MLPConfig(hidden=8, num_layers=1),
                      train=cd.TrainConfig(steps=3, batch_size=32))


def rows(n: int = 120, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    c = torch.randint(0, 3, (n,), generator=gen)
    y = torch.sin(2 * x) + c.float() + 0.2 * torch.randn(n, generator=gen)
    return {"x": x, "c": c, "y": y, "d": y + 0.1 * torch.randn(n, generator=gen), "p": torch.randn(n, generator=gen)}


def tabular_scm(hidden: tuple[int, ...] = (4,), seed: int = 0) -> cd.SCM:
    """x (additive-noise root), c (categorical root), y <- x, c (additive noise), p (a Normal)."""
    g = nx.DiGraph([("x", "y"), ("c", "y")])
    g.add_node("p")
    scm = cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(steps=3), "c": cd.CategoricalMechanism(),
                                "y": cd.AdditiveNoiseMechanism(steps=3, hidden=hidden, seed=seed),
                                "p": dist.Normal(torch.tensor(0.5), torch.tensor(2.0))})
    return scm.fit({k: v for k, v in rows().items() if k != "d"})


def full_scm() -> cd.SCM:
    """The tabular SCM plus d <- y, a tiny diffusion node."""
    g = nx.DiGraph([("x", "y"), ("c", "y"), ("y", "d")])
    g.add_node("p")
    scm = cd.SCM(g, mechanisms={"x": cd.AdditiveNoiseMechanism(steps=3), "c": cd.CategoricalMechanism(),
                                "y": cd.AdditiveNoiseMechanism(steps=3, hidden=(4,)),
                                "d": cd.DiffusionMechanism(**TINY_DIFFUSION),
                                "p": dist.Normal(torch.tensor(0.5), torch.tensor(2.0))})
    return scm.fit(rows())


def files(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes), hidden leftovers included."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def siblings(path: Path) -> list[str]:
    """Names beside ``path`` that a save made (temporaries, old copies)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def weights(scm: cd.SCM) -> dict[tuple[str, str], torch.Tensor]:
    return {(n, k): v.detach().clone() for n in scm.nodes for k, v in scm.mechanisms[n].state_tensors().items()}


def same_weights(a: cd.SCM, b: cd.SCM) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]) for k in wa)


def index_of(path: Path, node: str) -> int:
    return [n["name"] for n in json.loads((path / CONFIG_FILE).read_text())["nodes"]].index(node)


def rewrite(path: Path, edit_config=None, edit_tensors=None, record: bool = False) -> None:
    """Edit a saved model as a hostile or careless editor would, with a valid checksum: ``edit_tensors``
    changes the flat tensors (and, if ``record``, the dtype/shape record to match), ``edit_config`` the JSON."""
    cfg = json.loads((path / CONFIG_FILE).read_text())
    if edit_tensors is not None:
        tensors = load_file(str(path / WEIGHTS_FILE))
        edit_tensors(tensors)
        save_file(tensors, str(path / WEIGHTS_FILE))
        if record:
            for i, n in enumerate(cfg["nodes"]):
                if n["mechanism"] is not None:
                    own = {k.partition("/")[2]: v for k, v in tensors.items() if k.startswith(f"{i}/")}
                    n["tensors"] = {k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
                                    for k, v in own.items()}
    if edit_config is not None:
        edit_config(cfg)
    cfg["weights_sha256"] = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    (path / CONFIG_FILE).write_text(json.dumps(cfg))


def run_child(code: str, *args: str, timeout: float = 120, preexec=None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python that imports this tree's causaldiff."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CAUSALDIFF_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout, preexec_fn=preexec)
    if check and out.returncode != 0:
        raise AssertionError(f"child failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out
