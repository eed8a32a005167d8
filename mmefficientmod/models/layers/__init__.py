from .attention import AttentionBlock, FeedForward, MultiHeadSelfAttention
from .modulation import ContextBranch, ModulationBlock

__all__ = [
    'AttentionBlock', 'ContextBranch', 'FeedForward', 'ModulationBlock',
    'MultiHeadSelfAttention'
]
