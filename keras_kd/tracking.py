"""What the `Distiller` logs: `loss`, `hard_loss`, each term's value, the compiled metrics.

Each step hands over local means and the local example count (see
`Distiller.compute_distillation_losses`). The trackers, Keras `Mean` metrics synchronised
across replicas, weigh each mean by its count, so a logged value is the mean over every
example seen: uneven last batches and tf.distribute replicas included. The `loss` tracker is
Keras' own, fed the unscaled value (as Keras' trainer does). Without labels (`y=None`) the
compiled metrics are neither updated nor logged.
"""

from keras_kd import compat
from keras_kd import distribute


def trackers(model):
    """The loss trackers of a `Distiller`: `loss`, `hard_loss`, then one per term."""
    return (compat.loss_tracker(model), model.hard_loss_tracker, *model.term_trackers)


def update(model, logs):
    """Feeds a step's local means to `model`'s trackers, weighted by `logs["count"]`."""
    for tracker in trackers(model):
        tracker.update_state(logs[tracker.name], sample_weight=logs["count"])


def step_logs(model, x, y, student_logits, sample_weight):
    """What a train/test step returns: the trackers' results and the compiled metrics of the
    student's logits (updated here), or the trackers' results alone without labels."""
    if y is None:  # no labels: the compiled metrics are not updated (nor logged)
        logs = {m.name: m.result() for m in trackers(model)}
    else:
        logs = model.compute_metrics(x, y, student_logits, sample_weight=sample_weight)
    return distribute.step_logs(model.distribute_strategy, logs)


def metrics_result(model):
    """`Model.get_metrics_result`, leaving out compiled metrics never built (no labels seen)."""
    compiled = compat.compile_metrics(model)
    unbuilt = compiled is not None and not compiled.built
    results = {}
    for metric in model.metrics:
        if unbuilt and metric is compiled:
            continue
        result = metric.result()
        results.update(result if isinstance(result, dict) else {metric.name: result})
    return results
