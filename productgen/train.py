"""Train a text-conditioned generator (any family of productgen.models) on a snapshot; checkpoints
resume bit for bit.

`train()` checks nothing about the networks' insides: the loss object (productgen.losses) owns the
G/D interplay, this loop owns steps, the EMA, sample sheets, checkpoints and the callbacks
(`on_progress`, `should_stop`) through which a CLI or an orchestrator follows the run.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from productgen import distributed
from productgen.checkpoint import CheckpointError, flatten_optimizer, unflatten_optimizer
from productgen.conditioning import PARTS, ConditionConfig
from productgen.dataset import TrainingSet, load_training_set
from productgen.devices import pick_device, uses_bf16
from productgen.guard import GradientGuard, check_ratio
from productgen.losses import Batch, GANLoss, LossWeights, VAEGANLoss, VAELoss
from productgen.models import FAMILY_NETWORKS, Discriminator, ModelConfig, PatchDiscriminator
from productgen.runs import RunFolder, vocabulary_tensors
from productgen.sheets import labelled_grid, save_png, to_uint8
from productgen.snapshot import Snapshot

__all__ = ["PRESETS", "Progress", "TrainConfig", "TrainResult", "train", "train_config"]


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings. Build it with `train_config(preset, **overrides)`."""

    preset: str = "cpu-demo"
    family: str = "cgan"
    image_size: int = 32
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    ema_decay: float = 0.999
    max_steps: int | None = None
    max_minutes: float | None = 10.0
    # the budget's last share over which every learning rate falls in a straight line to zero
    # (budgeted training: Li et al. 2020); the budget is max_steps or this session's max_minutes,
    # whichever ends first; 0: constant rates
    lr_warmdown: float = 0.0
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    z_dim: int = 64
    cond_dim: int = 128
    g_ch: int = 32
    d_ch: int = 32
    cond_augment: bool = True
    aux_heads: bool = True
    prior_components: int = 0  # cvae, vaegan: > 0 draws render codes given the row (ConditionalPrior)
    detail_ch: int = 0  # cvae: > 0 adds a spatial detail code of this many channels (DetailLatent)
    pixel_noise: bool = False  # cgan, cvae, vaegan: the decoder's per-pixel noise inputs (StyleGAN's)
    conditioning: tuple[str, ...] = PARTS
    # share of training rows shown with no colour (zero colour parts): a row that names no
    # colour is then an input the model knows ("any colour"), not one it never saw
    color_dropout: float = 0.1
    weights: LossWeights = field(default_factory=LossWeights)
    loss: str | None = None  # the adversarial loss (losses.ADVERSARIAL); None: the family's own
    device: str | None = None  # None: CUDA when present, else MPS, else CPU
    # bf16 autocast: true, false, or "auto": where the device computes bf16 natively (devices.bf16_native)
    amp: bool | str = False
    channels_last: bool = False
    compile: bool = False
    # the generator side's update (encoder and decoder) clipped where its gradient norm passes this
    # many times its running average, zeroed where not finite (productgen.guard); 0: off
    grad_clip: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


PROGRESS_EVERY = 10  # steps between progress callbacks; reading losses syncs the device
GUARDED = ("opt", "opt_g")  # the optimizers grad_clip guards: the generator side's (and encoder's)

# The CPU presets' one recipe; cpu-demo and cpu-quality differ only in their minutes.
# 2 CPU cores: the cVAE reaches recognisable category and colour in 10 minutes, the cGAN does
# not yet (README, "Text control"); channels-last convolutions are 24% faster on the CPU too
# (3,049 steps in 10 minutes, not 2,444: FID 18.7 -> 17.0, README "The cVAE's classifier")
# and on a CPU with bf16 instructions (AVX512-BF16, AMX), bf16 autocast makes 45-53% more
# steps of the cVAE in 10 minutes (2,240 -> 3,241 / 3,427): category ratio 1.01 -> 1.03, FID
# and recall within the noise between runs (README, "bf16 on a CPU that has it")
# and for the cVAE, a patch discriminator judging its reconstructions from step 500 (pix2pix's
# PatchGAN, balanced as VQGAN's term; a step 14% dearer once it starts): four seeds of 2,922
# steps under the benchmark's judge, FID 10.0-13.7 against the default's 15.0-15.5, recall
# 0.74-0.77 against 0.69-0.71, knit lines in the renders; 10 minutes, four seeds: FID
# 8.1-10.9 against 11.7-13.0, recall 0.75-0.78 against 0.74-0.76, though the default made 7-27%
# more steps (README, "A patch discriminator"); on every step: on every 2nd or 4th it made 3.5% /
# 14% more steps and read worse, FID 11.84 / 12.93 against 11.91, recall 0.74 / 0.73 against
# 0.77 (README, "The patch judge goes back once")
PATCH_JUDGE = {"patch_adv": 0.5, "adv_start": 500}
CPU_RECIPE: dict[str, object] = {
    "family": "cvae", "batch_size": 64, "g_ch": 16, "d_ch": 16, "channels_last": True, "amp": "auto",
    # for the cVAE only: a run that picks another --model keeps that family's own defaults
    "own_family": {"weights": PATCH_JUDGE},
}  # fmt: skip

