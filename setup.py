from setuptools import setup, find_packages

# kernels/ ships inside the package as `scratchgen.kernels`, so it never
# claims the top-level name `kernels`.
packages = find_packages(include=["scratchgen", "scratchgen.*"]) + ["scratchgen.kernels"]

setup(
    name="scratchgen",
    version="0.1.0",
    description="Deep generative models on a from-scratch autograd engine",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"scratchgen.kernels": "kernels"},
    package_data={"scratchgen.data": ["bundled/*.npz"]},
    install_requires=["numpy>=1.26", "scipy", "numba>=0.59", "matplotlib", "tqdm", "threadpoolctl"],
    extras_require={
        "dev": ["pytest", "hypothesis", "dask[distributed]", "scikit-learn"],
        "dask": ["dask[distributed]"],
        "gpu": ["cupy-cuda12x", "numba-cuda"],
        "bench": ["torch"],
    },
    entry_points={"console_scripts": ["scratchgen=scratchgen.cli:main"]},
)
