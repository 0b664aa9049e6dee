"""Sphinx configuration of the pyro_cvae site (``make docs`` builds it into docs/_build/html).

The tutorials under ``tutorials/`` are MyST-Markdown notebooks that myst-nb executes on every
build; a failing cell fails the build. The results pages are generated from
``experiments/results/`` by the local extension ``_ext/results.py``.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
# the tutorials' kernels import the package from this checkout, not from an installed copy
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
)

import pyro_cvae  # noqa: E402

project = "pyro_cvae"
author = "the pyro_cvae developers"
copyright = "the pyro_cvae developers"
release = version = pyro_cvae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "results",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "results/_list.md"]
# the Markdown files of experiments/results/ start at "#" and may skip levels
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"pyro_cvae {release}"
html_static_path: list[str] = []

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Tutorials: executed on every build, small budgets; one failing cell fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 180  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# progress bars and library warnings go to stderr; the pages show results, not those
nb_output_stderr = "remove"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
