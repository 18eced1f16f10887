"""Packaging: the top-level `configs/` ships inside the wheel as `tinylm_jax/configs/`."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["tinylm_jax*"]), "tinylm_jax.configs"],
    package_dir={"tinylm_jax.configs": "configs"},
    package_data={"tinylm_jax.configs": ["**/*.gin", "sweeps/*.py"]},
)
