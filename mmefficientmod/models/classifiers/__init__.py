from .distill import (KnowledgeDistillationImageClassifier,
                      soft_distillation_loss)

__all__ = ['KnowledgeDistillationImageClassifier', 'soft_distillation_loss']
