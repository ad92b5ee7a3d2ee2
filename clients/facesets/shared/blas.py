"""Imported before numpy loads (first thing in the `facesets` command and `facesets-serve`):
BLAS worker threads that sleep as soon as their work is done.

OpenBLAS's worker threads spin for 2**28 cycles (about 0.1 s) after each piece of work before
they sleep, and a service loads three copies of it at start (numpy's, scipy's and faiss's). On
the 2-core machine importing the clustering service took 1.03 s of CPU with that spinning and
0.67 s without it (export 0.82 -> 0.54 s, inference 1.11 -> 0.76 s), a cost paid by every
service start and every command. The services' BLAS work is large matrix products, which do
not notice the threads' wake-up. A value already in the environment is kept.
"""

from __future__ import annotations

import os

SPIN_CYCLES_EXPONENT = "4"  # OpenBLAS's smallest: threads sleep after 2**4 idle cycles

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", SPIN_CYCLES_EXPONENT)
