"""Install ddmq: the library and the ``ddmq`` command."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "ddmq" / "__init__.py").read_text(),
                    re.M).group(1)

setup(
    name="ddmq",
    version=VERSION,
    description="Dead Drop Messaging Queue: a serverless, file-based message queue",
    long_description=(HERE / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="MIT",
    packages=find_packages(include=["ddmq", "ddmq.*"]),
    package_data={"ddmq": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["PyYAML>=5.1", "beautifultable>=1.0"],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2", "prometheus_client"],
        # The tools run on Python 3.11 and newer (what Sphinx 9 and mypy 2 support);
        # each range is one whose releases behave alike, so CI stays reproducible.
        "docs": ["sphinx>=9.0,<10"],
        "lint": ["ruff>=0.16.9,<0.18"],
        "type": ["mypy>=2.3,<3"],
    },
    entry_points={"console_scripts": ["ddmq = ddmq.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX",
        "Topic :: System :: Distributed Computing",
    ],
)
