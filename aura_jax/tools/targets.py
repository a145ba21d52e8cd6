"""Accelerators that are not here: named targets, their compile-only devices, and the plugins.

XLA compiles for TPU slices (through libtpu) and NVIDIA GPUs (through jax's CUDA plugin and a
GPU target description) on a CPU machine. The plugins are an optional part of the environment,
kept OUTSIDE the virtualenv's site-packages (`scripts/setup_env.sh --aot` installs them under
`.venv/aot/tpu` and `.venv/aot/cuda`): with libtpu importable, every plain `import jax` on a CPU
box would print TPU initialisation errors. Only `aura-jax aot` puts them on `sys.path`, after
setting the TPU variables that keep libtpu from looking for a metadata server.

The chip figures (dense bf16 peak, HBM capacity and bandwidth, interconnect bandwidth per chip)
are public datasheet numbers; they feed estimates only, never a measured figure.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

GIB = 2**30
GPU_SPECS = Path(__file__).parent / "gpu_targets"


@dataclasses.dataclass(frozen=True)
class Chip:
    kind: str  # what the compile-only device reports as device_kind (for the report)
    peak_bf16_tflops: float  # dense, per chip (per jax device)
    hbm_bytes: int  # memory per jax device
    hbm_bytes_per_s: float
    interconnect_bytes_per_s: float  # per chip, all links, one direction (ICI / NVLink)
    gpu_spec: str | None = None  # GpuTargetConfigProto text file in gpu_targets/


CHIPS = {
    # TPU figures from Google Cloud's TPU pages; v4 and v5p as megacore (one jax device = one chip).
    "v4": Chip("TPU v4", 275.0, 32 * GIB, 1.2e12, 300e9),
    "v5e": Chip("TPU v5 lite", 197.0, 16 * GIB, 8.19e11, 200e9),
    "v5p": Chip("TPU v5", 459.0, 95 * GIB, 2.765e12, 600e9),
    "v6e": Chip("TPU v6 lite", 918.0, 32 * GIB, 1.64e12, 448e9),
    # NVIDIA: dense bf16 989 TFLOP/s (SXM); NVLink 4: 900 GB/s both directions = 450 GB/s one way.
    # Memory sizes are the target descriptions' device_memory_size.
    "h100": Chip("NVIDIA H100 80GB HBM3", 989.0, 84942979072, 3.35e12, 450e9, "h100_sxm.txtpb"),
    "h200": Chip("NVIDIA H200 141GB HBM3e", 989.0, 151397597184, 4.8e12, 450e9, "h200.txtpb"),
}


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    platform: str  # "tpu" | "cuda"
    chip: str  # key of CHIPS
    topology: str  # TPU: "v5e:2x4" (libtpu's topology name); CUDA: "slices x hosts x gpus", e.g. "1x1x8"
    num_slices: int = 1

    @property
    def spec(self) -> Chip:
        return CHIPS[self.chip]


TARGETS = {
    "tpu-v4-8": Target("tpu-v4-8", "tpu", "v4", "v4:2x2x1"),
    "tpu-v5e-8": Target("tpu-v5e-8", "tpu", "v5e", "v5e:2x4"),
    "tpu-v5e-16": Target("tpu-v5e-16", "tpu", "v5e", "v5e:4x4"),
    "tpu-v5p-8": Target("tpu-v5p-8", "tpu", "v5p", "v5p:2x2x1"),
    "tpu-v6e-8": Target("tpu-v6e-8", "tpu", "v6e", "v6e:2x4"),
    "h100x1": Target("h100x1", "cuda", "h100", "1x1x1"),
    "h100x8": Target("h100x8", "cuda", "h100", "1x1x8"),
    "h200x1": Target("h200x1", "cuda", "h200", "1x1x1"),
    "h200x8": Target("h200x8", "cuda", "h200", "1x1x8"),
}

_TPU_RAW = re.compile(r"^(?:tpu:)?(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})(?:/(\d+))?$")
_GPU_RAW = re.compile(r"^(h100|h200):(\d+)x(\d+)x(\d+)$")


def resolve_target(name: str) -> Target:
    """A named target, or a raw topology: "v5e:4x8" / "tpu:v5p:2x2x2" (libtpu topology names, "/N" for
    N slices) or "h100:1x2x8" (NVIDIA: slices x hosts per slice x GPUs per host)."""
    from aura_jax.config import ConfigError

    if name in TARGETS:
        return TARGETS[name]
    m = _TPU_RAW.match(name)
    if m:
        return Target(name, "tpu", m.group(1), f"{m.group(1)}:{m.group(2)}", int(m.group(3) or 1))
    m = _GPU_RAW.match(name)
    if m:
        return Target(name, "cuda", m.group(1), f"{m.group(2)}x{m.group(3)}x{m.group(4)}")
    raise ConfigError(f"--target {name!r}: use one of {', '.join(TARGETS)}, a TPU topology such as v5e:4x8 "
                      "(tpu:v5p:2x2x2, /N for N slices) or a GPU one such as h100:1x2x8 (slices x hosts x GPUs)")


def default_usable_fraction(target: Target) -> float:
    """Share of a device's memory a program may use: on TPU what the compiler accepts (it refuses a
    program that exceeds the chip); on GPU the 92% the launchers let JAX's allocator take
    (XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 in launch/*gpu*; JAX's own default is 0.75)."""
    return 1.0 if target.platform == "tpu" else 0.92


def plugins_dir() -> Path:
    """Where `scripts/setup_env.sh --aot` puts libtpu and the CUDA plugin (AURA_AOT_PLUGINS overrides)."""
    return Path(os.environ.get("AURA_AOT_PLUGINS") or Path(sys.prefix) / "aot")


def enable_plugin(platform: str) -> None:
    """Make libtpu or the CUDA plugin importable for this process only; call before jax initialises
    its backends. Raises one clear error when the extra is not installed."""
    from aura_jax.config import ConfigError

    folder = plugins_dir() / ("tpu" if platform == "tpu" else "cuda")
    marker = folder / ("libtpu" if platform == "tpu" else "jax_plugins")
    if not marker.exists():
        what = "libtpu" if platform == "tpu" else "the jax CUDA plugin"
        raise ConfigError(f"{what} is not installed in {folder}: run `bash scripts/setup_env.sh --aot` "
                          "(or set AURA_AOT_PLUGINS to a folder holding tpu/ and cuda/)")
    # libtpu reads these when it loads: a fixed accelerator type and no worker discovery, so it never
    # queries a GCE metadata server (no network traffic), and no TPU errors on a CPU box.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-8")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # The devices we compile for are compile-only: the process itself runs on the CPU (and the CUDA
    # plugin registers only where its cuInit check is skipped this way).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if platform == "cuda":
        # A compile-only GPU executable cannot autotune, and XLA's Triton GEMM tiling search then fails on
        # some shapes ("Couldn't find output tile sizes", seen on a float32 [3416, 64] dot): GEMMs go to
        # cuBLAS instead (a choice autotuning often makes too). Memory and FLOPs are unaffected in kind.
        flag = "--xla_gpu_enable_triton_gemm=false"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    _late_plugin_discovery(platform)


def _late_plugin_discovery(platform: str) -> None:
    """jax looks for the `jax_plugins` namespace package when it is first imported; if it was imported
    before the plugin folder joined sys.path, hand the package to it now (discovery itself runs when
    the backends initialise, which must not have happened yet)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return
    if platform == "cuda" and "cuda" in getattr(bridge, "_backend_factories", {}):
        return  # already registered (enabled before)
    if platform == "cuda" and getattr(bridge, "_plugins_registered", False):
        raise RuntimeError("jax initialised its backends before the compile-only plugin was enabled: "
                           "call aura_jax.tools.targets.enable_plugin first")
    import importlib

    import jax

    jax.config.update("jax_platforms", os.environ["JAX_PLATFORMS"])  # read from the environment at import
    if platform != "cuda":  # libtpu is found by name when the TPU topology is asked for
        return
    importlib.invalidate_caches()
    bridge.jax_plugins = importlib.import_module("jax_plugins")


def target_devices(target: Target) -> list:
    """The compile-only devices of a target (their order is the topology's, as a real slice has)."""
    enable_plugin(target.platform)
    from jax.experimental import topologies

    if target.platform == "tpu":
        kw = {"chip_config_name": "megacore"} if target.chip in ("v4", "v5p") else {}
        if target.num_slices > 1:
            kw["num_slices"] = target.num_slices
        topo = topologies.get_topology_desc(topology_name=target.topology, platform="tpu", **kw)
    else:
        text = (GPU_SPECS / target.spec.gpu_spec).read_text()
        topo = topologies.get_topology_desc(platform="cuda", target_config=text, topology=target.topology)
    return list(topo.devices)
