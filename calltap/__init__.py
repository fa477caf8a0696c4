"""calltap: passive call recorder."""

import os

# numpy's OpenBLAS starts a thread per core that spins for about 0.1 CPU-second when numpy
# is imported; calltap's few small matrix operations never use it. One thread, unless the
# user chose otherwise (read when numpy is first imported, which calltap's modules do).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
