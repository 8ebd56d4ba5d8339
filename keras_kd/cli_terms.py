"""The Distiller terms `keras-kd distill` asks for (`--method`, `--hint`, `--attention`).

Layer names and output ranks are checked against the loaded models here, before any
training; an error names the option, the value and a few layers that would do.
"""

from keras_kd import cli_methods
from keras_kd import features
from keras_kd import terms as terms_lib
from keras_kd.commands import CommandError

SHOWN = 6  # layer names listed in an error
RANKS = {"--hint": (2, 4), "--attention": (4,)}  # output ranks each option can read
KINDS = {"--hint": "2-D vectors or 4-D feature maps", "--attention": "4-D feature maps"}


def _rank(layer):
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called several times has no one output
        return None


def _layer(model, name, role, option, spec):
    """`model`'s layer `name`, whose output an `option` term can read; `role` is
    `(option, value)` of the model, e.g. `("--teacher", "t.keras")`."""
    usable = [layer.name for layer in model.layers if _rank(layer) in RANKS[option]]
    layer = next((layer for layer in model.layers if layer.name == name), None)
    if layer is None or _rank(layer) not in RANKS[option]:
        found = (f"no layer {name!r}" if layer is None
                 else f"layer {name!r} outputs {tuple(layer.output.shape)}")
        shown = ", ".join(map(repr, usable[:SHOWN]))
        more = f", ... ({len(usable)} in all)" if len(usable) > SHOWN else ""
        raise CommandError(
            f"argument {option}: {found} in {role[0]} {role[1]!r} (received {spec!r}); "
            f"expected {cli_methods.PAIR_FORM} naming layers that output {KINDS[option]}, "
            f"e.g. {role[0][2:]} layers {shown or 'none'}{more}")
    return layer


def _pairs(args, option, specs, teacher, student, default_weight):
    """`(teacher_layer, student_layer, weight, name)` for each checked spec of `option`."""
    base = {"--hint": "hint_loss", "--attention": "at_loss"}[option]
    pairs = []
    for i, spec in enumerate(specs or (), start=1):
        t_name, s_name, weight = cli_methods.split_pair(spec)
        t = _layer(teacher, t_name, ("--teacher", args.teacher), option, spec)
        s = _layer(student, s_name, ("--student", args.student), option, spec)
        if _rank(t) != _rank(s):
            raise CommandError(
                f"argument {option}: {spec!r} pairs a teacher output {tuple(t.output.shape)} "
                f"with a student output {tuple(s.output.shape)}; expected two 2-D vectors "
                "or two 4-D feature maps")
        if option == "--attention":
            try:
                features.match_spatial(s.output, t.output)
            except ValueError as e:
                raise CommandError(f"argument {option}: {spec!r}: {e}") from None
        name = base if len(specs) == 1 else f"{base}_{i}"
        pairs.append((t_name, s_name, default_weight if weight is None else weight, name))
    return pairs


def build(args, teacher, student, settings, temperature):
    """The terms for the `distill` options, or None for the Distiller's own single KD term
    (`--method kd` alone: today's objective, logged as `distillation_loss`). `settings` are
    `cli_methods.resolved(...)`."""
    hints = _pairs(args, "--hint", args.hint, teacher, student, cli_methods.HINT_WEIGHT)
    attention = _pairs(args, "--attention", args.attention, teacher, student,
                       cli_methods.ATTENTION_WEIGHT)
    if args.method == "dkd":
        logits = terms_lib.dkd(alpha=settings["dkd_alpha"], beta=settings["dkd_beta"],
                               temperature=temperature, warmup_epochs=settings["dkd_warmup"])
    elif hints or attention:
        logits = terms_lib.Logits(settings["loss"], name="distillation_loss")
    else:
        return None
    return [logits,
            *(terms_lib.Hint(t, s, weight=w, name=n) for t, s, w, n in hints),
            *(terms_lib.AttentionTransfer([(t, s)], weight=w, name=n) for t, s, w, n in attention)]


def describe(terms):
    """Plain-value descriptions of the Distiller's terms, for the results JSON."""
    described = []
    for term in terms:
        config = {"kind": type(term).__name__, **term.get_config()}
        if "loss" in config:
            loss = term.loss.get_config() if hasattr(term.loss, "get_config") else {}
            config["loss"] = {"class_name": type(term.loss).__name__,
                              **{k: v for k, v in loss.items() if k in ("alpha", "beta")}}
        if isinstance(term, terms_lib.Hint):
            config["adapter"] = term.adapter is not None  # learned because the shapes differ
        described.append(config)
    return described
