"""The registry: what `scratchgen train NAME` can train.

A registered entry is a `ModelSpec` subclass (or a factory returning a ModelSpec): it tells the
CLI how to build a model of scratchgen.models from a config, its default hyperparameters, which
data it trains on, its training objective, how to evaluate it and how to draw `samples.png`.

    from scratchgen.specs import ModelSpec, register

    @register("mlp")
    class MLPClassifier(ModelSpec):
        description = "MLP classifier on MNIST"
        defaults = dict(epochs=10, batch_size=128, lr=1e-3, hidden=[512, 256])
        monitor = ("valid_acc", "max")

        def build(self): ...                       # the nn.Module, from self.config
        def train_dataset(self): ...               # tuple of arrays, or anything DataLoader takes
        def loss(self, model, batch): ...          # scalar Tensor (or dict with 'loss'); no side effects
        def evaluate(self, model, split): ...      # {"test_acc": ..., "test_loss": ...}
        def sample(self, model, n, path): ...      # writes samples.png, returns the path

A step that is more than one gradient step on `loss` overrides `training_step` (the GAN family's
discriminator steps, MADE's mask changes). Adding a model to the command line is adding one file
under scratchgen/specs/: every module there is imported when `scratchgen.specs` is.
"""
import inspect

_REGISTRY = {}
_IMPORT_ERRORS = {}  # module name -> error text, for modules of scratchgen/specs that failed to import


class UnknownModelError(KeyError):
    def __str__(self):  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class ModelSpec:
    """Everything the CLI and the training loop need to know about one model.

    Subclasses set `description`, `defaults`, `dataset` and `monitor`, and implement `build`,
    `train_dataset`, `loss`, `evaluate`, and `sample` (or `visualize`). `self.config` holds the
    defaults updated with the user's settings (epochs, batch_size, lr, seed, data, limit_train...).
    """

    name = None
    description = ""
    dataset = "mnist"  # name of the data set, shown by the CLI
    defaults = {}  # hyperparameters: epochs, batch_size, lr, and model-specific ones
    monitor = ("valid_loss", "min")  # validation metric for model selection / early stopping
    patience = None  # epochs without improvement before stopping (None: never stop early)
    n_samples = 64  # how many samples `visualize` draws into samples.png
    options = {}  # settings read with a fallback in the code, not in `defaults` ({key: fallback})
    setting_help = {}  # {key: meaning} of settings only this model has (shared ones: settings.MEANING)

    BASE_DEFAULTS = dict(epochs=10, batch_size=128, lr=1e-3, seed=0, weight_decay=0.0, ema=0.0, schedule="none")

    def __init__(self, config=None):
        cfg = dict(self.BASE_DEFAULTS)
        cfg.update(self.defaults)
        for k, v in (config or {}).items():
            if v is not None:
                cfg[k] = v
        self.config = cfg

    # -- what each model provides ---------------------------------------------------------
    def build(self):
        """Return the model (an sg.nn.Module) for self.config."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def train_dataset(self):
        """Training data for sg.data.DataLoader (e.g. a tuple of arrays)."""
        raise NotImplementedError(f"{type(self).__name__}.train_dataset")

    def loss(self, model, batch):
        """Training objective on one batch (a tuple of Tensors): a scalar Tensor, or a dict
        with key 'loss' and any other scalars to log. It only computes: the step is
        `training_step`'s."""
        raise NotImplementedError(f"{type(self).__name__}.loss")

    def training_step(self, model, batch, optimizer):
        """Update the parameters on one batch; return the loss as a float (or a dict with 'loss'
        and other scalars). By default one gradient step on `loss` (scratchgen.train.gradient_step)."""
        from ..train import gradient_step
        return gradient_step(optimizer, self.loss(model, batch))

    def evaluate(self, model, split):
        """Metrics on a data split ('valid', 'test', ...), keys prefixed with the split name."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def sample(self, model, n, path):
        """Draw n samples (or examples of the model at work) into the PNG `path`; return it."""
        raise NotImplementedError(f"{type(self).__name__}.sample")

    def visualize(self, model, out_dir, n=None):
        """Write samples.png (and any other pictures) into out_dir; return samples.png's path."""
        import os
        return self.sample(model, n or self.n_samples, os.path.join(out_dir, "samples.png"))

    # -- optional hooks with sensible defaults --------------------------------------------
    def make_optimizer(self, model):
        import scratchgen.optim as optim
        kwargs = {"lr": self.config["lr"]}
        if self.config.get("weight_decay"):
            kwargs["weight_decay"] = self.config["weight_decay"]
        return optim.Adam(model.parameters(), **kwargs)

    def make_scheduler(self, optimizer):
        """The learning-rate schedule of config `schedule`, stepped once per epoch: 'none',
        'cosine' (to 0 over the run) or 'linear' (straight down to 0 over the run)."""
        from ..optim import lr_scheduler
        kind, epochs = self.config.get("schedule") or "none", int(self.config["epochs"])
        if kind == "cosine":
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        if kind == "linear":
            return lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=epochs)
        if kind != "none":
            raise ValueError(f"schedule must be 'none', 'cosine' or 'linear', got {kind!r}")
        return None

    def make_ema(self, model):
        """An exponential moving average of the weights (config `ema`: its decay, 0 for none)
        that validation, model selection and the test then use."""
        import scratchgen.optim as optim
        decay = float(self.config.get("ema") or 0.0)
        return optim.EMA(self.averaged_parameters(model), decay=decay) if decay else None

    def training_state(self, model):
        """Training state outside the model's state_dict and the optimizer (a mask schedule, a noise
        generator), saved in every checkpoint so that --resume continues bit for bit."""
        return {}

    def load_training_state(self, model, state):
        """Restore what `training_state` returned (an empty dict: a checkpoint from before it)."""

    def averaged_parameters(self, model):
        return model.parameters()

    def describe_data(self):
        """One line saying which data this model uses (the CLI prints it)."""
        from scratchgen import data
        fn = getattr(data, f"describe_{self.dataset}_source", None)
        if fn is not None:
            return fn()
        if self.dataset == "mnist":
            return data.describe_mnist_source()
        return self.dataset


