"""Tunable thresholds of the recognition engine, in one place.

The server fills this from `config.yaml` (section `matcher`); the CLI and the
benchmark use the defaults. Every threshold the engine uses is named here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatcherSettings:
    # Decoding
    max_image_pixels: int = 40_000_000
    """Images with more pixels than this are refused (decompression bombs)."""
    frame_max_side: int = 640
    """Camera frames are decoded straight to at most this size on their longer side."""
    reference_max_side: int = 640
    """References are normalised to this longer side before features are taken."""

    # Features
    frame_features: int = 1100
    """Keypoints kept per camera frame."""
    searched_features: int = 1100
    """Of those, how many (the best spread, features.detect's order) are looked up in the collection's index;
    all frame_features are matched against the references the search shortlists. Lower than frame_features,
    the search costs less than the keypoints it gets matches from."""
    reference_features: int = 500
    """Keypoints kept per reference, summed over its scales."""
    reference_scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    """Extra scales a reference is described at, so small appearances match too."""
    frame_oversampling: float = 3.0
    """A frame's detector finds this many times frame_features corners; the grid spreading keeps the best."""
    frame_corner_threshold: int = 16
    """FAST threshold (intensity difference) for a frame's corners; references always use 12. Above 12 the
    grid spreading fills a plain cell with fewer of a noisy frame's chance corners."""
    grid_cells: int = 8
    """Keypoints are spread over a grid of this many cells per side."""
    contrast_clip: float = 0.01
    """Share of the darkest and of the brightest pixels ignored when measuring a frame's contrast."""
    min_contrast_range: int = 64
    """Frames whose intensities span less than this (after clipping) are stretched to the full range: only
    frames too dark for the camera, since stretching a merely dim one amplifies its noise into corners."""
    min_reference_keypoints: int = 60
    """A reference with fewer usable keypoints than this is refused."""
    min_reference_quality: float = 0.2
    """A reference whose quality (0-1, keypoint amount x coverage) is below this is refused."""

    # Search
    candidates: int = 5
    """How many shortlisted references go to geometric verification."""
    neighbours: int = 4
    """Nearest neighbours fetched per frame descriptor."""
    ratio: float = 0.8
    """Lowe's ratio test: best match distance / best distance in another item."""
    max_hamming: int = 80
    """Descriptor pairs further apart than this never count as matches."""
    shared_vote_weight: float = 0.05
    """A frame descriptor failing the ratio test because another item holds a near-equal neighbour
    (look-alike references) votes for both items with this weight; 0: it votes for none."""
    min_agreeing_votes: int = 4
    """An item not shortlisted becomes a fallback candidate when at least this many frame descriptors
    have their nearest neighbour in it and turn by the same angle (within orientation_tolerance_degrees)..."""
    fallback_candidates: int = 2
    """...and at most this many fallback candidates, the most agreeing, are verified when no shortlisted
    item is found; 0: none."""
    ivf_probe: int = 2
    """Inverted lists searched per descriptor."""
    same_spot_fraction: float = 0.02
    """Reference keypoints this close (fraction of the longer side) count as one spot in the ratio test."""

    # Geometric verification
    orientation_tolerance_degrees: float = 20.0
    """Only matches whose keypoint rotation (frame orientation minus reference orientation) is within
    this of the most common one go to RANSAC: a flat object turns all its keypoints alike. 0: off."""
    rotation_modes: int = 2
    """When the pairs turning like most do not verify, those turning like most of the rest are tried,
    and so on, up to this many turns: wrong pairs on a repeated pattern (rows of windows, a
    horizon's ridges) can outnumber the right ones and all turn alike."""
    ransac_reprojection_px: float = 5.0
    """RANSAC inlier threshold in frame pixels (at the working resolution)."""
    min_inliers: int = 12
    """Fewer RANSAC inliers than this and a candidate is rejected."""
    min_inlier_ratio: float = 0.45
    """Inliers over the candidate's tentative matches that pass the rotation check must reach this."""
    min_area_fraction: float = 0.002
    """The object's outline must cover at least this fraction of the frame."""
    max_side_ratio: float = 12.0
    """Longest over shortest side of the projected outline."""
    min_inlier_spread: float = 0.08
    """Inliers must cover at least this fraction of the reference (bounding box)."""
    max_outline_overlap: float = 0.5
    """Of two items whose outlines overlap more than this (intersection over union), only the
    better one is reported: one object, and a look-alike of it."""
    refine_radii_px: tuple[float, ...] = (8.0, 4.0)
    """Guided matching after RANSAC: search radius (frame px) of each refit round; () turns refitting off."""
    refine_max_hamming: int = 64
    """Guided pairs further apart than this in descriptor space are ignored."""
    min_seed_inliers: int = 8
    """A homography with fewer distinct RANSAC inliers than min_inliers, but at least this many, gets a second chance..."""
    min_guided_inliers: int = 30
    """...and is kept if guided matching finds at least this many keypoint pairs agreeing with it."""
    outline_search_px: float = 16.0
    """How far (working px) each side of a found outline is looked for on the frame's edges; 0: off."""
    align_below_coverage: float = 0.4
    """A found pose whose pairs span less than this share of the reference's area (its far corners
    extrapolated) is aligned on the reference's pixels (matcher/alignment.py); 0: never."""
    align_min_correlation: float = 0.95
    """The aligned pose is kept only if the frame's pixels then correlate this closely with the reference's."""
    min_agreeing_cells: float = 0.3
    """A found item is reported only if, of its reference's textured cells (a 4x4 grid on its 120-px copy) that the
    pose puts in the frame, at least this share correlate with the frame's pixels there (matcher/appearance.py):
    a look-alike sharing one title or logo with what the frame shows agrees in those cells only. 0: no check."""

    # Tracking between recognitions (camera streams)
    recognize_every: int = 9
    """While items are tracked, full recognition (re-verification, new items) runs on every Nth frame..."""
    recognize_every_seconds: float = 2.0
    """...or once this long has passed since the last one, on a stream that gets few frames a second (at most every 4th)."""
    track_points: int = 80
    """Points followed by optical flow per tracked item."""
    track_point_spacing_px: int = 8
    """Smallest distance between tracked points, in working-frame pixels."""
    track_min_points: int = 10
    """A track with fewer agreeing points than this in a frame is not followed in that frame."""
    track_reseed_fraction: float = 0.6
    """Below this fraction of its points a track is re-verified by recognition and given fresh points."""
    track_flow_check_px: float = 1.0
    """Forward-backward optical flow error above which a point is dropped."""
    track_ransac_px: float = 3.0
    """RANSAC inlier threshold of the tracked homography, in working-frame pixels."""
    track_agreement_px: float = 6.0
    """Recognition and tracking poses this close (largest corner distance) are the same; else recognition wins."""
    track_override_min_coverage: float = 0.3
    """A recognized pose resting on less of the reference than this never replaces a followed track's."""
    track_smoothing_px: float = 2.0
    """Corner moves well below this are damped (still camera); larger ones are taken as they are."""
    track_max_lost_frames: int = 4
    """A track not followed for more frames than this (blur, occlusion, gone) is dropped."""
    track_max_misses: int = 3
    """A track not seen by this many recognitions in a row is dropped."""
    max_tracked_streams: int = 256
    """Streams whose tracking state a worker keeps; the least recently used beyond this is forgotten."""
