"""leukemia-cnn: a reproducible MLOps pipeline for a Keras CNN that classifies acute
lymphoblastic leukemia smear images (Benign, Early, Pre, Pro)."""

__version__ = "0.1.0"
