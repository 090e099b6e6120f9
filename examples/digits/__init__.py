"""The digits example: a diffusers ``UNet2DModel`` trained on scikit-learn's 8 x 8 digits.

* :mod:`.train`  the data split, training (resumable) and ``save_pretrained``; ``assets/`` holds the trained
  pipeline folder and its data split (package data, loaded as ``--model digits``)
"""
