"""What several test files share: reference implementations, the fast-path switches, tiny data
sets written in CIFAR-10's format, a hand-made .pth writer, small models and training runs.

``pyproject.toml`` puts ``tests/`` on the import path (``pythonpath``), so a test in any folder
imports them as ``from helpers.cifar import write_cifar``."""
