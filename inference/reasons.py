"""Why each picked item is in a list, and which history item it resembles.

The last step of ``inference.recommend``: a reason code per slot from the candidate's
source flags, its age and its cosine to the user's recent items.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inference.rerank import FROM_ANN, FROM_EXPLORATION, FROM_TRENDING, REASON_CODE


def assign_reasons(
    flags: npt.ArrayLike,
    is_new: npt.ArrayLike,
    unit_vecs: npt.ArrayLike,
    history_unit_vecs: npt.ArrayLike,
    history_valid: npt.ArrayLike,
    similar_threshold: float,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """Why each picked item is there, and which history item it resembles.

    Precedence: exploration (came only from exploration sampling) > trending > new
    item > similar to a history item (cosine >= ``similar_threshold``) > personalised.

    Args:
        flags: ``(B, k)`` source flags of the picked items.
        is_new: ``(B, k)`` items younger than the new-item threshold.
        unit_vecs: ``(B, k, d)`` unit vectors of the picked items.
        history_unit_vecs: ``(B, H, d)`` unit vectors of recent history items.
        history_valid: ``(B, H)`` mask of real (non-padding) history slots.
        similar_threshold: Cosine needed for ``similar_to_item``.

    Returns:
        ``(codes (B, k) int8 indexing REASONS, history position (B, k) or -1)``.
    """
    f = np.asarray(flags, dtype=np.uint8)
    hv = np.asarray(history_valid, dtype=bool)
    b, k = f.shape
    hist_pos = np.full((b, k), -1, dtype=np.int64)
    similar = np.zeros((b, k), dtype=bool)
    if hv.shape[1]:
        cos = np.asarray(unit_vecs, np.float32) @ np.swapaxes(
            np.asarray(history_unit_vecs, np.float32), 1, 2
        )
        cos = np.where(hv[:, None, :], cos, -np.inf)
        best = cos.argmax(axis=2)
        similar = np.take_along_axis(cos, best[..., None], axis=2)[..., 0] >= similar_threshold
        hist_pos = np.where(similar, best, -1)
    explore = ((f & FROM_EXPLORATION) > 0) & ((f & FROM_ANN) == 0)
    trending = (f & FROM_TRENDING) > 0
    new = np.asarray(is_new, dtype=bool)
    codes = np.full((b, k), REASON_CODE["personalised"], np.int8)  # lowest precedence first
    codes[similar] = REASON_CODE["similar_to_item"]
    codes[new] = REASON_CODE["new_item"]
    codes[trending] = REASON_CODE["trending"]
    codes[explore] = REASON_CODE["exploration"]
    hist_pos = np.where(codes == REASON_CODE["similar_to_item"], hist_pos, -1)
    return codes, hist_pos
