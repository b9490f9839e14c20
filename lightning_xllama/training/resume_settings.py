"""What a run started from a checkpoint takes from it: weights and state, never settings or code.

The settings a user gives (command line, config files, defaults) are the run's settings, whether
``--ckpt_path`` names a file, a sharded folder or ``last``. Those that differ from the ones the
checkpoint was trained with are listed in one warning when the run starts; those that cannot
change without breaking the loaded state (the LoRA adapters' rank, targets and quantisation, the
sharding of a sharded checkpoint) are refused, all of them in one message. Model shapes are
checked tensor by tensor when the weights load (:mod:`lightning_xllama.training.strategies`). The
optimizer's own settings are restored with its state; :func:`keep_optimizer_settings` (called by
``XLlamaModule.on_train_start``) puts the
run's learning rate, betas, epsilon and weight decay back.

``trust_remote_code`` comes from the command line or the config only: a checkpoint whose
hyperparameters say ``trust_remote_code: true`` is refused with the flag that turns it on, since
running its model folder's Python is the user's decision, not the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

FIXED_MODEL_SETTINGS = ("lora_rank", "lora_target_modules", "lora_quantize")
"""Model settings a resumed run cannot change: the checkpoint's adapters and their optimizer state
exist for exactly these."""
IGNORED = {"_class_path", "_instantiator", "tokenizer"}
"""Saved keys that are not the user's settings (``tokenizer`` is linked to the model path)."""
TRAINER_SETTINGS = {
    "strategy": "trainer.strategy",
    "precision": "trainer.precision",
    "accumulate_grad_batches": "trainer.accumulate_grad_batches",
    "world_size": "world size (devices x nodes)",
}
"""``training_settings`` the checkpoint recorded, and what they are called in the warning."""


def check_remote_code(
    ckpt: str | Path, hparams: Mapping, trust_remote_code: bool, flag: str
) -> None:
    """Refuse a checkpoint trained with ``trust_remote_code: true`` unless the user turned it on
    (``flag`` is how: the command's own option)."""
    if hparams.get("trust_remote_code") and not trust_remote_code:
        folder = hparams.get("model_name_or_path")
        raise ValueError(
            f"{ckpt} was trained with trust_remote_code: true (it would run the Python code of "
            f"{folder!r}); a checkpoint never turns that on: pass {flag} if you trust that code"
        )


def read_saved_settings(ckpt: str | Path) -> dict:
    """The settings a checkpoint (a file, or a sharded folder's metadata) holds: the model's and
    data module's hyperparameters and the recorded training settings, without the tensors."""
    from lightning_xllama.training.strategies import read_checkpoint

    try:
        checkpoint = read_checkpoint(ckpt)
    except (OSError, RuntimeError, EOFError) as err:  # e.g. a file cut short by a crash
        raise ValueError(f"{ckpt}: not a readable Lightning checkpoint ({err})") from err
    return {
        "model": dict(checkpoint.get("hyper_parameters") or {}),
        "data": dict(checkpoint.get("datamodule_hyper_parameters") or {}),
        "trainer": dict(checkpoint.get("training_settings") or {}),
    }


def check_resumed_settings(
    ckpt: str | Path,
    model: Mapping,
    data: Optional[Mapping] = None,
    trainer: Any = None,
    saved: Optional[dict] = None,
) -> Optional[str]:
    """Compare this run's settings (``model``'s and ``data``'s hyperparameters, the ``trainer``)
    with those ``ckpt`` was trained with (``saved``: :func:`read_saved_settings`, read when None).

    Raises ValueError listing every setting that cannot change; returns the warning that lists
    every other difference (this run's value is used), or None when nothing differs.
    """
    saved = read_saved_settings(ckpt) if saved is None else saved
    check_remote_code(
        ckpt,
        saved["model"],
        bool(model.get("trust_remote_code")),
        "--model.init_args.trust_remote_code true",
    )
    fixed, changed = [], []
    for key, before, now in _differences("model", saved["model"], model):
        line = f"{key}: {_show(before)} in the checkpoint, {_show(now)} here"
        (fixed if key.rpartition(".")[2] in FIXED_MODEL_SETTINGS else changed).append(line)
    if data is not None:
        changed += [
            f"{key}: {_show(before)} in the checkpoint, {_show(now)} here"
            for key, before, now in _differences("data", saved["data"], data)
        ]
    if trainer is not None:
        now = _trainer_settings(trainer)
        for name, label in TRAINER_SETTINGS.items():
            before = saved["trainer"].get(name)
            if before is not None and _plain(before) != _plain(now[name]):
                changed.append(
                    f"{label}: {_show(before)} in the checkpoint, {_show(now[name])} here"
                )
        sharding = _sharding_change(ckpt, saved["trainer"].get("strategy"), trainer)
        if sharding is not None:
            fixed.append(sharding)
    if fixed:
        raise ValueError(
            f"--ckpt_path {ckpt}: these settings cannot change when starting from a checkpoint: "
            + "; ".join(fixed)
            + ". Set them as the checkpoint has them, or start a new run without --ckpt_path"
        )
    if not changed:
        return None
    return (
        f"--ckpt_path {ckpt}: {len(changed)} setting(s) differ from the checkpoint's; this run "
        "uses its own:\n  " + "\n  ".join(changed)
    )


