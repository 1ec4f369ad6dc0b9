"""``leukemia-cnn data get``: bring a raw image tree into ``data/raw/<Class>/`` and version it.

:mod:`.get` runs the command; :mod:`.sources` reads a zip or a folder without following it
anywhere it should not go, :mod:`.plan` maps its entries to classes and counts what is
skipped, :mod:`.kaggle_api` downloads the public dataset through the Kaggle API. Replacing
``data/raw`` without losing a file, which ``data synth`` shares, is
:mod:`leukemia_cnn.data.rawtree` (with :mod:`~leukemia_cnn.data.localfiles`,
:mod:`~leukemia_cnn.data.versioning` for ``dvc add``, and :mod:`~leukemia_cnn.data.staging`).
"""
