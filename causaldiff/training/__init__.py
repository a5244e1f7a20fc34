"""One training loop for every model causaldiff trains, with its config, checkpoints and
execution strategy (see :mod:`.loop`)."""

from .checkpoint import CHECKPOINT_NAME as CHECKPOINT_NAME
from .checkpoint import Checkpointer as Checkpointer
from .checkpoint import load_checkpoint as load_checkpoint
from .config import TrainConfig as TrainConfig
from .ddp import DDPStrategy as DDPStrategy
from .ddp import init_process_group as init_process_group
from .config import lr_factor as lr_factor
from .ema import EMA as EMA
from .loop import TrainResult as TrainResult
from .loop import fit_model as fit_model
from .seeding import cuda_devices as cuda_devices
from .seeding import seeded_module as seeded_module
from .seeding import seeded_rng as seeded_rng
from .strategy import LocalStrategy as LocalStrategy
from .strategy import Strategy as Strategy
from .strategy import current_strategy as current_strategy
from .strategy import use_strategy as use_strategy

__all__ = ["TrainConfig", "TrainResult", "fit_model", "Strategy", "LocalStrategy", "DDPStrategy",
           "init_process_group", "use_strategy", "current_strategy", "Checkpointer",
           "CHECKPOINT_NAME", "load_checkpoint", "lr_factor", "EMA", "cuda_devices", "seeded_rng",
           "seeded_module"]
