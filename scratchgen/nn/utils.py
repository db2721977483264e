"""torch.nn.utils's names for what scratchgen keeps elsewhere: `sg.nn.utils.spectral_norm(layer)`,
`sg.nn.utils.clip_grad_norm_(parameters, max_norm)`."""
from ..optim.clip import clip_grad_norm_  # noqa: F401
from .spectral_norm import spectral_norm  # noqa: F401
