"""Torch modules: xLSTM blocks, TiRex, the ViL backbone, the depth head and checkpoint I/O."""
