"""Small default checkpoints trained by xlstm_ros.train, each with a model card."""
