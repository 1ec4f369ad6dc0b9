"""The images and the tables made from them: the built-in synthetic set, ingestion of a real
dataset, image decoding, the split and the preprocessed arrays, and DVC versioning of data/raw.

May import: the top-level modules (config, errors, fileio, console). Never imports tensorflow,
mlflow, or any other package of leukemia_cnn.
"""
