"""The pre-training network as OpenPCDet modules (imports pcdet): the ``SealMAE`` detector, its
decoders and its head."""
# pcdet.models first: the start-up hook registers this package's classes right after pcdet.models
# executes, which must not happen while the modules below are half-imported.
import pcdet.models  # noqa: F401  isort: skip

from .decoders import DSVTMaskDecoder, SparseConvDecoder
from .seal_mae_head import SealMAEHead
from .seal_mae import SealMAE
from .seal_target import SealTargetGenerator

__all__ = ["SealMAE", "DSVTMaskDecoder", "SparseConvDecoder", "SealMAEHead", "SealTargetGenerator"]
