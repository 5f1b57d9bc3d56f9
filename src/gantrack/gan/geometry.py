"""How a DCGAN reaches an image size: pure arithmetic, shared by the networks and validation."""

from __future__ import annotations

MAX_LAYERS = 8  # per network; deeper stacks at these resolutions only add cost


def scale_plan(height: int, width: int) -> tuple[int, int, int]:
    """How a DCGAN reaches (height, width) from a small feature map by 2x upsamplings.

    Returns (base_height, base_width, n): halve while both sides stay even and >= 4, so 28x28
    -> (7, 7, 2) and 32x32 -> (4, 4, 3). The discriminator mirrors it with n stride-2 convs.
    """
    n = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) // 2 >= 4:
        height, width, n = height // 2, width // 2, n + 1
    return height, width, n


def layer_count(layers: int | str, height: int, width: int) -> int:
    """A network's conv layers: `layers`, or for "auto" one per 2x scale of `scale_plan` and at
    least 2, so the generator starts and the discriminator ends at the base size (8x8: 2,
    28x28: 2 from 7x7, 32x32: 3 and 64x64: 4 from 4x4)."""
    return max(scale_plan(height, width)[2], 2) if layers == "auto" else int(layers)


def width_cap(max_filters: int | str, height: int, width: int) -> int:
    """A network's widest layer: `max_filters`, or for "auto" 128 up to 32x32 images and twice
    that per doubling of the shorter side beyond (64x64: 256; measured on emoji at 32 and 64)."""
    if max_filters != "auto":
        return int(max_filters)
    return 128 * max(min(height, width) // 32, 1)