def _differences(section: str, saved: Mapping, current: Mapping):
    """(key, saved value, current value) of each setting both hold and that differs."""
    saved_class, current_class = saved.get("_class_path"), current.get("_class_path")
    if saved_class and current_class and saved_class != current_class:
        yield section, saved_class, current_class
    for name in sorted(set(saved) & set(current) - IGNORED):
        if _plain(saved[name]) != _plain(current[name]):
            yield f"{section}.init_args.{name}", saved[name], current[name]


def _plain(value: Any) -> Any:
    """Saved and parsed values compared as plain data (tuples as lists, paths as strings)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _show(value: Any, most: int = 80) -> str:
    text = repr(_plain(value))
    return text if len(text) <= most else text[: most - 3] + "..."


def _trainer_settings(trainer) -> dict:
    """This run's values of :data:`TRAINER_SETTINGS`, as ``XLlamaModule.training_record`` saves
    them."""
    return {
        "strategy": type(trainer.strategy).__name__,
        "precision": str(trainer.precision),
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "world_size": trainer.world_size,
    }


def _sharding_change(ckpt: str | Path, saved_strategy: Optional[str], trainer) -> Optional[str]:
    """Why this run's strategy cannot load a sharded checkpoint folder, or None (a single file
    loads under any strategy)."""
    if not Path(ckpt).is_dir():
        return None
    current = _sharding(type(trainer.strategy))
    before = _sharding(_strategy_class(saved_strategy)) if saved_strategy else None
    name = type(trainer.strategy).__name__
    if current is None:
        return (
            f"trainer.strategy: {ckpt} is a sharded checkpoint"
            + (f" ({before}, {saved_strategy})" if before else "")
            + f", which {name} cannot load; use the strategy it was written with"
        )
    if before is not None and before != current:
        return f"trainer.strategy: sharded by {before} ({saved_strategy}) in the checkpoint, {current} ({name}) here"
    return None


def _strategy_class(name: str) -> Optional[type]:
    """A strategy class by the name ``training_settings`` recorded (this package's or Lightning's)."""
    import lightning.pytorch.strategies as lightning_strategies

    import lightning_xllama.training.strategies as own

    found = getattr(own, name, None) or getattr(lightning_strategies, name, None)
    return found if isinstance(found, type) else None


def _sharding(strategy: Optional[type]) -> Optional[str]:
    """``FSDP2`` or ``FSDP1`` for a strategy class that writes sharded checkpoints, else None."""
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    if strategy is None:
        return None
    if issubclass(strategy, ModelParallelStrategy):
        return "FSDP2"
    if issubclass(strategy, FSDPStrategy):
        return "FSDP1"
    return None


def keep_optimizer_settings(trainer, hparams: Mapping) -> None:
    """Set the AdamW groups and LambdaLR schedules of ``trainer`` to ``hparams``' peak learning
    rate, betas, epsilon and weight decay (groups without decay keep none)."""
    peak = hparams["learning_rate"]
    schedules = {id(c.scheduler.optimizer): c.scheduler for c in trainer.lr_scheduler_configs}
    for optimizer in trainer.optimizers:
        schedule = schedules.get(id(optimizer))
        for index, group in enumerate(optimizer.param_groups):
            base = group.get("initial_lr") or group["lr"]
            group["lr"] = peak * (group["lr"] / base if base else 1.0)
            group["initial_lr"] = peak
            if schedule is not None and hasattr(schedule, "base_lrs"):
                schedule.base_lrs[index] = peak
                if hasattr(schedule, "_last_lr"):
                    schedule._last_lr[index] = group["lr"]
            if "betas" in group:
                group["betas"] = (hparams["adam_beta1"], hparams["adam_beta2"])
            if "eps" in group:
                group["eps"] = hparams["adam_eps"]
            if "weight_decay" in group and any(p.ndim >= 2 for p in group["params"]):
                group["weight_decay"] = hparams["weight_decay"]  # biases and norms: none
