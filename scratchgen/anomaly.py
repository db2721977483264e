"""`sg.detect_anomaly()`: name the op that first made a NaN or an infinity (torch.autograd.detect_anomaly).

    with sg.detect_anomaly():
        loss = model.loss(x)      # an op whose finite inputs give a non-finite output raises here
        loss.backward()           # a backward rule that turns a finite gradient non-finite raises here

Off by default: checking every op's result costs a pass over its memory. While it is on, each
recorded op also keeps where it was created, and the error points at that line of the user's code.
"""
import contextlib
import traceback

import numpy as np

_PACKAGE = __name__.rsplit(".", 1)[0]
enabled = False
_in_backward = False  # a backward rule's own ops are judged by its result, not one by one


@contextlib.contextmanager
def detect_anomaly():
    """Check every op's output and every backward rule's result for NaN and infinity."""
    global enabled
    before, enabled = enabled, True
    try:
        yield
    finally:
        enabled = before


def _finite(a):
    xp = np if isinstance(a, (np.ndarray, np.generic)) else __import__("cupy")
    return a.dtype.kind not in "fc" or bool(xp.isfinite(a).all())


def _op_name(vjp):
    return getattr(vjp, "__name__", "op").removesuffix("_vjp")


def _user_line(stack):
    """The innermost frame outside scratchgen (the user's line that called the op)."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    for frame in reversed(stack):
        if not os.path.abspath(frame.filename).startswith(here):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return "inside scratchgen"


def check_forward(out, vjp, inputs):
    """Called by `record` for every op while detection is on."""
    if _in_backward:
        return
    out._created_at = traceback.extract_stack()[:-2]
    if not _finite(out.data) and all(_finite(x.data) for x in inputs):
        kind = "NaN" if bool((out.data != out.data).any()) else "an infinity"
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise FloatingPointError(f"detect_anomaly: {_op_name(vjp)} made {kind} from finite inputs of shapes "
                                 f"{shapes}, at {_user_line(out._created_at)}")


def run_backward_rule(t, g):
    """Run tensor t's backward rule on gradient g (the backward walk calls this while detection is
    on) and raise if it turned a finite gradient into a non-finite one."""
    global _in_backward
    before, _in_backward = _in_backward, True
    try:
        input_grads = t._vjp(g, t, *t._inputs, **t._args)
    finally:
        _in_backward = before
    if _finite(g.data):
        check_backward(t, input_grads)
    return input_grads


def check_backward(t, input_grads):
    for i, gx in enumerate(input_grads):
        if gx is not None and not _finite(gx.data):
            where = getattr(t, "_created_at", None)
            made = f"; the op was made at {_user_line(where)}" if where else ""
            raise FloatingPointError(f"detect_anomaly: the backward of {_op_name(t._vjp)} turned a finite "
                                     f"gradient into a non-finite one for input {i} (shape {tuple(gx.shape)}){made}")