# Presets are data: overrides of TrainConfig's defaults.
PRESETS: dict[str, dict[str, object]] = {
    # and in 10 minutes the classifier learns and judges every 4th step, its terms weighted 4x:
    # 52-55% more steps a minute; 10 minutes on 2 cores, three seeds: FID 9.1-10.7 against
    # 10.6-13.1, CAS 82.2-83.0% against 81.3-81.9%, recall and category level (README, "The
    # classifier every 4th step")
    "cpu-demo": CPU_RECIPE | {
        "max_minutes": 10.0, "own_family": {"weights": PATCH_JUDGE | {"classifier_every": 4}},
    },
    # 2 CPU cores, 30 minutes: the CPU recipe given three times the time, its classifier on every
    # step (every 4th drew level at 30 minutes, seed 0: FID 7.58 against 7.69, recall 0.77 against
    # 0.79; README, "The classifier every 4th step"). Against the recipe it replaced (noise
    # inputs, the classifier judging reconstructions from step 1,000), one session, one machine:
    # FID 1.90x / 1.86x the floor (seeds 0 / 2) against 1.96x, recall 0.79 against 0.79,
    # category ratio 1.02-1.04 against 1.02, CAS 81.9-83.0% against 81.4%, 37-41% more steps,
    # and no classifier in the game to come apart without noise inputs (README, "Given 30 minutes")
    "cpu-quality": CPU_RECIPE | {"max_minutes": 30.0},
    # one H100, 15 minutes (README, "Model families"): the VAE-GAN had the control (category
    # ratio 1.02) and the variety (recall 0.67, FID 25.5); the cGAN collapsed (recall 0.04)
    "gpu": {
        "family": "vaegan", "batch_size": 256, "g_ch": 64, "d_ch": 64, "cond_dim": 256, "z_dim": 128,
        "lr_g": 2e-4, "lr_d": 4e-4, "max_minutes": 30.0, "sample_every": 2000, "checkpoint_every": 5000,
        "amp": True, "channels_last": True,
    },
}  # fmt: skip


