"""Fine selection inside the Hugging Face Trainer: candidates, the callback, shared selection state, the
multi-model coordinator, its checkpoints, the report, and the distributed helpers."""
