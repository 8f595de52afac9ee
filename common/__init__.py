"""What every package shares: the error base class the CLI reports, and the one config loader.

Imported in every process; depends on pydantic and PyYAML only and imports nothing of the project.
Importing it also hooks torchvision's first import (common/torchvision_ops.py: the registry's CUDA
torchvision next to the CPU torch); that costs nothing until torchvision is imported.
"""

from common.torchvision_ops import install_import_hook

install_import_hook()