class NoiseState:
    """For a spec that draws its training noise (dequantization, binarization) from its own
    NumPy generator `self.noise`: the generator's state goes into every checkpoint, so --resume
    continues bit for bit. List it before ModelSpec: `class NICESpec(NoiseState, ModelSpec)`."""

    def training_state(self, model):
        noise = getattr(self, "noise", None)
        return {"noise": noise.bit_generator.state} if noise is not None else {}

    def load_training_state(self, model, state):
        if "noise" in state:
            self.noise.bit_generator.state = state["noise"]


def register(name, *, defaults=None):
    """Register a ModelSpec subclass (or a factory `fn(config) -> ModelSpec`) under `name`."""

    def decorate(obj):
        if name in _REGISTRY and _REGISTRY[name] is not obj:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name]!r}")
        if inspect.isclass(obj):
            obj.name = name
            if defaults:
                obj.defaults = {**obj.defaults, **defaults}
        else:
            obj.defaults = dict(defaults or getattr(obj, "defaults", {}))
        _REGISTRY[name] = obj
        return obj

    return decorate


def available():
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def import_errors():
    return dict(_IMPORT_ERRORS)


def get(name):
    """The registered class or factory for `name`; a clear error listing the known names."""
    if name not in _REGISTRY:
        msg = f"unknown model {name!r}; available models: {', '.join(available()) or '(none)'}"
        broken = {k: v for k, v in _IMPORT_ERRORS.items()}
        if broken:
            msg += "; modules that failed to import: " + "; ".join(f"{k}: {v}" for k, v in broken.items())
        raise UnknownModelError(msg)
    return _REGISTRY[name]


def create(name, config=None):
    """A ModelSpec instance for `name`, its config = defaults updated with `config`."""
    entry = get(name)
    spec = entry(config or {})
    if not inspect.isclass(entry):
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"factory for model {name!r} must return a ModelSpec, got {type(spec).__name__}")
        spec.name = name
        if getattr(entry, "defaults", None):
            merged = dict(spec.config)
            for k, v in entry.defaults.items():
                if (config or {}).get(k) is None:
                    merged[k] = v
            spec.config = merged
    return spec


def defaults_of(name):
    """Default hyperparameters of a registered model (base defaults included)."""
    return create(name).config
