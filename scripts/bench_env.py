"""Fair-measurement helpers shared by every benchmark script (imported, not run).

The machines this project runs on set OPENBLAS_CORETYPE=Haswell and
OPENBLAS_L2_SIZE in the environment; with them OpenBLAS (hence numpy and
PyTorch) runs its AVX2 kernels at about half speed on an AVX-512 CPU. A
benchmark that measures a peer therefore

  * runs the peer's command with `peer_env()` (those two variables removed,
    one thread, and PyTorch's ATen kernels allowed to use the widest ISA the
    CPU has: Debian's torch 1.13 picks AVX2 by default on this CPU);
  * prints `describe(probe(env))`: the CPU model (/proc/cpuinfo), the load,
    the OpenBLAS core that library really selected (`openblas_get_corename`),
    the oneDNN ISA (`dnnl_get_effective_cpu_isa`) and, when asked, PyTorch's
    ATen capability, all probed in a child process that has the peer's
    environment;
  * calls `fallback_reasons(info)` and prints no ratio when a peer ran a
    fallback kernel (a core or ISA narrower than the CPU's widest vectors).

Tests and CI leave the variables alone: only the peer's command changes.
"""
import json
import os
import subprocess

PYTHON = "/usr/bin/python3"  # Debian's python: numpy, torch and sklearn live there
STRIPPED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# OpenBLAS cores that use AVX-512 (what an AVX-512 CPU must run).
AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
# Cores without AVX2 kernels (fallbacks on an AVX2 CPU).
PRE_AVX2_CORES = {"katmai", "coppermine", "northwood", "prescott", "banias", "core2", "penryn", "dunnington",
                  "nehalem", "atom", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "bulldozer",
                  "piledriver", "steamroller", "excavator", "sandybridge", "generic", "unknown"}
# dnnl_cpu_isa_t values (oneDNN 2.x, dnnl_types.h).
DNNL_ISA = {0x0: "all", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0xF: "avx512_mic", 0x1F: "avx512_mic_4ops",
            0x27: "avx512_core", 0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16", 0x3E7: "avx512_core_amx",
            0x407: "avx2_vnni"}

_PROBE = r"""
import ctypes, json, sys
out = {}
try:
    b = ctypes.CDLL("libopenblas.so.0")
    b.openblas_get_corename.restype = ctypes.c_char_p
    b.openblas_get_config.restype = ctypes.c_char_p
    out["openblas_core"] = b.openblas_get_corename().decode()
    out["openblas_config"] = b.openblas_get_config().decode()
except OSError as e:
    out["openblas_error"] = str(e)
try:
    d = ctypes.CDLL("libdnnl.so.2")
    out["onednn_isa_value"] = d.dnnl_get_effective_cpu_isa()
except OSError as e:
    out["onednn_error"] = str(e)
if "torch" in sys.argv[1:]:
    import torch
    out["torch"] = torch.__version__
    out["torch_capability"] = torch.__config__.show().split("CPU capability usage: ")[1].split()[0]
    out["torch_quantized_engines"] = list(torch.backends.quantized.supported_engines)
print(json.dumps(out))
"""


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def cpu_model():
    """'AMD EPYC (family 26, model 2, stepping 1)' from /proc/cpuinfo."""
    fields = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                break
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
    return (f"{fields.get('model name', '?')} (vendor {fields.get('vendor_id', '?')}, family "
            f"{fields.get('cpu family', '?')}, model {fields.get('model', '?')}, stepping "
            f"{fields.get('stepping', '?')})")


def load():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def best_isa():
    fl = cpu_flags()
    if "avx512f" in fl:
        return "avx512"
    if "avx2" in fl:
        return "avx2"
    return "default"


def peer_env(base=None, threads=1):
    """The environment of a peer's command: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
    removed, `threads` BLAS / OpenMP threads, ATen at the CPU's widest ISA."""
    env = dict(os.environ if base is None else base)
    for k in STRIPPED:
        env.pop(k, None)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    if best_isa() != "default":
        env["ATEN_CPU_CAPABILITY"] = best_isa()
    return env


def probe(env, torch=False, caller_env=None):
    """What the peer libraries select in `env` (run in a child process);
    `caller_env`: the environment the variables were removed from (default:
    this process's)."""
    args = [PYTHON, "-c", _PROBE] + (["torch"] if torch else [])
    r = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {"probe_error": r.stderr[-500:]}
    if "onednn_isa_value" in info:
        info["onednn_isa"] = DNNL_ISA.get(info["onednn_isa_value"], hex(info["onednn_isa_value"]))
    info["cpu"] = cpu_model()
    info["load"] = load()
    caller = os.environ if caller_env is None else caller_env
    info["stripped_from_peer_env"] = {k: caller[k] for k in STRIPPED if k in caller}
    return info


def fallback_reasons(info):
    """Why a peer ran below the CPU's widest kernels (empty list: it did not)."""
    reasons = []
    isa = best_isa()
    core = info.get("openblas_core")
    if core is not None:
        c = core.lower()
        if isa == "avx512" and c not in AVX512_CORES:
            reasons.append(f"OpenBLAS core {core} has no AVX-512 kernels on an AVX-512 CPU")
        elif isa == "avx2" and c in PRE_AVX2_CORES:
            reasons.append(f"OpenBLAS core {core} has no AVX2 kernels on an AVX2 CPU")
    v = info.get("onednn_isa_value")
    if v is not None:
        fl = cpu_flags()
        want = 0x67 if "avx512_vnni" in fl else 0x27 if "avx512f" in fl else 0x7 if "avx2" in fl else 0
        if (v & want) != want:
            reasons.append(f"oneDNN ISA {info['onednn_isa']} is below the CPU's ({DNNL_ISA[want]})")
    cap = info.get("torch_capability")
    if cap is not None and isa != "default" and cap.lower() != isa:
        reasons.append(f"PyTorch ATen capability {cap} below the CPU's {isa.upper()}")
    return reasons


def describe(info):
    lines = [f"CPU: {info['cpu']}; {info['load']}"]
    if "openblas_core" in info:
        lines.append(f"peer OpenBLAS core: {info['openblas_core']} ({info['openblas_config']})")
    if "onednn_isa" in info:
        lines.append(f"peer oneDNN ISA: {info['onednn_isa']}")
    if "torch" in info:
        lines.append(f"peer PyTorch {info['torch']}: ATen capability {info['torch_capability']}, quantized "
                     f"engines {info['torch_quantized_engines']}")
    stripped = info.get("stripped_from_peer_env")
    lines.append("removed from the peer's environment: " +
                 (", ".join(f"{k}={v}" for k, v in stripped.items()) if stripped else "(none were set)"))
    for r in fallback_reasons(info):
        lines.append(f"PEER FALLBACK: {r} -- no ratio is printed")
    return "\n".join(lines)


def ratio(ours, peer, reasons):
    """ours / peer, or None (print 'refused') when the peer ran a fallback."""
    if reasons or not peer:
        return None
    return ours / peer


def fmt_ratio(r, width=7, digits=2):
    return f"{'refused':>{width}}" if r is None else f"{r:{width}.{digits}f}"
