"""Reverse-mode differentiation: `backward` and `grad`.

Both walk the graph from the outputs in reverse topological order, calling each
tensor's `_vjp` rule. With `create_graph=False` the rules run under no_grad, so the
first-order path builds no second graph; with `create_graph=True` they are recorded
like any other op, which is all that higher-order gradients need.
"""
from . import anomaly as _anomaly
from .grad_mode import set_grad_enabled
from .tensor import Tensor, Versions


def _freed(*_, **__):
    raise RuntimeError("Trying to backward through the graph a second time: its saved tensors were "
                       "freed after the first backward. Pass retain_graph=True to the first "
                       "backward() or sg.grad() if you need to go through it again.")


def _topological_order(roots, targets=None):
    """Tensors that require grad, each before its inputs. With `targets`, only the tensors
    from which some target can be reached (pruning branches like a critic's weights)."""
    order, seen, useful = [], set(), {}
    stack = [(r, False) for r in roots if r._requires_grad]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            if targets is not None:
                useful[id(t)] = id(t) in targets or any(useful.get(id(x), False) for x in t._inputs)
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        for x in t._inputs:
            if x._requires_grad and id(x) not in seen:
                stack.append((x, False))
    order.reverse()
    if targets is not None:
        order = [t for t in order if useful[id(t)]]
    return order


def _check_versions(t):
    for x in t._inputs:
        if getattr(x, "_written", 0) > t._born:
            raise RuntimeError(
                f"a tensor of shape {x.shape} that {_op_name(t)} saved for backward was modified in "
                f"place (e.g. by optimizer.step()) after the forward pass: run backward before "
                f"stepping, or recompute the forward pass after the step")


def _op_name(t):
    return getattr(t._vjp, "__name__", "an op").removesuffix("_vjp")


def _seed_gradient(output, gradient):
    if gradient is None:
        if output.data.size != 1:
            raise RuntimeError(f"backward on a non-scalar output of shape {output.shape} needs the "
                               f"gradient of the final result w.r.t. it: pass gradient=<tensor of shape "
                               f"{output.shape}> (often sg.ones_like(out)), or reduce it first with .sum()")
        return Tensor(output.xp.ones_like(output.data))
    gradient = gradient if isinstance(gradient, Tensor) else Tensor(output.xp.asarray(gradient, output.dtype))
    if gradient.shape != output.shape:
        raise ValueError(f"gradient has shape {gradient.shape} but the output has shape {output.shape}")
    return gradient


def _backprop(outputs, gradients, create_graph, retain_graph, targets=None):
    """Return {id(tensor): (tensor, gradient)} for every leaf (or target) the outputs reach."""
    for out in outputs:
        if not out._requires_grad:
            raise RuntimeError(f"output of shape {out.shape} does not require grad and has no grad_fn: "
                               f"no input that requires grad was used to compute it (or it was made "
                               f"under no_grad)")
    order = _topological_order(outputs, targets)
    grads = {}
    for out, g in zip(outputs, gradients):
        grads[id(out)] = grads[id(out)] + g if id(out) in grads else g
    found = {}
    with set_grad_enabled(create_graph):
        for t in order:
            g = grads.pop(id(t), None)
            if g is None:
                continue
            if t._vjp is None or (targets is not None and id(t) in targets):
                found[id(t)] = (t, g)
                if t._vjp is None:
                    continue
            if Versions.writes > t._born:  # something was written since t was made: was it an input?
                _check_versions(t)
            if _anomaly.enabled:
                input_grads = _anomaly.run_backward_rule(t, g)
            else:
                input_grads = t._vjp(g, t, *t._inputs, **t._args)
            for x, gx in zip(t._inputs, input_grads):
                if gx is not None and x._requires_grad:
                    k = id(x)
                    grads[k] = grads[k] + gx if k in grads else gx
    if not retain_graph:
        for t in order:
            if t._vjp is not None:
                t._vjp, t._inputs, t._args = _freed, (), {}
    return found


def backward(output, gradient=None, retain_graph=None, create_graph=False):
    """Accumulate d(output)/d(leaf) into every leaf's `.grad`."""
    retain_graph = create_graph if retain_graph is None else retain_graph
    seed = _seed_gradient(output, gradient)
    found = _backprop([output], [seed], create_graph, retain_graph)
    claimed = {id(seed.data)}
    for leaf, g in found.values():
        if not create_graph:
            g = Tensor(_exclusive(g.data, claimed))
        leaf.grad = g if leaf.grad is None else leaf.grad + g


def _exclusive(array, claimed):
    """The array itself if this leaf alone can own and modify it, else a copy. Rules may
    return views (a broadcast of the upstream gradient) or one array for two inputs (add)."""
    flags = array.flags
    if not flags.owndata or not getattr(flags, "writeable", True) or id(array) in claimed:
        array = array.copy()
    claimed.add(id(array))
    return array


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of `outputs` w.r.t. `inputs`, returned as a tuple (nothing is accumulated).

    With create_graph=True the result is itself differentiable (gradient penalties,
    Hessian-vector products, third order and beyond).
    """
    single = isinstance(inputs, Tensor)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    seeds = [_seed_gradient(o, g) for o, g in zip(outputs, grad_outputs)]
    for i, x in enumerate(inputs):
        if not x._requires_grad:
            raise RuntimeError(f"input {i} (shape {x.shape}) does not require grad")
    retain_graph = create_graph if retain_graph is None else retain_graph
    found = _backprop(outputs, seeds, create_graph, retain_graph, targets={id(x) for x in inputs})
    result = []
    for i, x in enumerate(inputs):
        g = found.get(id(x), (None, None))[1]
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} (shape {x.shape}) was not used to compute the outputs; "
                               f"pass allow_unused=True to get None for it")
        result.append(g if g is None or create_graph else Tensor(g.data))
    return tuple(result)


def composed_vjp(fn, inputs, g):
    """The vjp of fn(*inputs) for the output gradient g, as a graph that can be differentiated again:
    the create_graph path of a fused op (a kernel) whose backward rule is not itself built from
    ops, by differentiating `fn`, the same function written in engine ops. One gradient per input
    (None where an input does not require grad)."""
    from .tensor import record
    # Fresh identity nodes as the targets: `grad` stops there instead of following the inputs' own
    # history (weight may have helped make x); their vjp passes the second-order gradients on.
    alias = [record(t.data, _identity_vjp, (t,)) for t in inputs]
    wanted = [i for i, t in enumerate(inputs) if t._requires_grad]
    grads = grad(fn(*alias), [alias[i] for i in wanted], grad_outputs=g, create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, gi in zip(wanted, grads):
        result[i] = gi
    return tuple(result)


def _identity_vjp(g, out, t):
    return (g,)
