"""Where models logged before the ``serving`` package find their class.

A logged model pickles its class by reference: every model logged before the move (a store's
champion included) unpickles ``leukemia_cnn.modeling.pyfunc.LeukemiaCNNModel``. The class
lives in :mod:`leukemia_cnn.serving.pyfunc`; this name keeps those models loading.
"""

from leukemia_cnn.serving.pyfunc import LeukemiaCNNModel  # noqa: F401
