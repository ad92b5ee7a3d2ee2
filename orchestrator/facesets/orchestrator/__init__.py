"""The `facesets` command."""

import facesets.shared.blas  # noqa: F401  # before numpy loads: see its docstring
