"""What the detector's two networks compute in: float32, or bfloat16 where the device computes it natively.

Training may autocast its forward passes to bfloat16 (``training.fit.mixed_precision``), and so may
inference (``INSPECT_PRECISION``; ``calibrate`` and ``evaluate --precision``, so that thresholds and
figures come from the networks as served): ``network_precision`` autocasts the CAE and the head, and
the detector keeps everything after them — the reconstruction-error maps, the smoothing, the
texture memory and the image score — in float32 (``float32_scoring``), where bfloat16's 8-bit
mantissa would move scores and mask edges more than it saves. The networks' outputs still carry that
mantissa, so scores move a little against a float32 run: BENCHMARKS.md §1 measures by how much on
real test sets, and what it buys.

Only where bfloat16 is native does it pay: a GPU from Ampere on, or a CPU with AMX or AVX512-BF16.
Elsewhere it is emulated, slower than float32, and refused.
"""

import contextlib

import torch

PRECISIONS = ("float32", "bfloat16")
EMULATED = (
    "does not compute bfloat16 natively (a GPU from Ampere on, or a CPU with AMX or AVX512-BF16), "
    "and emulated it runs slower than float32"
)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU from Ampere on, or a CPU with AMX or
    AVX512-BF16 (a training step 2.5× faster on this project's Xeon, ``benchmarks.train_step``).
    Older GPUs and other CPUs emulate bfloat16, slower than float32."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no emulation to exclude: its answer is the native one
            return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    capabilities: dict = getattr(torch.cpu, "get_capabilities", dict)()  # older torch: no report, no bf16
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


def check_precision(precision: str, device: torch.device) -> str:
    """``precision`` if ``device`` can run the networks in it.

    Raises:
        ValueError: an unknown precision, or bfloat16 on a device that would only emulate it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16" and not native_bfloat16(device):
        raise ValueError(f"{device} {EMULATED}")
    return precision


def network_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a detector call runs in: bfloat16 autocast for its networks, or nothing."""
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def float32_scoring(like: torch.Tensor) -> torch.autocast:
    """Autocast off, on ``like``'s device: maps and scores compute in float32 inside any caller's
    bfloat16 autocast."""
    return torch.autocast(like.device.type, enabled=False)
