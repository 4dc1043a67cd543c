"""Training: float GHN pretraining, GHN-QAT finetuning, evaluation, distributed runs."""

from .config import TrainConfig, load_config
from .trainer import NonFiniteLossError, Trainer, load_train_checkpoint

__all__ = ["TrainConfig", "load_config", "Trainer", "NonFiniteLossError", "load_train_checkpoint"]
