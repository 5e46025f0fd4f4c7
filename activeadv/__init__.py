"""activeadv: get the most accurate classifier for the fewest labels.

The loop: train with FGSM adversarial regularization, rank the unlabeled pool by
adversarial margin (DeepFool distance), ask people in Label Studio, store their
labels in SQL, retrain.
"""

__version__ = "0.1.0"
