"""sb3_pvdr: PVDR (Pre-trained Visual Dynamics Representations, ECCV 2024) for Stable-Baselines3."""

from pathlib import Path

from setuptools import find_packages, setup

version = (Path(__file__).parent / "sb3_pvdr" / "version.txt").read_text().strip()

setup(
    name="sb3_pvdr",
    version=version,
    description="PVDR: pre-trained visual dynamics representations for efficient policy learning, on Stable-Baselines3",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sb3_pvdr", "sb3_pvdr.*"]),
    # The shipped pre-trained models (sb3_pvdr.pretrained): weights + configs + model cards.
    package_data={"sb3_pvdr": ["version.txt", "py.typed", "pretrained/*/*.pt", "pretrained/*/card.json"]},
    python_requires=">=3.10",
    install_requires=[
        # Install torch first (`pip install torch==2.13.0`, a CPU wheel here): this range is then
        # already satisfied and pip pulls no multi-GB CUDA build.
        "torch>=2.3",
        "stable-baselines3>=2.3,<3",
        "sb3-contrib>=2.3,<3",
        "rl_zoo3>=2.3,<3",
        "requests",  # rl_zoo3.enjoy imports it without declaring it
        "gymnasium>=0.29,<1.3",
        "metaworld>=3.0,<4",
        "einops>=0.7",
        "opencv-python-headless>=4.8",
        "tensorboard>=2.14",
        "vector-quantize-pytorch>=1.14",
        "imageio>=2.31",
        "matplotlib>=3.7",  # learning curves (python -m sb3_pvdr.experiments plot)
        "scikit-learn",  # t-SNE of python -m sb3_pvdr.visualize tsne (paper Fig. 6)
        "pandas",  # train.py -optimize: rl-zoo writes the Optuna study's report with optuna's trials_dataframe
        "imageio-ffmpeg>=0.4.9",
        "h5py>=3.9",
        "tfrecord>=1.14",
        "pyyaml>=6.0",
        "tqdm",
        "rich",
        "numpy",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout"],
        # RLBench needs CoppeliaSim (not on PyPI): install both by hand, see README.md.
        "rlbench": [],
    },
    license="MIT",
)
