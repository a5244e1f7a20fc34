"""Diffusion building blocks: schedules, DDIM, guidance, networks and training."""
