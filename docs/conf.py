"""Sphinx configuration of the ddmq documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install -e '.[docs]'`` first; tox: ``tox -e docs``).
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, TOP)   # document the checkout, not whatever ddmq is installed

with open(os.path.join(TOP, "ddmq", "__init__.py")) as _init:
    release = re.search(r'^__version__ = "([^"]+)"', _init.read(), re.M).group(1)
version = ".".join(release.split(".")[:2])

project = "ddmq"
author = "the ddmq authors"
copyright = "the ddmq authors, MIT License"

# No intersphinx: the build must work without a network.
extensions = ["sphinx.ext.autodoc", "ddmq_cli"]

exclude_patterns = ["_build"]
templates_path = []
root_doc = "index"
default_role = "literal"     # `x` reads as ``x``, never as an unresolved reference

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Annotations (where a module has them) are shown in the signatures.
autodoc_typehints = "signature"
autoclass_content = "both"

html_theme = "alabaster"
html_title = "ddmq {} documentation".format(release)
html_static_path = []
html_theme_options = {
    "description": "Dead Drop Messaging Queue: a serverless, file-based message queue",
    "fixed_sidebar": True,
}
