"""A run's configuration and versions in its results JSON, and the command that repeats it.

Every results file written by `keras-kd` has a `config` section (each option of the command
as parsed, plus the values it resolved to: dtype policy, temperature, strategy class) and a
`versions` section (keras_kd, Keras, TensorFlow, NumPy, Python). `keras-kd rerun RESULTS.json`
turns `config` back into the command line and runs it through the same validation.
"""

import json
import platform


def versions():
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_kd

    return {"keras_kd": keras_kd.__version__, "keras": keras.__version__,
            "tensorflow": tf.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def record(args, **resolved):
    """`{"config": ..., "versions": ...}` for the parsed `args` and the values they resolved to."""
    config = {k: v for k, v in vars(args).items() if k != "func"}
    config.update(resolved)
    return {"config": config, "versions": versions()}


def argv_from_results(path, parser, *, output=None, output_dir=None, results=None,
                      overwrite=False):
    """The `keras-kd` argument list that repeats the run recorded in the JSON at `path`.

    `output`, `output_dir` and `results` replace the recorded paths (when the command has
    them); existing files are replaced only with `overwrite`.

    Raises:
        ValueError: if the file is not JSON or holds no run configuration.
    """
    try:
        with open(path) as f:
            config = json.load(f).get("config")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} is not a keras-kd results JSON ({e})") from None
    commands = parser.commands
    if not isinstance(config, dict) or config.get("command") not in commands:
        raise ValueError(f"{path!r} holds no keras-kd run configuration (a 'config' section "
                         f"naming one of {sorted(commands)})")
    replaced = {"output": output, "output_dir": output_dir, "results": results}
    config = {**config, **{k: v for k, v in replaced.items() if v is not None},
              "overwrite": overwrite}
    argv = [config["command"]]
    for action in commands[config["command"]]._actions:
        value = config.get(action.dest)
        if action.dest == "help" or value is None or value is False:
            continue
        if not action.option_strings:
            argv.append(str(value))
        elif value is True:
            argv.append(action.option_strings[0])
        else:  # a repeatable option (`--hint`) recorded its values as a list
            for item in value if isinstance(value, list) else [value]:
                argv += [action.option_strings[-1], str(item)]
    return argv