# Per-family adjustments, applied after the preset: a cVAE with a wide latent code learns to put
# colour and shape in the code and ignore the condition (posterior collapse onto z), so its code
# was kept small and its KL weighted up, until a classifier held the condition (below).
FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    "cgan": {"weights": LossWeights(kl_cond=0.05)},
    # and its condition code is not jittered: the KL on a jittered code makes the condition cost
    # as much as the image-informed latent, and the decoder then ignores it (measured: chance-level
    # category and colour after 10 minutes with the jitter on)
    # and a classifier beside it (train-split photos only) asks that its prior samples, which is
    # what renders are, show their row's category and colour: 10 minutes on 2 cores, quick
    # evaluation, category ratio 0.80 -> 0.98, FID 20.1 -> 18.7, recall 0.85 -> 0.74 (README);
    # those samples and renders draw from the generator's fitted LatentPrior (recall 0.68 -> 0.77);
    # with the classifier holding the condition, a 32-wide code renders better (FID 17.0 -> 14.7,
    # 15.3 in two runs; category ratio 0.98 -> 0.99; 64 wide: 16.7, recall 0.73)
    # and its render codes come from a mixture of 8 Gaussians given the row (ConditionalPrior):
    # FID 15.8 -> 11.0, precision 0.85 -> 0.94, category ratio 0.99 -> 1.03, same steps (README);
    # with that prior following the codes, its KL is weighted down (2 -> 0.5): the codes carry more
    # of each photo and the decoder's ceiling rises (FID of reconstructions of other photos 10.5 ->
    # 8.4); renders FID 11.2 -> 8.5, category ratio 1.02 -> 1.00 (README, "What was left");
    # and a second, spatial code of 4 channels at 8 x 8 (DetailLatent) carries what one code
    # cannot: decoder's fair ceiling FID 7.8 -> 6.7, recall 0.85 -> 0.88; renders (two runs each,
    # bf16) FID 7.9 / 8.7 -> 7.2 / 8.0, CAS 72.5 / 72.2% -> 74.7 / 74.7%, same steps (README)
    # and its update is guarded (productgen.guard): at batch 128 one gradient of 20x the usual
    # norm at step 1,327 threw the code's KL from 45 to 10,220 nats and the run never recovered;
    # clipped to 4x the running average, the same run went on as before (README)
    # Not kept: its classifier also telling photos from prior samples from step 1,000, the decoder
    # asked to fool it (weights.prior_adv 3): FID 7.2 / 8.0 -> 6.6 / 7.3 and recall 0.82 / 0.82 ->
    # 0.85 / 0.84 in two runs, then a third came apart after step 2,000 (FID 37.6; README); with
    # the update guard, 1 of 5 seeds came apart the same way (README, "Five guarded seeds")
    # Adam's beta1 stays 0.5: 0.9 was no better at the same 2,922 steps (FID 15.6 against 15.0,
    # recall 0.69 both, benchmark judge; README, "Five guarded seeds")
    "cvae": {
        "z_dim": 32, "lr_g": 1e-3, "beta1": 0.5, "cond_augment": False, "prior_components": 8,
        "detail_ch": 4, "grad_clip": 4.0, "weights": LossWeights(kl_vae=0.5, prior_aux=10.0),
    },
    # the cVAE's settings, its reliable control kept, plus a discriminator on both its
    # reconstructions and its prior samples; the adversarial weight is in per-image-sum units
    # like the pixel loss (one SN discriminator's gradient is ~1/sqrt(pixels) per pixel)
    "vaegan": {
        "z_dim": 16, "lr_g": 1e-3, "cond_augment": False,
        "weights": LossWeights(
            kl_vae=2.0, kl_cond=0.0, recon=1.0, feature_match=1.0, adv=20.0, prior_aux=1.0
        ),
    },
    "stylegan": {"weights": LossWeights(kl_cond=0.05, adversarial="nonsaturating", r1=1.0, r1_every=4)},
    "dcgan": {"beta1": 0.5, "aux_heads": False, "cond_augment": False,
              "weights": LossWeights(adversarial="nonsaturating", augment=False)},
}  # fmt: skip


