"""mlinfra: AWS CDK constructs for deep-learning infrastructure."""

__version__ = "0.1.0"
