"""Which CPU kernels libtorch picks in this environment, for the machine record of
`cargo xtask bench`. xtask runs it under the environment the bench's sides run under (thread
counts, and the kernel caps of `--isa`), so a cap shows in what torch reports.

Prints one JSON object on stdout:
  torch           torch.__version__
  dir             the torch package's directory (its lib/ is the libtorch flan-bench loads
                  when LIBTORCH points at this venv)
  cpu_capability  torch.backends.cpu.get_cpu_capability(): ATen's vectorised loops
  onednn_isa      the ISA oneDNN reports when it creates a primitive, "" if it did not say
  threads         torch.get_num_threads()
  mkl, onednn, openmp   the build's library lines from torch.__config__.show()

usage: python torch_probe.py
"""

import ctypes
import json
import os
import sys
import tempfile


def captured_stdout(fn):
    """What `fn` writes to file descriptor 1, where oneDNN's C code prints its verbose lines."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            fn()
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace")


def onednn_isa(torch):
    """oneDNN's ISA, from its verbose output for an fp32 inner product on oneDNN tensors (which
    goes to oneDNN whatever the cap; a bf16 product under autocast does not below AVX-512)."""
    if not torch.backends.mkldnn.is_available():
        return ""

    def product():
        x = torch.ones(16, 64).to_mkldnn()
        w = torch.ones(32, 64).to_mkldnn()
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            torch._C._nn.mkldnn_linear(x, w)

    try:
        out = captured_stdout(product)
    except (AttributeError, RuntimeError) as e:
        # A private entry point: say why there is no answer rather than fail the bench.
        print(f"torch_probe: oneDNN's ISA not probed: {e}", file=sys.stderr)
        return ""
    for line in out.splitlines():
        if ",info,cpu,isa:" in line:
            return line.split(",info,cpu,isa:", 1)[1].strip()
    return ""


def config_line(config, *needles):
    """The first `- ...` line of torch.__config__.show() that names one of `needles`."""
    for line in config.splitlines():
        text = line.strip().lstrip("- ").strip()
        if any(n in text for n in needles):
            return text
    return ""


def main():
    import torch

    config = torch.__config__.show()
    record = {
        "torch": torch.__version__,
        "dir": os.path.dirname(os.path.abspath(torch.__file__)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(torch),
        "threads": torch.get_num_threads(),
        "mkl": config_line(config, "Math Kernel Library"),
        "onednn": config_line(config, "MKL-DNN", "oneDNN"),
        "openmp": config_line(config, "OpenMP"),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    sys.exit(main())
