"""gpt2graph: a typed, exact, vector-level graph of a live GPT-2 forward pass.

>>> import gpt2graph
>>> g = gpt2graph.build("Transformer tokens")          # pretrained gpt2, or the embedded default
>>> g.nodes(kind="q", layer=0, head=3)                 # one node per vector
>>> g.verify().ok                                       # re-executed vector by vector: equals the model
>>> g.save("run.gg"); gpt2graph.load("run.gg")
>>> gpt2graph.from_cache(cache, tokens)                # a TransformerLens ActivationCache, checked, as a graph
"""

__version__ = "0.1.0"

from .builder import build
from .cache import from_cache
from .corpus import CorpusStats, load_corpus
from .errors import Gpt2GraphError
from .graph import Graph
from .storage import load

__all__ = ["build", "load", "load_corpus", "from_cache", "Graph", "CorpusStats", "Gpt2GraphError", "__version__"]