def train_config(preset: str = "cpu-demo", **overrides: object) -> TrainConfig:
    """A preset, its family's adjustments, then overrides; unknown presets or keys fail loudly.

    None overrides are ignored.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    chosen = dict(PRESETS[preset])
    own_family = chosen.pop("own_family", {})
    family = str(given.get("family", chosen.get("family", "cgan")))
    if family not in FAMILY_DEFAULTS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILY_DEFAULTS)}")
    # later layers win; a preset's settings for its own family hold only while the run keeps it
    layers = [chosen, FAMILY_DEFAULTS[family], own_family if family == chosen.get("family") else {}, given]
    values: dict[str, object] = {}
    weights = LossWeights()
    for layer in layers:
        for key, value in layer.items():
            if key != "weights":
                values[key] = value
            elif isinstance(value, dict):  # a partial override keeps the other weights
                weights = replace(weights, **value)
            else:
                weights = value
    values.update(preset=preset, weights=weights)
    if values.get("loss") is not None:
        values["weights"] = replace(weights, adversarial=values["loss"])
    if isinstance(values.get("conditioning"), list):
        values["conditioning"] = tuple(values["conditioning"])
    return replace(TrainConfig(), **values)


@dataclass(frozen=True)
class Progress:
    """What `on_progress` receives every `PROGRESS_EVERY` steps; each loss term as last computed."""

    step: int
    max_steps: int | None
    elapsed_s: float
    max_seconds: float | None
    images_per_s: float
    metrics: dict[str, float]

    def losses_text(self, sep: str = "  ") -> str:
        """The metrics as a person reads them: losses to 3 places, a count (clipped_updates) whole."""
        return sep.join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.3f}" for k, v in self.metrics.items())


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    seconds: float
    images_per_s: float
    metrics: dict[str, float]
    sample_sheet: Path
    skipped_photos: int = 0  # photos left out (reasons in the snapshot's photo rejects)


def lr_factor(used: float, warmdown: float) -> float:
    """The learning rates' multiplier when USED (0..1) of the budget is spent: 1, then over the
    last WARMDOWN of it a straight line to 0."""
    if not 0 <= warmdown <= 1:
        raise ValueError(f"lr_warmdown must be a share of the budget from 0 to 1, got {warmdown!r}")
    return 1.0 if warmdown == 0 else min(1.0, max(0.0, (1.0 - used) / warmdown))


def _build(config: TrainConfig, data: TrainingSet, device: torch.device, bf16: bool):
    networks = FAMILY_NETWORKS[config.family]
    cvae = networks.encoder is not None and networks.discriminator is None
    cvae_only = {  # setting: (set, what it does, its "off")
        "patch_adv": (config.weights.patch_adv > 0, "trains the cVAE's patch discriminator", 0),
        "classifier_every": (config.weights.classifier_every != 1, "paces the cVAE's classifier", 1),
        "patch_every": (config.weights.patch_every != 1, "paces the cVAE's patch discriminator", 1),
    }
    for name, (used, what, off) in cvae_only.items():
        if used and not cvae:
            raise ValueError(
                f"weights.{name} {what}; --model {config.family} has none: choose --model cvae "
                f"or set {name} to {off}"
            )
    aux = {}
    # the cVAE's options: a classifier of its prior samples' attributes, and/or of photo vs sample
    # or reconstruction
    adversarial = config.weights.prior_adv > 0 or config.weights.recon_adv > 0
    classifier = networks.discriminator is None and (config.weights.prior_aux > 0 or adversarial)
    if config.aux_heads and (networks.discriminator is not None or classifier):
        sizes = {"category": len(data.vocabulary.categories), "color": len(data.vocabulary.colors)}
        aux = {name: sizes[name] for name in data.labels if sizes[name] > 1}
    model_config = ModelConfig(
        family=config.family, image_size=config.image_size, cond_in=data.conditions.shape[1],
        cond_dim=config.cond_dim, z_dim=config.z_dim, g_ch=config.g_ch, d_ch=config.d_ch,
        cond_augment=config.cond_augment, aux_classes=aux, prior_components=config.prior_components,
        detail_ch=config.detail_ch, pixel_noise=config.pixel_noise,
    )  # fmt: skip
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    def on_device(cls: type[nn.Module]) -> nn.Module:
        return cls(model_config).to(device, memory_format=memory_format)

    G = on_device(networks.generator)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    fused = device.type == "cuda"  # one kernel for the whole update
    E = on_device(networks.encoder) if networks.encoder is not None else None
    g_params = [*G.parameters(), *(E.parameters() if E is not None else [])]
    betas = (config.beta1, config.beta2)
    if networks.discriminator is None:  # the cVAE: one optimiser for encoder and decoder
        opt = torch.optim.Adam(g_params, lr=config.lr_g, betas=betas, fused=fused)
        C = on_device(Discriminator) if classifier and (aux or adversarial) else None
        opt_c = torch.optim.Adam(C.parameters(), lr=config.lr_d, betas=betas, fused=fused) if C else None
        P = on_device(PatchDiscriminator) if config.weights.patch_adv > 0 else None
        opt_p = torch.optim.Adam(P.parameters(), lr=config.lr_d, betas=betas, fused=fused) if P else None
        return model_config, G, ema, VAELoss(G, E, opt, config.weights, autocast, C, opt_c, P, opt_p)
    D = on_device(networks.discriminator)
    opt_g = torch.optim.Adam(g_params, lr=config.lr_g, betas=betas, fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=betas, fused=fused)
    if E is not None:
        return model_config, G, ema, VAEGANLoss(G, E, D, opt_g, opt_d, config.weights, autocast)
    if config.compile:
        # D is left eager: spectral norm updates its power-iteration vectors in place, twice
        # per step (real and fake), which compiled autograd refuses
        G = torch.compile(G)  # type: ignore[assignment]
    return model_config, G, ema, GANLoss(G, D, opt_g, opt_d, config.weights, autocast)


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "_orig_mod", module)  # torch.compile wraps the module


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    # warm-up: early on the average follows the model closely (short CPU runs benefit)
    d = min(decay, (1 + step) / (10 + step))
    # one fused kernel per tensor list, not one launch per tensor (matters on a GPU)
    torch._foreach_lerp_(list(ema.parameters()), list(_unwrap(model).parameters()), 1 - d)
    torch._foreach_copy_(list(ema.buffers()), list(_unwrap(model).buffers()))


@torch.no_grad()
def standing_stats(
    generator: nn.Module, conditions: torch.Tensor, batches: int = 16, batch_size: int = 128
) -> None:
    """Recompute the generator's BatchNorm statistics over many samples (BigGAN's 'standing stats').

    Eval-mode BN then matches what the generator saw in training, and renders do not depend on
    what else is in the batch. Uses its own RNG so the training RNG stream is untouched.
    """
    rng = torch.Generator(device="cpu").manual_seed(1234)
    bns = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    generator.train()
    device = next(generator.parameters()).device
    for _ in range(batches):
        idx = torch.randint(len(conditions), (batch_size,), generator=rng)
        z = torch.randn(batch_size, generator.config.noise_dim, generator=rng).to(device)
        generator(z, conditions[idx].to(device))
    for bn in bns:
        bn.momentum = 0.1
    generator.eval()


def _probes(data: TrainingSet, max_colours: int = 4) -> tuple[list[int | None], list[str], int]:
    """Row indices for the sample sheet: every category in a few colours (or the first rows)."""
    rows = data.rows
    if not data.vocabulary.categories or not data.vocabulary.colors:
        picked = list(range(min(24, len(rows))))
        return picked, [str(rows["title"][i])[:40] for i in picked], 8
    preferred = [
        c for c in ("red", "navy", "yellow", "green", "black", "pink") if c in data.vocabulary.colors
    ]
    colours = (preferred + [c for c in data.vocabulary.colors if c not in preferred])[:max_colours]
    first = {
        (cat, col): i
        for i, (cat, col) in reversed(list(enumerate(zip(rows["category"], rows["color"], strict=True))))
    }
    idx, labels = [], []
    for cat in data.vocabulary.categories:
        for col in colours:
            idx.append(first.get((cat, col)))
            labels.append(f"{col} {cat}")
    return idx, labels, len(colours) * 2


def _sample_sheet(ema: nn.Module, data: TrainingSet, path: Path, step: int, device: torch.device) -> Path:
    """Each probe twice, side by side (two fixed noise draws): control and variety in one picture."""
    idx, labels, columns = _probes(data)
    rng = torch.Generator(device="cpu").manual_seed(0)  # the same noise on every sheet
    cond = data.conditions[torch.tensor([i if i is not None else 0 for i in idx])].to(device)
    draws = []
    with torch.no_grad():
        for _ in range(2):
            z = torch.randn(len(idx), ema.config.noise_dim, generator=rng).to(device)
            draws.append(to_uint8(ema(z, cond)))
    cells = [draws[d][k] if i is not None else None for k, i in enumerate(idx) for d in range(2)]
    captions = [text for label in labels for text in (label, "")]
    sheet = labelled_grid(
        cells, captions, columns, title=f"step {step}: EMA generator, fixed noise, 2 draws each"
    )
    return save_png(sheet, path)


def _state_tensors(
    loss, ema: nn.Module, guards: dict[str, GradientGuard]
) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    tensors: dict[str, torch.Tensor] = {}
    for name, net in loss.networks().items():
        tensors.update({f"{name}.{k}": v for k, v in _unwrap(net).state_dict().items()})
    tensors.update({f"G_ema.{k}": v for k, v in ema.state_dict().items()})
    groups = {}
    for name, opt in loss.optimizers().items():
        flat, groups[name] = flatten_optimizer(name, opt)
        tensors.update(flat)
    for name, guard in guards.items():
        tensors.update({f"guard.{name}.{k}": v for k, v in guard.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors, groups


def _restore(
    run: RunFolder,
    loss,
    ema: nn.Module,
    guards: dict[str, GradientGuard],
    model_config: ModelConfig,
    fingerprint: str,
) -> tuple[int, dict]:
    tensors, meta, latest = run.read_latest_checkpoint()
    if meta["model_config"] != json.loads(json.dumps(model_config.to_json())):
        raise CheckpointError(
            f"{latest}: built with other network settings; resume with the run's own settings"
        )
    if meta["data_fingerprint"] != fingerprint:
        raise CheckpointError(
            f"{latest}: trained on other data (fingerprint {meta['data_fingerprint']}); start a new run"
        )
    for name, net in loss.networks().items():
        state = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if not state and not any(True for _ in net.parameters()):
            continue  # running statistics only (LeCam's averages) turned on at this resume: afresh
        _unwrap(net).load_state_dict(state)
    ema.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")})
    for name, opt in loss.optimizers().items():
        unflatten_optimizer(name, opt, tensors, meta["param_groups"][name])
    for name, guard in guards.items():  # a checkpoint from before the guard: it starts afresh
        state = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(f"guard.{name}.")}
        if not state:
            continue
        try:
            guard.load_state_dict(state)
        except ValueError as e:
            raise CheckpointError(f"{latest}: {e}; start a new run") from None
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["step"]), meta.get("metrics", {})


def train(
    snapshot: Path,
    run_dir: Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train on SNAPSHOT's rows with photos; write checkpoints, samples and run.json into RUN_DIR."""
    if config.max_steps is None and config.max_minutes is None:
        raise ValueError("give --max-steps or --max-minutes: training needs an end")
    device = pick_device(config.device)
    bf16 = uses_bf16(config.amp, device)  # before the data loads: a bad setting fails at once
    lr_factor(0.0, config.lr_warmdown)  # so does a bad warm-down
    if config.grad_clip != 0:
        check_ratio(config.grad_clip)  # and a bad guard
    torch.manual_seed(config.seed)
    snap, run = Snapshot(snapshot), RunFolder(run_dir)
    conditioning = ConditionConfig.for_snapshot(snap, config.conditioning)
    data = load_training_set(snapshot, config.image_size, conditioning)
    model_config, G, ema, loss = _build(config, data, device, bf16)
    group = distributed.current()  # torchrun's processes (productgen.distributed), or None
    leader = group is None or group.leader
    run_dir.mkdir(parents=True, exist_ok=True)
    if leader:
        run.remove_partial_writes()  # a run killed mid-write leaves its temporary file behind
    if group is not None:  # first: the guards below then read gradients averaged over the ranks
        group.average_gradients_before_steps(loss.optimizers().values(), loss.networks().values())
    guards = {
        name: GradientGuard(opt, config.grad_clip)
        for name, opt in loss.optimizers().items()
        if name in GUARDED and config.grad_clip != 0
    }
    step, metrics = 0, {}
    if resume:
        step, metrics = _restore(run, loss, ema, guards, model_config, data.fingerprint)
    elif run.has_checkpoints():
        raise ValueError(
            f"{run_dir}: already holds a run; pass --resume to continue it, or choose another --out"
        )
    groups = [g for opt in loss.optimizers().values() for g in opt.param_groups]
    for g in groups:  # a checkpoint from before the warm-down kept its rates constant
        g.setdefault("initial_lr", g["lr"])
    share = slice(None)
    if group is not None:
        group.same_start([*loss.networks().values(), ema])
        share = group.share(len(data))
        torch.manual_seed(config.seed + 7919 * group.rank + step)  # each rank its own batches and noise

    global_batch = config.batch_size * (group.world if group else 1)  # images per step, all ranks
    images = data.images[share].to(device)  # uint8 on the device: 60k x 3 x 32 x 32 is 184 MB
    conditions = data.conditions[share].to(device)
    colour_spans = [conditioning.span(p) for p in ("color", "rgb") if p in conditioning.parts]

    def drop_colour(batch_conditions: torch.Tensor) -> torch.Tensor:
        if not colour_spans or config.color_dropout <= 0:
            return batch_conditions
        keep = torch.rand(len(batch_conditions), 1, device=device) >= config.color_dropout
        out = batch_conditions.clone()
        for span in colour_spans:
            out[:, span] = out[:, span] * keep
        return out

    labels = {k: v[share].to(device) for k, v in data.labels.items()}
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    meta_base = {
        "format": 1, "train_config": config.to_json(), "model_config": model_config.to_json(),
        "conditioning": list(config.conditioning), "text_model": snap.encoding().model,
        "embedding_dim": conditioning.text_dim, "image_size": config.image_size,
        "data_fingerprint": data.fingerprint, "snapshot": str(snapshot), "train_rows": len(data),
        "missing_images": data.missing_images, "skipped_photos": len(data.skipped),
        "skipped_photo_examples": data.skipped.head(20).to_dict("records"),
        "vocabulary": {"categories": data.vocabulary.categories, "colors": data.vocabulary.colors},
        "processes": group.world if group else 1, "bf16": bf16,
    }  # fmt: skip
    started = time.perf_counter()
    max_seconds = config.max_minutes * 60 if config.max_minutes is not None else None
    first_step = step

    def write_checkpoint() -> None:
        if not leader:
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            standing_stats(ema, conditions)  # its own draws must not shift the training stream
        tensors, groups = _state_tensors(loss, ema, guards)
        meta = {**meta_base, "step": step, "metrics": metrics, "param_groups": groups}
        run.write_checkpoint(step, tensors, meta, keep=config.keep_checkpoints)
        vocab = vocabulary_tensors(data.vocabulary)
        model = {**{f"G_ema.{k}": v for k, v in ema.state_dict().items()}, **vocab}
        encoder = loss.networks().get("E")  # the cVAE's and VAE-GAN's: variants from a photo need it
        if encoder is not None:
            model.update({f"E.{k}": v for k, v in _unwrap(encoder).state_dict().items()})
        run.write_model(model, {**meta_base, "step": step, "metrics": metrics})
        seconds = time.perf_counter() - started
        run.write_run({
            **meta_base, "step": step, "metrics": metrics, "device": str(device),
            "seconds_this_session": round(seconds, 1),
            "images_per_s": round((step - first_step) * global_batch / max(seconds, 1e-9), 1),
            "checkpoint": str(run.checkpoint(step).relative_to(run_dir)),
            "model": run.model.name, "sample_sheet": str(run.latest_sample.relative_to(run_dir)),
        })  # fmt: skip

    def sample() -> None:
        if not leader:
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            standing_stats(ema, conditions)
            path = _sample_sheet(ema, data, run.sample_sheet(step), step, device)
        run.save_sample_sheet(path)

    def read_metrics(losses: dict[str, torch.Tensor]) -> dict[str, float]:
        out = {k: round(float(v), 5) for k, v in losses.items()}
        if guards:  # updates the guards clipped so far, this run's whole life
            out["clipped_updates"] = sum(int(g.clipped) for g in guards.values())
        return out

    def budget_used() -> tuple[float, bool]:
        """The share of the budget spent (steps or this session's minutes, whichever is further)
        and whether to stop; every rank reads the largest of both, so all stop at one step and
        step at one learning rate."""
        used = 0.0
        if config.max_steps is not None:
            used = 1.0 if step >= config.max_steps else step / config.max_steps
        if max_seconds is not None:
            used = max(used, (time.perf_counter() - started) / max_seconds)
        stop = used >= 1 or (should_stop is not None and should_stop())
        return (used, stop) if group is None else group.largest(used, stop, device)

    losses: dict[str, torch.Tensor] = {}
    while True:
        used, stop = budget_used()
        if stop:
            break
        for g in groups:
            g["lr"] = g["initial_lr"] * lr_factor(used, config.lr_warmdown)
        idx = torch.randint(len(images), (config.batch_size,)).to(device, non_blocking=True)
        batch = Batch(
            images=(images[idx].float() / 127.5 - 1).contiguous(memory_format=memory_format),
            conditions=drop_colour(conditions[idx]),
            labels={k: v[idx] for k, v in labels.items()},
            step=step,
        )
        losses.update(loss.step(batch))  # a term computed on some steps only keeps its last value
        _update_ema(ema, G, step, config.ema_decay)
        step += 1
        on_time = step % config.sample_every == 0 or step % config.checkpoint_every == 0
        if on_time or step % PROGRESS_EVERY == 0:
            metrics = read_metrics(losses)  # waits for the device
        if on_progress is not None and step % PROGRESS_EVERY == 0:
            done = step - first_step
            rate = done * global_batch / max(time.perf_counter() - started, 1e-9)
            on_progress(
                Progress(step, config.max_steps, time.perf_counter() - started, max_seconds, rate, metrics)
            )
        if step % config.sample_every == 0:
            sample()
        if step % config.checkpoint_every == 0:
            write_checkpoint()

    if step > first_step:
        metrics = read_metrics(losses)
    seconds = time.perf_counter() - started
    rate = (step - first_step) * global_batch / max(seconds, 1e-9)
    sample()
    write_checkpoint()
    return TrainResult(run_dir, step, seconds, rate, metrics, run.latest_sample, len(data.skipped))
