"""JointTrain: all seen domains' training data at once (the upper bound of Table 2)."""
from .registry import register
from .base import Method


@register("joint")
class Joint(Method):
    """The Trainer merges every domain into one step of (domains x epochs) epochs, as the paper's 250 = 5 x 50."""

    joint = True
