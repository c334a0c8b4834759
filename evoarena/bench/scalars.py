"""The TensorBoard scalars of a run: ``read_scalars(RUN_DIR/tb)``, read by the evolution report, sweeps and
the tests."""

from __future__ import annotations

from pathlib import Path


def read_scalars(tb_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard log folder: tag -> [(step, value)] sorted by step (purged events of a
    resumed run are dropped, as TensorBoard drops them). Sub-folders (``tb/hparams``) are other runs to
    TensorBoard and are not read; ``{}`` when the folder does not exist."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb_dir = Path(tb_dir)
    if not tb_dir.is_dir():
        return {}
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: sorted((int(e.step), float(e.value)) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}
