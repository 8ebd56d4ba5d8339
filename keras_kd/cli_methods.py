"""`keras-kd distill`'s method and compression options: their types, defaults and the
combinations refused, all checked before TensorFlow loads.

`--method kd|dkd` picks the logits term, `--hint` / `--attention` add FitNets and
attention-transfer terms (`keras_kd.terms`), `--qat` / `--prune` train compression-aware
(`keras_kd.optimize`). Layer names are checked later, against the loaded models
(`keras_kd.cli_terms`). Defaults equal the library's (a test compares them).
"""

import argparse
import math

from keras_kd import cli

METHODS = ("kd", "dkd")
# The hard-label weight each method defaults to: Hinton's KD recipe (0.1), DKD's paper (1.0,
# the DKD term carrying its own weight, `keras_kd.terms.dkd`).
DEFAULT_ALPHA = {"kd": 0.1, "dkd": 1.0}
# `keras_kd.terms.dkd`'s defaults: alpha (TCKD), beta (NCKD), warm-up epochs.
DKD_DEFAULTS = {"dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_warmup": 20}
# `keras_kd.terms.Hint` / `AttentionTransfer` default weights.
HINT_WEIGHT = 1.0
ATTENTION_WEIGHT = 500.0
PAIR_FORM = "TEACHER_LAYER:STUDENT_LAYER[:WEIGHT]"


def split_pair(text):
    """`(teacher_layer, student_layer, weight or None)` from `TEACHER:STUDENT[:WEIGHT]`.

    Raises:
        argparse.ArgumentTypeError: naming the expected form and the value received.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts[:2]):
        raise argparse.ArgumentTypeError(f"expected {PAIR_FORM}, received {text!r}")
    weight = None
    if len(parts) == 3:
        try:
            weight = float(parts[2])
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise argparse.ArgumentTypeError(
                f"expected {PAIR_FORM} with a WEIGHT that is a finite number > 0, "
                f"received {text!r}")
    return parts[0].strip(), parts[1].strip(), weight


def layer_pair(text):
    """The argparse type of `--hint` / `--attention`: the text, once checked."""
    split_pair(text)
    return text


def sparsity(text):
    value = cli._number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction of zero weights in (0, 1), received {text!r}")
    return value


def add_arguments(p):
    """Adds the method and compression options to the `distill` parser `p`."""
    p.add_argument("--method", default="kd", choices=METHODS,
                   help="logits term: kd (Hinton: --loss at --temperature, weighed 1 - alpha) or "
                        "dkd (Decoupled KD, Zhao et al. 2022: --dkd-alpha * TCKD + --dkd-beta * "
                        "NCKD at --temperature, weight 1 warmed up over --dkd-warmup epochs; "
                        "--alpha then weighs the cross-entropy alone, default 1.0). Default: kd")
    p.add_argument("--dkd-alpha", type=cli.non_negative_float, default=None,
                   help=f"dkd: weight of the target-class term TCKD. "
                        f"Default: {DKD_DEFAULTS['dkd_alpha']:g}")
    p.add_argument("--dkd-beta", type=cli.non_negative_float, default=None,
                   help=f"dkd: weight of the non-target-class term NCKD. "
                        f"Default: {DKD_DEFAULTS['dkd_beta']:g}")
    p.add_argument("--dkd-warmup", type=cli.non_negative_int, default=None,
                   help="dkd: the DKD weight rises linearly over this many epochs (0: none). "
                        f"Default: {DKD_DEFAULTS['dkd_warmup']}")
    p.add_argument("--hint", type=layer_pair, action="append", default=None, metavar=PAIR_FORM,
                   help="add a FitNets hint term (Romero et al. 2015): L2 between the teacher "
                        "layer's and the student layer's outputs, through a learned adapter "
                        "when their shapes differ (not saved with the student). Repeatable; "
                        f"logged as hint_loss (hint_loss_1, hint_loss_2, ... for several). "
                        f"WEIGHT default: {HINT_WEIGHT:g}. Example: --hint conv_1:conv_1")
    p.add_argument("--attention", type=layer_pair, action="append", default=None,
                   metavar=PAIR_FORM,
                   help="add an attention-transfer term (Zagoruyko & Komodakis 2017) between "
                        "two 4-D feature maps. Repeatable; logged as at_loss (at_loss_1, ... "
                        f"for several). WEIGHT default: {ATTENTION_WEIGHT:g} (beta / 2)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware distillation, Keras 3 native "
                        "(keras_kd.optimize.native): the student is rebuilt with int8 fake "
                        "quantization (BatchNorm folded) and distilled; --output is that QAT "
                        "model, for `keras-kd export --quantization qat` (full int8 with the "
                        "trained ranges). Start from a trained student (--student FILE) with a "
                        "small --lr, e.g. 1e-4")
    p.add_argument("--prune", type=sparsity, default=None, metavar="SPARSITY",
                   help="pruning-aware distillation (TFMOT magnitude pruning, "
                        "keras_kd.optimize.prune_distill; needs keras-kd[optimize]): kernels "
                        "pruned from 0 to this fraction of zeros in (0, 1) over the run, then "
                        "stripped; --output is a plain .keras student that `keras-kd export` "
                        "takes with any --quantization. One device, constant --lr, kd with "
                        "--loss kl_divergence only")


def _given(args, name):
    return getattr(args, name) not in (None, False)


def check(parser, args):
    """Refuses combinations the library does not support, naming the option."""
    def refuse(option, message):
        parser.error(f"argument {option}: {message}")

    if args.method != "dkd":
        for name in DKD_DEFAULTS:
            if _given(args, name):
                refuse(f"--{name.replace('_', '-')}", f"only with --method dkd, received "
                       f"--method {args.method}")
    elif args.loss is not None:
        refuse("--loss", f"--method dkd has its own loss (Decoupled KD); received --loss "
               f"{args.loss}")
    compression = "--qat" if args.qat else "--prune" if args.prune is not None else None
    if compression is None:
        return
    if args.qat and args.prune is not None:
        refuse("--prune", "cannot be combined with --qat (the library has no joint route); "
               "distil with --prune, then export the pruned student with `keras-kd export "
               "--quantization int8` for a sparse int8 file")
    for name in ("hint", "attention"):
        if _given(args, name):
            refuse(f"--{name}", f"not with {compression} (it trains a rebuilt student whose "
                   f"layers differ); received --{name} {getattr(args, name)[0]}")
    if args.mixed_precision != "off":
        refuse("--mixed-precision", f"{compression} trains in float32; received "
               f"--mixed-precision {args.mixed_precision}")
    if compression == "--prune":
        if args.method != "kd" or (args.loss or "kl_divergence") != "kl_divergence":
            refuse("--prune", "the TFMOT training loop distils with --method kd --loss "
                   f"kl_divergence only; received --method {args.method}"
                   + (f" --loss {args.loss}" if args.loss else ""))
        if args.strategy not in ("auto", "default"):
            refuse("--strategy", f"--prune trains on one device; received --strategy "
                   f"{args.strategy}")
        if args.backup_dir:
            refuse("--backup-dir", "--prune cannot resume from a backup (tf_keras training "
                   "loop)")


def resolved(args, default_loss):
    """What the method options resolve to: recorded in the results JSON, replayed by rerun."""
    values = {"alpha": DEFAULT_ALPHA[args.method] if args.alpha is None else args.alpha}
    if args.method == "kd":
        values["loss"] = args.loss or default_loss
    else:
        values.update({k: DKD_DEFAULTS[k] if getattr(args, k) is None else getattr(args, k)
                       for k in DKD_DEFAULTS})
    return values
