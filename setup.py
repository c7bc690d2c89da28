from setuptools import find_packages, setup

setup(
    name="minidl",
    version="0.1.0",
    description="A from-scratch deep-learning engine with PyTorch's API: NumPy on the CPU, CuPy on the GPU",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["minidl", "minidl.*"]),
    package_data={"minidl.data": ["resources/*.npz", "resources/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "threadpoolctl>=3.1",  # kernels/blas.py: OpenBLAS on one thread while minidl splits large products
    ],
    extras_require={
        # torch is version-pinned: the tests compare with torch 2.13's numbers and OpInfo samples (where its CPU
        # wheel is on disk pip takes it; an unpinned torch pulls gigabytes of CUDA packages)
        "dev": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "expecttest", "ruff>=0.5", "torch==2.13.0",
                "safetensors>=0.4", "onnx>=1.15", "onnxruntime>=1.17", "mpi4py>=4", "mpich"],
        # numba-cuda: the GPU kernels (kernels/_cuda.py); its cu12 extra brings NVVM and the CUDA runtime as wheels
        "gpu": ["cupy-cuda12x>=13", "numba-cuda[cu12]>=0.20"],
        # weights and models to other frameworks: safetensors files, ONNX export (checked with onnxruntime)
        "exchange": ["safetensors>=0.4", "onnx>=1.15", "onnxruntime>=1.17"],
        # data-parallel training across processes: mpi4py on the MPI library of the mpich wheel (mpiexec)
        "distributed": ["mpi4py>=4", "mpich"],
    },
)
