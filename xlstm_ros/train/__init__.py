"""Training loops of the two models on one runtime (runtime.py): forecast_train.py and depth_train.py."""
