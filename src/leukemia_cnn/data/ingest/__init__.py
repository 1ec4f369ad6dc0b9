"""``leukemia-cnn data get`` (:mod:`.get`): reading a zip or a folder safely (:mod:`.sources`),
mapping its entries to classes (:mod:`.plan`) and the Kaggle download (:mod:`.kaggle_api`).
Replacing ``data/raw``, which ``data synth`` shares, is :mod:`leukemia_cnn.data.rawtree`.
"""
