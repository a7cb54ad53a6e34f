"""Projection engine: follow the event store and (re)build read models.

See docs/projections.md. ``Projection`` + ``handles`` declare a projection;
``ProjectionRunner`` follows (``run_forever`` / ``run_once``) and rebuilds (``rebuild``).
"""

from .applier import POSITION_FIELD, BatchOutcome, Parked, apply_batch
from .base import Projection, handles, load_projection, qualified_name
from .dead_letters import DeadLetters
from .partition import Partition, partition_of
from .progress import Progress
from .rebuild import RebuildReport, SwapCount, rebuild_checkpoint, shadow_name
from .runner import ProjectionRunner

__all__ = [
    "POSITION_FIELD",
    "BatchOutcome",
    "DeadLetters",
    "Parked",
    "Partition",
    "Progress",
    "Projection",
    "ProjectionRunner",
    "RebuildReport",
    "SwapCount",
    "apply_batch",
    "handles",
    "load_projection",
    "partition_of",
    "qualified_name",
    "rebuild_checkpoint",
    "shadow_name",
]
