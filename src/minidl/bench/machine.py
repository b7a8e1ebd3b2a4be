"""What ran where: CPU, cores, torch and minidl versions, backends, device, threads, date."""
import datetime
import os
import platform

import torch

import minidl


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpp_error():
    """Why the cpp backend does not load here, as minidl.set_backend('cpp') says; None when it loads."""
    if minidl.cpp_available():
        return None
    previous = minidl.get_backend()
    try:
        minidl.set_backend("cpp")
    except RuntimeError as e:
        return str(e).removeprefix("minidl: the cpp backend is unavailable: ")
    finally:
        minidl.set_backend(previous)
    return None


def machine_info(device, threads):
    """What ran where: CPU, cores, torch, minidl version and backends, threads, date."""
    info = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "minidl": minidl.__version__,
        "cpp_available": minidl.cpp_available(), "cpp_error": cpp_error(), "device": device,
        "threads": threads, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def header(info):
    """The machine-info header, in markdown."""
    cpp = "yes" if info["cpp_available"] else f"no ({info['cpp_error']})"
    lines = ["# minidl benchmark", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores" + (f"; GPU: {info['gpu']}" if "gpu" in info else ""),
             f"- torch {info['torch']}, Python {info['python']}, minidl {info['minidl']}",
             f"- minidl backends: cpp {cpp}; python yes",
             f"- device {info['device']}, threads {','.join(map(str, info['threads']))}, {info['date']}"]
    return "\n".join(lines)
