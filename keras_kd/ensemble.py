"""Per-member temperatures for teacher ensembles, without changing `TeacherEnsemble`.

`with_temperature(member, tau)` is the member with its logits divided by `tau` (a Functional
model sharing the member's layers: no new weights). In a `TeacherEnsemble`, member `i` is
then softened by `tau_i * T` when the Distiller applies its temperature `T`: a relative,
per-teacher temperature (e.g. to calibrate an over-confident teacher before averaging).

Example:

```python
ensemble = keras_kd.TeacherEnsemble(
    [keras_kd.ensemble.with_temperature(resnet, 2.0), mobilenet], weights=[2, 1],
    mode="probabilities")
```
"""

import keras

from keras_kd.losses.logits import check_temperature


def with_temperature(member, temperature):
    """`member`'s logits divided by `temperature`, as a Functional model on the same layers.

    Args:
        member: a built Functional or Sequential teacher outputting logits.
        temperature: a number > 0; 1 returns `member` itself.

    Raises:
        ValueError: for an invalid temperature or a model without symbolic inputs/outputs
            (subclassed): wrap its logits yourself, e.g. in a Functional model.
    """
    temperature = check_temperature(temperature, allow_none=False)
    if temperature == 1.0:
        return member
    inputs, outputs = getattr(member, "inputs", None), getattr(member, "outputs", None)
    if not inputs or not outputs or len(outputs) != 1:
        raise ValueError(
            "Invalid value for argument `member`: per-member temperatures need a built "
            f"Functional or Sequential model with one output; '{member.name}' is not one. "
            "Rebuild it with the Functional API (`keras.Model(inputs, outputs)`)."
        )
    scaled = keras.layers.Rescaling(1.0 / temperature, name=f"{member.name}_over_t")(outputs[0])
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, scaled,
                       name=f"{member.name}_t{temperature:g}")
